//! The event index (I16): found by each filter newest first, paged, its states and duplicates,
//! pruned with its segments, and rebuilt at open from the segments and marks.

use super::*;
use crate::event::RedactKeys;

/// A message of ticket `ticket` whose WhatsApp id ends in `n` (a SaaS body, parsed as received).
fn message(ticket: i64, n: u32) -> Event {
    let body = format!(
        r#"{{"acao":"from_internal","chamadoId":{ticket},"companyId":1,"fromMe":false,"mensagem":{{"wid":"3EB0{n:016X}","body":"bom dia","mediaType":"conversation","fromMe":false,"ticketId":{ticket}}},"ticketData":{{"id":{ticket},"status":"open","companyId":1,"updatedAt":"2024-05-02T10:03:00.000Z"}}}}"#
    );
    crate::event::parse(
        "default",
        Bytes::from(body),
        &RedactKeys::default(),
        now_ms(),
    )
    .unwrap()
}

fn search(store: &Store, filter: &EventFilter) -> Vec<u64> {
    let (found, _) = store.events_search(filter, None, 100).unwrap();
    found.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn events_are_found_by_each_filter_newest_first_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let mut wa_ids = Vec::new();
    for n in 0..20u32 {
        let event = message(300 + i64::from(n % 4), n);
        wa_ids.push(
            event
                .wa_id
                .clone()
                .expect("a SaaS message has its WhatsApp id"),
        );
        assert_eq!(store.append(event).await.unwrap(), Appended::Accepted);
    }
    store.append(event(99, now_ms())).await.unwrap();
    assert_eq!(
        store.events_indexed(),
        0,
        "not before the flusher took them"
    );
    store.flush().await.unwrap();
    assert_eq!(store.events_indexed(), 21);

    let pending = take_all(&store);
    let all = search(&store, &EventFilter::default());
    assert_eq!(all.len(), 21);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");

    let ticket = search(
        &store,
        &EventFilter {
            ticket: Some(301),
            ..Default::default()
        },
    );
    assert_eq!(ticket.len(), 5, "{ticket:?}");
    let wa = EventFilter {
        wa_id: Some(wa_ids[7].clone()),
        ..Default::default()
    };
    let (found, more) = store.events_search(&wa, None, 10).unwrap();
    assert!(!more);
    assert_eq!(found.len(), 1);
    let seven = &found[0];
    assert_eq!(seven.ticket_id, Some(303));
    assert_eq!(seven.kind, Kind::Message);
    assert_eq!(seven.company_id, Some(1));
    assert!(seven.size > 0);
    let id = EventFilter {
        id: Some(seven.id),
        ..Default::default()
    };
    assert_eq!(search(&store, &id), [seven.seq]);
    let other = EventFilter {
        kind: Some(Kind::Other),
        ..Default::default()
    };
    assert_eq!(search(&store, &other).len(), 1);
    let nowhere = EventFilter {
        connection: Some("nowhere".into()),
        ..Default::default()
    };
    assert!(search(&store, &nowhere).is_empty());
    let later = EventFilter {
        since_ms: Some(now_ms() + 60_000),
        ..Default::default()
    };
    assert!(search(&store, &later).is_empty());
    let earlier = EventFilter {
        until_ms: Some(now_ms() + 60_000),
        ..Default::default()
    };
    assert_eq!(search(&store, &earlier).len(), 21);

    // Pages of 8: 8, 8, 5, each below the last.
    let mut before = None;
    let mut pages = Vec::new();
    loop {
        let (page, more) = store
            .events_search(&EventFilter::default(), before, 8)
            .unwrap();
        pages.push(page.len());
        before = page.last().map(|e| e.seq);
        if !more {
            break;
        }
    }
    assert_eq!(pages, [8, 8, 5]);

    // States: two confirmed, one dead; the rest pending.
    deliver(&store, &[pending[0].seq, pending[1].seq]).await;
    kill(&store, pending[2].clone(), "refused").await;
    store.flush().await.unwrap();
    let state = |s| {
        search(
            &store,
            &EventFilter {
                state: Some(s),
                ..Default::default()
            },
        )
    };
    assert_eq!(
        state(EventState::Confirmed),
        [pending[1].seq, pending[0].seq]
    );
    assert_eq!(state(EventState::Dead), [pending[2].seq]);
    assert_eq!(state(EventState::Pending).len(), 18);
    assert_eq!(EventState::from_name("published"), None);
    let confirmed = store.events_of(&pending[0].event.meta.id).unwrap();
    assert_eq!(confirmed[0].state, EventState::Confirmed);
    assert!(confirmed[0].settled_at_ms.is_some());
}

#[tokio::test]
async fn duplicates_are_counted_on_their_event_and_replays_are_its_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let first = message(357, 1);
    let id = first.meta.id;
    store.append(first.clone()).await.unwrap();
    store.flush().await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            store.append(message(357, 1)).await.unwrap(),
            Appended::Duplicate
        );
    }
    store.flush().await.unwrap();
    let records = store.events_of(&id).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].duplicates, 3);
    assert!(records[0].last_duplicate_ms.is_some());

    let pending = take_all(&store);
    deliver(&store, &[pending[0].seq]).await;
    assert_eq!(store.replay_event(pending[0].seq).await.unwrap(), 1);
    assert_eq!(store.replay_event(pending[0].seq).await.unwrap(), 0, "once");
    store.flush().await.unwrap();
    let records = store.events_of(&id).unwrap();
    assert_eq!(records.len(), 2, "the event and its replayed copy");
    assert!(records[0].replayed_at_ms.is_some());
    assert_eq!(records[1].state, EventState::Pending);
    // Listed once: the copy in the original's stead.
    let listed = search(
        &store,
        &EventFilter {
            id: Some(id),
            ..Default::default()
        },
    );
    assert_eq!(listed, [records[1].seq]);
    let body = store.event_record(records[1].seq).unwrap().unwrap();
    assert_eq!(body.body, first.body);

    // Kept across a reopen: summaries, duplicates, states.
    drop(store);
    wait_for_sled_to_let_go(dir.path());
    let store = open(&dir, HOUR);
    let again = store.events_of(&id).unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].duplicates, 3);
    assert_eq!(again[0].wa_id, first.wa_id);
    assert!(again[0].replayed_at_ms.is_some());
    let listed = search(
        &store,
        &EventFilter {
            id: Some(id),
            ..Default::default()
        },
    );
    assert_eq!(
        listed,
        [again[1].seq],
        "the copy stands in after a reopen too"
    );
}

#[tokio::test]
async fn the_index_is_rebuilt_at_open_from_the_segments_where_sled_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, HOUR);
        for n in 0..5u32 {
            store.append(message(400, n)).await.unwrap();
        }
        store.flush().await.unwrap();
        // Summaries of these two never reach sled's disk: a crash before the next flush.
        store.append(message(401, 10)).await.unwrap();
        store.append(message(401, 11)).await.unwrap();
        crash_copy(dir.path(), copy.path());
    }
    let store = open(&copy, HOUR);
    assert_eq!(store.events_indexed(), 7);
    let (found, _) = store
        .events_search(
            &EventFilter {
                ticket: Some(401),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(found.len(), 2);
    assert!(found
        .iter()
        .all(|e| e.wa_id.as_deref().is_some_and(|w| w.starts_with("3EB0"))));
    // A data dir of a version without the index: no summary files at all.
    let path = copy.path().to_path_buf();
    drop(store);
    wait_for_sled_to_let_go(&path);
    let files = summary_files(&path);
    assert!(!files.is_empty());
    for file in files {
        std::fs::remove_file(file).unwrap();
    }
    let store = open(&copy, HOUR);
    assert_eq!(store.events_indexed(), 7);
    let (found, _) = store
        .events_search(
            &EventFilter {
                ticket: Some(400),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(found.len(), 5);
    assert!(found
        .iter()
        .all(|e| e.wa_id.is_some() && e.connection == "default"));
}

#[tokio::test]
async fn retention_takes_the_index_of_the_segments_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_segments(dir.path(), 12, |s| s.keep_delivered = Duration::ZERO).await;
    store.flush().await.unwrap();
    assert_eq!(store.events_indexed(), 12);
    let pending = take_all(&store);
    let (last, delivered) = pending.split_last().unwrap();
    // A duplicate of an event that goes: its count goes with it.
    assert_eq!(
        store.append((*delivered[0].event).clone()).await.unwrap(),
        Appended::Duplicate
    );
    deliver(&store, &seqs(delivered)).await;
    store.flush().await.unwrap();
    assert_eq!(
        store.events_of(&delivered[0].event.meta.id).unwrap()[0].duplicates,
        1
    );
    store.sweep_delivered().await.unwrap();
    let left = search(&store, &EventFilter::default());
    assert!(left.contains(&last.seq));
    assert!(left.len() < 4, "{left:?}");
    assert_eq!(store.events_indexed(), left.len());
    assert!(store
        .events_of(&delivered[0].event.meta.id)
        .unwrap()
        .is_empty());
    assert!(store
        .inner
        .events
        .dups_of(&delivered[0].event.meta.id)
        .is_none());
    let files = summary_files(dir.path());
    assert!(files.len() <= 2, "{files:?}");
}

/// The summary files in a data dir's segments folder.
fn summary_files(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "events"))
        .collect();
    files.sort();
    files
}

async fn settle_published(store: &Store, seq: u64, published_at_ms: u64) {
    store
        .settle(Settlement {
            delivered: vec![seq],
            dead: Vec::new(),
            published: vec![(seq, published_at_ms)],
        })
        .await
        .unwrap();
}

/// The timeline's times: the first publish, carried with the confirm, goes onto the summary
/// whether it comes before the summary is written or after (its block written again); a later
/// confirm of the same record (a resend) brings no later time; a replay keeps the first
/// confirm's time beside its own; all of it outlives a reopen.
#[tokio::test]
async fn publish_times_and_a_replayed_events_first_confirm_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let (a, b) = (message(500, 1), message(500, 2));
    let (id_a, id_b) = (a.meta.id, b.meta.id);
    store.append(a).await.unwrap();
    let pending = take_all(&store);
    let seq_a = pending[0].seq;
    // Confirmed before the flusher took its note: written once, with its time.
    settle_published(&store, seq_a, 1_000).await;
    store.append(b).await.unwrap();
    store.flush().await.unwrap();
    let seq_b = take_all(&store)[0].seq;
    // Confirmed after its summary was written.
    settle_published(&store, seq_b, 2_000).await;
    // A resend's confirm of a record already settled: its publish is not the first.
    settle_published(&store, seq_a, 9_000).await;
    store.flush().await.unwrap();
    let first = |id: &EventId| store.events_of(id).unwrap()[0].clone();
    let (a, b) = (first(&id_a), first(&id_b));
    assert_eq!(
        (a.published_at_ms, b.published_at_ms),
        (Some(1_000), Some(2_000))
    );
    let confirmed = a.settled_at_ms.expect("a confirm time");
    assert_eq!(a.state, EventState::Confirmed);

    assert_eq!(store.replay_event(seq_a).await.unwrap(), 1);
    store.flush().await.unwrap();
    let records = store.events_of(&id_a).unwrap();
    assert_eq!(records.len(), 2);
    let replayed = &records[0];
    assert_eq!(replayed.settled_at_ms, Some(confirmed), "the first confirm");
    assert!(replayed.replayed_at_ms.is_some_and(|at| at >= confirmed));
    assert_eq!(replayed.published_at_ms, Some(1_000));
    assert_eq!(
        records[1].published_at_ms, None,
        "the copy is not published yet"
    );

    drop(store);
    wait_for_sled_to_let_go(dir.path());
    let store = open(&dir, HOUR);
    let again = store.events_of(&id_a).unwrap();
    assert_eq!(again[0].settled_at_ms, Some(confirmed));
    assert_eq!(again[0].published_at_ms, Some(1_000));
    assert!(again[0].replayed_at_ms.is_some());
    assert_eq!(
        store.events_of(&id_b).unwrap()[0].published_at_ms,
        Some(2_000)
    );
}

/// An early take (the notes' bodies let go between two flushes) holds its summaries and the
/// duplicates of their events for the next take, so that the times that follow go in with
/// them: nothing of it is in sled or searchable before.
#[test]
fn an_early_take_holds_its_summaries_for_the_times_that_follow() {
    use crate::store::events::{Events, Note, Stamp, Taken};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let dups = db.open_tree("event-dups").unwrap();
    std::fs::create_dir(dir.path().join("segments")).unwrap();
    let events = Events::new(dir.path().join("segments"));
    let (one, two) = (message(600, 1), message(600, 2));
    let id = one.meta.id;
    let note = |seq: u64, event: Event| Note {
        segment: 1,
        seq,
        stored_at_ms: 5,
        event: Arc::new(event),
        replay_of: None,
    };
    let early = Taken {
        notes: vec![note(1, one), note(2, two)],
        dups: vec![(id, 9)],
        stamps: Vec::new(),
    };
    events.take_in(&dups, early, true).unwrap();
    assert_eq!(events.len(), 0, "held");
    assert!(summary_files(dir.path()).is_empty());
    let stamp = Stamp {
        seq: 1,
        published_at_ms: Some(7),
        confirmed_at_ms: None,
    };
    let timed = Taken {
        stamps: vec![stamp],
        ..Taken::default()
    };
    events.take_in(&dups, timed, false).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events.dups_of(&id),
        Some((1, 9)),
        "counted once its event is"
    );
    let file = events.file_of(1).expect("its file");
    let summaries = file.block_at(2).unwrap().expect("its block");
    let times: Vec<_> = summaries.iter().map(|s| s.published_at_ms).collect();
    assert_eq!(times, [Some(7), None]);
    assert_eq!(
        file.len(),
        {
            let mut one = Vec::new();
            crate::store::layout::frame::frame_record(
                &mut one,
                1,
                &layout::summary::encode_block(&summaries),
            )
            .unwrap();
            one.len() as u64
        },
        "one block, written once, with its time"
    );
}

/// A data dir of the versions that kept summaries in sled (a segment's `events@` tree, blocks
/// keyed by their first seq): at open the summaries move to the segment's file with what only
/// they had (a publish time, which the records do not hold), the trees are dropped, and a crash
/// in the middle of that (a file half made beside its tree) starts it again from the tree.
#[tokio::test]
async fn summaries_that_earlier_versions_kept_in_sled_move_to_files_with_their_times() {
    use crate::store::layout::summary::{encode_block, events_tree_name, BLOCK};
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<EventId>;
    {
        let store = open(&dir, HOUR);
        let events: Vec<Event> = (0..70).map(|n| message(700, n)).collect();
        ids = events.iter().map(|e| e.meta.id).collect();
        for event in events {
            store.append(event).await.unwrap();
        }
        store.flush().await.unwrap();
        let pending = take_all(&store);
        settle_published(&store, pending[66].seq, 4_242).await;
        store.flush().await.unwrap();
        assert_eq!(
            store.events_of(&ids[66]).unwrap()[0].published_at_ms,
            Some(4_242)
        );
    }
    wait_for_sled_to_let_go(dir.path());
    // What such a version left: the same summaries, in sled, and no files.
    let files = summary_files(dir.path());
    assert_eq!(files.len(), 1);
    let first: u64 = files[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    {
        let (file, summaries) =
            crate::store::events::SummaryFile::open(&files[0]).expect("summary file");
        assert_eq!(summaries.len(), 70);
        drop(file);
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree(events_tree_name(first)).unwrap();
        for block in summaries.chunks(BLOCK) {
            tree.insert(block[0].seq.to_be_bytes(), encode_block(block))
                .unwrap();
        }
        db.flush().unwrap();
        // A migration cut short: a file with a part of it.
        std::fs::write(&files[0], &std::fs::read(&files[0]).unwrap()[..100]).unwrap();
    }
    wait_for_sled_to_let_go(dir.path());
    let store = open(&dir, HOUR);
    assert_eq!(store.events_indexed(), 70);
    assert_eq!(
        store.events_of(&ids[66]).unwrap()[0].published_at_ms,
        Some(4_242),
        "the time only the tree had"
    );
    assert!(ids.iter().all(|id| store.events_of(id).unwrap().len() == 1));
    assert!(!store
        .inner
        .db
        .tree_names()
        .iter()
        .any(|n| n.starts_with(b"events@")));
    assert_eq!(summary_files(dir.path()), files);
    drop(store);
    wait_for_sled_to_let_go(dir.path());
    let store = open(&dir, HOUR);
    assert_eq!(
        store.events_of(&ids[66]).unwrap()[0].published_at_ms,
        Some(4_242),
        "from the file now"
    );
}
