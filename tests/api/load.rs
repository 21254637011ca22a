//! Load and counting tools for the fault tests: concurrent posters, queue drains, relay child processes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use lapin::Channel;
use whaticket_relay::event::Kind;

use crate::helpers::*;

/// Tickets the generated events spread over: enough for the publisher's pipeline (one event in
/// flight per ticket), few enough that every ticket sees many events.
pub const TICKETS: u64 = 997;

/// A unique `other` event; `seq` identifies it in the queue.
pub fn load_event(run: &str, seq: u64) -> String {
    format!(
        r#"{{"acao":"load-test","run":"{run}","seq":{seq},"chamadoId":{},"companyId":1}}"#,
        seq % TICKETS
    )
}

/// What the posters saw: every seq attempted, and the id of each answered 202.
#[derive(Default)]
pub struct Tally {
    pub attempted: HashSet<u64>,
    pub accepted: HashMap<u64, String>,
    /// Status → count, for answers other than 202.
    pub other: HashMap<u16, usize>,
    pub transport_errors: usize,
}

impl Tally {
    /// Every request was answered 202: none refused, none unanswered, `during` what.
    pub fn assert_all_accepted(&self, during: &str) {
        assert!(
            self.other.is_empty() && self.transport_errors == 0,
            "a webhook was refused {during}: {:?} answers, {} transport errors",
            self.other,
            self.transport_errors
        );
    }
}

/// Posters running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `workers` concurrent clients posting unique events to `url` back to back.
    pub fn start(url: String, run: String, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let next = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("http client");
        let tasks = (0..workers)
            .map(|_| {
                let (stop, tally, next, http, url, run) = (
                    stop.clone(),
                    tally.clone(),
                    next.clone(),
                    http.clone(),
                    url.clone(),
                    run.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let seq = next.fetch_add(1, Ordering::SeqCst);
                        tally.lock().unwrap().attempted.insert(seq);
                        let sent = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(load_event(&run, seq))
                            .send()
                            .await;
                        match sent {
                            Ok(response) if response.status() == 202 => {
                                let body: serde_json::Value =
                                    response.json().await.expect("202 body is JSON");
                                let id = body["id"].as_str().expect("202 carries an id").to_owned();
                                tally.lock().unwrap().accepted.insert(seq, id);
                            }
                            Ok(response) => {
                                *tally
                                    .lock()
                                    .unwrap()
                                    .other
                                    .entry(response.status().as_u16())
                                    .or_default() += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(_) => {
                                tally.lock().unwrap().transport_errors += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load { stop, tally, tasks }
    }

    pub fn accepted_count(&self) -> usize {
        self.tally.lock().unwrap().accepted.len()
    }

    /// Waits until `more` events beyond those accepted so far are accepted (60 s at most).
    pub async fn accept_more(&self, more: usize) {
        let target = self.accepted_count() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.accepted_count() < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled at {} accepted events",
                self.accepted_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("poster panicked");
        }
        Arc::try_unwrap(self.tally)
            .ok()
            .expect("posters finished")
            .into_inner()
            .unwrap()
    }
}

/// Takes messages from `queue` until every seq in `want` has arrived (or 30 s pass); returns
/// seq → message ids seen (several when an event was resent).
pub async fn drain_until(
    channel: &Channel,
    queue: &str,
    want: &HashSet<u64>,
) -> HashMap<u64, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: HashMap<u64, Vec<String>> = HashMap::new();
    loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|e| panic!("basic_get {queue}: {e}"));
        match got {
            Some(message) => {
                let body: serde_json::Value =
                    serde_json::from_slice(&message.delivery.data).expect("JSON body");
                let seq = body["seq"].as_u64().expect("seq");
                let id = message
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                seen.entry(seq).or_default().push(id);
            }
            None => {
                if want.iter().all(|s| seen.contains_key(s)) {
                    // One more short wait catches late duplicates and strays.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if channel
                        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                        .await
                        .expect("basic_get")
                        .is_none()
                    {
                        return seen;
                    }
                    continue;
                }
                if Instant::now() > deadline {
                    let missing: Vec<_> = want.iter().filter(|s| !seen.contains_key(s)).collect();
                    let sample: Vec<_> = missing.iter().take(20).collect();
                    panic!(
                        "{} accepted events never arrived in {queue}, e.g. {sample:?}",
                        missing.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The promise: every 202 is in the queue with the id it was answered with, and nothing that was
/// never posted got in.
pub fn assert_delivered(tally: &Tally, seen: &HashMap<u64, Vec<String>>) {
    for (seq, id) in &tally.accepted {
        let ids = seen
            .get(seq)
            .unwrap_or_else(|| panic!("accepted event {seq} was not delivered"));
        assert!(
            ids.iter().all(|got| got == id),
            "event {seq}: message ids {ids:?}, answered {id}"
        );
    }
    for seq in seen.keys() {
        assert!(
            tally.attempted.contains(seq),
            "event {seq} was delivered but never posted"
        );
    }
}

/// A relay running as a child process of its real binary.
pub struct RelayProcess {
    pub child: Child,
    pub port: u16,
    pub log_path: PathBuf,
}

impl RelayProcess {
    /// Spawns `command` (a relay serving on `port`) with stdout and stderr in `log_path`, and
    /// waits until it is ready.
    pub async fn start(mut command: Command, port: u16, log_path: PathBuf) -> RelayProcess {
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn relay binary");
        let relay = RelayProcess {
            child,
            port,
            log_path,
        };
        relay.wait_ready().await;
        relay
    }
}

/// Settings the child process gets, written as TOML (the typed `Settings` masks secrets when
/// serialized, so it cannot be written back as is).
pub struct ChildConfig {
    pub dir: tempfile::TempDir,
    pub exchange: String,
    /// Lines added to `[storage]`.
    pub extra: String,
    /// `storage.path`; `<dir>/data` when unset.
    pub data_path: Option<PathBuf>,
    /// The `[[connections]]` tables; by default [`CONNECTION`] with [`TOKEN`] and [`HMAC_SECRET`].
    pub connections: String,
    /// More `RELAY__…` variables for the child.
    pub env: Vec<(&'static str, String)>,
    /// The umask the child starts with (the test process's own when unset).
    pub umask: Option<libc::mode_t>,
}

impl Drop for ChildConfig {
    /// The child's queues and exchanges go, also when the test failed before its own cleanup.
    fn drop(&mut self) {
        remove_names(&self.exchange, &self.exchange);
    }
}

impl ChildConfig {
    pub fn new() -> ChildConfig {
        ChildConfig {
            dir: tempfile::tempdir().expect("temp dir"),
            exchange: unique("child"),
            extra: String::new(),
            data_path: None,
            env: Vec::new(),
            umask: None,
            connections: format!(
                "[[connections]]\nname = \"{CONNECTION}\"\ntokens = [\"{TOKEN}\"]\nhmac_secrets = [\"{HMAC_SECRET}\"]\n"
            ),
        }
    }

    pub fn queue(&self, kind: Kind) -> String {
        format!("{}.{kind}", self.exchange)
    }

    pub fn write(&self, port: u16) -> PathBuf {
        let path = self.dir.path().join("relay.toml");
        let text = format!(
            r#"[server]
bind = "127.0.0.1:{port}"
workers = 2
shutdown_timeout = "10s"

[storage]
path = "{data}"
cache_capacity_bytes = 8388608
{extra}
[amqp]
url = "{BROKER_URL}"
exchange = "{x}"
queue_prefix = "{x}"
queue_type = "classic"
timeout = "3s"
reconnect_min = "100ms"
reconnect_max = "500ms"

{connections}"#,
            data = self
                .data_path
                .clone()
                .unwrap_or_else(|| self.dir.path().join("data"))
                .display(),
            extra = self.extra,
            connections = self.connections,
            x = self.exchange,
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Starts the binary on a free port, logs (trace for our crate) into a file, and waits until ready.
    pub async fn spawn(&self) -> RelayProcess {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let config = self.write(port);
        // A profiler to run the relay under (the soak's `RELAY_WRAP="heaptrack -o <file>"`).
        let wrap = std::env::var("RELAY_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_whaticket-relay"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_whaticket-relay")),
        };
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "whaticket_relay=trace,info")
            // Relays run side by side: each its own free port, not the default 9464.
            .env("RELAY__METRICS__BIND", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (*k, v)));
        if let Some(mask) = self.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask only, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        RelayProcess::start(
            command,
            port,
            self.dir.path().join(format!("relay-{port}.log")),
        )
        .await
    }
}

impl RelayProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn hook_url(&self) -> String {
        self.url(&format!("/hooks/{CONNECTION}/{TOKEN}"))
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "relay child not ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the exit; panics after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "relay child still running after {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes a child relay's queues and exchanges (its queues are named after its exchange).
pub async fn delete_topology(channel: &Channel, exchange: &str) {
    delete_queues_and_exchanges(channel, exchange, exchange).await;
}

pub fn data_dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => data_dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
