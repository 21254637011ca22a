//! Storage-layer benchmark: durable appends/s through the group commit, and the data dir's size over a long run while the sweeper works.
//!
//! `cargo bench --bench store`. No HTTP, no broker: 32 tasks append unique ~1.5 KB events (each
//! answered only once fsynced, as in the relay), a stand-in for the publisher takes them from the
//! store's hand-off and confirms them in batches as the real one does, and the sweeper expires
//! dedup keys and drops settled segments. It prints the rate and the data dir's allocated size as
//! the run goes, so a store layout's disk plateau (or creep) shows in minutes instead of a full
//! soak; at the end the CPU time per append, the bytes on disk per kept delivered event, and how
//! long reopening the store takes.
//!
//! Environment: `STORE_BENCH_EVENTS` (default 300 000), `STORE_BENCH_WRITERS` (32),
//! `STORE_BENCH_WINDOW_SECS` (dedup window and keep_delivered, 20), `STORE_BENCH_BODY` (bytes, 1500).

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use whaticket_relay::config::Settings;

use support::{env_or, now_ms};
use whaticket_relay::event::{Change, Event, EventId, EventMeta, Kind};
use whaticket_relay::store::{Settlement, Store};

/// Allocated bytes under `dir` (what `du` shows: holes sled punches do not count).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// User plus system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn event(n: u64, body_len: usize) -> Event {
    let id: [u8; 32] = Sha256::digest(n.to_be_bytes()).into();
    let mut body = format!("{{\"acao\":\"bench\",\"seq\":{n},\"pad\":\"");
    while body.len() + 2 < body_len {
        body.push('x');
    }
    body.push_str("\"}");
    Event {
        meta: EventMeta {
            id: EventId(id[..16].try_into().unwrap_or_default()),
            kind: Kind::Message,
            connection: "bench".to_owned(),
            action: Some("start".to_owned()),
            format: None,
            company_id: Some(1),
            ticket_id: Some((n % 997) as i64),
            from_me: Some(false),
            received_at_ms: now_ms(),
            change: Some(Change::Created),
            body: Default::default(),
        },
        body: Bytes::from(body),
        earlier_id: None,
        wa_id: None,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo test --benches` runs this binary without `--bench`: nothing to test here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("store benchmark skipped: run it with `cargo bench --bench store`");
        return Ok(());
    }
    let total = env_or("STORE_BENCH_EVENTS", 300_000)?;
    let writers = env_or("STORE_BENCH_WRITERS", 32)?;
    let window = Duration::from_secs(env_or("STORE_BENCH_WINDOW_SECS", 20)?);
    let body_len = usize::try_from(env_or("STORE_BENCH_BODY", 1500)?)?;

    let dir = tempfile::tempdir()?;
    // The relay's own defaults, with the bench's window: what a deployment runs.
    let mut storage = Settings::load(None)?.storage;
    storage.path = dir.path().join("data");
    storage.dedup_window = window;
    storage.keep_delivered = window;
    storage.sweep_interval = Duration::from_secs(1);
    let store = Store::open(&storage)?;
    let shutdown = CancellationToken::new();
    let sweeper = store.spawn_sweeper(storage.sweep_interval, shutdown.clone());

    // Stand-in for the publisher: what it is handed is confirmed in batches.
    let delivered = Arc::new(AtomicU64::new(0));
    let deliverer = {
        let delivered = Arc::clone(&delivered);
        support::spawn_publisher(&store, &shutdown, move |batch| {
            delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
            Settlement {
                delivered: batch.iter().map(|p| p.seq).collect(),
                dead: Vec::new(),
                ..Settlement::default()
            }
        })
    };

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks = support::spawn_writers(&store, writers, total, &next, move |n| event(n, body_len));

    println!("store bench: {total} events of {body_len} B, {writers} writers, window {window:?}");
    let (mut peak, mut at_half) = (0u64, None);
    let mut last_print = Instant::now();
    let (mut prev_done, mut prev_at) = (0u64, Instant::now());
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let disk = allocated(dir.path());
        peak = peak.max(disk);
        let done = next.load(Ordering::Relaxed).min(total);
        if at_half.is_none() && done >= total / 2 {
            at_half = Some(disk);
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            let rate = (done - prev_done) as f64 / prev_at.elapsed().as_secs_f64();
            println!(
                "  {done:>9} appended  {:>9} delivered  {rate:>7.0}/s  disk {:>7.1} MiB  dedup keys {:>8}  outbox {:>7}",
                delivered.load(Ordering::Relaxed),
                disk as f64 / 1048576.0,
                store.dedup_keys(),
                store.outbox_usage().0,
            );
            (prev_done, prev_at, last_print) = (done, Instant::now(), Instant::now());
        }
    }
    for task in tasks {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    while delivered.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.flush().await?;
    let end = allocated(dir.path());
    let segments = allocated(&storage.path.join("segments"));
    let cpu = cpu_seconds();
    let kept = store.stats().delivered_kept;
    println!(
        "store bench done: {total} durable appends in {secs:.1} s = {:.0}/s; disk at half {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        total as f64 / secs,
        at_half.unwrap_or(0) as f64 / 1048576.0,
        peak.max(end) as f64 / 1048576.0,
        end as f64 / 1048576.0,
    );
    println!(
        "store bench cpu: {cpu:.2} s = {:.1} us per append (whole process, load included); \
         {kept} delivered events kept, {:.0} B on disk per kept event of {body_len} B \
         ({:.0} B in segments, {:.0} B in sled)",
        cpu * 1e6 / total as f64,
        end as f64 / kept.max(1) as f64,
        segments as f64 / kept.max(1) as f64,
        end.saturating_sub(segments) as f64 / kept.max(1) as f64,
    );
    shutdown.cancel();
    sweeper.await?;
    deliverer.await??;
    // What a restart costs with this much kept: the segments are scanned and indexed again.
    drop(store);
    let reopening = Instant::now();
    let store = Store::open(&storage)?;
    println!(
        "store bench reopen: {:.2} s for {} kept events ({:.1} MiB of segments)",
        reopening.elapsed().as_secs_f64(),
        store.stats().delivered_kept,
        segments as f64 / 1048576.0,
    );
    Ok(())
}
