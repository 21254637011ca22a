//! The durable limit (examples/durable_limit.rs): built, run as its own process, given the relay's saturation load.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::broker::{unique_name, Cleanup};
use crate::load::{saturation, Target};
use crate::process::{broker_pid, mb, target_dir, CpuMark, Server};
use crate::steady::{at_rest, steady};
use crate::SizeRun;

/// Builds the example with the release profile (the bench's own profile inherits it) and
/// returns its path.
pub fn build() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--example",
            "durable_limit",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .context("cannot run cargo to build the durable limit")?;
    ensure!(
        status.success(),
        "building the durable limit failed ({status})"
    );
    Ok(target_dir().join("release/examples/durable_limit"))
}

/// How the durable limit publishes.
#[derive(Clone, Copy)]
pub enum Publishes {
    /// Bare to its queue: the yardstick of issue #10.
    Bare,
    /// As the relay does (topic exchange, routing key, properties, headers): the same yardstick
    /// paying the broker's cost of the relay's message contract, for comparison only.
    RelayContract,
}

/// The relay's saturation load (same clients, bodies and count) on the durable limit; every
/// accepted event must be counted in its queue, and every body must be in its file. The bare
/// limit then takes the relay's steady phase too, so that the relay's steady latency can be set
/// beside what fdatasync and the broker allow on the same disk in the same round.
pub async fn measure(
    run: &SizeRun<'_>,
    exe: &Path,
    publishes: Publishes,
    cleanup: &mut Cleanup,
) -> Result<Value> {
    let (plan, n, bodies, http) = (run.plan, run.n, run.bodies, run.http);
    let queue = unique_name("limit-q");
    cleanup.queues.push(queue.clone());
    let exchange = match publishes {
        Publishes::Bare => None,
        Publishes::RelayContract => {
            let exchange = unique_name("limit-x");
            cleanup.exchanges.push(exchange.clone());
            Some(exchange)
        }
    };
    let mut limit = Server::spawn("durable limit", |port, dir| {
        let mut command = Command::new(exe);
        command
            .arg("--port")
            .arg(port.to_string())
            .arg("--amqp-url")
            .arg(&plan.broker)
            .arg("--queue")
            .arg(&queue)
            .arg("--file")
            .arg(dir.join("bodies.log"))
            .stdout(Stdio::null());
        if let Some(exchange) = &exchange {
            command.arg("--exchange").arg(exchange);
        }
        Ok(command)
    })?;
    // It binds its port only once its queue is declared; any answer (a GET gets 405) means ready.
    limit.wait_ready(http, "/", |_| true).await?;
    let channel = run.broker.create_channel().await?;
    let target = Target {
        url: format!("http://127.0.0.1:{}/hooks", limit.port),
        queues: vec![queue],
        dead: None,
    };

    let broker_pid = broker_pid();
    let pid = Some(("durable_limit", limit.pid()));
    let before = CpuMark::now(pid, broker_pid)?;
    let sat = saturation(
        http,
        bodies,
        plan.saturation(n),
        plan.clients,
        &target,
        &channel,
    )
    .await?;
    let n = sat.requests;
    let cpu = CpuMark::now(pid, broker_pid)?.per_event(&before, n);
    let peak = limit.memory()?.hwm_kb;
    let steady = match publishes {
        Publishes::Bare => {
            at_rest(&channel, &target.queues, limit.pid()).await?;
            let steady = steady(&target, limit.pid(), http, bodies, plan, n, run.broker)
                .await
                .context("steady")?;
            println!(
                "  steady: 202 p50 {} / p99 {} / max {} ms; send→delivered p99 {} ms; broker's busiest second {} MB written",
                steady.accepted["p50_ms"],
                steady.accepted["p99_ms"],
                steady.accepted["max_ms"],
                steady.delivered["p99_ms"],
                steady.disk["broker_busiest_second_mb"]
            );
            Some(steady)
        }
        Publishes::RelayContract => None,
    };
    limit.stop()?;
    let _ = channel.close(200, "done".into()).await;

    let sent = n + steady.as_ref().map_or(0, |_| plan.rate * plan.steady_secs);
    let file = std::fs::metadata(limit.dir.path().join("bodies.log"))?.len();
    let expected: u64 = (0..sent).map(|seq| 8 + bodies.body(seq).len() as u64).sum();
    ensure!(
        file == expected,
        "the durable limit's file holds {file} bytes, {expected} expected for {sent} bodies"
    );
    let mut figures = json!({
        "requests": n,
        "accepted_per_sec": sat.accepted_per_sec.round(),
        "latency_202": sat.latency,
        "all_confirmed_after_load_secs": (sat.drain_secs * 1000.0).round() / 1000.0,
        "confirmed_per_sec_end_to_end": sat.confirmed_per_sec.round(),
        "cpu_us_per_event": cpu,
        "peak_rss_mb": mb(peak),
    });
    if let Some(steady) = steady {
        figures["steady"] = json!({
            "latency_202_from_schedule": steady.accepted,
            "latency_202_service": steady.service,
            "send_to_delivered": steady.delivered,
            "disk_writes": steady.disk,
        });
    }
    Ok(figures)
}
