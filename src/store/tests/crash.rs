//! Restarts and crashes: what survives a reopen and a crash before sled's flush, torn tails, damage (I1, I3, I4, I6, I9).

use super::*;

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

/// Opens the store in `dir` and hands the one unreadable record it reads to the dead letters,
/// as the publisher does; returns the store, the readable records' seqs and the dead letter.
async fn bury_the_unreadable(dir: &tempfile::TempDir) -> (Store, Vec<u64>, DeadLetter) {
    let store = open(dir, HOUR);
    let records = store
        .records_between(None, u64::MAX, Room::events(10))
        .unwrap();
    assert_eq!(records.unreadable.len(), 1, "{records:?}");
    let (pending, reason) = records.unreadable.into_iter().next().unwrap();
    let seq = pending.seq;
    assert!(
        matches!(
            store.pending_after(None, Room::events(10)),
            Err(StoreError::Unreadable(s)) if s == seq
        ),
        "a reader that cannot set it aside fails"
    );
    kill(&store, pending, &reason).await;
    let letter = store.dead_get(seq).unwrap().expect("a dead letter");
    (store, seqs(&records.events), letter)
}

#[tokio::test]
async fn a_pending_record_damaged_mid_segment_goes_to_the_dead_letters() {
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
    // One flipped bit in the second record's body (its last byte): whole records follow it,
    // so it is not a torn write and the records after it were acknowledged to their senders.
    flip_bit(&segment_path, |_| 2 * frame_len() as usize - 1);

    let (store, readable, letter) = bury_the_unreadable(&dir).await;
    assert_eq!(
        std::fs::metadata(&segment_path).unwrap().len(),
        valid,
        "records after the damage are not cut"
    );
    let survivors = [seqs_before[0], seqs_before[2], seqs_before[3]];
    assert_eq!(readable, survivors);
    // The stretch is the one record's frame, for the metrics and `stats`; its seq still reads,
    // so it is not lost but dead-lettered with its event (a bit of it flipped) and why.
    assert_eq!(
        store.stats().damaged,
        Damaged {
            bytes: frame_len(),
            lost_records: 0
        }
    );
    assert_eq!(letter.seq, seqs_before[1]);
    assert_eq!(letter.event.meta.id, event(2, 0).meta.id);
    assert_eq!(
        &letter.event.body[..],
        [b'{', 0xFF, 0x00, 2, b'|'],
        "what was read"
    );
    assert!(letter.reason.contains("checksum"), "{}", letter.reason);
    assert_eq!(store.stats().outbox, 3);
    assert_eq!(
        store.append(event(5, now_ms())).await.unwrap(),
        Appended::Accepted
    );
    drop(store);

    // Opened again, the same stretch is read past, its record dead (not pending again), and
    // the new record follows the others.
    let store = open(&dir, HOUR);
    assert_eq!(store.stats().damaged.lost_records, 0);
    assert_eq!(store.stats().dead, 1);
    let all = store.pending_after(None, Room::events(10)).unwrap();
    assert_eq!(&seqs(&all)[..3], survivors);
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].event.meta.id, event(5, 0).meta.id);
    assert!(all[3].seq > seqs_before[3]);
}

#[tokio::test]
async fn a_pending_record_with_a_torn_header_goes_to_the_dead_letters_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (segment_path, seqs_before) = {
        let (store, pending) = with_events(&dir, 1..=3).await;
        (first_segment(&store), seqs(&pending))
    };
    // The second frame's length field overwritten: its record and checksum are intact.
    let mut bytes = std::fs::read(&segment_path).unwrap();
    let at = frame_len() as usize;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&segment_path, &bytes).unwrap();

    let (store, readable, letter) = bury_the_unreadable(&dir).await;
    assert_eq!(readable, [seqs_before[0], seqs_before[2]]);
    assert_eq!(letter.seq, seqs_before[1]);
    assert_eq!(letter.event, event(2, letter.event.meta.received_at_ms));
    assert!(letter.reason.contains("length"), "{}", letter.reason);
    assert_eq!(store.stats().outbox, 2);
}

/// Two damaged records side by side make one stretch: each is made out by its seq, with its
/// own extent, and goes to the dead letters with its own event.
#[tokio::test]
async fn records_damaged_side_by_side_are_each_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (segment_path, seqs_before) = {
        let (store, pending) = with_events(&dir, 1..=4).await;
        (first_segment(&store), seqs(&pending))
    };
    let frame = frame_len() as usize;
    flip_bit(&segment_path, |_| 2 * frame - 1);
    flip_bit(&segment_path, |_| 3 * frame - 1);

    let store = open(&dir, HOUR);
    assert_eq!(store.stats().damaged.bytes, 2 * frame_len());
    assert_eq!(store.stats().damaged.lost_records, 0);
    let records = store
        .records_between(None, u64::MAX, Room::events(10))
        .unwrap();
    assert_eq!(seqs(&records.events), [seqs_before[0], seqs_before[3]]);
    let dead: Vec<(u64, EventId)> = records
        .unreadable
        .iter()
        .map(|(p, _)| (p.seq, p.event.meta.id))
        .collect();
    assert_eq!(
        dead,
        [
            (seqs_before[1], event(2, 0).meta.id),
            (seqs_before[2], event(3, 0).meta.id)
        ]
    );
}

/// Bytes of a record made out by its seq but too damaged to decode: the dead letter keeps
/// them as the body of an event of unknown kind, and the reason says why.
#[tokio::test]
async fn a_pending_record_that_no_longer_decodes_is_kept_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let segment_path = {
        let (store, _) = with_events(&dir, 1..=3).await;
        first_segment(&store)
    };
    // The second record's tag byte, right after its seq, broken.
    let mut bytes = std::fs::read(&segment_path).unwrap();
    let at = frame_len() as usize + frame::HEADER + frame::SEQ;
    bytes[at] = 0xff;
    std::fs::write(&segment_path, &bytes).unwrap();

    let (_store, readable, letter) = bury_the_unreadable(&dir).await;
    assert_eq!(readable.len(), 2);
    assert_eq!(letter.event.meta.kind, crate::event::Kind::Other);
    assert_eq!(letter.event.meta.id, EventId([0; 16]));
    assert_eq!(letter.event.meta.connection, "");
    assert_eq!(letter.event.body.len() as u64, frame_len());
    assert!(
        letter.reason.starts_with("unreadable in its segment"),
        "{}",
        letter.reason
    );
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
