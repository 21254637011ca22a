//! Dedup keys: the check an append makes and the keys it leaves, in time slices of sled trees.
//!
//! Ids and expiry semantics are those of every earlier version (event id, 16 bytes → expiry,
//! unix ms), so ids keep deduplicating across an upgrade. The flusher writes each batch's keys
//! as one run per slice (`runs`); earlier versions' single keys are still read, and start-up
//! writes the keys it restores that way. Keys are written without a flush: the flusher's
//! checkpoint says up to which seq they are on disk, and opening the store writes them again
//! for the records after it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use crate::event::EventId;
use crate::store::error::{corrupt, StoreError};
use crate::store::layout::block::IdExpiry;
use crate::store::layout::record;

mod runs;
mod slices;

use slices::Slice;
pub(crate) use slices::Slices;

/// Time slices per dedup window: a slice is dropped once all of it has expired, so up to a
/// quarter more than the window is kept, in exchange for expiring a slice with one `drop_tree`.
pub(crate) const SLICES_PER_WINDOW: u64 = 4;

/// Keys on their way to sled, by event id.
pub(crate) type Keys = HashMap<EventId, Expiry>;

/// When a key expires, and the slice that holds it (the one whose time span holds its expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expiry {
    pub(crate) slice_end: u64,
    pub(crate) at_ms: u64,
}

/// A key the writer took for a new event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NewKey {
    pub(crate) id: EventId,
    pub(crate) expiry: Expiry,
    /// Whether it adds to its slice's count: false when an expired key of its id lies in that
    /// slice already and is overwritten.
    pub(crate) adds: bool,
}

/// What a lookup found of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// An unexpired key holds it: the event is a duplicate.
    Duplicate,
    /// No unexpired key holds it; `replaces` when an expired one lies in the slice its new key
    /// goes to.
    New { replaces: bool },
}

/// The slices that can still hold an unexpired key, newest first (a repeat is most likely recent).
pub(crate) fn live(dedup: &Slices, now: u64) -> Vec<u64> {
    dedup
        .read()
        .range(now.saturating_add(1)..)
        .rev()
        .map(|(end, _)| *end)
        .collect()
}

/// The expiry of `id`'s key in `slice`, if it has one there.
fn expiry_in(slice: &Slice, id: &EventId, now: u64) -> Result<Option<u64>, StoreError> {
    if !slice.may_hold(&id.0) {
        return Ok(None);
    }
    let mut found = None;
    if slice.legacy.load(Ordering::Relaxed) {
        if let Some(value) = slice.tree.get(id.0)? {
            found = record::decode_expiry(&value);
            if found.is_none() {
                tracing::warn!(id = %id, "unreadable dedup entry ignored");
            }
        }
    }
    Ok(found.max(slice.runs().find(&slice.tree, &id.0, now)?))
}

/// Whether `id` is held by an unexpired key; if not, whether a key of it lies in slice `end`
/// already (an expired one, overwritten rather than added).
pub(crate) fn lookup(
    dedup: &Slices,
    live: &[u64],
    id: &EventId,
    end: u64,
    now: u64,
) -> Result<Lookup, StoreError> {
    let slices = dedup.read();
    let mut replaces = false;
    for slice_end in live {
        let Some(slice) = slices.get(slice_end) else {
            continue;
        };
        match expiry_in(slice, id, now)? {
            Some(expiry) if expiry > now => return Ok(Lookup::Duplicate),
            Some(_) => replaces |= *slice_end == end,
            None => {}
        }
    }
    Ok(Lookup::New { replaces })
}

/// Key in the `meta` tree: the latest expiry of the keys written before this release, which
/// tells them from the keys it writes itself (event/key.rs says why that matters).
const EARLIER_UNTIL_KEY: &[u8] = b"earlier-keys-until";

/// The latest expiry a key written by an earlier release can have: read from `meta`, or, the
/// first time this release opens the directory, the latest expiry of every key found (written
/// by the release before, or restored from its records) and then remembered, so keys this
/// release writes never count. Every key written later expires later, unless
/// `storage.dedup_window` was shortened across the upgrade (such a key then counts as an
/// earlier one until it expires: a change is taken for a repeat, never the other way round).
pub(crate) fn earlier_until(
    db: &sled::Db,
    meta: &sled::Tree,
    dedup: &Slices,
) -> Result<u64, StoreError> {
    if let Some(value) = meta.get(EARLIER_UNTIL_KEY)? {
        return record::decode_expiry(&value)
            .ok_or_else(|| corrupt("earlier-keys-until is not 8 bytes"));
    }
    let until = dedup.latest_expiry();
    meta.insert(EARLIER_UNTIL_KEY, &record::expiry_value(until)[..])?;
    // Before any key of this release can be written: a crash must not leave them counted.
    db.flush()?;
    Ok(until)
}

/// Whether `id` is held by an unexpired key written by an earlier release (expiring by
/// `until`, from [`earlier_until`]).
pub(crate) fn held_earlier(
    dedup: &Slices,
    live: &[u64],
    id: &EventId,
    now: u64,
    until: u64,
) -> Result<bool, StoreError> {
    let slices = dedup.read();
    for slice_end in live {
        let Some(slice) = slices.get(slice_end) else {
            continue;
        };
        if expiry_in(slice, id, now)?.is_some_and(|expiry| expiry > now && expiry <= until) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes keys as one run per slice, unflushed (the flusher thread, off the hot path); returns
/// the slices written to, whose runs may be due a merge ([`Slices::compact`], on the merger
/// thread). They are counted when the writer takes them ([`remember`]).
pub(crate) fn insert(dedup: &Slices, keys: &Keys) -> Result<Vec<u64>, StoreError> {
    let mut by_slice: BTreeMap<u64, Vec<IdExpiry>> = BTreeMap::new();
    for (id, expiry) in keys {
        by_slice
            .entry(expiry.slice_end)
            .or_default()
            .push(IdExpiry {
                id: id.0,
                expiry_ms: expiry.at_ms,
            });
    }
    let mut written = Vec::with_capacity(by_slice.len());
    for (end, entries) in by_slice {
        // The lock is taken per slice: the writer may need its write side for a new slice.
        let slices = dedup.read();
        // Gone only if its whole slice expired meanwhile: nothing left to remember then.
        let Some(slice) = slices.get(&end) else {
            continue;
        };
        let run = runs::write(&slice.tree, dedup.next_run(), entries)?;
        slice.runs().push(run);
        written.push(end);
    }
    Ok(written)
}

/// The merger thread: merges the runs due in each slice the flusher reports, until the flusher
/// is gone. Apart from the flusher so that a long merge (seconds for a slice of tens of millions
/// of keys) never holds up a flush or a barrier; as the store closes, a merge in progress stops
/// at its next block. One cut short leaves keys in both the old runs and the partial new one,
/// which lookups and the next open take as they are.
pub(crate) fn merge_runs(dedup: &Slices, slices: std::sync::mpsc::Receiver<u64>) {
    while let Ok(end) = slices.recv() {
        let due: std::collections::BTreeSet<u64> =
            std::iter::once(end).chain(slices.try_iter()).collect();
        for end in due {
            if let Err(e) = dedup.compact(end) {
                // The runs stay as they are: every key is still found, just with more reads.
                tracing::warn!(error = %e, slice = end, "merging dedup runs failed");
            }
        }
    }
}

/// Takes the writer's new keys into their slices' filters, and those that add to a count
/// (`NewKey::adds`) into their counts, before they reach sled: from then on a lookup finds them (I10).
pub(crate) fn remember(dedup: &Slices, keys: &[NewKey]) {
    let slices = dedup.read();
    for key in keys {
        if let Some(slice) = slices.get(&key.expiry.slice_end) {
            slice.remember(&key.id.0);
            slice.added(u64::from(key.adds), 0);
        }
    }
}

/// Writes the key of a record found after the checkpoint at start-up (unless it has expired).
pub(crate) fn restore(
    dedup: &Slices,
    id: &EventId,
    expiry_ms: u64,
    now: u64,
) -> Result<(), StoreError> {
    if expiry_ms <= now {
        return Ok(());
    }
    let end = dedup.ensure(expiry_ms)?;
    dedup.restored(expiry_ms);
    let slices = dedup.read();
    if let Some(slice) = slices.get(&end) {
        slice.remember(&id.0);
        slice.legacy.store(true, Ordering::Relaxed);
        let old = slice
            .tree
            .insert(&id.0[..], &record::expiry_value(expiry_ms)[..])?;
        if old.is_none() {
            slice.added(1, 0);
        }
    }
    Ok(())
}
