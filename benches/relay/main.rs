//! End-to-end benchmark against the local RabbitMQ: ceiling, durable limit, relay saturation, steady latency, memory, disk.
//!
//! `cargo bench --bench relay` (README "Benchmark"). For each body size (~1.5 KB, ~18 KB) it measures
//! 1. the ceiling: a bare lapin publisher, persistent messages to a quorum queue, 256 confirms in
//!    flight (`ceiling`);
//! 2. the durable limit: examples/durable_limit.rs, the least a relay can do and stay durable
//!    (group commit with one `fdatasync`, then publish with confirms), under the relay's saturation
//!    load (`limit`); the relay's throughput and CPU per event are given as ratios to it; it then
//!    takes the steady phase (4.) too, to show the latency the machine allows; then the same
//!    publishing as the relay does (topic exchange, routing key, properties, headers), so
//!    that the broker's cost of the relay's message contract is seen apart (not a target);
//! 3. saturation: the relay driven by 32 keep-alive clients, then the time until every accepted
//!    event sits in its queue (counts must match exactly, or the run fails; `load`);
//! 4. steady: an open-loop 1000 requests/s (latency from the scheduled send time, so a slow relay
//!    cannot hide its stalls by slowing the load), 202 latency and send → delivered (`steady`),
//!    with what RabbitMQ and the disk wrote meanwhile (`disk`: a quorum-queue WAL rollover on the
//!    shared disk stalls every fdatasync);
//! 5. the relay's memory (its own process) and the store's bytes on disk per event and per dedup
//!    key (`store_only` and the data dir after the run);
//! 6. the skewed backlog (issue #31, `skewed`): a backlog accepted with the broker out of reach,
//!    then drained into quorum queues by the relay started again on it; uniform, with half of it
//!    on one hot ticket, and the hot ticket's share left out: the drain time, when every other
//!    ticket's events are delivered, and the hot ticket's own rate.
//!
//! 7. `BENCH_CLUSTER=1`: only the skewed backlog, on the three-node RabbitMQ cluster of the
//!    cluster tests (`cluster`: started with tests/cluster.sh unless its first node answers, and
//!    stopped again after), figures in target/bench/relay-cluster.json; `BENCH_SKEWED_ONLY=1`:
//!    only the skewed backlog, on the default broker (target/bench/relay-skewed.json).
//!
//! The relay runs as its own process: the real `whaticket-relay serve` binary (its default config
//! plus `RELAY__…` overrides for the port, data dir and names, logging on at the configured level),
//! and so does the durable limit, so that their memory and CPU are measured apart from the load
//! generator's. The CPU time each process (server, RabbitMQ, load generator) spends per event is
//! read from /proc (`process`), to show what limits a run. Figures and the targets, met or
//! not, are printed and written to target/bench/relay.json (`report`).
//!
//! The relay and the durable limit are saturated for `BENCH_SATURATION_SECS` (15 s, as in issue
//! #31, so that a backlog builds behind the publisher; `0`: `BENCH_REQUESTS` requests instead,
//! as `BENCH_QUICK` does); the ceiling takes `BENCH_REQUESTS` messages.
//!
//! Environment: `BENCH_QUICK=1` (smoke run: small counts, 3 s steady), `BENCH_REQUESTS`,
//! `BENCH_SATURATION_SECS`, `BENCH_BACKLOG` (events of the skewed backlog, 12 000; 0 leaves the scenario out),
//! `BENCH_CLIENTS`, `BENCH_RATE`, `BENCH_STEADY_SECS`, `BENCH_SIZES=18KB` (only the sizes listed),
//! `BENCH_ROUNDS` (times each size is measured, 3 by default, 1 with `BENCH_QUICK`; the targets
//! are judged on the median round, the worst for memory and disk), `BENCH_AMQP_URL`,
//! `BENCH_RELAY_LOG=<file>` (keep the relay's log; it goes to /dev/null otherwise),
//! `BENCH_RELAY_WRAP="heaptrack -o <file>"` (a profiler to run the relay under; the relay's CPU
//! and memory figures are then the wrapper's process's).

mod bodies;
mod broker;
mod ceiling;
mod cluster;
mod disk;
mod limit;
mod load;
mod plan;
mod process;
mod relay;
mod report;
mod skewed;
mod steady;
mod store_only;
mod targets;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use lapin::Connection;
use serde_json::{json, Map, Value};

use crate::bodies::Bodies;
use crate::broker::{connect, Cleanup};
use crate::limit::Publishes;
use crate::plan::Plan;
use crate::process::{broker_pid, CpuMark};

const DEFAULT_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const CONNECTION: &str = "bench";
const TOKEN: &str = "bench-token-0123456789";
/// Distinct tickets the load cycles through: the publisher keeps one event per ticket in flight,
/// so a single ticket would measure that rule instead of the relay.
const TICKETS: u64 = 2000;

/// (label, target body bytes, the steady 202 p99 target in ms)
const SIZES: [(&str, usize, f64); 2] = [("1.5KB", 1536, 5.0), ("18KB", 18 * 1024, 10.0)];

fn main() -> ExitCode {
    // `cargo test --benches` runs this binary without `--bench`: nothing to test here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("relay benchmark skipped: run it with `cargo bench --bench relay`");
        return ExitCode::SUCCESS;
    }
    let result = Plan::from_env().and_then(|plan| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start tokio")?;
        runtime.block_on(run(plan))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nBENCHMARK FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plan: Plan) -> Result<()> {
    if plan.cluster {
        println!(
            "whaticket-relay benchmark, BENCH_CLUSTER: the skewed backlog of {} on three nodes",
            plan.backlog
        );
        let figures = cluster::run(&plan).await?;
        let path = report::write_json(&figures, "relay-cluster.json")?;
        println!("\nfigures written to {}", path.display());
        return Ok(());
    }
    if plan.skewed_only {
        println!(
            "whaticket-relay benchmark, BENCH_SKEWED_ONLY: the skewed backlog of {}",
            plan.backlog
        );
        let broker = connect(&plan.broker).await?;
        let mut cleanup = Cleanup::default();
        let result = skewed::sizes(&plan, &broker, &mut cleanup, "").await;
        let cleaned = cleanup.run(&broker).await;
        let _ = broker.close(200, "bench done".into()).await;
        let figures = result?;
        cleaned?;
        let path = report::write_json(&figures, "relay-skewed.json")?;
        println!("\nfigures written to {}", path.display());
        return Ok(());
    }
    // Built before the broker is touched, so a compile error costs nothing else.
    let limit_exe = tokio::task::spawn_blocking(limit::build).await??;
    let broker = connect(&plan.broker).await?;
    let mut cleanup = Cleanup::default();
    let result = run_all(&plan, &limit_exe, &broker, &mut cleanup).await;
    let cleaned = cleanup.run(&broker).await;
    let _ = broker.close(200, "bench done".into()).await;
    let figures = result?;
    cleaned?;
    let path = report::write_json(&figures, "relay.json")?;
    report::print_table(&figures);
    println!("\nfigures written to {}", path.display());
    Ok(())
}

async fn run_all(
    plan: &Plan,
    limit_exe: &Path,
    broker: &Connection,
    cleanup: &mut Cleanup,
) -> Result<Value> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let saturation = match plan.saturation_secs {
        Some(secs) => format!(", saturation {secs} s"),
        None => String::new(),
    };
    println!(
        "whaticket-relay benchmark{}: {} requests per size{saturation}, {} clients, steady {}/s x {} s, \
         skewed backlog of {}, {cpus} CPUs",
        if plan.quick { " (BENCH_QUICK)" } else { "" },
        plan.requests.map(|n| n.to_string()).join("/"),
        plan.clients,
        plan.rate,
        plan.steady_secs,
        plan.backlog
    );
    if plan.rounds > 1 {
        println!(
            "each size measured {} times; targets judged on the median round (the worst for \
             memory and disk)",
            plan.rounds
        );
    }
    let measured = each_size(plan, broker, "", async |run: &SizeRun<'_>| {
        run.measure(limit_exe, cleanup).await
    })
    .await?;
    let mut sizes = Map::new();
    for (label, steady_p99_ms, rounds) in measured {
        sizes.insert(label.to_owned(), targets::combine(rounds, steady_p99_ms));
    }
    Ok(json!({
        "quick": plan.quick,
        "cpus": cpus,
        "clients": plan.clients,
        "steady_rate": plan.rate,
        "steady_secs": plan.steady_secs,
        "rounds": plan.rounds,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "sizes": Value::Object(sizes),
    }))
}

/// Each size the plan runs (its heading: the label, then `place`), measured `plan.rounds` times
/// by `round`: per size, its label, its steady 202 p99 target and its rounds' figures.
async fn each_size(
    plan: &Plan,
    broker: &Connection,
    place: &str,
    mut round: impl AsyncFnMut(&SizeRun<'_>) -> Result<Value>,
) -> Result<Vec<(&'static str, f64, Vec<Value>)>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let mut sizes = Vec::new();
    for (i, &(label, target, steady_p99_ms)) in SIZES.iter().enumerate() {
        if !plan.runs(label) {
            continue;
        }
        let bodies = Arc::new(Bodies::new(target)?);
        println!("\n== {label}{place}: mean body {} bytes", bodies.mean_len);
        let run = SizeRun {
            plan,
            n: plan.requests[i],
            bodies: &bodies,
            broker,
            http: &http,
        };
        let mut rounds = Vec::new();
        for n in 1..=plan.rounds {
            if plan.rounds > 1 {
                println!("-- {label}, round {n} of {}", plan.rounds);
            }
            rounds.push(round(&run).await?);
        }
        sizes.push((label, steady_p99_ms, rounds));
    }
    Ok(sizes)
}

/// One body size's phases, all with the same load.
struct SizeRun<'a> {
    plan: &'a Plan,
    n: u64,
    bodies: &'a Arc<Bodies>,
    broker: &'a Connection,
    http: &'a reqwest::Client,
}

/// `a ÷ b` to two decimals; null when either is missing or `b` is zero.
fn ratio(a: &Value, b: &Value) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 100.0).round() / 100.0),
        _ => Value::Null,
    }
}

/// The relay's saturation figures as ratios to a durable limit's.
fn versus(sat: &Value, limit: &Value) -> Value {
    json!({
        "throughput_ratio": ratio(&sat["accepted_per_sec"], &limit["accepted_per_sec"]),
        "cpu_per_event_ratio": ratio(
            &sat["cpu_us_per_event"]["relay"],
            &limit["cpu_us_per_event"]["durable_limit"]
        ),
        "end_to_end_ratio": ratio(
            &sat["confirmed_per_sec_end_to_end"],
            &limit["confirmed_per_sec_end_to_end"]
        ),
    })
}

impl SizeRun<'_> {
    /// Deletes the last phase's queues and waits for the broker to go idle before the next one.
    async fn clear_broker(&self, cleanup: &mut Cleanup, broker_pid: Option<u32>) -> Result<()> {
        cleanup
            .run(self.broker)
            .await
            .context("cleanup between phases")?;
        let waited = process::settle(broker_pid).await;
        println!("  (broker idle after {:.1} s)", waited.as_secs_f64());
        Ok(())
    }

    /// The durable limit under the saturation load, publishing as told.
    async fn limit(
        &self,
        limit_exe: &Path,
        publishes: Publishes,
        cleanup: &mut Cleanup,
        broker_pid: Option<u32>,
    ) -> Result<Value> {
        let name = match publishes {
            Publishes::Bare => "durable limit",
            Publishes::RelayContract => "durable limit, relay's message contract",
        };
        let limit = limit::measure(self, limit_exe, publishes, cleanup)
            .await
            .context(name)?;
        println!(
            "{name}: {:.0} accepted/s, all confirmed {} s after the last 202; CPU per event: \
             limit {} µs, broker {} µs, load generator {} µs",
            limit["accepted_per_sec"].as_f64().unwrap_or(f64::NAN),
            limit["all_confirmed_after_load_secs"],
            limit["cpu_us_per_event"]["durable_limit"],
            limit["cpu_us_per_event"]["broker"],
            limit["cpu_us_per_event"]["load_generator"]
        );
        self.clear_broker(cleanup, broker_pid).await?;
        Ok(limit)
    }

    async fn measure(&self, limit_exe: &Path, cleanup: &mut Cleanup) -> Result<Value> {
        let (n, bodies) = (self.n, self.bodies);
        let broker_pid = broker_pid();
        let before = CpuMark::now(None, broker_pid)?;
        let ceiling = ceiling::ceiling(self.broker, bodies, n, cleanup)
            .await
            .context("ceiling")?;
        let ceiling_cpu = CpuMark::now(None, broker_pid)?.per_event(&before, n);
        println!(
            "ceiling: {:.0} msgs/s; CPU per message: broker {} µs, publisher {} µs",
            ceiling, ceiling_cpu["broker"], ceiling_cpu["load_generator"]
        );
        self.clear_broker(cleanup, broker_pid).await?;

        let limit = self
            .limit(limit_exe, Publishes::Bare, cleanup, broker_pid)
            .await?;
        let contract = self
            .limit(limit_exe, Publishes::RelayContract, cleanup, broker_pid)
            .await?;

        let store_only = store_only::store_only(bodies, n.min(5000))
            .await
            .context("store-only appends")?;
        println!(
            "store only: {:.0} appends/s, {:.0} bytes on disk per outbox event",
            store_only.appends_per_sec, store_only.bytes_per_event
        );

        let mut figures = relay::measure(self, ceiling, cleanup).await?;
        self.clear_broker(cleanup, broker_pid).await?;
        // `BENCH_BACKLOG=0`: the ratios only, without the skewed backlog's three drains.
        if self.plan.backlog > 0 {
            figures["skewed_backlog"] = skewed::measure(self, cleanup).await?;
            self.clear_broker(cleanup, broker_pid).await?;
        }
        let sat = figures["saturation"].clone();
        figures["vs_durable_limit"] = versus(&sat, &limit);
        figures["vs_durable_limit_relay_contract"] = versus(&sat, &contract);
        figures["vs_durable_limit_relay_contract"]["limit_throughput_ratio_to_bare"] =
            ratio(&contract["accepted_per_sec"], &limit["accepted_per_sec"]);
        figures["durable_limit_relay_contract"] = contract;
        figures["mean_body_bytes"] = json!(bodies.mean_len);
        figures["requests"] = json!(n);
        figures["ceiling_msgs_per_sec"] = json!(ceiling.round());
        figures["ceiling_cpu_us_per_msg"] = ceiling_cpu;
        figures["durable_limit"] = limit;
        figures["disk"]["store_only_appends_per_sec"] = json!(store_only.appends_per_sec.round());
        figures["disk"]["bytes_per_outbox_event"] = json!(store_only.bytes_per_event.round());
        Ok(figures)
    }
}
