//! Retention: whole segments go once settled, old enough or over the cap, and only once their keys and marks are flushed (I7, I8).

use super::*;

#[tokio::test]
async fn segments_roll_and_settled_ones_go_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 12, |s| s.keep_delivered = Duration::ZERO).await;
    let segments = || {
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
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
