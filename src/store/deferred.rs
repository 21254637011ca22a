//! What the writer changed but sled does not have yet: dedup keys and delivery marks, handed to
//! the flusher thread as one batch per flush cycle, which writes them into sled off the hot path.
//!
//! Each sled batch wakes sled's I/O threads; written per group that cost about one context
//! switch and 12–13 µs of CPU per event at saturation, and written by the writer once a second
//! it stalled appends for milliseconds (the 1.5 KB steady p99 went from 3.6 to 8.6 ms). The
//! crash rule already allows both to be missing after a crash (keys are rebuilt from the
//! segments after the checkpoint, a lost mark is a resend), so nothing needs them in sled before
//! the flush that makes them durable. Until the flusher has written a batch, the writer answers
//! dedup checks from it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::dedup;
use super::marks::State;
use super::table::Changed;
use super::writer::{lock, Reply, Writer};
use crate::event::EventId;

/// Keys held before a batch is handed over between two flush cycles: bounds the memory
/// (about 40 B a key) under a flood.
const MAX_KEYS: usize = 1 << 16;

/// Event id → (slice end, expiry).
pub(super) type Keys = HashMap<EventId, (u64, u64)>;

/// One seq's new state and its time, to be written as a mark.
pub(super) type Mark = (u64, State, u64);

/// What the flusher writes into sled before its next flush.
pub(super) struct Batch {
    pub(super) number: u64,
    pub(super) keys: Arc<Keys>,
    /// Marks by segment, with the segment's marks tree (retention keeps a segment until the
    /// settlement count of its last batch is flushed, so the tree outlives the write).
    pub(super) marks: Vec<(sled::Tree, Vec<Mark>)>,
    /// Highest seq whose key is in this batch or an earlier one: the checkpoint may move to it.
    pub(super) committed: Option<u64>,
    /// The settlement count this batch completes.
    pub(super) settled: Option<u64>,
}

/// A request to the flusher: a batch to write first (if any), then a flush; answered after it.
pub(super) struct FlushRequest {
    pub(super) batch: Option<Batch>,
    pub(super) reply: Option<Reply<()>>,
}

#[derive(Default)]
pub(super) struct Deferred {
    keys: Keys,
    marks: Vec<Changed>,
    committed: Option<u64>,
    /// Whether settlements wait here: the batch completes the next settlement count.
    settled: bool,
    /// Batches handed over that the flusher may not have written yet, oldest first.
    handed: VecDeque<(u64, Arc<Keys>)>,
    last_number: u64,
    /// Settlement counts handed out (only the writer moves it; 0 at open, as the flusher's).
    settle_count: u64,
}

impl Deferred {
    /// The expiry of a key of `id` that sled may not have yet (I10).
    pub(super) fn expiry_of(&self, id: &EventId) -> Option<u64> {
        if let Some(&(_, expiry)) = self.keys.get(id) {
            return Some(expiry);
        }
        self.handed
            .iter()
            .rev()
            .find_map(|(_, keys)| keys.get(id).map(|&(_, expiry)| expiry))
    }

    pub(super) fn is_full(&self) -> bool {
        self.keys.len() >= MAX_KEYS
    }

    /// Forgets the batches the flusher has written (sled answers for them from now on).
    fn prune(&mut self, written: u64) {
        while self.handed.front().is_some_and(|(n, _)| *n <= written) {
            self.handed.pop_front();
        }
    }
}

impl Writer {
    /// Keeps the keys of a committed group (whose last seq is `high`), counting the new ones in
    /// their slices now so that `stats` is exact before they reach sled.
    pub(super) fn defer_keys(&mut self, keys: &[dedup::Key], high: u64) {
        let mut counted = Vec::with_capacity(keys.len());
        for &(end, id, expiry, mut new) in keys {
            // An expired key of the same id waiting here is replaced: in the same slice it is
            // not counted twice; in an older one it stays counted until that slice goes, as it
            // would had it reached sled (it is expired, so it need not).
            if let Some((old_end, _)) = self.deferred.keys.insert(id, (end, expiry)) {
                new &= old_end != end;
            }
            counted.push((end, id, expiry, new));
        }
        dedup::remember(&self.dedup, &counted);
        self.deferred.committed = Some(high);
    }

    /// Keeps state changes to write as marks. Their segments record the settlement count the
    /// next batch completes, so retention keeps them until a flush made the marks durable (I7).
    pub(super) fn defer_marks(&mut self, changed: Vec<Changed>) {
        if changed.is_empty() {
            return;
        }
        let settled = self.deferred.settle_count + 1;
        {
            let mut table = lock(&self.table);
            for c in &changed {
                if let Some(segment) = table.segments.get_mut(&c.segment) {
                    segment.settled = settled;
                }
            }
        }
        self.deferred.marks.extend(changed);
        self.deferred.settled = true;
    }

    /// Hands what waits to the flusher, with `reply` answered after the flush that follows.
    /// Called for each timed flush, each barrier, and when the keys reach [`MAX_KEYS`].
    pub(super) fn hand_over(&mut self, reply: Option<Reply<()>>) {
        let written = self.progress.written_batch.load(Ordering::Acquire);
        self.deferred.prune(written);
        let deferred = &mut self.deferred;
        let batch = if deferred.keys.is_empty() && deferred.marks.is_empty() {
            None
        } else {
            deferred.last_number += 1;
            let keys = Arc::new(std::mem::take(&mut deferred.keys));
            deferred
                .handed
                .push_back((deferred.last_number, Arc::clone(&keys)));
            let settled = std::mem::take(&mut deferred.settled).then(|| {
                deferred.settle_count += 1;
                deferred.settle_count
            });
            let changed = std::mem::take(&mut deferred.marks);
            let (number, committed) = (deferred.last_number, deferred.committed);
            Some(Batch {
                number,
                keys,
                marks: self.marks_by_segment(changed),
                committed,
                settled,
            })
        };
        if let Err(std::sync::mpsc::SendError(request)) =
            self.flush_requests.send(FlushRequest { batch, reply })
        {
            if let Some(reply) = request.reply {
                let _ = reply.send(Err(super::StoreError::Closed));
            }
        }
    }

    /// Groups changes by segment with the segment's marks tree; of several changes of one seq
    /// the last wins. Segments already gone (retention) are skipped.
    fn marks_by_segment(&self, changed: Vec<Changed>) -> Vec<(sled::Tree, Vec<Mark>)> {
        let mut by_segment: BTreeMap<u64, Vec<Mark>> = BTreeMap::new();
        for c in changed {
            by_segment.entry(c.segment).or_default().push((
                c.entry.seq,
                c.entry.state,
                c.entry.at_ms,
            ));
        }
        let table = lock(&self.table);
        by_segment
            .into_iter()
            .filter_map(|(segment, mut changes)| {
                let tree = table.segments.get(&segment)?.marks.clone();
                // Stable, so changes of one seq stay in the order they happened.
                changes.sort_by_key(|c| c.0);
                let mut last: Vec<Mark> = Vec::with_capacity(changes.len());
                for change in changes {
                    match last.last_mut() {
                        Some(previous) if previous.0 == change.0 => *previous = change,
                        _ => last.push(change),
                    }
                }
                Some((tree, last))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_key_is_found_until_the_flusher_has_written_its_batch() {
        let id = EventId([7; 16]);
        let mut deferred = Deferred::default();
        deferred.keys.insert(id, (10, 99));
        assert_eq!(deferred.expiry_of(&id), Some(99));
        // What `hand_over` does with the keys.
        let keys = Arc::new(std::mem::take(&mut deferred.keys));
        deferred.handed.push_back((1, keys));
        deferred.handed.push_back((2, Arc::default()));
        assert_eq!(deferred.expiry_of(&id), Some(99), "handed, not yet written");
        deferred.prune(0);
        assert_eq!(deferred.expiry_of(&id), Some(99));
        deferred.prune(1);
        assert_eq!(deferred.expiry_of(&id), None, "sled answers for it now");
        assert_eq!(deferred.handed.len(), 1);
    }
}
