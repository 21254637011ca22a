//! Dedup keys: runs and merges, the hand-off to sled at the flush, slices and their expiry (I6, I10, I11).

use super::*;

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
