//! Store behaviour against real segment files and a real sled database in a temporary directory,
//! by concern; the helpers they share are here, and `model` holds the whole store to a model.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::dedup::{Slices, SLICES_PER_WINDOW};
use super::layout::marks::State;
use super::layout::{self, block, frame, record};
use super::open::{FEED_BYTES, FLUSH_INTERVAL};
use super::*;
use super::{index, open, writer};
use crate::config::StorageSettings;
use crate::event::{Change, EventId, EventMeta, Kind};

mod append;
mod crash;
mod dedup;
mod earlier;
mod events;
mod migration;
mod model;
mod replay;
mod retention;

/// Storage settings for tests: a small cache, generous limits.
pub(crate) fn settings(path: &Path, window: Duration) -> StorageSettings {
    StorageSettings {
        path: path.to_path_buf(),
        dedup_window: window,
        cache_capacity_bytes: 4 * 1024 * 1024,
        sweep_interval: Duration::from_secs(60),
        keep_delivered: Duration::from_secs(3600),
        keep_delivered_max_bytes: 64 * 1024 * 1024,
        max_outbox: 1_000_000,
        max_outbox_bytes: 1 << 32,
        segment_bytes: 64 * 1024 * 1024,
    }
}

pub(super) const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn open(dir: &tempfile::TempDir, window: Duration) -> Store {
    Store::open(&settings(dir.path(), window)).expect("open store")
}

fn open_with(dir: &Path, change: impl FnOnce(&mut StorageSettings)) -> Store {
    let mut s = settings(dir, HOUR);
    change(&mut s);
    Store::open(&s).expect("open store")
}

/// A test event (also used by the segment and feed unit tests).
pub(super) fn event(id: u8, received_at_ms: u64) -> Event {
    let mut raw = [0u8; 16];
    raw[0] = id;
    raw[15] = 0xAB;
    Event {
        meta: EventMeta {
            id: EventId(raw),
            kind: Kind::Other,
            connection: "default".to_owned(),
            action: Some("update".to_owned()),
            format: None,
            company_id: Some(7),
            ticket_id: None,
            from_me: Some(false),
            received_at_ms,
            change: Some(Change::Other),
            body: Default::default(),
        },
        // Not UTF-8 on purpose: the body must come back byte for byte.
        body: Bytes::from(vec![b'{', 0xFF, 0x00, id, b'}']),
        earlier_id: None,
        wa_id: None,
    }
}

fn big_event(id: u8, body_len: usize) -> Event {
    let mut e = event(id, now_ms());
    e.body = Bytes::from(vec![id; body_len]);
    e
}

/// A store with 4 KiB segments holding `events` events of 1.5 KB (a few per segment).
async fn small_segments(
    dir: &Path,
    events: u8,
    change: impl FnOnce(&mut StorageSettings),
) -> Store {
    let store = open_with(dir, |s| {
        s.segment_bytes = 4096;
        change(s);
    });
    for id in 0..events {
        store.append(big_event(id, 1500)).await.unwrap();
    }
    store
}

/// A store with events of these ids appended, and them as the publisher is handed them.
async fn with_events(
    dir: &tempfile::TempDir,
    ids: std::ops::RangeInclusive<u8>,
) -> (Store, Vec<Pending>) {
    let store = open(dir, HOUR);
    for id in ids {
        store.append(event(id, now_ms())).await.unwrap();
    }
    let pending = take_all(&store);
    (store, pending)
}

/// Bytes one test event takes in a segment (what the outbox byte counts add up).
fn frame_len() -> u64 {
    let mut buf = Vec::new();
    u64::from(frame::frame(&mut buf, 1, &event(1, now_ms())).unwrap())
}

/// The oldest segment file's path.
fn first_segment(store: &Store) -> PathBuf {
    let table = index::lock(&store.inner.table);
    table.segments.values().next().unwrap().path.clone()
}

/// Flips the low bit of the byte at `at(file length)` in the file at `path`.
fn flip_bit(path: &Path, at: impl FnOnce(usize) -> usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at(bytes.len());
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();
}

fn seqs(pending: &[Pending]) -> Vec<u64> {
    pending.iter().map(|p| p.seq).collect()
}

async fn deliver(store: &Store, seqs: &[u64]) {
    store
        .settle(Settlement {
            delivered: seqs.to_vec(),
            dead: Vec::new(),
            published: Vec::new(),
        })
        .await
        .unwrap();
}

async fn kill(store: &Store, pending: Pending, reason: &str) {
    store
        .settle(Settlement {
            delivered: Vec::new(),
            dead: vec![(pending, reason.to_owned())],
            published: Vec::new(),
        })
        .await
        .unwrap();
}

/// What the publisher sees: the feed, following it to the disk when it says so.
fn take_all(store: &Store) -> Vec<Pending> {
    let mut out: Vec<Pending> = Vec::new();
    loop {
        match store.take_new(Room::events(1000)) {
            Next::Events(events) => out.extend(events),
            Next::FromDisk { until } => {
                let after = out.last().map(|p| p.seq);
                out.extend(
                    store
                        .pending_between(after, until, Room::events(1000))
                        .unwrap(),
                );
            }
            Next::Idle => return out,
        }
    }
}

/// A copy of the data dir as a crash would leave it: what reached the disk, nothing more.
fn crash_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            crash_copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// sled releases its directory lock (an exclusive `flock` on `<dir>/db`) when its own I/O
/// threads let go of a dropped database, a moment after the drop: opening it again at once
/// fails with `WouldBlock` now and then.
pub(super) fn wait_for_sled_to_let_go(path: &Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path.join("db")).unwrap();
    for _ in 0..200 {
        // SAFETY: flock on a descriptor this function owns; the lock is released just below.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            // SAFETY: as above.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "sled kept its lock on {} for 2 s after the drop",
        path.display()
    );
}
