//! Zero-downtime restarts of the real binary under continuous load: socket activation (SIGTERM,
//! then a new process on the same inherited socket), SIGUSR2 hand-over, SIGHUP token rotation.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use serde_json::Value;
use tokio::task::JoinHandle;
use whaticket_relay::config::{AmqpUrl, ConnectionSettings, Secret};
use whaticket_relay::event::Kind;
use whaticket_relay::Application;

use crate::helpers::*;

const NEW_TOKEN: &str = "rotated-token-9876543210";
/// Kept small so that the at-least-once resend bound below is tight.
const MAX_IN_FLIGHT: usize = 32;
const LOAD_TASKS: usize = 4;

/// One relay configuration on disk, shared by the processes of a test.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    name: String,
}

impl Setup {
    fn new(tokens: &[&str]) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("relay.toml");
        let setup = Setup {
            config,
            name: unique("zdt"),
            dir,
        };
        setup.write_config(tokens, "127.0.0.1:0");
        setup
    }

    /// `bind` is not used (the socket is inherited) but is part of the file, for the
    /// "needs restart" check.
    fn write_config(&self, tokens: &[&str], bind: &str) {
        let tokens = tokens
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            r#"[server]
bind = "{bind}"
workers = 2
shutdown_timeout = "5s"

[metrics]
# Relays run side by side: each a free port, not the default 9464. (In the file: the environment
# set between fork and exec, LISTEN_PID, must not be replaced by a Command's own.)
bind = "127.0.0.1:0"

[storage]
path = "{data}"
cache_capacity_bytes = 8388608

[amqp]
url = "{BROKER_URL}"
exchange = "{name}"
queue_prefix = "{name}"
queue_type = "classic"
max_in_flight = {MAX_IN_FLIGHT}
timeout = "3s"
reconnect_min = "100ms"
reconnect_max = "500ms"

[log]
format = "json"
level = "info"

[[connections]]
name = "{CONNECTION}"
tokens = [{tokens}]
"#,
            data = self.dir.path().join("data").display(),
            name = self.name,
        );
        // Written whole then renamed: a reload never reads half a file.
        let tmp = self.dir.path().join("relay.toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    fn queue(&self) -> String {
        format!("{}.{}", self.name, Kind::Other)
    }
}

/// Log lines (stdout, JSON) of a relay and of any successor it starts, which inherits its stdout.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    fn capture(&self, child: &mut Child) {
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::clone(&self.0);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    async fn wait_for(&self, needle: &str, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(needle) < at_least {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}; logs: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn successor_pid(&self) -> Option<i32> {
        self.lines().iter().find_map(|line| {
            let value: Value = serde_json::from_str(line).ok()?;
            value.get("successor_pid")?.as_i64().map(|p| p as i32)
        })
    }
}

/// The relays a test started and has not reaped yet; killed (by pid) when a failing test unwinds,
/// so that none outlives it.
#[derive(Default)]
struct Started(Mutex<Vec<i32>>);

impl Started {
    fn add(&self, pid: i32) {
        self.0.lock().unwrap().push(pid);
    }

    fn reaped(&self, pid: i32) {
        self.0.lock().unwrap().retain(|p| *p != pid);
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().drain(..) {
            // SAFETY: kill(2) on a relay this test started and has not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Starts the real binary on `listener` as systemd does: the socket on fd 3, `LISTEN_FDS=1`,
/// `LISTEN_PID` = the child's pid (known only after the fork, so set there).
fn spawn_relay(setup: &Setup, listener: &TcpListener, logs: &Logs, started: &Started) -> Child {
    let fd = listener.as_raw_fd();
    let mut command = Command::new(env!("CARGO_BIN_EXE_whaticket-relay"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&setup.config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: only dup2/fcntl/getpid/setenv between fork and exec, on memory owned by the child.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut pid = libc::getpid() as u32;
            let mut digits = [0u8; 12];
            let mut i = digits.len() - 1; // the last byte stays NUL
            loop {
                i -= 1;
                digits[i] = b'0' + (pid % 10) as u8;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            libc::setenv(c"LISTEN_FDS".as_ptr(), c"1".as_ptr(), 1);
            libc::setenv(c"LISTEN_PID".as_ptr(), digits[i..].as_ptr().cast(), 1);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start the relay binary");
    started.add(child.id() as i32);
    logs.capture(&mut child);
    child
}

fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) on a process this test started (or its announced successor).
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

async fn wait_exit(mut child: Child, started: &Started) -> std::process::ExitStatus {
    let pid = child.id() as i32;
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("relay did not exit within 20 s")
    .unwrap()
    .unwrap();
    started.reaped(pid);
    status
}

async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "relay not ready within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which token the load uses: 0 old only, 1 old and new, 2 new only.
#[derive(Default)]
struct TokenPhase {
    phase: AtomicU8,
    /// Requests that may present the old token and are not answered yet.
    old_in_flight: AtomicUsize,
}

#[derive(Debug)]
struct Outcome {
    token: &'static str,
    status: Result<u16, String>,
    id: Option<String>,
    latency: Duration,
}

/// Unique webhooks from `LOAD_TASKS` senders, each on a fresh connection as Whaticket posts them,
/// until `stop` is set.
fn start_load(
    base: String,
    stop: Arc<AtomicBool>,
    tokens: Arc<TokenPhase>,
) -> Vec<JoinHandle<Vec<Outcome>>> {
    let run = unique("load");
    (0..LOAD_TASKS)
        .map(|task| {
            let (base, stop, tokens, run) =
                (base.clone(), stop.clone(), tokens.clone(), run.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(15))
                    .build()
                    .unwrap();
                let mut out = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    // Counted before the phase is read: see `retire_old_token`.
                    tokens.old_in_flight.fetch_add(1, Ordering::SeqCst);
                    let token = match tokens.phase.load(Ordering::SeqCst) {
                        0 => OLD_TOKEN,
                        1 if n.is_multiple_of(2) => OLD_TOKEN,
                        _ => NEW_TOKEN,
                    };
                    if token != OLD_TOKEN {
                        tokens.old_in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    let body = format!(
                        r#"{{"acao":"zero-downtime-test","run":"{run}","task":{task},"n":{n}}}"#
                    );
                    let started = Instant::now();
                    let sent = http
                        .post(format!("{base}/hooks/{CONNECTION}/{token}"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let outcome = match sent {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let id = response
                                .json::<Value>()
                                .await
                                .ok()
                                .and_then(|v| v["id"].as_str().map(str::to_owned));
                            Outcome {
                                token,
                                status: Ok(status),
                                id,
                                latency: started.elapsed(),
                            }
                        }
                        Err(err) => Outcome {
                            token,
                            status: Err(format!("{err:?}")),
                            id: None,
                            latency: started.elapsed(),
                        },
                    };
                    if token == OLD_TOKEN {
                        tokens.old_in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    out.push(outcome);
                }
                out
            })
        })
        .collect()
}

async fn finish_load(stop: &AtomicBool, tasks: Vec<JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task panicked"));
    }
    all
}

/// Asserts no request failed and returns the accepted ids.
fn all_accepted(outcomes: &[Outcome], what: &str) -> HashSet<String> {
    let failed: Vec<_> = outcomes.iter().filter(|o| o.status != Ok(202)).collect();
    let slowest = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
    println!(
        "{what}: {} requests, {} not 202, slowest answer {} ms",
        outcomes.len(),
        failed.len(),
        slowest.as_millis()
    );
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    let ids: HashSet<String> = outcomes.iter().filter_map(|o| o.id.clone()).collect();
    assert_eq!(ids.len(), outcomes.len(), "every 202 carries its own id");
    ids
}

/// Every accepted id reaches the queue; resends (at least once) stay within what can be
/// unconfirmed at a stop.
async fn assert_all_queued(setup: &Setup, ids: &HashSet<String>, restarts: usize) {
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.unwrap();
    let queue = setup.queue();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.iter().any(|id| !seen.contains_key(id)) {
        match channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(message) => {
                let id = message
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                *seen.entry(id).or_default() += 1;
            }
            None => {
                let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
                assert!(
                    Instant::now() < deadline,
                    "{missing} of {} accepted events never reached {queue}",
                    ids.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let strangers: Vec<_> = seen.keys().filter(|id| !ids.contains(*id)).collect();
    assert!(strangers.is_empty(), "unexpected messages: {strangers:?}");
    let resent: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "{} events queued, {resent} resent (at least once)",
        ids.len()
    );
    assert!(
        resent <= MAX_IN_FLIGHT * restarts,
        "{resent} duplicates: more than the {MAX_IN_FLIGHT} publishes that can be unconfirmed per stop"
    );
}

async fn delete_broker_objects(setup: &Setup) {
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.unwrap();
    delete_queues_and_exchanges(&channel, &setup.name, &setup.name).await;
}

fn local_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_activated_restart_refuses_nothing_and_loses_nothing() {
    let setup = Setup::new(&[OLD_TOKEN]);
    let logs = Logs::default();
    let started = Started::default();
    // The test plays systemd: it holds the socket across the restart.
    let (listener, base) = local_listener();
    let first = spawn_relay(&setup, &listener, &logs, &started);
    wait_ready(&base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(base.clone(), stop.clone(), Arc::default());
    tokio::time::sleep(Duration::from_millis(700)).await;
    signal(first.id() as i32, libc::SIGTERM);
    let status = wait_exit(first, &started).await;
    assert!(status.success(), "first relay: {status}");
    let second = spawn_relay(&setup, &listener, &logs, &started);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let outcomes = finish_load(&stop, load).await;

    let ids = all_accepted(&outcomes, "socket-activated restart");
    assert!(
        ids.len() > 20,
        "too little load to prove anything: {}",
        ids.len()
    );
    assert_all_queued(&setup, &ids, 1).await;
    signal(second.id() as i32, libc::SIGTERM);
    let status = wait_exit(second, &started).await;
    assert!(status.success(), "second relay: {status}");
    delete_broker_objects(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigusr2_hand_over_refuses_nothing_and_loses_nothing() {
    // The successor is the first relay's child; once that exits, it is re-parented to us, so
    // that we can reap it.
    // SAFETY: prctl on this process only.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let setup = Setup::new(&[OLD_TOKEN]);
    let logs = Logs::default();
    let started = Started::default();
    let (listener, base) = local_listener();
    let first = spawn_relay(&setup, &listener, &logs, &started);
    // From here on only the relays hold the socket: the hand-over itself must keep it open.
    drop(listener);
    wait_ready(&base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(base.clone(), stop.clone(), Arc::default());
    tokio::time::sleep(Duration::from_millis(700)).await;
    signal(first.id() as i32, libc::SIGUSR2);
    let status = wait_exit(first, &started).await;
    assert!(status.success(), "first relay: {status}");
    let successor = logs
        .successor_pid()
        .expect("the first relay logs its successor's pid");
    started.add(successor);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let outcomes = finish_load(&stop, load).await;

    let ids = all_accepted(&outcomes, "SIGUSR2 hand-over");
    assert!(
        ids.len() > 20,
        "too little load to prove anything: {}",
        ids.len()
    );
    assert_all_queued(&setup, &ids, 1).await;
    wait_ready(&base).await;
    assert!(
        logs.count("storage directory") > 0 || logs.count("relay started") >= 2,
        "{:#?}",
        logs.lines()
    );

    signal(successor, libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: waitpid on a process re-parented to us (subreaper).
        let reaped = unsafe { libc::waitpid(successor, &mut status, 0) };
        (reaped, status)
    });
    let (reaped, status) = tokio::time::timeout(Duration::from_secs(20), status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reaped, successor, "successor not reaped");
    started.reaped(successor);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "successor exit status {status}"
    );
    delete_broker_objects(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_a_token_under_load_without_failing_a_valid_request() {
    let setup = Setup::new(&[OLD_TOKEN]);
    let logs = Logs::default();
    let started = Started::default();
    let (listener, base) = local_listener();
    let relay = spawn_relay(&setup, &listener, &logs, &started);
    let pid = relay.id() as i32;
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let post = |token: &'static str| {
        http.post(format!("{base}/hooks/{CONNECTION}/{token}"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"acao":"probe","id":"{}"}}"#, unique("p")))
            .send()
    };
    assert_eq!(post(NEW_TOKEN).await.unwrap().status(), 401);

    let phase = Arc::new(TokenPhase::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(base.clone(), stop.clone(), phase.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Add the new token; wait until it works, then send both.
    setup.write_config(&[OLD_TOKEN, NEW_TOKEN], "127.0.0.1:0");
    signal(pid, libc::SIGHUP);
    logs.wait_for("configuration reloaded", 1).await;
    assert_eq!(post(NEW_TOKEN).await.unwrap().status(), 202);
    phase.phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Retire the old token once no request presenting it is under way.
    phase.phase.store(2, Ordering::SeqCst);
    while phase.old_in_flight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    setup.write_config(&[NEW_TOKEN], "127.0.0.1:0");
    signal(pid, libc::SIGHUP);
    logs.wait_for("configuration reloaded", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcomes = finish_load(&stop, load).await;
    assert_eq!(
        post(OLD_TOKEN).await.unwrap().status(),
        401,
        "the old token is refused once removed"
    );
    assert_eq!(post(NEW_TOKEN).await.unwrap().status(), 202);

    all_accepted(&outcomes, "token rotation");
    for token in [OLD_TOKEN, NEW_TOKEN] {
        let used = outcomes.iter().filter(|o| o.token == token).count();
        assert!(used > 5, "{token} used by only {used} requests");
    }

    // An invalid file is refused and the rules in force stay.
    setup.write_config(&["short"], "127.0.0.1:0");
    signal(pid, libc::SIGHUP);
    logs.wait_for("configuration reload refused", 1).await;
    assert_eq!(post(NEW_TOKEN).await.unwrap().status(), 202);
    assert_eq!(post(OLD_TOKEN).await.unwrap().status(), 401);
    // A key that cannot change live is reported, the rest applied.
    setup.write_config(&[NEW_TOKEN, OLD_TOKEN], "127.0.0.1:1");
    signal(pid, libc::SIGHUP);
    logs.wait_for("needs restart", 1).await;
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.contains("needs restart") && l.contains("server.bind")));
    assert_eq!(post(OLD_TOKEN).await.unwrap().status(), 202);
    for token in [OLD_TOKEN, NEW_TOKEN, "short"] {
        assert!(
            !logs.lines().iter().any(|l| l.contains(token)),
            "a token was logged"
        );
    }

    signal(pid, libc::SIGTERM);
    assert!(wait_exit(relay, &started).await.success());
    delete_broker_objects(&setup).await;
}

#[tokio::test]
async fn reload_handle_swaps_credentials_atomically_and_keeps_them_on_an_invalid_config() {
    let options = Options::new();
    let settings = options.settings.clone();
    let app = Application::build(settings.clone())
        .await
        .expect("relay failed to start");
    let base = format!("http://127.0.0.1:{}", app.port());
    let reload = app.reload_handle();
    let handle = app.handle();
    let run = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let status = |token: &str| {
        http.post(format!("{base}/hooks/{CONNECTION}/{token}"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"acao":"probe","id":"{}"}}"#, unique("p")))
            .send()
    };
    assert_eq!(status(TOKEN).await.unwrap().status(), 202);

    let mut rotated = settings.clone();
    rotated.connections = vec![ConnectionSettings {
        name: CONNECTION.to_owned(),
        tokens: vec![Secret::new(NEW_TOKEN)],
        hmac_secrets: vec![],
        company_id: None,
        rules: Vec::new(),
        body: None,
    }];
    let done = reload.apply(rotated.clone()).expect("valid config applies");
    assert!(done.needs_restart.is_empty(), "{done:?}");
    assert_eq!(status(TOKEN).await.unwrap().status(), 401);
    assert_eq!(status(NEW_TOKEN).await.unwrap().status(), 202);

    let mut invalid = rotated.clone();
    invalid.connections[0].tokens = vec![Secret::new("bad token")];
    assert!(reload.apply(invalid).is_err());
    assert_eq!(
        status(NEW_TOKEN).await.unwrap().status(),
        202,
        "the old rules stay in force"
    );

    let mut moved = rotated.clone();
    moved.server.bind = ([127, 0, 0, 1], 1).into();
    moved.storage.path = Path::new("/elsewhere").to_owned();
    moved.amqp.url = AmqpUrl::new("amqp://guest:other-password@127.0.0.1:5672/%2f");
    let done = reload.apply(moved).expect("valid config applies");
    assert_eq!(
        done.needs_restart,
        vec!["server.bind", "storage.path", "amqp.url"]
    );
    assert_eq!(
        status(NEW_TOKEN).await.unwrap().status(),
        202,
        "still served on the old listener"
    );

    handle.stop(true).await;
    run.await.unwrap().unwrap();
    let setup = Setup {
        dir: tempfile::tempdir().unwrap(),
        config: PathBuf::new(),
        name: settings.amqp.exchange.clone(),
    };
    delete_broker_objects(&setup).await;
}
