//! Replays: kept delivered events and dead letters put back under new seqs, each once (I13).

use super::*;
use crate::store::replay::REQUEUE_BATCH;

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
async fn a_replay_of_more_than_one_batch_puts_each_event_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    // Two full batches of the replay's scan and a part of a third.
    let count = 2 * REQUEUE_BATCH + 3;
    for n in 0..count {
        let mut e = event(0, now_ms());
        let mut raw = e.meta.id.0;
        raw[..4].copy_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        e.meta.id = EventId(raw);
        store.append(e).await.unwrap();
    }
    let pending = take_all(&store);
    assert_eq!(pending.len(), count);
    deliver(&store, &seqs(&pending)).await;

    assert_eq!(
        store
            .replay_delivered(&ReplayFilter::default())
            .await
            .unwrap(),
        count
    );
    let again = take_all(&store);
    let ids = |p: &[Pending]| p.iter().map(|p| p.event.meta.id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&pending), "each once, in the order stored");
    assert!(again[0].seq > pending[count - 1].seq);
}
