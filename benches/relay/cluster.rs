//! `BENCH_CLUSTER=1`: the skewed backlog (issue #31) on the three-node RabbitMQ cluster of the
//! cluster tests (`tests/cluster.sh`, beside the default broker), whose quorum queues confirm a
//! publish only once a majority of the nodes wrote it: the confirm round trip the hot ticket
//! drains at is a few times the single node's. Nothing else of the bench runs in this mode.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::broker::{connect, Cleanup};
use crate::plan::Plan;
use crate::skewed;

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
    let result = skewed::sizes(plan, &broker, &mut cleanup, " on the three-node cluster").await;
    let cleaned = cleanup.run(&broker).await;
    let _ = broker.close(200, "bench done".into()).await;
    if running.is_none() {
        cluster_sh("stop").await?;
    }
    let figures = result?;
    cleaned?;
    Ok(figures)
}
