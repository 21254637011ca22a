//! The store alone (no HTTP, no broker): durable appends/s and disk bytes per outbox event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, ensure, Result};
use whaticket_relay::config::Settings;
use whaticket_relay::event;
use whaticket_relay::store::{Appended, Store};

use crate::bodies::Bodies;
use crate::CONNECTION;

pub struct StoreOnly {
    pub appends_per_sec: f64,
    pub bytes_per_event: f64,
}

/// The store alone (no HTTP, no broker): appends from 32 tasks, then disk bytes per outbox event
/// (its dedup key included) over an empty store's size.
pub async fn store_only(bodies: &Arc<Bodies>, n: u64) -> Result<StoreOnly> {
    let dir = tempfile::Builder::new()
        .prefix("relay-bench-store-")
        .tempdir()?;
    let mut storage = Settings::default().storage;
    storage.path = dir.path().join("data");
    let store = tokio::task::spawn_blocking(move || Store::open(&storage)).await??;
    store.flush().await?;
    let empty = store.stats().disk_bytes;
    let keys = Arc::new(Settings::default().redact.matcher());
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
