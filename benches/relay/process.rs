//! The servers under test as child processes, and what /proc says about them: CPU time and memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// A server the load is aimed at, in its own process with its own temp dir, so that its CPU and
/// memory are measured apart from the load generator's. Killed if dropped while running.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    what: &'static str,
}

impl Server {
    /// Starts the command `build` makes for a free port and a fresh temp dir.
    pub fn spawn(
        what: &'static str,
        build: impl FnOnce(u16, &Path) -> Result<Command>,
    ) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("relay-bench-{what}-"))
            .tempdir()?;
        let (child, port) = start(what, dir.path(), build)?;
        Ok(Server {
            child,
            port,
            dir,
            what,
        })
    }

    /// Starts it again once stopped, on the same temp dir, with the command `build` makes for a
    /// new free port.
    pub fn restart(&mut self, build: impl FnOnce(u16, &Path) -> Result<Command>) -> Result<()> {
        ensure!(
            self.child.try_wait()?.is_some(),
            "the {} is still running",
            self.what
        );
        let (child, port) = start(self.what, self.dir.path(), build)?;
        (self.child, self.port) = (child, port);
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `GET path` until `ready` likes the status (30 s at most).
    pub async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        path: &str,
        ready: fn(reqwest::StatusCode) -> bool,
    ) -> Result<()> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the {} exited during start-up ({status})", self.what);
            }
            if let Ok(resp) = http.get(&url).send().await {
                if ready(resp.status()) {
                    return Ok(());
                }
            }
            ensure!(
                Instant::now() < deadline,
                "the {} was not ready within 30 s",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn memory(&self) -> Result<Memory> {
        Memory::of(self.pid())
    }

    /// Graceful stop (SIGTERM); the exit status must be success.
    pub fn stop(&mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        ensure!(
            unsafe { libc::kill(pid, libc::SIGTERM) } == 0,
            "cannot signal the {}",
            self.what
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the {} exited with {status}", self.what);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the {} did not stop within 60 s", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The command `build` makes for a free port and `dir`, started.
fn start(
    what: &str,
    dir: &Path,
    build: impl FnOnce(u16, &Path) -> Result<Command>,
) -> Result<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = build(port, dir)?
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start the {what} process"))?;
    Ok((child, port))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Cargo's target directory, where the durable limit is built and the figures are written.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Resident memory of a process, from /proc (Linux).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("/proc/<pid>/status (Linux only)")?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("{name} missing"))?;
            line.split_whitespace()
                .nth(1)
                .ok_or_else(|| anyhow!("{name} empty"))?
                .parse()
                .context(name.to_owned())
        };
        Ok(Memory {
            rss_kb: field("VmRSS:")?,
            hwm_kb: field("VmHWM:")?,
        })
    }
}

pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat (Linux).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("/proc/<pid>/stat (Linux only)")?;
    // The command name sits in parentheses and may hold spaces: count fields after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/<pid>/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, the 12th and 13th after the name.
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse()
            .context("stat field")
    };
    // SAFETY: sysconf only reads a system constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Ok(Duration::from_secs_f64(
        (field(11)? + field(12)?) as f64 / hz as f64,
    ))
}

/// Waits until a process (the broker, or the relay) is idle: under a fifth of a core over 200 ms,
/// 20 s at most, so that a phase does not start while it still works off the previous one. The
/// time waited.
pub async fn settle(process: Option<u32>) -> Duration {
    const WINDOW: Duration = Duration::from_millis(200);
    let started = Instant::now();
    let Some(pid) = process else {
        return Duration::ZERO;
    };
    while started.elapsed() < Duration::from_secs(20) {
        let Ok(before) = cpu_time(pid) else { break };
        tokio::time::sleep(WINDOW).await;
        let Ok(after) = cpu_time(pid) else { break };
        if after.saturating_sub(before) < WINDOW / 5 {
            break;
        }
    }
    started.elapsed()
}

/// Reads taken every `every` on a task of their own while a phase runs (what /proc says over
/// time); a read that gives nothing is skipped.
pub struct Periodic<T> {
    running: Arc<AtomicBool>,
    task: JoinHandle<Vec<T>>,
}

impl<T: Send + 'static> Periodic<T> {
    /// Starts reading now (the first read is immediate).
    pub fn start(every: Duration, mut read: impl FnMut() -> Option<T> + Send + 'static) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let task = {
            let running = running.clone();
            tokio::spawn(async move {
                let mut reads = Vec::new();
                let mut tick = tokio::time::interval(every);
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    reads.extend(read());
                }
                reads
            })
        };
        Periodic { running, task }
    }

    /// Stops reading (after the tick under way) and gives every read, oldest first.
    pub async fn stop(self) -> Result<Vec<T>> {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.context("periodic reads")
    }
}

/// The local RabbitMQ's Erlang VM, when it runs on this machine.
pub fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "beam.smp").then_some(pid)
        })
}

/// CPU used so far by the server under test (if any, with the name its figure goes under), the
/// broker (when local) and this process.
#[derive(Clone, Copy, Default)]
pub struct CpuMark {
    server: Option<(&'static str, Duration)>,
    broker: Option<Duration>,
    load: Duration,
}

impl CpuMark {
    pub fn now(server: Option<(&'static str, u32)>, broker: Option<u32>) -> Result<CpuMark> {
        Ok(CpuMark {
            server: server
                .map(|(name, pid)| cpu_time(pid).map(|t| (name, t)))
                .transpose()?,
            broker: broker.and_then(|pid| cpu_time(pid).ok()),
            load: cpu_time(std::process::id())?,
        })
    }

    /// Microseconds of CPU per event since `earlier` for each process measured.
    pub fn per_event(&self, earlier: &CpuMark, events: u64) -> Value {
        let us = |now: Option<Duration>, then: Option<Duration>| match (now, then) {
            (Some(now), Some(then)) => json!(
                ((now.saturating_sub(then).as_secs_f64() * 1e6 / events.max(1) as f64) * 10.0)
                    .round()
                    / 10.0
            ),
            _ => Value::Null,
        };
        let mut figures = json!({
            "broker": us(self.broker, earlier.broker),
            "load_generator": us(Some(self.load), Some(earlier.load)),
        });
        if let Some((name, now)) = self.server {
            figures[name] = us(Some(now), earlier.server.map(|(_, then)| then));
        }
        figures
    }
}
