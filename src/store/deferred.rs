//! What the writer changed but has not yet put into sled: dedup keys and delivery marks, written
//! in one go once per flush cycle instead of once per group.
//!
//! Each sled batch wakes sled's I/O threads; written per group that cost about one context
//! switch and 12–13 µs of CPU per event at saturation. The crash rule already allows both to be
//! missing after a crash (keys are rebuilt from the segments after the checkpoint, a lost mark
//! is a resend), so nothing needs them in sled before the flush that makes them durable. Until
//! then the writer answers dedup checks from here first.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::dedup;
use super::table::Changed;
use super::writer::Writer;
use crate::event::EventId;

/// Keys held before a write is forced between two flush cycles: bounds the memory (about
/// 40 B a key) under a flood.
const MAX_KEYS: usize = 1 << 16;

#[derive(Default)]
pub(super) struct Deferred {
    /// Event id → (slice end, expiry).
    keys: HashMap<EventId, (u64, u64)>,
    marks: Vec<Changed>,
    /// Highest seq committed since the last write: the checkpoint may move up to it after.
    committed: Option<u64>,
    /// Whether settlements wait here (marks or dead letters): their count moves after the write.
    settled: bool,
}

impl Deferred {
    /// The expiry of a key of `id` waiting here.
    pub(super) fn expiry_of(&self, id: &EventId) -> Option<u64> {
        self.keys.get(id).map(|&(_, expiry)| expiry)
    }

    pub(super) fn is_full(&self) -> bool {
        self.keys.len() >= MAX_KEYS
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

    /// Keeps state changes to write as marks; the settlement count covering them moves once
    /// they are in sled, so retention keeps their segments until a flush made them durable.
    pub(super) fn defer_marks(&mut self, changed: Vec<Changed>, settlement: bool) {
        self.deferred.marks.extend(changed);
        self.deferred.settled |= settlement;
    }

    /// The settlement count the next write publishes (only the writer moves it).
    pub(super) fn next_settled(&self) -> u64 {
        self.progress.settled.load(Ordering::Acquire) + 1
    }

    /// Writes what waits into sled (unflushed), then moves the checkpoint and settlement count
    /// the flusher reads. Called before each flush and when the keys reach [`MAX_KEYS`].
    pub(super) fn write_deferred(&mut self) {
        let deferred = std::mem::take(&mut self.deferred);
        let mut keys: Vec<dedup::Key> = deferred
            .keys
            .into_iter()
            .map(|(id, (end, expiry))| (end, id, expiry, false))
            .collect();
        keys.sort_unstable_by_key(|key| key.0);
        match dedup::insert(&self.dedup, &keys) {
            Ok(()) => {
                if let Some(high) = deferred.committed {
                    self.progress.applied_seq.store(high, Ordering::Release);
                }
            }
            // The events are durable, so they stand; their keys are written again at the next
            // open (the checkpoint stays before them), which a failed sled needs anyway.
            Err(e) => {
                self.broken = true;
                tracing::error!(error = %e, "dedup keys not written; the store takes no more writes until restarted");
            }
        }
        if let Err(e) = self.write_marks(deferred.marks) {
            tracing::error!(error = %e, "recording confirms failed");
            return;
        }
        if deferred.settled {
            self.progress.settled.fetch_add(1, Ordering::AcqRel);
        }
    }
}
