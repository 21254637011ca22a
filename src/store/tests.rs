//! Store behaviour against a real sled database in a temporary directory.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::writer::{Command, Writer};
use super::*;
use crate::event::{EventId, EventMeta, Kind};

/// Storage settings for tests: a small cache, generous limits. Also used by the publisher's tests.
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
    }
}

fn open(dir: &tempfile::TempDir, window: Duration) -> Store {
    Store::open(&settings(dir.path(), window)).expect("open store")
}

fn event(id: u8, received_at_ms: u64) -> Event {
    let mut raw = [0u8; 16];
    raw[0] = id;
    raw[15] = 0xAB;
    Event {
        meta: EventMeta {
            id: EventId(raw),
            kind: Kind::Other,
            connection: "default".to_owned(),
            action: Some("update".to_owned()),
            company_id: Some(7),
            ticket_id: None,
            from_me: Some(false),
            received_at_ms,
        },
        // Not UTF-8 on purpose: the body must come back byte for byte.
        body: Bytes::from(vec![b'{', 0xFF, 0x00, id, b'}']),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn append_dedups_and_outbox_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let a = event(1, now_ms());
    let b = event(2, now_ms());

    assert_eq!(store.append(a.clone()).await.unwrap(), Appended::Accepted);
    let mut a_again = a.clone();
    a_again.body = Bytes::from_static(b"different body, same id");
    assert_eq!(store.append(a_again).await.unwrap(), Appended::Duplicate);
    assert_eq!(store.append(b.clone()).await.unwrap(), Appended::Accepted);

    let pending = store.pending_after(None, 10).unwrap();
    assert_eq!(pending.len(), 2, "the duplicate must not be stored");
    assert!(pending[0].seq < pending[1].seq);
    assert_eq!(pending[0].event, a);
    assert_eq!(pending[1].event, b);

    let after_first = store.pending_after(Some(pending[0].seq), 10).unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].event, b);
    assert_eq!(
        store.pending_after(None, 1).unwrap().len(),
        1,
        "limit is honoured"
    );
    assert!(store.pending_after(Some(u64::MAX), 10).unwrap().is_empty());

    store.remove_delivered(&[pending[0].seq]).unwrap();
    let left = store.pending_after(None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, pending[1].seq);

    store
        .dead_letter(pending[1].seq, "rejected by broker")
        .unwrap();
    assert!(store.pending_after(None, 10).unwrap().is_empty());
    let dead = store.dead_list(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].seq, pending[1].seq);
    assert_eq!(dead[0].event, b);
    assert_eq!(dead[0].reason, "rejected by broker");
    assert!(dead[0].dead_at_ms >= b.meta.received_at_ms);

    // Moving an entry that is gone is a no-op, not an error.
    store.dead_letter(pending[0].seq, "late").unwrap();
    assert_eq!(store.dead_list(10).unwrap().len(), 1);
}

#[tokio::test]
async fn seqs_increase_in_append_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    for id in 0..20 {
        assert_eq!(
            store.append(event(id, now_ms())).await.unwrap(),
            Appended::Accepted
        );
    }
    let pending = store.pending_after(None, 100).unwrap();
    let ids: Vec<u8> = pending.iter().map(|p| p.event.meta.id.0[0]).collect();
    assert_eq!(ids, (0..20).collect::<Vec<u8>>());
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unique_appends_are_all_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let tasks: Vec<_> = (0..32)
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move { store.append(event(id, now_ms())).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Appended::Accepted);
    }
    let pending = store.pending_after(None, 100).unwrap();
    assert_eq!(pending.len(), 32);
    let seqs: HashSet<u64> = pending.iter().map(|p| p.seq).collect();
    assert_eq!(seqs.len(), 32, "seqs are never reused");
    assert_eq!(store.stats().dedup_keys, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_of_one_id_accept_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let received = now_ms();
    for round in 0..3u8 {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.append(event(100 + round, received)).await })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            if task.await.unwrap().unwrap() == Appended::Accepted {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1, "round {round}");
    }
    assert_eq!(store.pending_after(None, 100).unwrap().len(), 3);
}

/// Drives one group straight through the writer so the repeat is certainly in the same group.
#[tokio::test]
async fn repeat_within_one_group_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let writer = Writer {
        db: store.inner.db.clone(),
        trees: store.inner.trees.clone(),
        appended: Arc::clone(&store.inner.appended),
        window_ms: 3_600_000,
        counters: Arc::clone(&store.inner.counters),
        limits: Limits {
            max_outbox: u64::MAX,
            max_outbox_bytes: u64::MAX,
        },
    };
    let now = now_ms();
    let mut replies = Vec::new();
    let mut group = Vec::new();
    for id in [5u8, 5, 6, 5, 6] {
        let (reply, answer) = oneshot::channel();
        group.push(Command::Append {
            event: event(id, now),
            reply,
        });
        replies.push(answer);
    }
    writer.process_group(group);
    let mut outcomes = Vec::new();
    for answer in replies {
        outcomes.push(answer.await.unwrap().unwrap());
    }
    use Appended::{Accepted, Duplicate};
    assert_eq!(
        outcomes,
        [Accepted, Duplicate, Accepted, Duplicate, Duplicate]
    );
    assert_eq!(store.pending_after(None, 10).unwrap().len(), 2);
    assert_eq!(store.stats().dedup_keys, 2);
}

#[tokio::test]
async fn restart_keeps_dedup_keys_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let a = event(9, now_ms());
    {
        let store = open(&dir, HOUR);
        assert_eq!(store.append(a.clone()).await.unwrap(), Appended::Accepted);
        // Dropping the last handle joins the writer and releases the directory lock.
    }
    let store = open(&dir, HOUR);
    assert_eq!(store.append(a.clone()).await.unwrap(), Appended::Duplicate);
    let pending = store.pending_after(None, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event, a);
    assert_eq!(
        store.stats().dedup_keys,
        1,
        "the counter is rebuilt on open"
    );
    assert_eq!(
        store.append(event(10, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    assert!(
        store.pending_after(None, 10).unwrap()[1].seq > pending[0].seq,
        "seqs keep increasing"
    );
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
    // The sweeper has not run: the expired entry is overwritten. A late received_at keeps the new
    // entry unexpired for the rest of the test.
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
async fn sweep_drops_many_keys_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let old = now_ms() - 2 * 3_600_000;
    let total = SWEEP_BATCH + 10;
    let tasks: Vec<_> = (0..total)
        .map(|n| {
            let store = store.clone();
            let mut e = event(0, old);
            e.meta.id.0[1..3].copy_from_slice(&(n as u16).to_be_bytes());
            tokio::spawn(async move { store.append(e).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Appended::Accepted);
    }
    assert_eq!(store.sweep_expired().unwrap(), total);
    assert_eq!(store.stats().dedup_keys, 0);
}

#[tokio::test]
async fn sweeper_task_sweeps_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    store
        .append(event(1, now_ms() - 2 * 3_600_000))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = store.spawn_sweeper(Duration::from_millis(10), shutdown.clone());
    let swept = tokio::time::timeout(Duration::from_secs(5), async {
        while store.stats().dedup_keys != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(swept.is_ok(), "sweeper did not remove the expired key");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("sweeper stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn stats_count_each_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    assert_eq!(store.stats().outbox, 0);
    for id in 0..4 {
        store.append(event(id, now_ms())).await.unwrap();
    }
    let seqs: Vec<u64> = store
        .pending_after(None, 10)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    store.remove_delivered(&seqs[..1]).unwrap();
    store.dead_letter(seqs[1], "nack").unwrap();
    let stats = store.stats();
    assert_eq!(stats.outbox, 2);
    assert_eq!(stats.dead, 1);
    assert_eq!(stats.dedup_keys, 4, "delivery does not release dedup keys");
    assert!(stats.disk_bytes > 0);
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
async fn flush_and_probe_succeed_on_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Duration::from_secs(90));
    store.check_writable().await.unwrap();
    store.flush().await.unwrap();
    assert!(
        store.inner.trees.meta.get(b"probe").unwrap().is_some(),
        "the probe really wrote"
    );
    assert_eq!(store.dedup_window(), Duration::from_secs(90));
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir, HOUR);
    let err = Store::open(&settings(dir.path(), HOUR)).expect_err("directory is locked");
    assert!(matches!(err, StoreError::Sled(_)));
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
    // The body sits raw at the end of the record.
    assert!(encoded.ends_with(&e.body));

    let mut dead = record::dead_prefix("why", 42).unwrap();
    dead.extend_from_slice(&encoded);
    let (info, back) = record::decode_dead(&dead).unwrap();
    assert_eq!((info.reason.as_str(), info.dead_at_ms), ("why", 42));
    assert_eq!(back, e);

    for damaged in [&encoded[..2], &encoded[..10], &b"\0\0\0\x02{x"[..]] {
        assert!(matches!(
            record::decode_event(damaged),
            Err(StoreError::Corrupt(_))
        ));
    }
    assert!(record::decode_seq(b"short").is_err());
    assert_eq!(record::decode_expiry(&record::expiry_value(5)), Some(5));
    assert_eq!(record::decode_expiry(b"bad"), None);
}

#[test]
fn one_error_can_answer_many_waiters() {
    let e = StoreError::Sled(sled::Error::Unsupported("x".to_owned()));
    assert!(matches!(writer::duplicate_error(&e), StoreError::Sled(_)));
    let corrupt = record::corrupt("bad");
    assert!(matches!(
        writer::duplicate_error(&corrupt),
        StoreError::Corrupt(_)
    ));
}

fn open_with(dir: &tempfile::TempDir, change: impl FnOnce(&mut StorageSettings)) -> Store {
    let mut s = settings(dir.path(), HOUR);
    change(&mut s);
    Store::open(&s).expect("open store")
}

#[tokio::test]
async fn a_full_outbox_refuses_new_events_but_still_sees_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, |s| s.max_outbox = 2);
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
    let seqs: Vec<u64> = store
        .pending_after(None, 10)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    store.remove_delivered(&seqs[..1]).unwrap();
    assert_eq!(store.outbox_usage().0, 1);
    // The refused event was not remembered: it is accepted once there is room.
    assert_eq!(
        store.append(event(3, now_ms())).await.unwrap(),
        Appended::Accepted
    );
}

#[tokio::test]
async fn the_byte_limit_counts_record_sizes() {
    let dir = tempfile::tempdir().unwrap();
    // Same receive time, so every record has the same size.
    let now = now_ms();
    let one = record::encode_event(&event(1, now)).unwrap().len() as u64;
    let store = open_with(&dir, |s| s.max_outbox_bytes = one * 2);
    store.append(event(1, now)).await.unwrap();
    store.append(event(2, now)).await.unwrap();
    assert!(matches!(
        store.append(event(3, now)).await,
        Err(StoreError::OutboxFull)
    ));
    assert_eq!(store.outbox_usage(), (2, one * 2));
}

#[tokio::test]
async fn counters_are_rebuilt_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, HOUR);
        for id in 0..3 {
            store.append(event(id, now_ms())).await.unwrap();
        }
        let seqs: Vec<u64> = store
            .pending_after(None, 10)
            .unwrap()
            .iter()
            .map(|p| p.seq)
            .collect();
        store.remove_delivered(&seqs[..1]).unwrap();
        store.flush().await.unwrap();
    }
    let store = open(&dir, HOUR);
    assert_eq!(store.outbox_usage().0, 2);
    assert!(store.delivered_bytes() > 0);
    assert_eq!(store.stats().delivered_kept, 1);
}

#[tokio::test]
async fn delivered_events_are_kept_and_replayed_under_a_new_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    store.append(event(1, now_ms())).await.unwrap();
    store.append(event(2, now_ms())).await.unwrap();
    let pending = store.pending_after(None, 10).unwrap();
    let seqs: Vec<u64> = pending.iter().map(|p| p.seq).collect();
    store.remove_delivered(&seqs).unwrap();
    assert_eq!(store.stats().outbox, 0);

    let all = ReplayFilter::default();
    let kept = store.delivered_matching(&all, 10).unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].event, pending[0].event);

    let nothing = ReplayFilter {
        connection: Some("elsewhere".to_owned()),
        ..ReplayFilter::default()
    };
    assert_eq!(store.replay_delivered(&nothing).await.unwrap(), 0);
    let future = ReplayFilter {
        since_ms: now_ms() + 60_000,
        ..ReplayFilter::default()
    };
    assert_eq!(store.replay_delivered(&future).await.unwrap(), 0);

    assert_eq!(store.replay_delivered(&all).await.unwrap(), 2);
    let again = store.pending_after(Some(seqs[1]), 10).unwrap();
    assert_eq!(again.len(), 2, "new seqs, past what the publisher has read");
    assert_eq!(again[0].event, pending[0].event, "byte for byte, same id");
    assert_eq!(store.stats().delivered_kept, 0, "moved, not copied");
    assert_eq!(store.delivered_bytes(), 0);
    assert_eq!(store.replay_delivered(&all).await.unwrap(), 0);
}

#[tokio::test]
async fn keep_delivered_zero_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir, |s| s.keep_delivered = Duration::ZERO);
    store.append(event(1, now_ms())).await.unwrap();
    let seqs: Vec<u64> = store
        .pending_after(None, 10)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    store.remove_delivered(&seqs).unwrap();
    assert_eq!(store.stats().delivered_kept, 0);
    assert_eq!(store.stats().outbox, 0);
}

#[tokio::test]
async fn the_sweeper_drops_old_and_over_cap_delivered_events() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let one = record::encode_event(&event(1, now)).unwrap().len() as u64;
    let store = open_with(&dir, |s| s.keep_delivered_max_bytes = one * 2);
    for id in 0..3 {
        store.append(event(id, now)).await.unwrap();
    }
    let pending = store.pending_after(None, 10).unwrap();
    for p in &pending {
        store.remove_delivered(&[p.seq]).unwrap();
    }
    assert_eq!(
        store.sweep_delivered().unwrap(),
        1,
        "over the cap: the oldest goes"
    );
    let kept = store
        .delivered_matching(&ReplayFilter::default(), 10)
        .unwrap();
    assert_eq!(
        kept.iter().map(|d| d.event.meta.id).collect::<Vec<_>>(),
        vec![pending[1].event.meta.id, pending[2].event.meta.id]
    );
    assert_eq!(store.sweep_delivered().unwrap(), 0);
    drop(store);

    // Older than keep_delivered (whole slices of a quarter of it): everything goes.
    let dir = tempfile::tempdir().unwrap();
    let keep = Duration::from_millis(40);
    let store = open_with(&dir, |s| s.keep_delivered = keep);
    for id in 0..2 {
        store.append(event(id, now_ms())).await.unwrap();
    }
    let seqs: Vec<u64> = store
        .pending_after(None, 10)
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    store.remove_delivered(&seqs).unwrap();
    assert_eq!(store.sweep_delivered().unwrap(), 0, "not old enough yet");
    tokio::time::sleep(keep + keep / 4 + Duration::from_millis(20)).await;
    assert_eq!(store.sweep_delivered().unwrap(), 2);
    assert_eq!(store.delivered_bytes(), 0);
    assert!(
        !store
            .inner
            .db
            .tree_names()
            .iter()
            .any(|name| name.starts_with(b"delivered@")),
        "slice dropped"
    );
}

#[tokio::test]
async fn dead_letters_are_found_and_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    store.append(event(1, now_ms())).await.unwrap();
    store.append(event(2, now_ms())).await.unwrap();
    let pending = store.pending_after(None, 10).unwrap();
    store.dead_letter(pending[0].seq, "unroutable").unwrap();
    store.dead_letter(pending[1].seq, "unroutable").unwrap();
    assert_eq!(store.outbox_usage().0, 0);

    let got = store
        .dead_get(pending[0].seq)
        .unwrap()
        .expect("dead letter");
    assert_eq!(got.event, pending[0].event);
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
    let back = store.pending_after(Some(pending[1].seq), 10).unwrap();
    assert_eq!(
        back.iter().map(|p| &p.event).collect::<Vec<_>>(),
        vec![&pending[0].event, &pending[1].event]
    );
    assert_eq!(store.outbox_usage().0, 2);
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
async fn replay_walks_every_slice_in_delivery_order() {
    let dir = tempfile::tempdir().unwrap();
    // Slices of 100 ms; the delivered events are spread over at least three of them.
    let store = open_with(&dir, |s| s.keep_delivered = Duration::from_millis(400));
    let mut delivered = Vec::new();
    for round in 0..3u8 {
        for n in 0..3u8 {
            store.append(event(round * 10 + n, now_ms())).await.unwrap();
        }
        let pending = store
            .pending_after(delivered.last().map(|p: &Pending| p.seq), 10)
            .unwrap();
        store
            .remove_delivered(&pending.iter().map(|p| p.seq).collect::<Vec<_>>())
            .unwrap();
        delivered.extend(pending);
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    assert!(
        store
            .inner
            .db
            .tree_names()
            .iter()
            .filter(|name| name.starts_with(b"delivered@"))
            .count()
            >= 3
    );
    let kept = store
        .delivered_matching(&ReplayFilter::default(), 100)
        .unwrap();
    let ids =
        |events: &mut dyn Iterator<Item = &Event>| events.map(|e| e.meta.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&mut kept.iter().map(|d| &d.event)),
        ids(&mut delivered.iter().map(|p| &p.event))
    );
    assert_eq!(
        store
            .delivered_matching(&ReplayFilter::default(), 4)
            .unwrap()
            .len(),
        4,
        "limit is honoured"
    );

    let last_seq = delivered.last().map(|p| p.seq);
    assert_eq!(
        store
            .replay_delivered(&ReplayFilter::default())
            .await
            .unwrap(),
        9
    );
    let again = store.pending_after(last_seq, 100).unwrap();
    assert_eq!(
        ids(&mut again.iter().map(|p| &p.event)),
        ids(&mut delivered.iter().map(|p| &p.event))
    );
    assert_eq!(store.stats().delivered_kept, 0);
}
