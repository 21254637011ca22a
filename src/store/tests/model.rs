//! The whole store against a simple model: random appends (ids from a small space, so repeats
//! come), confirms, dead letters, flushes, clean reopens and crashes (the data dir copied as a
//! crash leaves it, with nothing flushed in the background), checked after every step.
//!
//! The model is what the contract promises: an accepted event is pending until it is settled
//! (I1) and a duplicate from then on (I6, I10); a settlement is certain once a flush or a clean
//! close made it durable, and before that a crash may undo it (I9: a resend), never more; a dead
//! letter whose mark survived a crash is there (I8); seqs only grow (I5).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Append(u8),
    Confirm(Index),
    Kill(Index),
    Flush,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..24).prop_map(Op::Append),
        4 => any::<Index>().prop_map(Op::Confirm),
        2 => any::<Index>().prop_map(Op::Kill),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        2 => Just(Op::Crash),
    ]
}

#[derive(Default)]
struct Model {
    /// Ids accepted so far: the window (an hour) outlasts the test, so each stays a duplicate.
    accepted: BTreeSet<u8>,
    /// Pending events by seq.
    pending: BTreeMap<u64, Event>,
    /// Settled, but not yet made durable by a flush: a crash may put them back in `pending`.
    unflushed: BTreeMap<u64, Event>,
    /// Dead letters for certain, and those a crash may lose (with their mark).
    dead: BTreeSet<u64>,
    dead_unflushed: BTreeSet<u64>,
    /// Highest seq seen: every new one is above it.
    high: u64,
}

/// A store in a fresh directory under `root`; a crash moves it to the next one.
struct Running {
    root: tempfile::TempDir,
    dirs: usize,
    store: Option<Store>,
}

impl Running {
    fn dir(&self) -> PathBuf {
        self.root.path().join(self.dirs.to_string())
    }

    fn open(&mut self) {
        // No timed flush: only `Flush`, a reopen and a full set of keys make things durable.
        let tuning = open::Tuning {
            flush_interval: HOUR,
            feed_bytes: FEED_BYTES,
        };
        let store = Store::open_tuned(&settings(&self.dir(), HOUR), tuning).expect("open store");
        self.store = Some(store);
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }
}

fn pending_now(store: &Store) -> Vec<Pending> {
    store
        .pending_after(None, Room::events(usize::MAX))
        .expect("read pending")
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut running = Running {
        root: tempfile::tempdir().unwrap(),
        dirs: 0,
        store: None,
    };
    running.open();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append(id) => {
                let event = event(id, now_ms());
                let store = running.store();
                let answer = store.append(event.clone()).await.expect("append");
                if model.accepted.contains(&id) {
                    prop_assert_eq!(answer, Appended::Duplicate, "id {} again", id);
                } else {
                    prop_assert_eq!(answer, Appended::Accepted, "new id {}", id);
                    let seq = pending_now(store).last().map(|p| p.seq).expect("its seq");
                    prop_assert!(seq > model.high, "seq {} after {}", seq, model.high);
                    model.high = seq;
                    model.accepted.insert(id);
                    model.pending.insert(seq, event);
                }
            }
            Op::Confirm(index) | Op::Kill(index) if !model.pending.is_empty() => {
                let seq = *model
                    .pending
                    .keys()
                    .nth(index.index(model.pending.len()))
                    .unwrap();
                let event = model.pending.remove(&seq).unwrap();
                let pending = Pending {
                    seq,
                    event: Arc::new(event.clone()),
                };
                let settlement = if matches!(op, Op::Kill(_)) {
                    model.dead_unflushed.insert(seq);
                    Settlement {
                        delivered: Vec::new(),
                        dead: vec![(pending, "model".to_owned())],
                        published: Vec::new(),
                    }
                } else {
                    Settlement {
                        delivered: vec![seq],
                        dead: Vec::new(),
                        published: Vec::new(),
                    }
                };
                running.store().settle(settlement).await.expect("settle");
                model.unflushed.insert(seq, event);
            }
            Op::Confirm(_) | Op::Kill(_) => {}
            Op::Flush => {
                running.store().flush().await.expect("flush");
                model.unflushed.clear();
                model.dead.append(&mut model.dead_unflushed);
            }
            Op::Reopen => {
                // A clean close flushes once more.
                running.store = None;
                wait_for_sled_to_let_go(&running.dir());
                running.open();
                model.unflushed.clear();
                model.dead.append(&mut model.dead_unflushed);
            }
            Op::Crash => {
                let from = running.dir();
                running.dirs += 1;
                crash_copy(&from, &running.dir());
                let crashed = running.store.take();
                running.open();
                drop(crashed);
                // What came back pending: all that was, and of the unflushed settlements any.
                let found: BTreeMap<u64, Event> = pending_now(running.store())
                    .into_iter()
                    .map(|p| (p.seq, (*p.event).clone()))
                    .collect();
                for (seq, event) in &found {
                    let known = model.pending.get(seq).or(model.unflushed.get(seq));
                    prop_assert_eq!(known, Some(event), "seq {} pending after the crash", seq);
                }
                for seq in model.pending.keys() {
                    prop_assert!(found.contains_key(seq), "seq {} lost in the crash", seq);
                }
                let dead: BTreeSet<u64> = running
                    .store()
                    .dead_list(usize::MAX)
                    .expect("dead letters")
                    .iter()
                    .map(|d| d.seq)
                    .collect();
                for seq in &model.dead_unflushed {
                    // Its dead mark survived (not pending again): so did its dead letter (I8).
                    prop_assert!(
                        found.contains_key(seq) || dead.contains(seq),
                        "seq {} neither pending nor dead after the crash",
                        seq
                    );
                }
                prop_assert!(model.dead.is_subset(&dead), "a flushed dead letter lost");
                prop_assert!(
                    dead.iter()
                        .all(|s| model.dead.contains(s) || model.dead_unflushed.contains(s)),
                    "a dead letter from nowhere"
                );
                model.pending = found;
                model.unflushed.clear();
                model.dead = dead;
                model.dead_unflushed.clear();
            }
        }
        // After every step the store answers as the model says.
        let store = running.store();
        let pending: Vec<(u64, Event)> = pending_now(store)
            .into_iter()
            .map(|p| (p.seq, (*p.event).clone()))
            .collect();
        let want: Vec<(u64, Event)> = model
            .pending
            .iter()
            .map(|(seq, e)| (*seq, e.clone()))
            .collect();
        prop_assert_eq!(pending, want);
        let stats = store.stats();
        prop_assert_eq!(stats.outbox, model.pending.len());
        prop_assert_eq!(stats.dead, model.dead.union(&model.dead_unflushed).count());
        prop_assert!(stats.dedup_keys >= model.accepted.len(), "a dedup key lost");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        // Each case opens stores and fsyncs: shrinking a failure is worth its time, not more.
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_answers_as_the_model_through_crashes_and_reopens(
        ops in proptest::collection::vec(op(), 1..48)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}
