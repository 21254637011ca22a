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
    pub(super) applied_seq: AtomicU64,
    pub(super) flushed_seq: AtomicU64,
    /// Settlement counts whose marks are in sled (the writer numbers them per batch; a segment
    /// records the number of the last batch with marks for it).
    pub(super) settled: AtomicU64,
    pub(super) flushed_settled: AtomicU64,
    /// Set when writing a batch into sled failed: the writer takes no more appends (I2).
    pub(super) failed: AtomicBool,
}

impl Ledger {
    pub(super) fn new(seq: u64, flushed_seq: u64) -> Ledger {
        let ledger = Ledger::default();
        ledger.applied_seq.store(seq, Ordering::Relaxed);
        ledger.flushed_seq.store(flushed_seq, Ordering::Relaxed);
        ledger
    }

    /// Whether everything up to `seq` and settlement `settled` is flushed.
    pub(super) fn is_flushed(&self, seq: u64, settled: u64) -> bool {
        seq <= self.flushed_seq.load(Ordering::Acquire)
            && settled <= self.flushed_settled.load(Ordering::Acquire)
    }

    /// Whether writing keys or marks into sled has failed (I2).
    pub(super) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}
