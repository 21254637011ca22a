//! Appends: dedup, seq order, the outbox limits, the in-memory hand-off and the readiness probe; opening errors.

use super::*;

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
fn one_error_can_answer_many_waiters() {
    let e = StoreError::Sled(sled::Error::Unsupported("x".to_owned()));
    assert!(matches!(e.clone(), StoreError::Sled(_)));
    let io = StoreError::from(std::io::Error::other("disk"));
    assert!(matches!(io.clone(), StoreError::Io(_)));
    // The cause is kept, not turned into text.
    let bad = crate::store::error::corrupt("cut short");
    let source = std::error::Error::source(&bad).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("cut short"));
    assert!(matches!(
        bad.clone(),
        StoreError::Corrupt(Corrupt::Layout("cut short"))
    ));
}

/// The publisher's read of a busy ticket's next events by seq: those still pending, in seq
/// order, across segments; a seq settled or unknown is left out.
#[tokio::test]
async fn records_are_read_back_by_seq_while_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 6, |_| {}).await;
    let all = store.pending_after(None, Room::events(100)).unwrap();
    assert!(index::lock(&store.inner.table).segments.len() >= 2);
    let (first, last) = (all[0].seq, all[all.len() - 1].seq);
    deliver(&store, &[all[1].seq]).await;
    let asked = [last, first, all[1].seq, all[2].seq, last + 100];
    let mut sorted = asked.to_vec();
    sorted.sort_unstable();
    let read = store.read_seqs(sorted).await.unwrap();
    assert!(read.unreadable.is_empty());
    assert_eq!(seqs(&read.events), [first, all[2].seq, last]);
    assert_eq!(*read.events[2].event, *all[all.len() - 1].event);
    assert_eq!(read.last, Some(last));
}
