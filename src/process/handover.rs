//! Zero-downtime restarts: serving on an inherited listening socket (systemd socket activation or
//! a predecessor relay), waiting for the store a predecessor still holds, and handing our own
//! listener to a successor process (SIGUSR2).
//!
//! The listening socket is never closed across a restart: the kernel keeps queueing connections
//! in its backlog while no process accepts, so a restart delays webhooks instead of refusing them.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::config::StorageSettings;
use crate::store::{Store, StoreError};

/// systemd's `SD_LISTEN_FDS_START`: the first passed socket.
const LISTEN_FD: RawFd = 3;
/// Where a successor finds the write end of the pipe it reports readiness on.
const READY_FD: RawFd = 4;
/// Names the successor's ready pipe; set only by a relay handing over.
pub const HANDOVER_FD_ENV: &str = "WHATICKET_RELAY_HANDOVER_FD";
/// A successor only loads its config and takes the socket before it reports; this is generous.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    #[error("LISTEN_FDS is not a number")]
    BadCount,
    #[error("inherited fd 3 is not a listening TCP socket")]
    NotAListener(#[source] io::Error),
}

/// The listening socket passed to us by systemd or by a relay handing over, if any.
///
/// sd_listen_fds(3): taken only when `LISTEN_PID` is our pid; the first socket (fd 3) is used.
/// The variables are removed so that no child takes the socket by mistake, and the socket is
/// re-opened close-on-exec so that only a deliberate hand-over passes it on.
pub fn take_inherited_listener() -> Result<Option<TcpListener>, InheritError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let Some(count) = std::env::var("LISTEN_FDS").ok().filter(|_| for_us) else {
        return Ok(None);
    };
    // Called at start, before any thread of ours reads the environment.
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let count: u32 = count.trim().parse().map_err(|_| InheritError::BadCount)?;
    if count == 0 {
        return Ok(None);
    }
    if count > 1 {
        tracing::warn!(
            count,
            "several sockets were passed; only the first (fd 3) is served"
        );
    }
    if !is_listening_socket(LISTEN_FD) {
        return Err(InheritError::NotAListener(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fd 3 is not a listening stream socket",
        )));
    }
    // SAFETY: by the socket-activation protocol fd 3 is ours, open, and nothing else owns it.
    let passed = TcpListener::from(unsafe { OwnedFd::from_raw_fd(LISTEN_FD) });
    let listener = passed.try_clone().map_err(InheritError::NotAListener)?;
    drop(passed);
    let addr = listener.local_addr().map_err(InheritError::NotAListener)?;
    tracing::info!(%addr, "serving on an inherited listening socket; server.bind is not used");
    Ok(Some(listener))
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain getsockopt into a local int; fails harmlessly on a non-socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value != 0
}

/// Tells the relay handing over to us that we hold the socket and a valid config, so it may stop
/// accepting. A no-op unless we were started by a hand-over.
pub fn notify_predecessor() {
    let Some(fd) = std::env::var(HANDOVER_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    std::env::remove_var(HANDOVER_FD_ENV);
    if fd != READY_FD {
        tracing::warn!("unexpected hand-over pipe; not reporting readiness");
        return;
    }
    // SAFETY: the predecessor placed its ready pipe's write end on this fd for us alone.
    let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Err(err) = pipe.write_all(b"R") {
        tracing::warn!(error = %err, "cannot report readiness to the previous relay");
    }
}

/// Opens the store, waiting up to `wait` for a predecessor (still draining) to release its lock.
pub async fn open_store_waiting(
    settings: &StorageSettings,
    wait: Duration,
) -> Result<Store, StoreError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    let mut logged = false;
    loop {
        match Store::open(settings) {
            Ok(store) => {
                if logged {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "storage directory acquired"
                    );
                }
                return Ok(store);
            }
            Err(err) if err.is_lock_held() && started.elapsed() < wait => {
                if !logged {
                    tracing::info!(
                        "storage directory still held by the previous relay; waiting for it"
                    );
                    logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
            Err(err) => return Err(err),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot prepare the successor's command line")]
    Prepare(#[source] io::Error),
    #[error("cannot start the successor")]
    Spawn(#[source] io::Error),
    #[error("the successor stopped before taking over ({0})")]
    Failed(String),
    #[error("the successor did not take over within {0:?}")]
    Timeout(Duration),
}

/// What starting a successor needs: our listener and how this process was started.
pub struct Handover {
    listener: TcpListener,
    /// Resolved at start: an upgrade that replaces the file at this path runs the new binary.
    program: PathBuf,
    args: Vec<OsString>,
}

impl Handover {
    /// `listener` is a duplicate of the one being served.
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        Ok(Self {
            listener,
            program: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
        })
    }

    /// Starts our own program again with our listener as its fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`
    /// = its pid) and waits until it reports that it holds the socket and a valid config; returns
    /// its pid. Until then, and when it fails, this process keeps serving.
    pub async fn start_successor(&self) -> Result<u32, HandoverError> {
        let (read_end, write_end) = pipe().map_err(HandoverError::Prepare)?;
        let mut exec = Exec::prepare(
            &self.program,
            &self.args,
            self.listener.as_raw_fd(),
            write_end.as_raw_fd(),
        )
        .map_err(HandoverError::Prepare)?;
        let mut command = Command::new(&self.program);
        // SAFETY: `Exec::run` only calls async-signal-safe functions (getpid, fcntl, dup2, execve)
        // on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || exec.run());
        }
        let mut child = command.spawn().map_err(HandoverError::Spawn)?;
        drop(write_end);
        let pid = child.id();
        tracing::info!(successor_pid = pid, "hand-over: successor started");

        let ready = tokio::task::spawn_blocking(move || {
            let mut pipe = std::fs::File::from(read_end);
            let mut byte = [0u8; 1];
            matches!(pipe.read(&mut byte), Ok(1))
        });
        let outcome = match tokio::time::timeout(READY_TIMEOUT, ready).await {
            Ok(Ok(true)) => return Ok(pid),
            Ok(_) => None,
            Err(_) => Some(HandoverError::Timeout(READY_TIMEOUT)),
        };
        // It must not wait for our store and then serve: stop it (our own child, by its pid).
        let _ = child.kill();
        let status = tokio::task::spawn_blocking(move || child.wait()).await;
        Err(outcome.unwrap_or_else(|| {
            HandoverError::Failed(match status {
                Ok(Ok(status)) => status.to_string(),
                _ => "exit status unknown".to_owned(),
            })
        }))
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array; close-on-exec so no other child inherits them.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An `execve` prepared in the parent, so that the forked child allocates nothing: only
/// `LISTEN_PID`, known after the fork, is written into a buffer reserved for it.
struct Exec {
    program: CString,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    listen_pid: Vec<u8>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    listen_fd: RawFd,
    ready_fd: RawFd,
}

// SAFETY: the raw pointers point into heap buffers owned by the same struct, which never
// reallocate; the struct is only used in the forked child.
unsafe impl Send for Exec {}
unsafe impl Sync for Exec {}

impl Exec {
    fn prepare(
        program: &Path,
        args: &[OsString],
        listen_fd: RawFd,
        ready_fd: RawFd,
    ) -> io::Result<Exec> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let program = c(program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for arg in args {
            argv.push(c(arg.as_bytes())?);
        }
        let mut env = Vec::new();
        for (key, value) in std::env::vars_os() {
            let key = key.as_bytes();
            if [
                &b"LISTEN_PID"[..],
                b"LISTEN_FDS",
                b"LISTEN_FDNAMES",
                HANDOVER_FD_ENV.as_bytes(),
            ]
            .contains(&key)
            {
                continue;
            }
            let mut entry = key.to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            env.push(c(&entry)?);
        }
        env.push(c(b"LISTEN_FDS=1")?);
        env.push(c(format!("{HANDOVER_FD_ENV}={READY_FD}").as_bytes())?);
        // Room for any pid and the terminating NUL.
        let mut listen_pid = LISTEN_PID_PREFIX.to_vec();
        listen_pid.resize(LISTEN_PID_PREFIX.len() + 24, 0);

        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.push(listen_pid.as_ptr().cast());
        env_ptrs.push(std::ptr::null());
        Ok(Exec {
            program,
            _argv: argv,
            _env: env,
            listen_pid,
            argv_ptrs,
            env_ptrs,
            listen_fd,
            ready_fd,
        })
    }

    /// Runs in the forked child: place the fds, fill in `LISTEN_PID`, exec. Returns only on error.
    fn run(&mut self) -> io::Result<()> {
        // SAFETY: getpid cannot fail.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let start = LISTEN_PID_PREFIX.len();
        for i in 0..n {
            self.listen_pid[start + i] = digits[n - 1 - i];
        }
        self.listen_pid[start + n] = 0;

        // Move both out of the way first (close-on-exec copies), so that placing one cannot
        // overwrite the other when it already sits on fd 3 or 4.
        let mut moved = [0; 2];
        for (slot, fd) in moved.iter_mut().zip([self.listen_fd, self.ready_fd]) {
            // SAFETY: fcntl on fds that are open in this process.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            *slot = copy;
        }
        for (copy, target) in moved.into_iter().zip([LISTEN_FD, READY_FD]) {
            // SAFETY: dup2 onto a fixed slot; the new fd is inheritable (dup2 clears FD_CLOEXEC).
            if unsafe { libc::dup2(copy, target) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: NUL-terminated strings and NULL-terminated arrays built by `prepare`.
        unsafe {
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}
