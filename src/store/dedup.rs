//! Dedup keys: the check an append makes and the keys it leaves, in time slices of sled trees.
//!
//! Key bytes and expiry semantics are those of every earlier version (event id, 16 bytes →
//! expiry, unix ms, 8 bytes BE), so ids keep deduplicating across an upgrade. Keys are written
//! without a flush: the flusher's checkpoint says up to which seq they are on disk, and opening
//! the store writes them again for the records after it.

use super::generations::Generations;
use super::record;
use super::StoreError;
use crate::event::EventId;

/// The slices that can still hold an unexpired key, newest first (a repeat is most likely recent).
pub(super) fn live(dedup: &Generations, now: u64) -> Vec<u64> {
    dedup
        .read()
        .range(now.saturating_add(1)..)
        .rev()
        .map(|(end, _)| *end)
        .collect()
}

/// Whether `id` is held by an unexpired key; and whether its key in slice `end` exists already
/// (an expired one, overwritten rather than added).
pub(super) fn lookup(
    dedup: &Generations,
    live: &[u64],
    id: &EventId,
    end: u64,
    now: u64,
) -> Result<(bool, bool), StoreError> {
    let slices = dedup.read();
    let mut overwrites = false;
    for slice_end in live {
        let Some(slice) = slices.get(slice_end) else {
            continue;
        };
        if !slice.may_hold(&id.0) {
            continue;
        }
        let Some(value) = slice.tree.get(id.0)? else {
            continue;
        };
        match record::decode_expiry(&value) {
            Some(expiry) if expiry > now => return Ok((true, false)),
            Some(_) => {}
            None => tracing::warn!(id = %id, "unreadable dedup entry ignored"),
        }
        overwrites |= *slice_end == end;
    }
    Ok((false, overwrites))
}

/// Keys per sled batch. sled keeps every node version a batch replaces until the batch ends
/// (one epoch guard), so one batch of a second's keys held tens of MB at once.
const BATCH_KEYS: usize = 128;

/// A key to write: its slice end, id, expiry, and whether it adds to the slice's count.
pub(super) type Key = (u64, EventId, u64, bool);

/// Writes keys (ordered by slice end) in batches of [`BATCH_KEYS`], unflushed (the flusher
/// thread, off the hot path). They are counted when the writer takes them ([`remember`]).
pub(super) fn insert(dedup: &Generations, mut keys: &[Key]) -> Result<(), StoreError> {
    while let Some(&(end, ..)) = keys.first() {
        let same = keys.iter().take_while(|key| key.0 == end).count();
        let (group, rest) = keys.split_at(same);
        keys = rest;
        for chunk in group.chunks(BATCH_KEYS) {
            // The lock is taken per chunk: the writer may need the write side for a new slice.
            let slices = dedup.read();
            // Gone only if its whole slice expired meanwhile: nothing left to remember then.
            let Some(slice) = slices.get(&end) else {
                break;
            };
            let mut batch = sled::Batch::default();
            for (_, id, expiry, _) in chunk {
                batch.insert(&id.0[..], &record::expiry_value(*expiry)[..]);
            }
            slice.tree.apply_batch(batch)?;
        }
    }
    Ok(())
}

/// Takes the writer's new keys into their slices' filters, and the new ones (`Key`'s flag)
/// into their counts, before they reach sled: from then on a lookup finds them.
pub(super) fn remember(dedup: &Generations, keys: &[Key]) {
    let slices = dedup.read();
    for (end, id, _, new) in keys {
        if let Some(slice) = slices.get(end) {
            slice.remember(&id.0);
            slice.added(u64::from(*new), 0);
        }
    }
}

/// Writes the key of a record found after the checkpoint at start-up (unless it has expired).
pub(super) fn restore(
    dedup: &Generations,
    id: &EventId,
    expiry_ms: u64,
    now: u64,
) -> Result<(), StoreError> {
    if expiry_ms <= now {
        return Ok(());
    }
    let end = dedup.ensure(expiry_ms)?;
    let slices = dedup.read();
    if let Some(slice) = slices.get(&end) {
        slice.remember(&id.0);
        let old = slice
            .tree
            .insert(&id.0[..], &record::expiry_value(expiry_ms)[..])?;
        if old.is_none() {
            slice.added(1, 0);
        }
    }
    Ok(())
}
