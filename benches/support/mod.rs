//! What the storage benches share: their settings from the environment, writers appending
//! unique events through the group commit, and a stand-in for the publisher that takes what the
//! store hands over and settles it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whaticket_relay::event::Event;
use whaticket_relay::store::{Appended, Next, Pending, Room, Settlement, Store};

/// A whole number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .with_context(|| format!("{name} must be a whole number")),
        Err(_) => Ok(default),
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `writers` tasks appending events `0..total` (`event(n)`), each answered only once fsynced;
/// `next` counts those taken. Each event must be new.
pub fn spawn_writers<F>(
    store: &Store,
    writers: u64,
    total: u64,
    next: &Arc<AtomicU64>,
    event: F,
) -> Vec<JoinHandle<Result<()>>>
where
    F: Fn(u64) -> Event + Clone + Send + 'static,
{
    (0..writers)
        .map(|_| {
            let (store, next, event) = (store.clone(), Arc::clone(next), event.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return Ok(());
                    }
                    let outcome = store.append(event(n)).await?;
                    ensure!(outcome == Appended::Accepted, "event {n}: {outcome:?}");
                }
            })
        })
        .collect()
}

/// The publisher's stand-in: takes each batch the store hands over (from memory, or read back
/// from disk) and settles it as `settle` says, until `shutdown`.
pub fn spawn_publisher<F>(
    store: &Store,
    shutdown: &CancellationToken,
    settle: F,
) -> JoinHandle<Result<()>>
where
    F: Fn(Vec<Pending>) -> Settlement + Send + 'static,
{
    let (store, shutdown) = (store.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let batch = match store.take_new(Room::events(1024)) {
                Next::Events(batch) => batch,
                Next::FromDisk { until } => {
                    store
                        .read_pending(last, until, Room::events(usize::MAX))
                        .await?
                }
                Next::Idle => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = store.appended() => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    continue;
                }
            };
            last = batch.last().map(|p| p.seq).or(last);
            // As the publisher hands them back: each with its publish time.
            let published = batch
                .iter()
                .map(|p| (p.seq, p.event.meta.received_at_ms))
                .collect();
            store
                .settle_later(Settlement {
                    published,
                    ..settle(batch)
                })
                .await?;
        }
    })
}
