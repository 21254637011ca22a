//! The relay under test: the real binary started, saturated, held at a steady rate, its memory and disk read.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use whaticket_relay::config::{AmqpSettings, AmqpUrl, Settings};
use whaticket_relay::publish::topology;
use whaticket_relay::store::Store;

use crate::broker::{kind_queues, unique_name, Cleanup};
use crate::load::{saturation, Target};
use crate::process::{broker_pid, mb, CpuMark, Server};
use crate::{SizeRun, CONNECTION, TOKEN};

/// The relay's saturation, steady, memory and disk figures.
pub async fn measure(run: &SizeRun<'_>, ceiling: f64, cleanup: &mut Cleanup) -> Result<Value> {
    let (plan, n, bodies, http) = (run.plan, run.n, run.bodies, run.http);
    let mut amqp = Settings::default().amqp;
    amqp.url = AmqpUrl::new(plan.broker.clone());
    amqp.exchange = unique_name("x");
    amqp.queue_prefix = unique_name("q");
    cleanup.relay(&amqp);
    let mut relay = spawn_relay(&plan.broker, &amqp)?;
    relay
        .wait_ready(http, "/readyz", |s| s == reqwest::StatusCode::OK)
        .await?;
    let idle = relay.memory()?;
    let channel = run.broker.create_channel().await?;
    let target = Target {
        url: format!("http://127.0.0.1:{}/hooks/{CONNECTION}/{TOKEN}", relay.port),
        queues: kind_queues(&amqp),
        dead: Some(topology::dead_queue_name(&amqp)),
    };

    let broker_pid = broker_pid();
    let relay_pid = Some(("relay", relay.pid()));
    let before = CpuMark::now(relay_pid, broker_pid)?;
    let sat = saturation(
        http,
        bodies,
        plan.saturation(n),
        plan.clients,
        &target,
        &channel,
    )
    .await
    .context("saturation")?;
    let n = sat.requests;
    let saturation_cpu = CpuMark::now(relay_pid, broker_pid)?.per_event(&before, n);
    let after_saturation = relay.memory()?;
    println!(
        "saturation: {n} events in {:.1} s, {:.0} accepted/s, all confirmed {:.2} s after the last 202 ({:.0} end-to-end/s); \
         CPU per event: relay {} µs, broker {} µs, load generator {} µs",
        sat.load_secs,
        sat.accepted_per_sec,
        sat.drain_secs,
        sat.confirmed_per_sec,
        saturation_cpu["relay"],
        saturation_cpu["broker"],
        saturation_cpu["load_generator"]
    );
    // The steady phase measures a relay and a broker at rest before it: not RabbitMQ dropping
    // the purged backlog, nor the relay writing the saturation's dedup keys into sled.
    crate::steady::at_rest(&channel, &target.queues, relay.pid()).await?;
    let _ = channel.close(200, "done".into()).await;

    let steady = crate::steady::steady(&target, relay.pid(), http, bodies, plan, n, run.broker)
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
        "steady: 202 {}; send→delivered {}; broker's busiest second {} MB written",
        brief(&steady.accepted),
        brief(&steady.delivered),
        steady.disk["broker_busiest_second_mb"]
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
    let per_kept = stats.disk_bytes as f64 / stats.delivered_kept.max(1) as f64;

    Ok(json!({
        "saturation": {
            "requests": n,
            "load_secs": (sat.load_secs * 100.0).round() / 100.0,
            "accepted_per_sec": sat.accepted_per_sec.round(),
            "latency_202": sat.latency,
            "all_confirmed_after_load_secs": (sat.drain_secs * 1000.0).round() / 1000.0,
            "confirmed_per_sec_end_to_end": sat.confirmed_per_sec.round(),
            "accepted_pct_of_ceiling": (sat.accepted_per_sec / ceiling * 1000.0).round() / 10.0,
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
            "disk_writes": steady.disk,
        },
        "memory_mb": {
            "idle": mb(idle.rss_kb),
            "after_saturation": mb(after_saturation.rss_kb),
            "during_steady": rss_samples,
            "after_steady": mb(after_steady.rss_kb),
            "peak_vmhwm": mb(after_steady.hwm_kb),
        },
        "disk": {
            "after_run_disk_bytes": stats.disk_bytes,
            "after_run_dedup_keys": stats.dedup_keys,
            "bytes_per_dedup_key_after_run": per_key.round(),
            "after_run_kept_events": stats.delivered_kept,
            "bytes_per_kept_event": per_kept.round(),
            "kept_event_to_body_ratio": (per_kept / bodies.mean_len.max(1) as f64 * 100.0).round() / 100.0,
        },
    }))
}

/// The real `whaticket-relay serve`: the shipped config plus overrides for port, data and names.
pub fn spawn_relay(broker: &str, amqp: &AmqpSettings) -> Result<Server> {
    Server::spawn("relay", |port, dir| relay_command(port, dir, broker, amqp))
}

/// The command line and environment of [`spawn_relay`], for `port` and the data under `dir`.
pub fn relay_command(port: u16, dir: &Path, broker: &str, amqp: &AmqpSettings) -> Result<Command> {
    let exe = env!("CARGO_BIN_EXE_whaticket-relay");
    // A profiler to run the relay under (its CPU and memory figures are then the wrapper's).
    let wrap = std::env::var("BENCH_RELAY_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    };
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
        // Not read here, and the default port would clash with another relay on the machine.
        .env("RELAY__METRICS__BIND", "off")
        .env("RELAY__STORAGE__PATH", dir.join("data"))
        .env("RELAY__AMQP__URL", broker)
        .env("RELAY__AMQP__EXCHANGE", &amqp.exchange)
        .env("RELAY__AMQP__QUEUE_PREFIX", &amqp.queue_prefix)
        .env(
            "RELAY__CONNECTIONS",
            format!(r#"[{{name="{CONNECTION}",tokens=["{TOKEN}"]}}]"#),
        )
        .stdout(log);
    Ok(command)
}
