//! End-to-end benchmark against the local RabbitMQ: broker ceiling, relay saturation, steady-load latency, memory, disk.
//!
//! `cargo bench --bench relay` (README "Benchmark"). For each body size (~1.5 KB, ~18 KB) it measures
//! 1. the ceiling: a bare lapin publisher, persistent messages to a quorum queue, 256 confirms in flight;
//! 2. saturation: the relay driven by 32 keep-alive clients, then the time until every accepted event
//!    sits in its queue (counts must match exactly, or the run fails);
//! 3. steady: an open-loop 1000 requests/s (latency from the scheduled send time, so a slow relay
//!    cannot hide its stalls by slowing the load), 202 latency and send → delivered to a consumer;
//! 4. the relay's memory (its own process) and the store's bytes on disk per event and per dedup key.
//!
//! The relay runs as its own process: the real `whaticket-relay serve` binary (its default config
//! plus `RELAY__…` overrides for the port, data dir and names, logging on at the configured level),
//! so its memory and CPU are measured apart from the load generator's. The CPU time each process
//! (relay, RabbitMQ, load generator) spends per event is read from /proc, to show what limits a run.
//!
//! Environment: `BENCH_QUICK=1` (smoke run: small counts, 3 s steady), `BENCH_REQUESTS`,
//! `BENCH_CLIENTS`, `BENCH_RATE`, `BENCH_STEADY_SECS`, `BENCH_AMQP_URL`, `BENCH_RELAY_LOG=<file>`
//! (keep the relay's log; it goes to /dev/null otherwise).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use whaticket_relay::config::{AmqpSettings, Settings};
use whaticket_relay::event::{Kind, RedactKeys};
use whaticket_relay::store::{Appended, Store};
use whaticket_relay::{event, publish::topology};

const DEFAULT_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const CONNECTION: &str = "bench";
const TOKEN: &str = "bench-token-0123456789";
/// Distinct tickets the load cycles through: the publisher keeps one event per ticket in flight,
/// so a single ticket would measure that rule instead of the relay.
const TICKETS: u64 = 2000;
/// Confirms in flight for the ceiling publisher (the relay's `amqp.max_in_flight` default).
const CEILING_IN_FLIGHT: usize = 256;
const SEQ_MARK: &str = "@@SEQ@@";
const TICKET_MARK: &str = "@@TICKET@@";

const FIXTURES: [(&str, &[u8]); 11] = [
    (
        "media-fila-data",
        include_bytes!("../tests/fixtures/media-fila-data.json"),
    ),
    (
        "message-from-internal",
        include_bytes!("../tests/fixtures/message-from-internal.json"),
    ),
    (
        "message-from-me",
        include_bytes!("../tests/fixtures/message-from-me.json"),
    ),
    (
        "message-group",
        include_bytes!("../tests/fixtures/message-group.json"),
    ),
    (
        "message-no-caption",
        include_bytes!("../tests/fixtures/message-no-caption.json"),
    ),
    (
        "message-no-queue",
        include_bytes!("../tests/fixtures/message-no-queue.json"),
    ),
    (
        "message-queue-webhook",
        include_bytes!("../tests/fixtures/message-queue-webhook.json"),
    ),
    (
        "message-start",
        include_bytes!("../tests/fixtures/message-start.json"),
    ),
    (
        "status-closed",
        include_bytes!("../tests/fixtures/status-closed.json"),
    ),
    (
        "status-open",
        include_bytes!("../tests/fixtures/status-open.json"),
    ),
    (
        "tag-sync",
        include_bytes!("../tests/fixtures/tag-sync.json"),
    ),
];

fn main() -> ExitCode {
    // `cargo test --benches` runs this binary without `--bench`: nothing to test here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("relay benchmark skipped: run it with `cargo bench --bench relay`");
        return ExitCode::SUCCESS;
    }
    let plan = match Plan::from_env() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("benchmark: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benchmark: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nBENCHMARK FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The relay process

struct RelayProcess {
    child: Child,
    port: u16,
    dir: TempDir,
    amqp: AmqpSettings,
}

impl RelayProcess {
    fn spawn(broker: &str, amqp: AmqpSettings) -> Result<RelayProcess> {
        let dir = tempfile::Builder::new().prefix("relay-bench-").tempdir()?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_whaticket-relay"));
        // The relay's config must be the shipped one plus these overrides only.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RELAY__") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        let log = match std::env::var_os("BENCH_RELAY_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(&path).context("BENCH_RELAY_LOG")?),
            None => Stdio::null(),
        };
        command
            .arg("serve")
            .env("RELAY__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("RELAY__STORAGE__PATH", dir.path().join("data"))
            .env("RELAY__AMQP__URL", broker)
            .env("RELAY__AMQP__EXCHANGE", &amqp.exchange)
            .env("RELAY__AMQP__QUEUE_PREFIX", &amqp.queue_prefix)
            .env(
                "RELAY__CONNECTIONS",
                format!(r#"[{{name="{CONNECTION}",tokens=["{TOKEN}"]}}]"#),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::inherit());
        let child = command.spawn().context("cannot start the relay process")?;
        Ok(RelayProcess {
            child,
            port,
            dir,
            amqp,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/{CONNECTION}/{TOKEN}", self.port)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the relay exited during start-up ({status})");
            }
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            ensure!(
                Instant::now() < deadline,
                "the relay was not ready (store + broker) within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn memory(&self) -> Result<Memory> {
        Memory::of(self.child.id())
    }

    /// Graceful stop (SIGTERM); the exit status must be success.
    fn stop(&mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        ensure!(
            unsafe { libc::kill(pid, libc::SIGTERM) } == 0,
            "cannot signal the relay"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the relay exited with {status}");
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the relay did not stop within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process, from /proc (Linux).
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
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

/// The local RabbitMQ's Erlang VM, when it runs on this machine.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "beam.smp").then_some(pid)
        })
}

/// CPU used so far by the relay (when running), the broker (when local) and this process.
#[derive(Clone, Copy, Default)]
struct CpuMark {
    relay: Option<Duration>,
    broker: Option<Duration>,
    load: Duration,
}

impl CpuMark {
    fn now(relay: Option<u32>, broker: Option<u32>) -> Result<CpuMark> {
        Ok(CpuMark {
            relay: relay.map(cpu_time).transpose()?,
            broker: broker.and_then(|pid| cpu_time(pid).ok()),
            load: cpu_time(std::process::id())?,
        })
    }

    /// Microseconds of CPU per event since `earlier`, for each process measured.
    fn per_event(&self, earlier: &CpuMark, events: u64) -> Value {
        let us = |now: Option<Duration>, then: Option<Duration>| match (now, then) {
            (Some(now), Some(then)) => json!(
                ((now.saturating_sub(then).as_secs_f64() * 1e6 / events.max(1) as f64) * 10.0)
                    .round()
                    / 10.0
            ),
            _ => Value::Null,
        };
        json!({
            "relay": us(self.relay, earlier.relay),
            "broker": us(self.broker, earlier.broker),
            "load_generator": us(Some(self.load), Some(earlier.load)),
        })
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Bodies: the fixtures, padded to a size, every request unique

enum Part {
    Lit(Vec<u8>),
    Seq,
    Ticket,
}

/// A fixture turned into literal pieces and the places where the request's sequence number and
/// ticket id go, so making a body is one pass of copies.
struct Template {
    parts: Vec<Part>,
}

struct Bodies {
    templates: Vec<Template>,
    mean_len: usize,
}

impl Bodies {
    fn new(target: usize) -> Result<Bodies> {
        let mut templates = Vec::new();
        for (name, raw) in FIXTURES {
            let value: Value =
                serde_json::from_slice(raw).with_context(|| format!("fixture {name}"))?;
            let Value::Object(mut root) = value else {
                bail!("fixture {name} is not an object")
            };
            mark_unique(&mut root);
            pad(&mut root, target).with_context(|| format!("fixture {name}"))?;
            let text = serde_json::to_string_pretty(&root)?;
            templates.push(Template {
                parts: split_marks(&text),
            });
        }
        let mut bodies = Bodies {
            templates,
            mean_len: 0,
        };
        let n = bodies.templates.len() as u64 * 10;
        bodies.mean_len = ((0..n).map(|s| bodies.body(s).len()).sum::<usize>() as u64 / n) as usize;
        Ok(bodies)
    }

    /// Body number `seq`: fixtures in turn, ticket `1000 + seq % TICKETS`.
    fn body(&self, seq: u64) -> Vec<u8> {
        let template = &self.templates[(seq % self.templates.len() as u64) as usize];
        let seq_text = seq.to_string();
        let ticket_text = (1000 + seq % TICKETS).to_string();
        let mut out = Vec::with_capacity(self.mean_len.max(1024) * 2);
        for part in &template.parts {
            match part {
                Part::Lit(bytes) => out.extend_from_slice(bytes),
                Part::Seq => out.extend_from_slice(seq_text.as_bytes()),
                Part::Ticket => out.extend_from_slice(ticket_text.as_bytes()),
            }
        }
        out
    }

    /// Fails unless `count` consecutive bodies parse to distinct event ids (nothing deduplicated).
    fn check_unique(&self, count: u64) -> Result<()> {
        let keys = RedactKeys::new(&Settings::default().redact.keys);
        let mut seen = std::collections::HashSet::new();
        for seq in 0..count {
            let ev = event::parse(CONNECTION, bytes::Bytes::from(self.body(seq)), &keys, 0)
                .map_err(|e| anyhow!("generated body {seq} does not parse: {e}"))?;
            ensure!(
                seen.insert(ev.meta.id),
                "generated body {seq} repeats an event id: the load would be deduplicated"
            );
        }
        Ok(())
    }
}

fn set_if_present(map: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
    }
}

fn with_seq(value: Option<&Value>) -> Value {
    let base = value.and_then(Value::as_str).unwrap_or("");
    Value::String(format!("{base} #{SEQ_MARK}"))
}

/// Puts the markers where each kind's dedup key and ticket come from (README "Events").
fn mark_unique(root: &mut Map<String, Value>) {
    let ticket = || Value::String(TICKET_MARK.to_owned());
    set_if_present(root, "chamadoId", ticket());
    if let Some(Value::Object(td)) = root.get_mut("ticketData") {
        set_if_present(td, "id", ticket());
        let updated = with_seq(td.get("updatedAt"));
        set_if_present(td, "updatedAt", updated);
    }
    if root.contains_key("mediaName") {
        root.insert("mediaName".into(), Value::String(format!("{SEQ_MARK}.ogg")));
    }
    match root.get_mut("mensagem") {
        Some(Value::String(text)) => text.push_str(&format!(" #{SEQ_MARK}")),
        Some(Value::Object(m)) => {
            set_if_present(m, "wid", Value::String(format!("BENCH{SEQ_MARK}")));
            let body = with_seq(m.get("body"));
            set_if_present(m, "body", body);
            set_if_present(m, "ticketId", ticket());
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                let Value::Object(item) = item else { continue };
                let text = with_seq(item.get("text"));
                set_if_present(item, "text", text);
                if let Some(Value::Object(key)) = item
                    .get_mut("originalData")
                    .and_then(Value::as_object_mut)
                    .and_then(|o| o.get_mut("key"))
                {
                    set_if_present(key, "id", Value::String(format!("BENCH{SEQ_MARK}-{i}")));
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Object(tags)) = root.get_mut("tags") {
        set_if_present(tags, "ticketId", ticket());
        if let Some(Value::Array(list)) = tags.get_mut("tags") {
            for tag in list.iter_mut().filter_map(Value::as_object_mut) {
                let updated = with_seq(tag.get("updatedAt"));
                set_if_present(tag, "updatedAt", updated);
            }
        }
    }
}

fn find_array<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Vec<Value>> {
    match value {
        Value::Object(map) => {
            if matches!(map.get(key), Some(Value::Array(_))) {
                return map.get_mut(key).and_then(Value::as_array_mut);
            }
            map.values_mut().find_map(|v| find_array(v, key))
        }
        Value::Array(items) => items.iter_mut().find_map(|v| find_array(v, key)),
        _ => None,
    }
}

/// Grows the contact's `extraInfo` (Whaticket custom fields) until the body reaches `target` bytes.
fn pad(root: &mut Map<String, Value>, target: usize) -> Result<()> {
    let mut value = Value::Object(std::mem::take(root));
    let mut i = 0;
    while serde_json::to_string_pretty(&value)?.len() < target {
        let extra = find_array(&mut value, "extraInfo").context("no extraInfo to pad")?;
        extra.push(json!({
            "id": 10_000 + i,
            "name": format!("Campo personalizado {i}"),
            "value": format!("Cliente desde 2019, prefere contato à tarde; pedido {i} aguardando retirada na loja centro, \
                              confirmar endereço de entrega e forma de pagamento ({i})"),
            "contactId": 4192,
            "createdAt": "2023-08-30T02:27:15.376Z",
            "updatedAt": "2023-10-12T14:07:44.618Z"
        }));
        i += 1;
    }
    if let Value::Object(map) = value {
        *root = map;
    }
    Ok(())
}

fn split_marks(text: &str) -> Vec<Part> {
    let ticket_quoted = format!("\"{TICKET_MARK}\"");
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let seq_at = rest.find(SEQ_MARK);
        let ticket_at = rest.find(&ticket_quoted);
        let (at, len, part) = match (seq_at, ticket_at) {
            (Some(s), Some(t)) if t < s => (t, ticket_quoted.len(), Part::Ticket),
            (Some(s), _) => (s, SEQ_MARK.len(), Part::Seq),
            (None, Some(t)) => (t, ticket_quoted.len(), Part::Ticket),
            (None, None) => break,
        };
        parts.push(Part::Lit(rest.as_bytes()[..at].to_vec()));
        parts.push(part);
        rest = &rest[at + len..];
    }
    parts.push(Part::Lit(rest.as_bytes().to_vec()));
    parts
}

// ---------------------------------------------------------------------------------------------
// Plan and figures

struct Plan {
    quick: bool,
    requests: [u64; 2],
    clients: usize,
    rate: u64,
    steady_secs: u64,
    broker: String,
}

/// (label, target body bytes)
const SIZES: [(&str, usize); 2] = [("1.5KB", 1536), ("18KB", 18 * 1024)];

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(
            v.trim()
                .parse()
                .with_context(|| format!("{name}={v} is not a number"))?,
        )),
        Err(_) => Ok(None),
    }
}

impl Plan {
    fn from_env() -> Result<Plan> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let requests = match env_u64("BENCH_REQUESTS")? {
            Some(n) => [n, n],
            None if quick => [2000, 1000],
            None => [20_000, 10_000],
        };
        Ok(Plan {
            quick,
            requests,
            clients: env_u64("BENCH_CLIENTS")?.unwrap_or(32) as usize,
            rate: env_u64("BENCH_RATE")?.unwrap_or(1000),
            steady_secs: env_u64("BENCH_STEADY_SECS")?.unwrap_or(if quick { 3 } else { 20 }),
            broker: std::env::var("BENCH_AMQP_URL").unwrap_or_else(|_| DEFAULT_BROKER.to_owned()),
        })
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record((d.as_micros() as u64).max(1));
}

/// p50 / p99 / max in milliseconds.
fn latency(hist: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": hist.len(),
        "p50_ms": ms(hist.value_at_quantile(0.50)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "max_ms": ms(hist.max()),
    })
}

// ---------------------------------------------------------------------------------------------
// The run

async fn run(plan: Plan) -> Result<()> {
    let broker = connect(&plan.broker).await?;
    let mut cleanup = Cleanup::default();
    let result = run_all(&plan, &broker, &mut cleanup).await;
    let cleaned = cleanup.run(&broker).await;
    let _ = broker.close(200, "bench done".into()).await;
    let figures = result?;
    cleaned?;
    let path = write_json(&figures)?;
    print_table(&figures);
    println!("\nfigures written to {}", path.display());
    Ok(())
}

async fn connect(url: &str) -> Result<Connection> {
    match tokio::time::timeout(Duration::from_secs(5), Connection::connect(url, ConnectionProperties::default())).await {
        Ok(Ok(conn)) => Ok(conn),
        other => bail!(
            "RabbitMQ is not reachable at {url} ({}). Start it with `rabbitmq-server -detached` \
             (install: `apt-get install -y rabbitmq-server`), or run `tests/run.sh`, which starts it.",
            match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            }
        ),
    }
}

fn unique_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("relay-bench-{what}-{}-{nanos}", std::process::id())
}

async fn run_all(plan: &Plan, broker: &Connection, cleanup: &mut Cleanup) -> Result<Value> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "whaticket-relay benchmark{}: {} requests per size, {} clients, steady {}/s x {} s, {cpus} CPUs",
        if plan.quick { " (BENCH_QUICK)" } else { "" },
        plan.requests.map(|n| n.to_string()).join("/"),
        plan.clients,
        plan.rate,
        plan.steady_secs
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut sizes = Map::new();
    for (i, (label, target)) in SIZES.iter().enumerate() {
        let bodies = Arc::new(Bodies::new(*target)?);
        bodies.check_unique(bodies.templates.len() as u64 * 20)?;
        println!("\n== {label}: mean body {} bytes", bodies.mean_len);
        let figures = run_size(plan, plan.requests[i], &bodies, broker, &http, cleanup).await?;
        sizes.insert((*label).to_owned(), figures);
    }
    Ok(json!({
        "quick": plan.quick,
        "cpus": cpus,
        "clients": plan.clients,
        "steady_rate": plan.rate,
        "steady_secs": plan.steady_secs,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "sizes": Value::Object(sizes),
    }))
}

async fn run_size(
    plan: &Plan,
    n: u64,
    bodies: &Arc<Bodies>,
    broker: &Connection,
    http: &reqwest::Client,
    cleanup: &mut Cleanup,
) -> Result<Value> {
    let broker_pid = broker_pid();
    let before = CpuMark::now(None, broker_pid)?;
    let ceiling = ceiling(broker, bodies, n, cleanup)
        .await
        .context("ceiling")?;
    let ceiling_cpu = CpuMark::now(None, broker_pid)?.per_event(&before, n);
    println!(
        "ceiling: {:.0} msgs/s; CPU per message: broker {} µs, publisher {} µs",
        ceiling, ceiling_cpu["broker"], ceiling_cpu["load_generator"]
    );

    let store_only = store_only(bodies, n.min(5000))
        .await
        .context("store-only appends")?;
    println!(
        "store only: {:.0} appends/s, {:.0} bytes on disk per outbox event",
        store_only.appends_per_sec, store_only.bytes_per_event
    );

    let mut amqp = Settings::default().amqp;
    amqp.url = whaticket_relay::config::AmqpUrl::new(plan.broker.clone());
    amqp.exchange = unique_name("x");
    amqp.queue_prefix = unique_name("q");
    cleanup.relay(&amqp);
    let mut relay = RelayProcess::spawn(&plan.broker, amqp)?;
    relay.wait_ready(http).await?;
    let idle = relay.memory()?;
    let channel = broker.create_channel().await?;

    let relay_pid = Some(relay.child.id());
    let before = CpuMark::now(relay_pid, broker_pid)?;
    let sat = saturation(&relay, http, bodies, n, plan.clients, &channel)
        .await
        .context("saturation")?;
    let saturation_cpu = CpuMark::now(relay_pid, broker_pid)?.per_event(&before, n);
    let after_saturation = relay.memory()?;
    println!(
        "saturation: {:.0} accepted/s, all confirmed {:.2} s after the last 202 ({:.0} end-to-end/s); \
         CPU per event: relay {} µs, broker {} µs, load generator {} µs",
        sat.accepted_per_sec,
        sat.drain_secs,
        sat.confirmed_per_sec,
        saturation_cpu["relay"],
        saturation_cpu["broker"],
        saturation_cpu["load_generator"]
    );
    purge(&channel, &relay.amqp).await?;

    let steady = steady(&relay, http, bodies, plan, n, broker)
        .await
        .context("steady")?;
    let after_steady = relay.memory()?;
    let brief = |v: &Value| {
        format!(
            "p50 {} / p99 {} / max {} ms",
            v["p50_ms"], v["p99_ms"], v["max_ms"]
        )
    };
    println!(
        "steady: 202 {}; send→delivered {}",
        brief(&steady.accepted),
        brief(&steady.delivered)
    );

    relay.stop()?;
    let stats = {
        let mut storage = Settings::default().storage;
        storage.path = relay.dir.path().join("data");
        tokio::task::spawn_blocking(move || Store::open(&storage).map(|s| s.stats())).await??
    };
    ensure!(
        stats.outbox == 0,
        "{} events still in the outbox after a graceful stop",
        stats.outbox
    );
    let rss_samples: Vec<f64> = steady.rss_kb.iter().map(|kb| mb(*kb)).collect();
    let per_key = stats.disk_bytes as f64 / stats.dedup_keys.max(1) as f64;

    Ok(json!({
        "mean_body_bytes": bodies.mean_len,
        "requests": n,
        "ceiling_msgs_per_sec": ceiling.round(),
        "ceiling_cpu_us_per_msg": ceiling_cpu,
        "saturation": {
            "accepted_per_sec": sat.accepted_per_sec.round(),
            "accepted_pct_of_ceiling": (sat.accepted_per_sec / ceiling * 1000.0).round() / 10.0,
            "latency_202": sat.latency,
            "all_confirmed_after_load_secs": (sat.drain_secs * 1000.0).round() / 1000.0,
            "confirmed_per_sec_end_to_end": sat.confirmed_per_sec.round(),
            "confirmed_pct_of_ceiling": (sat.confirmed_per_sec / ceiling * 1000.0).round() / 10.0,
            "cpu_us_per_event": saturation_cpu,
        },
        "steady": {
            "rate": plan.rate,
            "secs": plan.steady_secs,
            "latency_202_from_schedule": steady.accepted,
            "latency_202_service": steady.service,
            "send_to_delivered": steady.delivered,
            "duplicates_delivered": steady.duplicates,
        },
        "memory_mb": {
            "idle": mb(idle.rss_kb),
            "after_saturation": mb(after_saturation.rss_kb),
            "during_steady": rss_samples,
            "after_steady": mb(after_steady.rss_kb),
            "peak_vmhwm": mb(after_steady.hwm_kb),
        },
        "disk": {
            "store_only_appends_per_sec": store_only.appends_per_sec.round(),
            "bytes_per_outbox_event": store_only.bytes_per_event.round(),
            "after_run_disk_bytes": stats.disk_bytes,
            "after_run_dedup_keys": stats.dedup_keys,
            "bytes_per_dedup_key_after_run": per_key.round(),
        },
    }))
}

/// Broker objects to delete at the end, whatever happened.
#[derive(Default)]
struct Cleanup {
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Cleanup {
    fn relay(&mut self, amqp: &AmqpSettings) {
        self.queues
            .extend(Kind::ALL.iter().map(|k| topology::queue_name(amqp, *k)));
        self.queues.push(topology::dead_queue_name(amqp));
        self.exchanges.push(amqp.exchange.clone());
        self.exchanges.push(topology::dead_exchange_name(amqp));
    }

    async fn run(&self, broker: &Connection) -> Result<()> {
        let channel = broker.create_channel().await.context("cleanup channel")?;
        for queue in &self.queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .with_context(|| format!("delete queue {queue}"))?;
        }
        for exchange in &self.exchanges {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .with_context(|| format!("delete exchange {exchange}"))?;
        }
        Ok(())
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

/// What the relay sends with each event (src/publisher.rs `properties`), rebuilt here.
fn relay_like_properties(seq: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "connection".into(),
        AMQPValue::LongString(LongString::from(CONNECTION)),
    );
    headers.insert(
        "action".into(),
        AMQPValue::LongString(LongString::from("start")),
    );
    headers.insert("company_id".into(), AMQPValue::LongLongInt(1));
    headers.insert(
        "ticket_id".into(),
        AMQPValue::LongLongInt((1000 + seq % TICKETS) as i64),
    );
    headers.insert("from_me".into(), AMQPValue::Boolean(false));
    headers.insert(
        "received_at".into(),
        AMQPValue::LongString(LongString::from("2026-01-01T00:00:00.000Z")),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(format!("{seq:032x}").into())
        .with_type("message".into())
        .with_timestamp(1_767_225_600)
        .with_app_id("whaticket-relay".into())
        .with_headers(headers)
}

/// Bare lapin: persistent, mandatory, to a topic exchange bound to one quorum queue, 256 confirms
/// in flight. Messages per second from the first publish to the last confirm.
async fn ceiling(
    broker: &Connection,
    bodies: &Bodies,
    n: u64,
    cleanup: &mut Cleanup,
) -> Result<f64> {
    let exchange = unique_name("ceiling-x");
    let queue = unique_name("ceiling-q");
    cleanup.queues.push(queue.clone());
    cleanup.exchanges.push(exchange.clone());
    let channel = broker.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    let qopts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), qopts, quorum_args())
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let mut in_flight = FuturesUnordered::new();
    let (mut next, mut acked) = (0u64, 0u64);
    let started = Instant::now();
    while acked < n {
        while in_flight.len() < CEILING_IN_FLIGHT && next < n {
            let body = bodies.body(next);
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    "message.1.bench".into(),
                    options,
                    &body,
                    relay_like_properties(next),
                )
                .await?;
            in_flight.push(confirm);
            next += 1;
        }
        match in_flight.next().await {
            Some(Ok(Confirmation::Ack(None))) => acked += 1,
            Some(other) => bail!("ceiling publish not confirmed: {other:?}"),
            None => bail!("ceiling: confirms ended early"),
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let count = channel
        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
        .await?
        .message_count();
    ensure!(
        u64::from(count) == n,
        "ceiling queue holds {count} messages, {n} were confirmed"
    );
    let _ = channel.close(200, "done".into()).await;
    Ok(rate)
}

struct StoreOnly {
    appends_per_sec: f64,
    bytes_per_event: f64,
}

/// The store alone (no HTTP, no broker): appends from 32 tasks, then disk bytes per outbox event
/// (its dedup key included) over an empty store's size.
async fn store_only(bodies: &Arc<Bodies>, n: u64) -> Result<StoreOnly> {
    let dir = tempfile::Builder::new()
        .prefix("relay-bench-store-")
        .tempdir()?;
    let mut storage = Settings::default().storage;
    storage.path = dir.path().join("data");
    let store = tokio::task::spawn_blocking(move || Store::open(&storage)).await??;
    store.flush().await?;
    let empty = store.stats().disk_bytes;
    let keys = Arc::new(RedactKeys::new(&Settings::default().redact.keys));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (store, keys, next, bodies) =
            (store.clone(), keys.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let ev = event::parse(
                    CONNECTION,
                    bytes::Bytes::from(bodies.body(seq)),
                    &keys,
                    now_ms(),
                )
                .map_err(|e| anyhow!("{e}"))?;
                ensure!(
                    store.append(ev).await? == Appended::Accepted,
                    "store-only append {seq} was a duplicate"
                );
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let appends_per_sec = n as f64 / started.elapsed().as_secs_f64();
    store.flush().await?;
    let stats = store.stats();
    ensure!(
        stats.outbox as u64 == n,
        "store-only: outbox holds {}, {n} appended",
        stats.outbox
    );
    let bytes_per_event = stats.disk_bytes.saturating_sub(empty) as f64 / n as f64;
    tokio::task::spawn_blocking(move || drop(store)).await?;
    Ok(StoreOnly {
        appends_per_sec,
        bytes_per_event,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn kind_queues(amqp: &AmqpSettings) -> Vec<String> {
    Kind::ALL
        .iter()
        .map(|k| topology::queue_name(amqp, *k))
        .collect()
}

async fn queue_count(channel: &Channel, queue: &str) -> Result<u64> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .with_context(|| format!("queue {queue}"))?;
    Ok(u64::from(q.message_count()))
}

async fn purge(channel: &Channel, amqp: &AmqpSettings) -> Result<()> {
    for queue in kind_queues(amqp) {
        channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await?;
    }
    Ok(())
}

/// One POST; the status and the event id of the answer.
async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(u16, Option<String>)> {
    let resp = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("POST to the relay")?;
    let status = resp.status().as_u16();
    let answer = resp.bytes().await.context("reading the relay's answer")?;
    let id = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
    Ok((status, id))
}

struct Saturation {
    accepted_per_sec: f64,
    latency: Value,
    drain_secs: f64,
    confirmed_per_sec: f64,
}

async fn saturation(
    relay: &RelayProcess,
    http: &reqwest::Client,
    bodies: &Arc<Bodies>,
    n: u64,
    clients: usize,
    channel: &Channel,
) -> Result<Saturation> {
    let url = Arc::new(relay.url());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next, bodies) = (http.clone(), url.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut refused: HashMap<u16, u64> = HashMap::new();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= n {
                    return Ok::<_, anyhow::Error>((hist, refused));
                }
                let body = bodies.body(seq);
                let sent = Instant::now();
                let (status, _) = post(&http, &url, body).await?;
                record(&mut hist, sent.elapsed());
                if status != 202 {
                    *refused.entry(status).or_default() += 1;
                }
            }
        }));
    }
    let mut hist = histogram();
    let mut refused: HashMap<u16, u64> = HashMap::new();
    for task in tasks {
        let (h, r) = task.await??;
        hist.add(&h).map_err(|e| anyhow!("histogram: {e:?}"))?;
        for (status, count) in r {
            *refused.entry(status).or_default() += count;
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    let load_end = Instant::now();
    ensure!(
        refused.is_empty(),
        "not every request was answered 202: {refused:?}"
    );
    let accepted = hist.len();
    ensure!(accepted == n, "{accepted} answers for {n} requests");

    // Every accepted event must reach its queue: exactly once each, nothing dead-lettered.
    let queues = kind_queues(&relay.amqp);
    let dead = topology::dead_queue_name(&relay.amqp);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut total = 0;
        for queue in &queues {
            total += queue_count(channel, queue).await?;
        }
        let dead_count = queue_count(channel, &dead).await?;
        ensure!(dead_count == 0, "{dead_count} events were dead-lettered");
        ensure!(total <= accepted, "{total} messages in the queues for {accepted} accepted events (resent after a reconnect?)");
        if total == accepted {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {total} of {accepted} accepted events reached their queues within 120 s after the load"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_secs = load_end.elapsed().as_secs_f64();
    Ok(Saturation {
        accepted_per_sec: n as f64 / load_secs,
        latency: latency(&hist),
        drain_secs,
        confirmed_per_sec: n as f64 / started.elapsed().as_secs_f64(),
    })
}

struct Steady {
    accepted: Value,
    service: Value,
    delivered: Value,
    duplicates: u64,
    rss_kb: Vec<u64>,
}

/// Open loop: request `i` is due at `start + i / rate` whatever happened to the earlier ones; its
/// 202 latency runs from that due time. Consumers on the kind queues time each delivery; joined
/// with the send time by event id afterwards.
async fn steady(
    relay: &RelayProcess,
    http: &reqwest::Client,
    bodies: &Arc<Bodies>,
    plan: &Plan,
    seq_base: u64,
    broker: &Connection,
) -> Result<Steady> {
    let consumer_channel = broker.create_channel().await?;
    let deliveries: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let delivered_count = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for queue in kind_queues(&relay.amqp) {
        let options = BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        let mut consumer = consumer_channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                options,
                FieldTable::default(),
            )
            .await?;
        let (deliveries, count) = (deliveries.clone(), delivered_count.clone());
        consumers.push(tokio::spawn(async move {
            while let Some(delivery) = consumer.next().await {
                let at = Instant::now();
                let Ok(delivery) = delivery else { break };
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default();
                if let Ok(mut list) = deliveries.lock() {
                    list.push((id, at));
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let pid = relay.child.id();
    let total = plan.rate * plan.steady_secs;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while sampling.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Ok(m) = Memory::of(pid) {
                    samples.push(m.rss_kb);
                }
            }
            samples
        })
    };

    let url = Arc::new(relay.url());
    let period_ns = 1_000_000_000 / plan.rate.max(1);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_nanos(i * period_ns);
        tokio::time::sleep_until(due).await;
        let (http, url, body) = (http.clone(), url.clone(), bodies.body(seq_base + i));
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = post(&http, &url, body).await;
            let done = Instant::now();
            (due.into_std(), sent, done, result)
        });
    }
    let mut accepted = histogram();
    let mut service = histogram();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut refused: HashMap<u16, u64> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (due, sent, done, result) = joined?;
        let (status, id) = result?;
        if status != 202 {
            *refused.entry(status).or_default() += 1;
            continue;
        }
        record(&mut accepted, done.saturating_duration_since(due));
        record(&mut service, done - sent);
        sent_at.insert(id.context("202 without an event id")?, sent);
    }
    sampling.store(false, Ordering::Relaxed);
    ensure!(
        refused.is_empty(),
        "steady: not every request was answered 202: {refused:?}"
    );
    ensure!(
        sent_at.len() as u64 == total,
        "steady: {} distinct ids for {total} requests",
        sent_at.len()
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while (delivered_count.load(Ordering::Relaxed) as u64) < total {
        ensure!(
            Instant::now() < deadline,
            "steady: only {} of {total} accepted events were delivered within 60 s",
            delivered_count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = consumer_channel.close(200, "done".into()).await;
    for consumer in consumers {
        consumer.abort();
    }
    let rss_kb = sampler.await?;

    let mut delivered = histogram();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let list = std::mem::take(
        &mut *deliveries
            .lock()
            .map_err(|_| anyhow!("consumer panicked"))?,
    );
    for (id, at) in list {
        let sent = *sent_at
            .get(&id)
            .with_context(|| format!("delivered event {id} was never sent"))?;
        if !seen.insert(id) {
            duplicates += 1;
            continue;
        }
        record(&mut delivered, at.saturating_duration_since(sent));
    }
    ensure!(
        seen.len() as u64 == total,
        "steady: {} of {total} events delivered",
        seen.len()
    );
    Ok(Steady {
        accepted: latency(&accepted),
        service: latency(&service),
        delivered: latency(&delivered),
        duplicates,
        rss_kb,
    })
}

// ---------------------------------------------------------------------------------------------
// Output

fn write_json(figures: &Value) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("relay.json");
    std::fs::write(&path, serde_json::to_vec_pretty(figures)?)?;
    Ok(path)
}

fn print_table(figures: &Value) {
    let sizes: Vec<(&String, &Value)> = figures["sizes"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let num = |v: &Value| match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{f:.0}"),
        Some(f) => format!("{f:.2}"),
        None => "-".to_owned(),
    };
    let min_max = |v: &Value| {
        let samples: Vec<f64> = v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(0.0, f64::max);
        if samples.is_empty() {
            "-".to_owned()
        } else {
            format!("{min:.1} - {max:.1}")
        }
    };
    let lat = |v: &Value| {
        format!(
            "{} / {} / {}",
            num(&v["p50_ms"]),
            num(&v["p99_ms"]),
            num(&v["max_ms"])
        )
    };
    let rows: Vec<(&str, Box<dyn Fn(&Value) -> String>)> = vec![
        (
            "mean body (bytes)",
            Box::new(|s: &Value| num(&s["mean_body_bytes"])),
        ),
        (
            "ceiling: bare lapin (msgs/s)",
            Box::new(|s: &Value| num(&s["ceiling_msgs_per_sec"])),
        ),
        (
            "  CPU µs/msg: broker, publisher",
            Box::new(|s: &Value| {
                format!(
                    "{} / {}",
                    num(&s["ceiling_cpu_us_per_msg"]["broker"]),
                    num(&s["ceiling_cpu_us_per_msg"]["load_generator"])
                )
            }),
        ),
        (
            "saturation: accepted/s",
            Box::new(|s: &Value| num(&s["saturation"]["accepted_per_sec"])),
        ),
        (
            "  % of ceiling",
            Box::new(|s: &Value| num(&s["saturation"]["accepted_pct_of_ceiling"])),
        ),
        (
            "  202 p50/p99/max (ms)",
            Box::new(move |s: &Value| lat(&s["saturation"]["latency_202"])),
        ),
        (
            "  all confirmed after load (s)",
            Box::new(|s: &Value| num(&s["saturation"]["all_confirmed_after_load_secs"])),
        ),
        (
            "  end-to-end confirmed/s",
            Box::new(|s: &Value| num(&s["saturation"]["confirmed_per_sec_end_to_end"])),
        ),
        (
            "  end-to-end % of ceiling",
            Box::new(|s: &Value| num(&s["saturation"]["confirmed_pct_of_ceiling"])),
        ),
        (
            "  CPU µs/event: relay, broker, load",
            Box::new(|s: &Value| {
                let cpu = &s["saturation"]["cpu_us_per_event"];
                format!(
                    "{} / {} / {}",
                    num(&cpu["relay"]),
                    num(&cpu["broker"]),
                    num(&cpu["load_generator"])
                )
            }),
        ),
        (
            "steady: 202 p50/p99/max (ms)",
            Box::new(move |s: &Value| lat(&s["steady"]["latency_202_from_schedule"])),
        ),
        (
            "  send→delivered p50/p99/max (ms)",
            Box::new(move |s: &Value| lat(&s["steady"]["send_to_delivered"])),
        ),
        (
            "relay RSS idle (MB)",
            Box::new(|s: &Value| num(&s["memory_mb"]["idle"])),
        ),
        (
            "relay RSS after saturation (MB)",
            Box::new(|s: &Value| num(&s["memory_mb"]["after_saturation"])),
        ),
        (
            "relay RSS during steady, min-max (MB)",
            Box::new(|s: &Value| min_max(&s["memory_mb"]["during_steady"])),
        ),
        (
            "relay RSS after steady (MB)",
            Box::new(|s: &Value| num(&s["memory_mb"]["after_steady"])),
        ),
        (
            "relay peak RSS, VmHWM (MB)",
            Box::new(|s: &Value| num(&s["memory_mb"]["peak_vmhwm"])),
        ),
        (
            "store only: appends/s",
            Box::new(|s: &Value| num(&s["disk"]["store_only_appends_per_sec"])),
        ),
        (
            "disk bytes per outbox event",
            Box::new(|s: &Value| num(&s["disk"]["bytes_per_outbox_event"])),
        ),
        (
            "disk bytes per dedup key after run",
            Box::new(|s: &Value| num(&s["disk"]["bytes_per_dedup_key_after_run"])),
        ),
    ];
    println!();
    print!("{:<36}", "");
    for (label, _) in &sizes {
        print!("{:>26}", label);
    }
    println!();
    for (name, cell) in &rows {
        print!("{name:<36}");
        for (_, size) in &sizes {
            print!("{:>26}", cell(size));
        }
        println!();
    }
    println!("\ntargets: saturation ≥ 75% of ceiling; steady 202 p99 ≤ 5 ms, receive→confirmed p99 ≤ 50 ms; peak RSS ≤ 64 MB, flat");
}
