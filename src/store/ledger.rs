//! The ledger: how far the store's work has got, in counters the writer, the flusher and
//! retention read and only their owners move. It depends on nothing else in the store.
//!
//! Two things are tracked from "handed to sled" to "durable": the dedup keys, by the highest seq
//! whose keys are in sled (its durable value is the checkpoint, I6), and the marks, by the
//! number of the last batch of marks written (a segment notes the batch that last changed it).
//! Retention deletes a segment only once both have been flushed past it (I7).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Highest seq whose dedup keys are in sled (set by the flusher after writing a batch, and
    /// at open after the keys past the checkpoint were restored).
    pub(super) keys_written: AtomicU64,
    /// Highest seq whose dedup keys a flush made durable: the checkpoint (I6).
    pub(super) keys_flushed: AtomicU64,
    /// Number of the last batch of marks in sled (batches with marks are numbered in order; a
    /// segment notes the number of the last one that changed it).
    pub(super) marks_written: AtomicU64,
    /// Number of the last batch of marks a flush made durable.
    pub(super) marks_flushed: AtomicU64,
    /// Set when writing a batch into sled failed: the writer takes no more appends (I2).
    pub(super) failed: AtomicBool,
}

impl Ledger {
    /// At open: the keys of every record up to `keys_written` are in sled (restored), and those
    /// up to the checkpoint `keys_flushed` on disk; no marks batch is numbered yet.
    pub(super) fn new(keys_written: u64, keys_flushed: u64) -> Ledger {
        let ledger = Ledger::default();
        ledger.keys_written.store(keys_written, Ordering::Relaxed);
        ledger.keys_flushed.store(keys_flushed, Ordering::Relaxed);
        ledger
    }

    /// Whether the keys of every seq up to `last_seq` and the marks batches up to `marks_batch`
    /// are durable.
    pub(super) fn is_flushed(&self, last_seq: u64, marks_batch: u64) -> bool {
        last_seq <= self.keys_flushed.load(Ordering::Acquire)
            && marks_batch <= self.marks_flushed.load(Ordering::Acquire)
    }

    /// Whether writing keys or marks into sled has failed (I2).
    pub(super) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}
