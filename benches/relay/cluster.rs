//! `BENCH_CLUSTER=1`: the skewed backlog (issue #31) on the three-node RabbitMQ cluster of the
//! cluster tests (`tests/cluster.sh`, beside the default broker), whose quorum queues confirm a
//! publish only once a majority of the nodes wrote it: the confirm round trip the hot ticket
//! drains at is a few times the single node's. Nothing else of the bench runs in this mode.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use lapin::Connection;
use serde_json::{json, Map, Value};

use crate::bodies::Bodies;
use crate::broker::{connect, Cleanup};
use crate::plan::Plan;
use crate::{skewed, SizeRun, SIZES};

/// Runs `tests/cluster.sh` with `command` (off the async workers); its output goes to the bench's.
async fn cluster_sh(command: &'static str) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster.sh");
    let status = tokio::task::spawn_blocking(move || Command::new(&script).arg(command).status())
        .await?
        .context("cannot run tests/cluster.sh")?;
    ensure!(
        status.success(),
        "tests/cluster.sh {command} failed ({status})"
    );
    Ok(())
}

/// Starts the cluster (kept if it runs), measures each size's skewed backlog on it, and stops
/// the nodes again if it started them.
pub async fn run(plan: &Plan) -> Result<Value> {
    let running = connect(&plan.broker).await.ok();
    if let Some(conn) = &running {
        let _ = conn.close(200, "probe".into()).await;
    } else {
        cluster_sh("start").await?;
    }
    let broker = connect(&plan.broker).await?;
    let mut cleanup = Cleanup::default();
    let result = sizes(plan, &broker, &mut cleanup).await;
    let cleaned = cleanup.run(&broker).await;
    let _ = broker.close(200, "bench done".into()).await;
    if running.is_none() {
        cluster_sh("stop").await?;
    }
    let figures = result?;
    cleaned?;
    Ok(figures)
}

async fn sizes(plan: &Plan, broker: &Connection, cleanup: &mut Cleanup) -> Result<Value> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let mut out = Map::new();
    for (i, (label, target, _)) in SIZES.iter().enumerate() {
        if !plan.runs(label) {
            continue;
        }
        let bodies = std::sync::Arc::new(Bodies::new(*target)?);
        println!(
            "\n== {label} on the three-node cluster: mean body {} bytes",
            bodies.mean_len
        );
        let run = SizeRun {
            plan,
            n: plan.requests[i],
            bodies: &bodies,
            broker,
            http: &http,
        };
        let mut rounds = Vec::new();
        for round in 1..=plan.rounds {
            if plan.rounds > 1 {
                println!("-- {label}, round {round} of {}", plan.rounds);
            }
            rounds.push(skewed::measure(&run, cleanup).await?);
            cleanup.run(broker).await?;
        }
        out.insert((*label).to_owned(), Value::Array(rounds));
    }
    // host:port only: never the URL's credentials.
    let node = plan.broker.rsplit('@').next().unwrap_or_default();
    Ok(json!({ "cluster_first_node": node, "rounds": plan.rounds, "sizes": out }))
}
