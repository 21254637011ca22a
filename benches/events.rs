//! The event index (#32) at a million events: how long each kind of search takes, and what the
//! index costs per event in memory (its rows) and on disk (its summary files), and to rebuild
//! at open.
//!
//! `cargo bench --bench events`. No HTTP, no broker: many tasks append small unique events with
//! tickets, WhatsApp ids, two kinds and four connections through the store's group commit; a
//! stand-in publisher confirms them (one in 100 000 goes to the dead letters); then every search
//! the status page and `events` offer is timed (median and worst of `EVENTS_BENCH_RUNS`), before
//! and after reopening the store.
//!
//! Environment: `EVENTS_BENCH_EVENTS` (default 1 000 000), `EVENTS_BENCH_WRITERS` (256),
//! `EVENTS_BENCH_BODY` (bytes, 200), `EVENTS_BENCH_RUNS` (21).

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use whaticket_relay::config::Settings;

use support::{env_or, now_ms};
use whaticket_relay::event::{Change, Event, EventId, EventMeta, Format, Kind};
use whaticket_relay::store::{EventFilter, EventState, Settlement, Store};

const TICKETS: u64 = 100_000;

fn id_of(n: u64) -> EventId {
    let mut raw = [0u8; 16];
    // Spread over the whole id, as SHA-256 spreads real ids.
    raw[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    raw[8..].copy_from_slice(&n.to_be_bytes());
    EventId(raw)
}

fn wa_id_of(n: u64) -> String {
    format!("3EB0{n:016X}")
}

fn event(n: u64, base_ms: u64, body_len: usize) -> Event {
    let kind = if n.is_multiple_of(100) {
        Kind::Status
    } else {
        Kind::Message
    };
    Event {
        meta: EventMeta {
            id: id_of(n),
            kind,
            connection: format!("loja-{}", n % 4),
            action: Some("from_internal".to_owned()),
            format: Some(Format::WhaticketSaas),
            company_id: Some(1),
            ticket_id: Some((n % TICKETS) as i64),
            from_me: Some(false),
            received_at_ms: base_ms + n,
            change: Some(Change::Created),
            body: Default::default(),
        },
        body: Bytes::from(vec![b'x'; body_len]),
        earlier_id: None,
        wa_id: Some(wa_id_of(n)),
    }
}

/// Median and worst of `runs` searches, in ms; and what the last one found.
fn time(
    store: &Store,
    filter: &EventFilter,
    before: Option<u64>,
    runs: u64,
) -> Result<(f64, f64, usize)> {
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let (page, _) = store.events_search(filter, before, 50)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        found = page.len();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() - 1], found))
}

fn searches(store: &Store, total: u64, base_ms: u64, runs: u64, label: &str) -> Result<()> {
    let old = total / 10;
    let middle = base_ms + total / 2;
    let newest = store.events_search(&EventFilter::default(), None, 50)?.0;
    let cursor = newest.last().map(|e| e.seq);
    let cases: Vec<(&str, EventFilter, Option<u64>)> = vec![
        ("newest 50, no filter", EventFilter::default(), None),
        ("page 2 (cursor)", EventFilter::default(), cursor),
        (
            "ticket (10 events)",
            EventFilter {
                ticket: Some((old % TICKETS) as i64),
                ..Default::default()
            },
            None,
        ),
        (
            "ticket absent (full scan)",
            EventFilter {
                ticket: Some(-1),
                ..Default::default()
            },
            None,
        ),
        (
            "WhatsApp id (an old one)",
            EventFilter {
                wa_id: Some(wa_id_of(old)),
                ..Default::default()
            },
            None,
        ),
        (
            "event id (an old one)",
            EventFilter {
                id: Some(id_of(old)),
                ..Default::default()
            },
            None,
        ),
        (
            "kind status (1 in 100)",
            EventFilter {
                kind: Some(Kind::Status),
                ..Default::default()
            },
            None,
        ),
        (
            "connection + kind",
            EventFilter {
                connection: Some("loja-2".into()),
                kind: Some(Kind::Message),
                ..Default::default()
            },
            None,
        ),
        (
            "state dead (full scan)",
            EventFilter {
                state: Some(EventState::Dead),
                ..Default::default()
            },
            None,
        ),
        (
            "state pending (none: full scan)",
            EventFilter {
                state: Some(EventState::Pending),
                ..Default::default()
            },
            None,
        ),
        (
            "time range, 1 s in the middle",
            EventFilter {
                since_ms: Some(middle),
                until_ms: Some(middle + 1000),
                ..Default::default()
            },
            None,
        ),
    ];
    println!("events bench searches ({label}), ms over {runs} runs:");
    for (name, filter, before) in cases {
        let (median, worst, found) = time(store, &filter, before, runs)?;
        println!("  {name:<34} median {median:>7.2}  worst {worst:>7.2}  found {found}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("events benchmark skipped: run it with `cargo bench --bench events`");
        return Ok(());
    }
    let total = env_or("EVENTS_BENCH_EVENTS", 1_000_000)?;
    let writers = env_or("EVENTS_BENCH_WRITERS", 256)?;
    let body_len = usize::try_from(env_or("EVENTS_BENCH_BODY", 200)?)?;
    let runs = env_or("EVENTS_BENCH_RUNS", 21)?.max(1);

    let dir = tempfile::tempdir()?;
    let mut storage = Settings::load(None)?.storage;
    storage.path = dir.path().join("data");
    storage.dedup_window = Duration::from_secs(86_400);
    storage.keep_delivered = Duration::from_secs(86_400);
    storage.keep_delivered_max_bytes = u64::MAX / 4;
    storage.max_outbox = usize::MAX / 4;
    storage.max_outbox_bytes = u64::MAX / 4;
    let store = Store::open(&storage)?;
    let base_ms = now_ms() - total - 60_000;

    // Stand-in for the publisher: confirms what it is handed; one in 100 000 is refused.
    let shutdown = CancellationToken::new();
    let settled = Arc::new(AtomicU64::new(0));
    let publisher = {
        let settled = Arc::clone(&settled);
        support::spawn_publisher(&store, &shutdown, move |batch| {
            settled.fetch_add(batch.len() as u64, Ordering::Relaxed);
            let (dead, delivered): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|p| p.event.meta.received_at_ms % 100_000 == 7);
            Settlement {
                delivered: delivered.iter().map(|p| p.seq).collect(),
                dead: dead
                    .into_iter()
                    .map(|p| (p, "refused (bench)".to_owned()))
                    .collect(),
                ..Settlement::default()
            }
        })
    };

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks = support::spawn_writers(&store, writers, total, &next, move |n| {
        event(n, base_ms, body_len)
    });
    println!("events bench: {total} events of {body_len} B, {writers} writers");
    for task in tasks {
        task.await??;
    }
    while settled.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.flush().await?;
    // Marks applied, the index's rows in their states.
    store.flush().await?;
    println!(
        "events bench: appended and confirmed in {:.1} s; {} events indexed",
        started.elapsed().as_secs_f64(),
        store.events_indexed()
    );
    let indexed = store.events_indexed().max(1) as f64;
    let heap = store.events_index_heap_bytes() as f64;
    let summary_bytes = store.events_index_bytes()?;
    let summaries = summary_bytes as f64;
    println!(
        "events bench cost: memory {:.1} B per event ({:.1} MiB of rows), summary files {:.1} B \
         per event ({:.1} MiB); data dir {:.1} MiB, sled's size on disk {:.1} MiB (dedup keys, \
         marks and duplicate counts)",
        heap / indexed,
        heap / 1048576.0,
        summaries / indexed,
        summaries / 1048576.0,
        store.disk_bytes() as f64 / 1048576.0,
        (store.disk_bytes()).saturating_sub(store.stats().delivered_bytes + summary_bytes) as f64
            / 1048576.0,
    );
    searches(&store, total, base_ms, runs, "warm")?;

    shutdown.cancel();
    publisher.await??;
    drop(store);
    let reopening = Instant::now();
    let store = Store::open(&storage)?;
    println!(
        "events bench reopen: {:.2} s, {} events indexed again",
        reopening.elapsed().as_secs_f64(),
        store.events_indexed()
    );
    searches(&store, total, base_ms, runs, "after reopen")?;
    Ok(())
}
