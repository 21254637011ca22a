//! Upgrades: a data dir of the sled-only version opens with its keys and outbox (I12).

use super::*;

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
