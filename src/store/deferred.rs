//! What the writer changed but sled does not have yet: dedup keys and delivery marks. The writer
//! adds to it; the flusher takes it as one batch before each flush and writes it into sled off
//! the hot path. Work goes one way: nothing here waits on the writer (I14).
//!
//! Each sled batch wakes sled's I/O threads; written per group that cost about one context
//! switch and 12–13 µs of CPU per event at saturation, and written by the writer once a second
//! it stalled appends for milliseconds (the 1.5 KB steady p99 went from 3.6 to 8.6 ms). The
//! crash rule already allows both to be missing after a crash (keys are rebuilt from the
//! segments after the checkpoint, I6; a lost mark is a resend, I9), so nothing needs them in
//! sled before the flush that makes them durable. Until the flusher has written a batch, the
//! writer answers dedup checks from it (I10).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::dedup::{Keys, NewKey};
use super::events::{Note, Stamp, Taken};
use super::index::{self, Changed, Table};
use super::layout::marks::Mark;
use super::types::Reply;
use crate::event::EventId;

/// Keys held before the writer asks for an early flush between two timed ones: bounds the
/// memory (about 40 B a key) under a flood.
const MAX_KEYS: usize = 1 << 16;

/// Bytes of bodies the notes for the event index may hold before the writer asks the flusher
/// to take them early (without a flush): the notes share the events, bodies and all, and a
/// second of them at saturation would be tens of megabytes (as much as the feed holds).
const MAX_NOTE_BYTES: u64 = 4 * 1024 * 1024;

/// What the flusher writes into sled before its next flush.
pub(super) struct Batch {
    pub(super) number: u64,
    pub(super) keys: Arc<Keys>,
    /// Marks by segment, with the segment's marks tree (retention keeps a segment until the
    /// last marks batch that changed it is flushed, so the tree outlives the write).
    pub(super) marks: Vec<(sled::Tree, Vec<Mark>)>,
    /// Highest seq whose key is in this batch or an earlier one: the checkpoint may move to it.
    pub(super) committed: Option<u64>,
    /// This batch's number among those with marks, if it has any.
    pub(super) marks_batch: Option<u64>,
    /// For the event index (I16): events stored, duplicates answered (id, when), and times
    /// learnt since (a first publish, a replayed record's first confirm).
    pub(super) index: Taken,
}

/// A request to the flusher: flush now (taking what waits in [`Deferred`] first), and answer
/// `reply` after. The channel is unbounded, so the writer never waits to send one (I14).
pub(super) struct FlushRequest {
    pub(super) reply: Option<Reply<()>>,
    /// Only take the notes for the event index (they filled up): no flush, no batch.
    pub(super) notes_only: bool,
}

/// Shared by the writer and the flusher; each holds the lock only to move a few things in or out.
#[derive(Default)]
pub(super) struct Deferred {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    keys: Keys,
    marks: Vec<Changed>,
    committed: Option<u64>,
    /// Whether marks wait here: the next batch is the next marks batch.
    has_marks: bool,
    /// Batches taken that the flusher has not written yet, oldest first.
    handed: VecDeque<(u64, Arc<Keys>)>,
    last_number: u64,
    /// Marks batches numbered so far (0 at open, as the ledger's).
    marks_batches: u64,
    /// An early flush was asked for and has not taken the keys yet.
    asked: bool,
    notes: Vec<Note>,
    note_bytes: u64,
    dups: Vec<(EventId, u64)>,
    /// Times for the event index, deferred with the marks of the same changes.
    stamps: Vec<Stamp>,
    /// An early take of the notes was asked for and has not happened yet.
    notes_asked: bool,
}

impl Waiting {
    /// What waits for the event index; an early take may be asked again from here on.
    fn take_index(&mut self) -> Taken {
        self.notes_asked = false;
        self.note_bytes = 0;
        Taken {
            notes: std::mem::take(&mut self.notes),
            dups: std::mem::take(&mut self.dups),
            stamps: std::mem::take(&mut self.stamps),
        }
    }
}

impl Deferred {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Every change is a few field writes in one go: a panic leaves nothing torn.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The expiry of a key of `id` that sled may not have yet (I10).
    pub(super) fn expiry_of(&self, id: &EventId) -> Option<u64> {
        let waiting = self.lock();
        if let Some(expiry) = waiting.keys.get(id) {
            return Some(expiry.at_ms);
        }
        waiting
            .handed
            .iter()
            .rev()
            .find_map(|(_, keys)| keys.get(id).map(|expiry| expiry.at_ms))
    }

    /// Keeps the keys of a committed group whose last seq is `high`. Returns them with the flag
    /// that says whether each adds to its slice's count: an expired key of the same id waiting
    /// here is replaced, and in the same slice it is not counted twice; in an older one it stays
    /// counted until that slice goes, as it would had it reached sled (it is expired, so it need
    /// not).
    pub(super) fn add_keys(&self, keys: &[NewKey], high: u64) -> Vec<NewKey> {
        let mut waiting = self.lock();
        let mut counted = Vec::with_capacity(keys.len());
        for &key in keys {
            let mut key = key;
            if let Some(old) = waiting.keys.insert(key.id, key.expiry) {
                key.adds &= old.slice_end != key.expiry.slice_end;
            }
            counted.push(key);
        }
        waiting.committed = Some(high);
        counted
    }

    /// Keeps state changes to write as marks, and the event index's times they brought. Their
    /// segments note the number of the marks batch that will carry them, under this lock so
    /// that no batch is taken in between, and retention keeps them until a flush made that
    /// batch durable (I7); the times go no later than that batch, so their segments are live
    /// when the flusher writes them (I16).
    pub(super) fn add_marks(
        &self,
        table: &Mutex<Table>,
        changed: Vec<Changed>,
        stamps: Vec<Stamp>,
    ) {
        if changed.is_empty() {
            return;
        }
        let mut waiting = self.lock();
        waiting.stamps.extend(stamps);
        let number = waiting.marks_batches + 1;
        {
            let mut table = index::lock(table);
            for c in &changed {
                if let Some(segment) = table.segments.get_mut(&c.segment) {
                    segment.marks_batch = number;
                }
            }
        }
        waiting.marks.extend(changed);
        waiting.has_marks = true;
    }

    /// Whether the keys reached [`MAX_KEYS`] and no early flush was asked for since; the
    /// caller asks for one when this says so.
    pub(super) fn ask_early(&self) -> bool {
        let mut waiting = self.lock();
        let ask = waiting.keys.len() >= MAX_KEYS && !waiting.asked;
        waiting.asked |= ask;
        ask
    }

    /// Keeps the writer's notes of events it stored and duplicates it answered for the event
    /// index; true when they fill up and no early take was asked for since (the caller asks).
    pub(super) fn add_notes(&self, notes: Vec<Note>, dups: Vec<(EventId, u64)>) -> bool {
        if notes.is_empty() && dups.is_empty() {
            return false;
        }
        let mut waiting = self.lock();
        let bytes: u64 = notes.iter().map(|n| n.event.body.len() as u64).sum();
        waiting.note_bytes += bytes;
        waiting.notes.extend(notes);
        waiting.dups.extend(dups);
        let ask = waiting.note_bytes >= MAX_NOTE_BYTES && !waiting.notes_asked;
        waiting.notes_asked |= ask;
        ask
    }

    /// Takes what is for the event index alone (an early take, between flushes).
    pub(super) fn take_notes(&self) -> Taken {
        self.lock().take_index()
    }

    /// Takes what waits as the next batch (the flusher, before each flush); `None` if nothing
    /// does. Its keys are still answered for until [`Deferred::written`].
    pub(super) fn take(&self, table: &Mutex<Table>) -> Option<Batch> {
        let (number, keys, changed, committed, marks_batch, index) = {
            let mut waiting = self.lock();
            waiting.asked = false;
            if waiting.keys.is_empty()
                && waiting.marks.is_empty()
                && waiting.notes.is_empty()
                && waiting.dups.is_empty()
            {
                return None;
            }
            let index = waiting.take_index();
            waiting.last_number += 1;
            let number = waiting.last_number;
            let keys = Arc::new(std::mem::take(&mut waiting.keys));
            waiting.handed.push_back((number, Arc::clone(&keys)));
            let marks_batch = std::mem::take(&mut waiting.has_marks).then(|| {
                waiting.marks_batches += 1;
                waiting.marks_batches
            });
            let changed = std::mem::take(&mut waiting.marks);
            (number, keys, changed, waiting.committed, marks_batch, index)
        };
        Some(Batch {
            number,
            keys,
            marks: marks_by_segment(table, changed),
            committed,
            marks_batch,
            index,
        })
    }

    /// The flusher wrote batches up to `number` into sled: sled answers for their keys now.
    pub(super) fn written(&self, number: u64) {
        let mut waiting = self.lock();
        while waiting.handed.front().is_some_and(|(n, _)| *n <= number) {
            waiting.handed.pop_front();
        }
    }
}

/// Groups changes by segment with the segment's marks tree; of several changes of one seq the
/// last wins. Segments already gone (retention) are skipped.
fn marks_by_segment(table: &Mutex<Table>, changed: Vec<Changed>) -> Vec<(sled::Tree, Vec<Mark>)> {
    let mut by_segment: BTreeMap<u64, Vec<Mark>> = BTreeMap::new();
    for c in changed {
        by_segment.entry(c.segment).or_default().push(Mark {
            seq: c.entry.seq,
            state: c.entry.state,
            at_ms: c.entry.at_ms,
        });
    }
    let table = index::lock(table);
    by_segment
        .into_iter()
        .filter_map(|(segment, mut changes)| {
            let tree = table.segments.get(&segment)?.marks.clone();
            // Stable, so changes of one seq stay in the order they happened.
            changes.sort_by_key(|mark| mark.seq);
            let mut last: Vec<Mark> = Vec::with_capacity(changes.len());
            for change in changes {
                match last.last_mut() {
                    Some(previous) if previous.seq == change.seq => *previous = change,
                    _ => last.push(change),
                }
            }
            Some((tree, last))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dedup::Expiry;

    #[test]
    fn a_handed_key_is_found_until_the_flusher_has_written_its_batch() {
        let id = EventId([7; 16]);
        let table = Mutex::new(Table::default());
        let deferred = Deferred::default();
        let key = NewKey {
            id,
            expiry: Expiry {
                slice_end: 100,
                at_ms: 99,
            },
            adds: true,
        };
        deferred.add_keys(&[key], 1);
        assert_eq!(deferred.expiry_of(&id), Some(99));
        // What the flusher does before a flush.
        let batch = deferred.take(&table).expect("a batch");
        assert_eq!(batch.number, 1);
        assert!(deferred.take(&table).is_none(), "nothing waits");
        deferred.add_keys(&[], 2);
        assert_eq!(deferred.expiry_of(&id), Some(99), "handed, not yet written");
        deferred.written(0);
        assert_eq!(deferred.expiry_of(&id), Some(99));
        deferred.written(1);
        assert_eq!(deferred.expiry_of(&id), None, "sled answers for it now");
    }
}
