//! Store behaviour against real segment files and a real sled database in a temporary directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::StorageSettings;

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

use bytes::Bytes;

use super::dedup::{Slices, SLICES_PER_WINDOW};
use super::layout::marks::State;
use super::layout::{self, block, frame, record};
use super::open::{FEED_BYTES, FLUSH_INTERVAL};
use super::*;
use super::{error, index, open, writer};
use crate::event::{EventId, EventMeta, Kind};

const HOUR: Duration = Duration::from_secs(3600);

fn open(dir: &tempfile::TempDir, window: Duration) -> Store {
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
        },
        // Not UTF-8 on purpose: the body must come back byte for byte.
        body: Bytes::from(vec![b'{', 0xFF, 0x00, id, b'}']),
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
        })
        .await
        .unwrap();
}

async fn kill(store: &Store, pending: Pending, reason: &str) {
    store
        .settle(Settlement {
            delivered: Vec::new(),
            dead: vec![(pending, reason.to_owned())],
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

#[tokio::test]
async fn append_dedups_and_hands_events_over_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let a = event(1, now_ms());
    let b = event(2, now_ms());
    assert_eq!(store.append(a.clone()).await.unwrap(), Appended::Accepted);
    let mut a_again = a.clone();
    a_again.body = Bytes::from_static(b"{\"other\":true}");
    assert_eq!(store.append(a_again).await.unwrap(), Appended::Duplicate);
    assert_eq!(store.append(b.clone()).await.unwrap(), Appended::Accepted);

    // A store with nothing pending at open hands everything over in memory.
    let handed = match store.take_new(Room::events(10)) {
        Next::Events(events) => events,
        other => panic!("expected the appended events, got {other:?}"),
    };
    assert_eq!(handed.len(), 2);
    assert_eq!(*handed[0].event, a);
    assert_eq!(*handed[1].event, b);
    assert!(matches!(store.take_new(Room::events(10)), Next::Idle));

    let on_disk = store.pending_after(None, Room::events(10)).unwrap();
    assert_eq!(
        on_disk, handed,
        "the segment holds what was handed over, byte for byte"
    );
    assert_eq!(
        seqs(
            &store
                .pending_after(Some(handed[0].seq), Room::events(10))
                .unwrap()
        ),
        [handed[1].seq]
    );
    assert_eq!(store.pending_after(None, Room::events(1)).unwrap().len(), 1);
    // The byte room stops a read too, but always lets one record through.
    let one_byte = Room {
        events: 10,
        bytes: 1,
    };
    assert_eq!(
        seqs(&store.pending_after(None, one_byte).unwrap()),
        [handed[0].seq]
    );
    assert!(store
        .pending_after(Some(u64::MAX), Room::events(10))
        .unwrap()
        .is_empty());
    assert!(
        store
            .pending_between(None, handed[0].seq, Room::events(10))
            .unwrap()
            .len()
            == 1
    );

    deliver(&store, &[handed[0].seq]).await;
    assert_eq!(
        seqs(&store.pending_after(None, Room::events(10)).unwrap()),
        [handed[1].seq]
    );
    kill(&store, handed[1].clone(), "unroutable").await;
    assert!(store
        .pending_after(None, Room::events(10))
        .unwrap()
        .is_empty());
    let dead = store.dead_list(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].seq, &dead[0].event, dead[0].reason.as_str()),
        (handed[1].seq, &b, "unroutable")
    );
    // Settling again changes nothing: the first outcome stands.
    kill(&store, handed[0].clone(), "late").await;
    assert_eq!(store.dead_list(10).unwrap().len(), 1);
    let stats = store.stats();
    assert_eq!(
        (
            stats.outbox,
            stats.outbox_bytes,
            stats.dead,
            stats.delivered_kept
        ),
        (0, 0, 1, 1)
    );
}

#[tokio::test]
async fn concurrent_appends_keep_seq_order_and_one_id_is_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let tasks: Vec<_> = (0..64u8)
        .map(|n| {
            let store = store.clone();
            // Ids 0..32 twice each: exactly one of each pair goes in.
            tokio::spawn(async move { store.append(event(n % 32, now_ms())).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == Appended::Accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 32);
    let pending = take_all(&store);
    assert_eq!(pending.len(), 32);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.stats().dedup_keys, 32);
}

#[tokio::test]
async fn restart_keeps_dedup_keys_outbox_and_marks() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (event(1, now_ms()), event(2, now_ms()));
    let first_seq;
    {
        let store = open(&dir, HOUR);
        store.append(a.clone()).await.unwrap();
        store.append(b.clone()).await.unwrap();
        let pending = take_all(&store);
        first_seq = pending[0].seq;
        deliver(&store, &[first_seq]).await;
        store.flush().await.unwrap();
    }
    let store = open(&dir, HOUR);
    assert_eq!(store.append(a.clone()).await.unwrap(), Appended::Duplicate);
    let pending = take_all(&store);
    assert_eq!(pending.len(), 1, "the delivered one stays delivered");
    assert_eq!(*pending[0].event, b);
    assert_eq!(store.stats().delivered_kept, 1);
    assert_eq!(store.stats().dedup_keys, 2);
    assert_eq!(
        store.append(event(3, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    let newer = take_all(&store);
    assert!(
        newer[0].seq > pending[0].seq,
        "seqs keep increasing across a restart"
    );
}

/// Each flush writes its keys as a run; eight runs of a size are merged into one. Every key
/// is found before and after the merges and after a restart, with old single keys beside runs.
#[tokio::test]
async fn keys_packed_in_runs_and_merged_are_found_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let at = now_ms();
    let ids: Vec<u8> = (1..=30).collect();
    {
        let store = open(&dir, HOUR);
        for chunk in ids.chunks(3) {
            for &id in chunk {
                let appended = store.append(event(id, at)).await.unwrap();
                assert_eq!(appended, Appended::Accepted);
            }
            store.flush().await.unwrap();
        }
        // Merges happen on the merger thread, after the flushes.
        let runs = || -> usize {
            let slices = store.inner.dedup.read();
            slices.values().map(|s| s.runs().len()).sum()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while runs() >= 10 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            runs() < 10,
            "ten flushes of three keys left {} runs: none merged",
            runs()
        );
        assert_eq!(keys_in_sled(&store), ids.len());
        for &id in &ids {
            let again = store.append(event(id, at)).await.unwrap();
            assert_eq!(again, Appended::Duplicate, "id {id} before the restart");
        }
    }
    // A single key of an earlier version in the same slice.
    wait_for_sled_to_let_go(dir.path());
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let dedup =
            Slices::open(&db, "dedup@", HOUR.as_millis() as u64 / SLICES_PER_WINDOW).unwrap();
        let expiry = at + HOUR.as_millis() as u64;
        let end = dedup.ensure(expiry).unwrap();
        dedup.read()[&end]
            .tree
            .insert(event(200, at).meta.id.0, &record::expiry_value(expiry)[..])
            .unwrap();
        db.flush().unwrap();
    }
    wait_for_sled_to_let_go(dir.path());
    let store = open(&dir, HOUR);
    assert_eq!(store.stats().dedup_keys, ids.len() + 1);
    for id in ids.iter().copied().chain([200]) {
        let again = store.append(event(id, at)).await.unwrap();
        assert_eq!(again, Appended::Duplicate, "id {id} after the restart");
    }
    assert_eq!(
        store.append(event(31, at)).await.unwrap(),
        Appended::Accepted
    );
}

#[tokio::test]
async fn a_crash_before_sled_is_flushed_loses_no_key_and_no_pending_event() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let crashed = dir.path().join("crashed");
    let (early, late) = (event(1, now_ms()), event(2, now_ms()));
    let tuning = open::Tuning {
        flush_interval: HOUR,
        feed_bytes: FEED_BYTES,
    };
    let store = Store::open_tuned(&settings(&live, HOUR), tuning).unwrap();
    assert_eq!(
        store.append(early.clone()).await.unwrap(),
        Appended::Accepted
    );
    // A checkpoint past the first event, then one more accepted and confirmed, never flushed.
    store.flush().await.unwrap();
    assert_eq!(
        store.append(late.clone()).await.unwrap(),
        Appended::Accepted
    );
    let pending = take_all(&store);
    deliver(&store, &[pending[1].seq]).await;
    crash_copy(&live, &crashed);

    let reopened = Store::open(&settings(&crashed, HOUR)).unwrap();
    assert_eq!(reopened.append(early).await.unwrap(), Appended::Duplicate);
    assert_eq!(
        reopened.append(late.clone()).await.unwrap(),
        Appended::Duplicate,
        "a key that never reached sled is rebuilt from the segment"
    );
    let again = take_all(&reopened);
    assert_eq!(
        seqs(&again),
        seqs(&pending),
        "both pending: the lost confirm means a resend"
    );
    assert_eq!(*again[1].event, late);
    assert_eq!(reopened.stats().dedup_keys, 2);
    drop(store);
}

/// Keys in sled's dedup trees, single or in runs (not the running counts).
fn keys_in_sled(store: &Store) -> usize {
    let slices = store.inner.dedup.read();
    let entries = slices.values().flat_map(|s| s.tree.iter());
    entries
        .map(|entry| {
            let (key, value) = entry.unwrap();
            match block::decode_block_key(&key) {
                Some(_) => block::entries(&value).count(),
                None => 1,
            }
        })
        .sum()
}

#[tokio::test]
async fn dedup_keys_and_marks_reach_sled_with_the_next_flush_not_with_each_group() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = open::Tuning {
        flush_interval: HOUR,
        feed_bytes: FEED_BYTES,
    };
    let store = Store::open_tuned(&settings(dir.path(), HOUR), tuning).unwrap();
    for id in [1, 2] {
        let appended = store.append(event(id, now_ms())).await.unwrap();
        assert_eq!(appended, Appended::Accepted);
    }
    assert_eq!(keys_in_sled(&store), 0, "no sled write per group");
    assert_eq!(
        store.append(event(2, now_ms())).await.unwrap(),
        Appended::Duplicate,
        "a key waiting in memory is found"
    );
    assert_eq!(store.stats().dedup_keys, 2, "counted before sled has them");
    let pending = take_all(&store);
    deliver(&store, &[pending[0].seq]).await;
    let marks = |store: &Store| -> usize {
        let table = index::lock(&store.inner.table);
        table.segments.values().map(|s| s.marks.len()).sum()
    };
    assert_eq!(marks(&store), 0, "the confirm's mark waits too");

    store.flush().await.unwrap();
    assert_eq!(keys_in_sled(&store), 2);
    assert_eq!(marks(&store), 1);
    assert_eq!(store.stats().dedup_keys, 2, "not counted twice");
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Duplicate,
        "found in sled"
    );
    drop(store);
    let reopened = open(&dir, HOUR);
    assert_eq!(
        seqs(&take_all(&reopened)),
        [pending[1].seq],
        "the flushed mark holds"
    );
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_open_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let segment_path;
    let valid;
    {
        let store = open(&dir, HOUR);
        for id in 1..=3 {
            store.append(event(id, now_ms())).await.unwrap();
        }
        segment_path = first_segment(&store);
        valid = std::fs::metadata(&segment_path).unwrap().len();
    }
    // Half a frame: what a crash in the middle of a group's write leaves.
    let mut bytes = std::fs::read(&segment_path).unwrap();
    let whole = bytes.clone();
    bytes.extend_from_slice(&whole[..whole.len() / 3 / 2]);
    std::fs::write(&segment_path, &bytes).unwrap();

    let store = open(&dir, HOUR);
    assert_eq!(
        std::fs::metadata(&segment_path).unwrap().len(),
        valid,
        "cut back to the last whole record"
    );
    assert_eq!(take_all(&store).len(), 3);
    assert_eq!(
        store.append(event(4, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    let all = store.pending_after(None, Room::events(10)).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].event.meta.id, event(4, 0).meta.id);
}

#[tokio::test]
async fn damage_mid_active_segment_loses_one_record_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (segment_path, valid, seqs_before) = {
        let (store, pending) = with_events(&dir, 1..=4).await;
        assert_eq!(store.stats().damaged, Damaged::default());
        let path = first_segment(&store);
        (
            path.clone(),
            std::fs::metadata(&path).unwrap().len(),
            seqs(&pending),
        )
    };
    // One flipped bit inside the second record: whole records follow it, so it is not a
    // torn write and the records after it were acknowledged to their senders.
    flip_bit(&segment_path, |_| frame_len() as usize + frame::HEADER + 12);

    let store = open(&dir, HOUR);
    assert_eq!(
        std::fs::metadata(&segment_path).unwrap().len(),
        valid,
        "records after the damage are not cut"
    );
    let survivors = [seqs_before[0], seqs_before[2], seqs_before[3]];
    assert_eq!(seqs(&take_all(&store)), survivors);
    assert_eq!(store.stats().outbox, 3);
    // The stretch is the one record's frame, for the metrics and `stats`.
    assert_eq!(
        store.stats().damaged,
        Damaged {
            bytes: frame_len(),
            lost_records: 1
        }
    );
    assert_eq!(
        store.append(event(5, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    drop(store);

    // Opened again, the same stretch is read past and the new record follows the others.
    let store = open(&dir, HOUR);
    assert_eq!(store.stats().damaged.lost_records, 1);
    let all = store.pending_after(None, Room::events(10)).unwrap();
    assert_eq!(&seqs(&all)[..3], survivors);
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].event.meta.id, event(5, 0).meta.id);
    assert!(all[3].seq > seqs_before[3]);
}

#[tokio::test]
async fn segments_roll_and_settled_ones_go_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 12, |s| s.keep_delivered = Duration::ZERO).await;
    let segments = || {
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count()
    };
    let before = segments();
    assert!(
        before >= 4,
        "12 events of 1.5 KB in 4 KiB segments: {before} files"
    );
    let pending = take_all(&store);
    // One stays pending: its segment stays, the others go once their keys are flushed.
    let (last, delivered) = pending.split_last().unwrap();
    deliver(&store, &seqs(delivered)).await;
    assert_eq!(
        store.sweep_delivered().await.unwrap(),
        0,
        "keys not flushed yet: nothing goes"
    );
    store.flush().await.unwrap();
    store.sweep_delivered().await.unwrap();
    {
        let table = index::lock(&store.inner.table);
        let left: Vec<(u64, u64)> = table
            .segments
            .iter()
            .map(|(first, s)| (*first, s.pending))
            .collect();
        // The pending event's segment, and the active one if a roll came after it.
        assert!(left.len() <= 2, "{left:?}");
        assert_eq!(left[0].1, 1, "{left:?}");
        assert_eq!(segments(), left.len());
    }
    assert_eq!(
        seqs(&store.pending_after(None, Room::events(10)).unwrap()),
        [last.seq]
    );
    for p in delivered {
        assert_eq!(
            store.append((*p.event).clone()).await.unwrap(),
            Appended::Duplicate
        );
    }
    assert_eq!(store.stats().delivered_kept, 0);
    assert!(store.disk_bytes() > 0);
}

#[tokio::test]
async fn retention_keeps_young_segments_and_drops_the_oldest_over_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 12, |s| s.keep_delivered_max_bytes = 8 * 1024).await;
    let pending = take_all(&store);
    deliver(&store, &seqs(&pending)).await;
    store.flush().await.unwrap();
    let kept_before = store.stats().delivered_kept;
    assert_eq!(kept_before, 12);
    let dropped = store.sweep_delivered().await.unwrap();
    assert!(dropped > 0, "over the byte cap: the oldest go");
    let stats = store.stats();
    assert_eq!(stats.delivered_kept, 12 - dropped);
    // Whole segments go, so the cap may be undershot by up to one segment.
    assert!(stats.delivered_bytes <= 8 * 1024, "{stats:?}");
    // What is left is the newest.
    let kept = store
        .delivered_matching(&ReplayFilter::default(), 100)
        .unwrap();
    assert_eq!(
        kept.last().map(|d| d.event.meta.id),
        Some(pending[11].event.meta.id)
    );
    assert_eq!(
        store.sweep_delivered().await.unwrap(),
        0,
        "young and under the cap"
    );
}

#[tokio::test]
async fn a_full_outbox_refuses_new_events_but_still_sees_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), |s| s.max_outbox = 2);
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.append(event(2, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert!(matches!(
        store.append(event(3, now_ms())).await,
        Err(StoreError::OutboxFull)
    ));
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Duplicate
    );
    assert_eq!(store.outbox_usage().0, 2);
    let pending = take_all(&store);
    deliver(&store, &[pending[0].seq]).await;
    assert_eq!(store.outbox_usage().0, 1);
    assert_eq!(
        store.append(event(3, now_ms())).await.unwrap(),
        Appended::Accepted,
        "a refused event was not remembered"
    );
}

#[tokio::test]
async fn the_byte_limit_counts_record_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let one = frame_len();
    let store = open_with(dir.path(), |s| s.max_outbox_bytes = one * 2 + one / 2);
    store.append(event(1, now_ms())).await.unwrap();
    store.append(event(2, now_ms())).await.unwrap();
    assert!(matches!(
        store.append(event(3, now_ms())).await,
        Err(StoreError::OutboxFull)
    ));
    assert_eq!(store.outbox_usage(), (2, one * 2));
}

#[tokio::test]
async fn delivered_events_are_replayed_once_under_new_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pending) = with_events(&dir, 1..=2).await;
    deliver(&store, &seqs(&pending)).await;
    assert_eq!(store.stats().outbox, 0);

    let all = ReplayFilter::default();
    let kept = store.delivered_matching(&all, 10).unwrap();
    assert_eq!(
        kept.iter().map(|d| d.event.clone()).collect::<Vec<_>>(),
        vec![(*pending[0].event).clone(), (*pending[1].event).clone()]
    );
    let nothing = ReplayFilter {
        kind: Some(Kind::Message),
        ..ReplayFilter::default()
    };
    assert_eq!(store.replay_delivered(&nothing).await.unwrap(), 0);
    let future = ReplayFilter {
        since_ms: now_ms() + 60_000,
        ..ReplayFilter::default()
    };
    assert_eq!(store.replay_delivered(&future).await.unwrap(), 0);
    let other_connection = ReplayFilter {
        connection: Some("nope".to_owned()),
        ..ReplayFilter::default()
    };
    assert_eq!(store.replay_delivered(&other_connection).await.unwrap(), 0);

    assert_eq!(store.replay_delivered(&all).await.unwrap(), 2);
    let again = take_all(&store);
    assert_eq!(again.len(), 2);
    assert!(again[0].seq > pending[1].seq);
    assert_eq!(again[0].event, pending[0].event);
    assert_eq!(
        store.stats().delivered_kept,
        0,
        "replayed ones do not count as kept"
    );
    assert_eq!(
        store.replay_delivered(&all).await.unwrap(),
        0,
        "nothing to replay twice"
    );
    deliver(&store, &seqs(&again)).await;
    assert_eq!(
        store.stats().delivered_kept,
        2,
        "re-delivered, kept again once"
    );
}

/// Whether every segment but the active one has its index packed, and the active one not.
fn packed_but_the_active(store: &Store) -> bool {
    let table = index::lock(&store.inner.table);
    let last = table.segments.keys().next_back().copied();
    table
        .segments
        .iter()
        .all(|(first, s)| s.is_packed() != (Some(*first) == last))
}

#[tokio::test]
async fn settled_segments_are_packed_and_still_replayed_counted_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 12, |_| {}).await;
    let pending = take_all(&store);
    assert!(index::lock(&store.inner.table).segments.len() >= 4);
    assert!(!packed_but_the_active(&store), "nothing settled yet");
    deliver(&store, &seqs(&pending)).await;
    assert!(packed_but_the_active(&store), "settled and closed: packed");
    // A state is read where it lies: asking does not unpack.
    let states: Vec<Option<State>> = {
        let table = index::lock(&store.inner.table);
        pending.iter().map(|p| table.state_of(p.seq)).collect()
    };
    assert!(
        states.iter().all(|s| *s == Some(State::Delivered)),
        "{states:?}"
    );
    assert!(
        packed_but_the_active(&store),
        "still packed after the lookups"
    );

    let all = ReplayFilter::default();
    let events = |list: &[Delivered]| list.iter().map(|d| d.event.clone()).collect::<Vec<_>>();
    let originals: Vec<Event> = pending.iter().map(|p| (*p.event).clone()).collect();
    assert_eq!(
        events(&store.delivered_matching(&all, 100).unwrap()),
        originals
    );
    assert_eq!(store.stats().delivered_kept, 12);

    // A replay unpacks what it marks, and the segments are packed again after it.
    let last_original = pending.last().unwrap().seq;
    assert_eq!(store.replay_delivered(&all).await.unwrap(), 12);
    assert!(index::lock(&store.inner.table)
        .segments
        .values()
        .filter(|s| s.last_seq().is_some_and(|last| last <= last_original))
        .all(|s| s.is_packed()));
    assert_eq!(store.stats().delivered_kept, 0);
    assert_eq!(
        store.replay_delivered(&all).await.unwrap(),
        0,
        "marked replayed"
    );
    let again = take_all(&store);
    assert_eq!(again.len(), 12);
    deliver(&store, &seqs(&again)).await;
    store.flush().await.unwrap();
    drop(store);

    let store = open_with(dir.path(), |s| s.segment_bytes = 4096);
    assert!(packed_but_the_active(&store), "packed at open");
    let replayed: Vec<Event> = again.iter().map(|p| (*p.event).clone()).collect();
    assert_eq!(
        events(&store.delivered_matching(&all, 100).unwrap()),
        replayed
    );
    assert_eq!(store.stats().delivered_kept, 12);
    assert_eq!(store.stats().outbox, 0);
}

#[tokio::test]
async fn keep_delivered_zero_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), |s| s.keep_delivered = Duration::ZERO);
    store.append(event(1, now_ms())).await.unwrap();
    let pending = take_all(&store);
    deliver(&store, &seqs(&pending)).await;
    let stats = store.stats();
    assert_eq!((stats.delivered_kept, stats.outbox), (0, 0));
    assert_eq!(
        store
            .replay_delivered(&ReplayFilter::default())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn dead_letters_are_found_and_requeued_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pending) = with_events(&dir, 1..=2).await;
    kill(&store, pending[0].clone(), "unroutable").await;
    kill(&store, pending[1].clone(), "unroutable").await;
    assert_eq!(store.outbox_usage().0, 0);
    assert_eq!(
        store.dead_get(pending[0].seq).unwrap().unwrap().event,
        *pending[0].event
    );
    assert_eq!(
        store.dead_find(&pending[1].event.meta.id).unwrap()[0].seq,
        pending[1].seq
    );
    assert!(store.dead_get(u64::MAX).unwrap().is_none());

    assert_eq!(
        store.requeue_dead(Some(&[pending[0].seq])).await.unwrap(),
        1
    );
    assert_eq!(
        store.requeue_dead(Some(&[pending[0].seq])).await.unwrap(),
        0,
        "already moved"
    );
    assert_eq!(store.dead_count(), 1);
    assert_eq!(store.requeue_dead(None).await.unwrap(), 1);
    assert_eq!(store.dead_count(), 0);
    let back = take_all(&store);
    assert_eq!(
        back.iter().map(|p| p.event.meta.id).collect::<Vec<_>>(),
        [pending[0].event.meta.id, pending[1].event.meta.id]
    );
    assert!(back[0].seq > pending[1].seq);
    assert_eq!(store.outbox_usage().0, 2);
}

#[tokio::test]
async fn expired_key_is_accepted_again_and_the_sweep_keeps_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_millis(200);
    let store = open(&dir, window);
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Duplicate
    );
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    // A late received_at keeps the new entry unexpired for the rest of the test.
    let later = now_ms() + 60_000;
    assert_eq!(
        store.append(event(1, later)).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.stats().dedup_keys,
        2,
        "the expired key and the new one, in two slices"
    );
    assert_eq!(store.sweep_expired().unwrap(), 1, "the expired slice goes");
    assert_eq!(store.stats().dedup_keys, 1);
    assert_eq!(
        store.append(event(1, later)).await.unwrap(),
        Appended::Duplicate
    );
}

#[tokio::test]
async fn sweeper_task_sweeps_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    store
        .append(event(1, now_ms() - 2 * 3_600_000))
        .await
        .unwrap();
    assert_eq!(store.stats().dedup_keys, 1);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = store.spawn_sweeper(Duration::from_millis(10), shutdown.clone());
    tokio::time::timeout(Duration::from_secs(5), async {
        while store.stats().dedup_keys != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sweeper expired the key");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .unwrap();
}

#[tokio::test]
async fn flush_and_probe_succeed_on_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Duration::from_secs(90));
    store.check_writable().await.unwrap();
    store.flush().await.unwrap();
    assert!(
        store.inner.meta.get(layout::PROBE_KEY).unwrap().is_some(),
        "the probe really wrote"
    );
    assert_eq!(store.dedup_window(), Duration::from_secs(90));
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir, HOUR);
    let err = Store::open(&settings(dir.path(), HOUR)).expect_err("directory is locked");
    assert!(err.is_lock_held());
    let text = err.to_string();
    assert!(text.contains("another process"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
}

#[test]
fn an_uncreatable_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let path = file.join("store");
    let err = Store::open(&settings(&path, HOUR)).expect_err("parent is a file");
    let text = err.to_string();
    assert!(text.contains("cannot create storage directory"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn records_round_trip_and_damage_is_reported() {
    let e = event(3, 1_700_000_000_000);
    let encoded = record::encode_event(&e).unwrap();
    assert_eq!(record::decode_event(&encoded).unwrap(), e);
    assert!(
        encoded.ends_with(&e.body),
        "the body sits raw at the end of the record"
    );
    let mut dead = record::dead_prefix("why", 42).unwrap();
    dead.extend_from_slice(&encoded);
    let (info, back) = record::decode_dead(&dead).unwrap();
    assert_eq!((info.reason.as_str(), info.dead_at_ms), ("why", 42));
    assert_eq!(back, e);
    let old = record::encode_event_json(&e).unwrap();
    assert_eq!(
        record::decode_event(&old).unwrap(),
        e,
        "the JSON layout still reads"
    );
    for damaged in [
        &encoded[..2],
        &encoded[..10],
        &b"\0\0\0\x02{x"[..],
        &old[..9],
    ] {
        assert!(matches!(
            record::decode_event(damaged),
            Err(StoreError::Corrupt(_))
        ));
    }
}

#[test]
fn one_error_can_answer_many_waiters() {
    let e = StoreError::Sled(sled::Error::Unsupported("x".to_owned()));
    assert!(matches!(e.clone(), StoreError::Sled(_)));
    let io = StoreError::from(std::io::Error::other("disk"));
    assert!(matches!(io.clone(), StoreError::Io(_)));
    // The cause is kept, not turned into text.
    let bad = error::corrupt("cut short");
    let source = std::error::Error::source(&bad).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("cut short"));
    assert!(matches!(
        bad.clone(),
        StoreError::Corrupt(Corrupt::Layout("cut short"))
    ));
}

/// Writes a data dir the way the sled-only version did: pending records in the `outbox` tree,
/// their dedup keys in a slice, a kept delivered event in a `delivered@` slice.
fn old_data_dir(path: &Path, events: &[(u64, Event)]) {
    {
        let db = sled::Config::new().path(path).open().unwrap();
        let outbox = db.open_tree("outbox").unwrap();
        let dedup =
            Slices::open(&db, "dedup@", HOUR.as_millis() as u64 / SLICES_PER_WINDOW).unwrap();
        for (seq, e) in events {
            outbox
                .insert(record::seq_key(*seq), record::encode_event_json(e).unwrap())
                .unwrap();
            let expiry = e.meta.received_at_ms + HOUR.as_millis() as u64;
            let end = dedup.ensure(expiry).unwrap();
            dedup.read()[&end]
                .tree
                .insert(e.meta.id.0, &record::expiry_value(expiry)[..])
                .unwrap();
        }
        let delivered = db.open_tree(format!("delivered@{:020}", now_ms())).unwrap();
        delivered
            .insert(
                record::delivered_key(now_ms(), 3),
                record::encode_event_json(&event(9, now_ms())).unwrap(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    wait_for_sled_to_let_go(path);
}

/// sled releases its directory lock (an exclusive `flock` on `<dir>/db`) when its own I/O
/// threads let go of a dropped database, a moment after the drop: opening it again at once
/// fails with `WouldBlock` now and then.
fn wait_for_sled_to_let_go(path: &Path) {
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

#[tokio::test]
async fn a_data_dir_of_the_sled_only_version_is_migrated_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let old = [(40, event(1, now_ms())), (41, event(2, now_ms()))];
    old_data_dir(dir.path(), &old);
    {
        let store = open(&dir, HOUR);
        let pending = take_all(&store);
        assert_eq!(seqs(&pending), [40, 41], "old seqs are kept");
        assert_eq!(*pending[0].event, old[0].1);
        assert_eq!(*pending[1].event, old[1].1);
        assert_eq!(
            store.append(old[0].1.clone()).await.unwrap(),
            Appended::Duplicate,
            "old dedup keys still count"
        );
        assert_eq!(
            store.append(event(3, now_ms())).await.unwrap(),
            Appended::Accepted
        );
        assert!(take_all(&store)[0].seq > 41);
        let names = store.inner.db.tree_names();
        assert!(
            !names.iter().any(|n| &n[..] == b"outbox"),
            "the old outbox is gone"
        );
        assert!(
            !names.iter().any(|n| n.starts_with(b"delivered@")),
            "old kept events are dropped"
        );
        assert_eq!(store.stats().delivered_kept, 0);
    }
    // A second start migrates nothing again.
    let store = open(&dir, HOUR);
    assert_eq!(store.stats().outbox, 3);
}

#[tokio::test]
async fn a_segment_outlives_its_dead_letters_until_they_are_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 6, |s| s.keep_delivered = Duration::ZERO).await;
    let pending = take_all(&store);
    // The keys are on disk; the settlements that follow are not yet.
    store.flush().await.unwrap();
    for p in &pending {
        kill(&store, p.clone(), "unroutable").await;
    }
    let before = index::lock(&store.inner.table).segments.len();
    assert!(before >= 2);
    assert_eq!(store.sweep_delivered().await.unwrap(), 0);
    assert_eq!(
        index::lock(&store.inner.table).segments.len(),
        before,
        "no segment goes while its dead letters could still be lost"
    );
    store.flush().await.unwrap();
    store.sweep_delivered().await.unwrap();
    assert_eq!(
        index::lock(&store.inner.table).segments.len(),
        1,
        "only the active one"
    );
    let dead = store.dead_list(100).unwrap();
    assert_eq!(dead.len(), 6, "dead letters outlive their segments");
    assert_eq!(dead[0].event, *pending[0].event);
}

#[tokio::test]
async fn marks_of_overlapping_runs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pending;
    {
        let store;
        (store, pending) = with_events(&dir, 1..=4).await;
        // One run of four delivered, then the second one replayed on its own.
        deliver(&store, &seqs(&pending)).await;
        let kept = store
            .delivered_matching(&ReplayFilter::default(), 10)
            .unwrap();
        assert_eq!(kept.len(), 4);
        store
            .request(|reply| Command::Requeue {
                items: vec![writer::Requeue {
                    event: (*pending[1].event).clone(),
                    source: writer::Source::Delivered(pending[1].seq),
                }],
                reply,
            })
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let store = open(&dir, HOUR);
    let again = take_all(&store);
    assert_eq!(again.len(), 1, "only the replayed copy is pending");
    assert_eq!(again[0].event, pending[1].event);
    assert_eq!(
        store.stats().delivered_kept,
        3,
        "the replayed original no longer counts"
    );
    assert_eq!(
        store
            .replay_delivered(&ReplayFilter::default())
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn past_the_hand_off_cap_the_publisher_is_sent_to_the_disk_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let frame = frame_len();
    let tuning = open::Tuning {
        flush_interval: FLUSH_INTERVAL,
        feed_bytes: frame * 2,
    };
    let store = Store::open_tuned(&settings(dir.path(), HOUR), tuning).unwrap();
    for id in 1..=5 {
        store.append(event(id, now_ms())).await.unwrap();
    }
    let from_memory = match store.take_new(Room::events(100)) {
        Next::Events(events) => events,
        other => panic!("expected events, got {other:?}"),
    };
    assert_eq!(from_memory.len(), 2, "two fit in the hand-off");
    let Next::FromDisk { until } = store.take_new(Room::events(100)) else {
        panic!("the rest is on disk only");
    };
    let from_disk = store
        .read_pending(from_memory.last().map(|p| p.seq), until, Room::events(100))
        .await
        .unwrap();
    assert_eq!(from_disk.len(), 3);
    assert_eq!(from_disk[2].event.meta.id, event(5, 0).meta.id);
    // Caught up: new events come through memory again.
    store.append(event(6, now_ms())).await.unwrap();
    match store.take_new(Room::events(100)) {
        Next::Events(events) => assert_eq!(events[0].seq, until + 1),
        other => panic!("expected the new event in memory, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_old_outbox_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    old_data_dir(dir.path(), &[(7, event(1, now_ms()))]);
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        db.open_tree("outbox")
            .unwrap()
            .insert(record::seq_key(8), &b"\0\0\0\x05{bad}"[..])
            .unwrap();
        db.flush().unwrap();
    }
    wait_for_sled_to_let_go(dir.path());
    let err = Store::open(&settings(dir.path(), HOUR)).expect_err("refused");
    assert!(matches!(err, StoreError::Migration(_)), "{err}");
    assert!(err.to_string().contains("record 8"), "{err}");
    // The failed open dropped its database a moment ago.
    wait_for_sled_to_let_go(dir.path());
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    assert_eq!(
        db.open_tree("outbox").unwrap().len(),
        2,
        "the old outbox is left as it was"
    );
}

#[tokio::test]
async fn appended_resolves_only_after_an_accept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let idle = tokio::time::timeout(Duration::from_millis(50), store.appended()).await;
    assert!(idle.is_err(), "no append yet");

    store.append(event(1, now_ms())).await.unwrap();
    // The permit is kept although nobody was waiting during the append.
    tokio::time::timeout(Duration::from_secs(1), store.appended())
        .await
        .expect("notified after an accept");

    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Duplicate
    );
    let after_duplicate = tokio::time::timeout(Duration::from_millis(50), store.appended()).await;
    assert!(
        after_duplicate.is_err(),
        "a duplicate stores nothing to publish"
    );
}

#[tokio::test]
async fn keys_in_older_slices_still_count_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    // Slices of 100 ms: the first key lands in an older slice than the later appends.
    let window = Duration::from_millis(400);
    let store = open(&dir, window);
    let first = now_ms();
    assert_eq!(
        store.append(event(1, first)).await.unwrap(),
        Appended::Accepted
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        store.append(event(2, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Duplicate,
        "held in the older slice"
    );
    assert!(
        store
            .inner
            .db
            .tree_names()
            .iter()
            .filter(|name| name.starts_with(b"dedup@"))
            .count()
            >= 2
    );
    assert_eq!(store.sweep_expired().unwrap(), 0, "nothing has expired yet");

    // Once the first key's expiry has passed it is accepted again, before or after the sweep.
    tokio::time::sleep(Duration::from_millis(
        (first + 400).saturating_sub(now_ms()) + 10,
    ))
    .await;
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.append(event(1, now_ms())).await.unwrap(),
        Appended::Duplicate
    );
}

#[tokio::test]
async fn sweep_removes_expired_and_keeps_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let two_hours_ago = now_ms() - 2 * 3_600_000;
    for id in 0..3 {
        store.append(event(id, two_hours_ago)).await.unwrap();
    }
    assert_eq!(
        store.append(event(50, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(store.stats().dedup_keys, 4);

    assert_eq!(store.sweep_expired().unwrap(), 3);
    assert_eq!(store.stats().dedup_keys, 1);
    let trees = store.inner.db.tree_names();
    assert_eq!(
        trees
            .iter()
            .filter(|name| name.starts_with(b"dedup@"))
            .count(),
        1,
        "the expired slice is dropped"
    );
    assert_eq!(
        store.append(event(50, now_ms())).await.unwrap(),
        Appended::Duplicate
    );
    assert_eq!(store.sweep_expired().unwrap(), 0, "nothing left to sweep");
    // Sweeping touches only dedup keys, never the outbox.
    assert_eq!(store.stats().outbox, 4);
}

#[tokio::test]
async fn damage_in_a_closed_segment_is_reported_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (first_path, first_len, total) = {
        let store = small_segments(dir.path(), 6, |_| {}).await;
        let table = index::lock(&store.inner.table);
        assert!(table.segments.len() >= 2);
        let first = table.segments.values().next().unwrap();
        (first.path.clone(), first.len, table.outbox)
    };
    flip_bit(&first_path, |len| len - 10);

    let store = open(&dir, HOUR);
    assert_eq!(
        std::fs::metadata(&first_path).unwrap().len(),
        first_len,
        "acknowledged data is never cut"
    );
    let readable = store.pending_after(None, Room::events(100)).unwrap();
    assert_eq!(
        readable.len() as u64,
        total - 1,
        "only the damaged record is lost"
    );
    assert_eq!(
        store.append(big_event(100, 1500)).await.unwrap(),
        Appended::Accepted
    );
}
