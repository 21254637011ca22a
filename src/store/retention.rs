//! Retention, as a decision over the index and the ledger: which WHOLE segments may go, once
//! every record in them is settled and they are either old enough or over the byte cap. The
//! writer deletes what this chooses (`writer::settle`).
//!
//! A segment goes only when its dedup keys are flushed (its last seq is at or below the
//! flusher's checkpoint: opening the store rebuilds keys from the segments after the
//! checkpoint, so a deleted segment must not hold a key not yet on disk), and so is its last
//! settlement (a dead letter's copy must be on disk before its segment goes): I7.

use super::index::{Segment, Table};
use super::ledger::Ledger;

/// `storage.keep_delivered` and `keep_delivered_max_bytes`, in the units retention uses.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    pub(super) keep_ms: u64,
    pub(super) max_bytes: u64,
}

/// The first seqs of the segments the policy lets go at `now_ms`, oldest first.
pub(super) fn doomed(
    table: &Table,
    policy: &Policy,
    active_first: u64,
    ledger: &Ledger,
    now_ms: u64,
) -> Vec<u64> {
    let cutoff = now_ms.saturating_sub(policy.keep_ms);
    let candidates: Vec<(u64, &Segment)> = table
        .segments
        .iter()
        // I7.
        .filter(|(first, s)| {
            **first != active_first
                && s.is_settled()
                && ledger.is_flushed(s.last_seq().unwrap_or(0), s.marks_batch)
        })
        .map(|(first, s)| (*first, s))
        .collect();
    let (_, mut kept_bytes) = table.delivered();
    let mut doomed = Vec::new();
    for (first, s) in candidates {
        // Oldest first: over the cap, the oldest settled segments go whatever their age.
        if policy.keep_ms == 0 || s.last_settled_ms <= cutoff || kept_bytes > policy.max_bytes {
            kept_bytes = kept_bytes.saturating_sub(s.delivered_bytes);
            doomed.push(first);
        }
    }
    doomed
}
