//! What to run: counts, clients, rate and broker, from the environment (`BENCH_…`).

use anyhow::{Context, Result};

use crate::DEFAULT_BROKER;

pub struct Plan {
    pub quick: bool,
    pub requests: [u64; 2],
    pub clients: usize,
    pub rate: u64,
    pub steady_secs: u64,
    pub broker: String,
    /// Only the sizes whose label is listed (`BENCH_SIZES=18KB`); every size when unset.
    pub sizes: Option<Vec<String>>,
    /// Times each size is measured, all phases each time; the targets are judged on the median
    /// round (worst for memory and disk), since one run's ratios move by a third on this machine.
    pub rounds: u64,
    /// How long the relay and the durable limit are saturated (`BENCH_SATURATION_SECS`; 0:
    /// `requests` instead). 15 s by default, as issue #31's run with wrk: long enough that a
    /// backlog builds up behind the publisher (its drain took 11–13 s more there).
    pub saturation_secs: Option<u64>,
    /// Events of the skewed-backlog scenario's backlog (`BENCH_BACKLOG`): 12 000 as in issue
    /// #31, 1 200 with `BENCH_QUICK`.
    pub backlog: u64,
    /// `BENCH_CLUSTER=1`: only the skewed backlog, on the three-node cluster of the cluster
    /// tests (`cluster`); `broker` is then its first node.
    pub cluster: bool,
    /// `BENCH_SKEWED_ONLY=1`: only the skewed backlog, on `broker` (the default one).
    pub skewed_only: bool,
}

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
    pub fn from_env() -> Result<Plan> {
        let flag = |name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
        let quick = flag("BENCH_QUICK");
        let cluster = flag("BENCH_CLUSTER");
        let requests = match env_u64("BENCH_REQUESTS")? {
            Some(n) => [n, n],
            None if quick => [2000, 1000],
            // About 4 s of saturation per phase here: at 1 s (20 000 / 10 000) a phase was mostly
            // its ramp-up and tail, and the same build's ratios moved by a third between runs.
            None => [100_000, 50_000],
        };
        Ok(Plan {
            quick,
            requests,
            clients: env_u64("BENCH_CLIENTS")?.unwrap_or(32) as usize,
            rate: env_u64("BENCH_RATE")?.unwrap_or(1000),
            steady_secs: env_u64("BENCH_STEADY_SECS")?.unwrap_or(if quick { 3 } else { 20 }),
            broker: std::env::var("BENCH_AMQP_URL").unwrap_or_else(|_| {
                if cluster {
                    first_node_url()
                } else {
                    DEFAULT_BROKER.to_owned()
                }
            }),
            sizes: std::env::var("BENCH_SIZES")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
            rounds: match env_u64("BENCH_ROUNDS")? {
                Some(0) => anyhow::bail!("BENCH_ROUNDS=0: at least one round is needed"),
                Some(n) => n,
                None if quick => 1,
                None => 3,
            },
            saturation_secs: match env_u64("BENCH_SATURATION_SECS")? {
                Some(0) => None,
                Some(secs) => Some(secs),
                None if quick => None,
                None => Some(15),
            },
            backlog: env_u64("BENCH_BACKLOG")?.unwrap_or(if quick { 1200 } else { 12_000 }),
            cluster,
            skewed_only: flag("BENCH_SKEWED_ONLY"),
        })
    }

    /// The saturation load of a size whose request count is `n`.
    pub fn saturation(&self, n: u64) -> crate::load::Load {
        match self.saturation_secs {
            Some(secs) => crate::load::Load::For(std::time::Duration::from_secs(secs)),
            None => crate::load::Load::Requests(n),
        }
    }

    /// Whether the size labelled `label` is to run.
    pub fn runs(&self, label: &str) -> bool {
        self.sizes
            .as_ref()
            .is_none_or(|sizes| sizes.iter().any(|s| s.eq_ignore_ascii_case(label)))
    }
}

/// The AMQP URL of the cluster's first node (`RELAY_CLUSTER_PORT`, as tests/cluster.sh and the
/// cluster tests read it); the relay connects there, the queues' replicas are on all three.
pub fn first_node_url() -> String {
    let port = std::env::var("RELAY_CLUSTER_PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(5781);
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}
