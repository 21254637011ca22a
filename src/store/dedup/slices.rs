//! Time slices of the dedup keys: keys that expire together live in one sled tree, dropped whole
//! once its slice has expired.
//!
//! Deleting expired keys one by one left sled's log creeping (segments are reclaimed lazily and
//! half-empty leaves stay), and every deletion cost a write. A slice is one tree named
//! `{prefix}{end_ms}`, holding entries whose time (expiry, delivery) falls in
//! `[end_ms - width, end_ms)`; expiring it is one `drop_tree`.
//!
//! sled must not be used through a handle of a dropped tree, so every access holds the read lock
//! for its whole (synchronous) duration and never keeps a handle past it; expiry removes slices
//! under the write lock and drops them after releasing it, when no one can reach them. Merges of
//! a slice's runs (`runs`), which can be long, hold the maintenance lock instead, as the drop does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use growable_bloom_filter::GrowableBloom;

use super::runs::{self, Runs};
use crate::store::error::StoreError;
use crate::store::layout::block;

/// One slice: its tree, running counts of its entries (kept beside it, so no one counts a
/// tree), and a Bloom filter of its keys.
pub(crate) struct Slice {
    pub(crate) tree: sled::Tree,
    pub(crate) entries: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Every key in the tree or on its way to it. Nearly every webhook is new, and proving a
    /// key absent in sled costs a page read (and often a node copy) per slice; the filter
    /// proves it in a few hashes, leaving sled one read in a thousand. Rebuilt at open.
    filter: Mutex<GrowableBloom>,
    /// The runs of packed keys in the tree (`runs`).
    runs: Mutex<Runs>,
    /// Whether the tree also holds single keys (written by earlier versions, and at start-up).
    pub(crate) legacy: AtomicBool,
}

/// False positives the filter allows: each costs one sled read.
const FILTER_ERROR: f64 = 0.001;
/// Keys a new filter is sized for; it grows (as a scalable Bloom filter) past them.
const FILTER_KEYS: usize = 1 << 16;

impl Slice {
    fn new(tree: sled::Tree) -> Slice {
        Slice {
            tree,
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            filter: Mutex::new(GrowableBloom::new(FILTER_ERROR, FILTER_KEYS)),
            runs: Mutex::new(Runs::default()),
            legacy: AtomicBool::new(false),
        }
    }

    /// The slice's runs; lookups hold them for their sled reads, merges only to swap runs.
    pub(crate) fn runs(&self) -> MutexGuard<'_, Runs> {
        // Every change is one call on `Runs`: a panic cannot leave them half-changed.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn added(&self, entries: u64, bytes: u64) {
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn filter(&self) -> MutexGuard<'_, GrowableBloom> {
        // Inserts are single calls: a panic cannot leave the filter without a key it had.
        self.filter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key to the filter; call it before the key can be looked up in the tree.
    pub(crate) fn remember(&self, key: &[u8]) {
        self.filter().insert(key);
    }

    /// False only if the tree cannot hold `key`.
    pub(crate) fn may_hold(&self, key: &[u8]) -> bool {
        self.filter().contains(key)
    }
}

/// Slices by their end time (exclusive), oldest first. Shared, so a merge can work on one
/// without holding the map's lock.
pub(crate) type SliceMap = BTreeMap<u64, Arc<Slice>>;

pub(crate) struct Slices {
    db: sled::Db,
    prefix: &'static str,
    width_ms: u64,
    slices: RwLock<SliceMap>,
    /// Number of the next run written (`runs`), above every run in any slice.
    next_run: AtomicU64,
    /// Held by a merge and by dropping expired trees: a merge works outside the map's lock, on
    /// a tree that must not be dropped under it.
    maintenance: Mutex<()>,
    /// Set as the store closes: a merge in progress stops at its next block.
    stopping: AtomicBool,
    /// The latest expiry of the keys found at open and restored since (`dedup::earlier_until`).
    latest: AtomicU64,
}

/// What expiry took out: already unreachable, dropped by [`Slices::drop_expired`].
pub(crate) struct Expired {
    names: Vec<String>,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

impl Slices {
    /// Opens the slices found in `db`, counting each once. `width_ms` only shapes new slices:
    /// old ones keep their bounds when the setting changes.
    pub(crate) fn open(
        db: &sled::Db,
        prefix: &'static str,
        width_ms: u64,
    ) -> Result<Slices, StoreError> {
        let mut slices = SliceMap::new();
        let mut last_run = 0;
        let mut latest = 0;
        for name in db.tree_names() {
            let Some(end) = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|end| end.parse::<u64>().ok())
            else {
                continue;
            };
            let slice = Slice::new(db.open_tree(&name)?);
            let (mut entries, mut bytes) = (0u64, 0u64);
            let mut blocks = Vec::new();
            for entry in slice.tree.iter() {
                let (key, value) = entry?;
                bytes += value.len() as u64;
                if let Some((run, first)) = block::decode_block_key(&key) {
                    let mut keys = 0;
                    for key in block::entries(&value) {
                        slice.remember(&key.id);
                        latest = latest.max(key.expiry_ms);
                        keys += 1;
                    }
                    entries += keys;
                    blocks.push((run, first, keys));
                } else {
                    slice.remember(&key);
                    latest = latest
                        .max(crate::store::layout::record::decode_expiry(&value).unwrap_or(0));
                    slice.legacy.store(true, Ordering::Relaxed);
                    entries += 1;
                }
            }
            let found = Runs::from_blocks(blocks);
            last_run = last_run.max(found.highest_number().unwrap_or(0));
            *slice.runs() = found;
            slice.added(entries, bytes);
            slices.insert(end, Arc::new(slice));
        }
        Ok(Slices {
            db: db.clone(),
            prefix,
            width_ms: width_ms.max(1),
            slices: RwLock::new(slices),
            next_run: AtomicU64::new(last_run + 1),
            maintenance: Mutex::new(()),
            stopping: AtomicBool::new(false),
            latest: AtomicU64::new(latest),
        })
    }

    /// The latest expiry of any key found at open or restored since.
    pub(super) fn latest_expiry(&self) -> u64 {
        self.latest.load(Ordering::Relaxed)
    }

    /// Counts a key restored at open into [`Slices::latest_expiry`].
    pub(super) fn restored(&self, expiry: u64) {
        self.latest.fetch_max(expiry, Ordering::Relaxed);
    }

    /// Stops merges: the one in progress at its next block, and every later one.
    pub(crate) fn stop_merges(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// A number for a new run, above every other.
    pub(crate) fn next_run(&self) -> u64 {
        self.next_run.fetch_add(1, Ordering::Relaxed)
    }

    /// Merges the runs of slice `end` while any are due (`Runs::to_merge`).
    pub(crate) fn compact(&self, end: u64) -> Result<(), StoreError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        // Taken out by expiry meanwhile: its tree is dropped once this lets go.
        let Some(slice) = self.read().get(&end).cloned() else {
            return Ok(());
        };
        loop {
            let Some(chosen) = slice.runs().to_merge() else {
                return Ok(());
            };
            let started = std::time::Instant::now();
            let Some(merged) = runs::merge(&slice.tree, &chosen, self.next_run(), &self.stopping)?
            else {
                return Ok(());
            };
            let keys = merged.keys;
            // I11: the merged run is written; only now do the runs it replaces go.
            slice.runs().replace(&chosen, merged);
            runs::remove(&slice.tree, &chosen)?;
            tracing::debug!(
                slice = end,
                runs = chosen.len(),
                keys,
                ms = started.elapsed().as_millis() as u64,
                "dedup runs merged"
            );
        }
    }

    fn name(&self, end: u64) -> String {
        // Zero-padded so names also sort by time in listings.
        format!("{}{end:020}", self.prefix)
    }

    /// Read access to every slice; hold it only for synchronous work, and keep no tree handle
    /// past it (I15).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, SliceMap> {
        // A panic while holding the lock cannot leave the map half-changed (single inserts/removes).
        self.slices
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write access, for adding and taking out slices only (no sled work under it).
    fn write(&self) -> RwLockWriteGuard<'_, SliceMap> {
        self.slices
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// End (the map key) of the slice holding time `at`.
    pub(crate) fn end_of(&self, at: u64) -> u64 {
        (at / self.width_ms)
            .saturating_add(1)
            .saturating_mul(self.width_ms)
    }

    /// Makes sure the slice holding time `at` exists and returns its end. Look it up under
    /// [`Slices::read`] right after: it may have expired in between, and is then absent.
    pub(crate) fn ensure(&self, at: u64) -> Result<u64, StoreError> {
        let end = self.end_of(at);
        if self.read().contains_key(&end) {
            return Ok(end);
        }
        let mut slices = self.write();
        if let std::collections::btree_map::Entry::Vacant(slot) = slices.entry(end) {
            slot.insert(Arc::new(Slice::new(self.db.open_tree(self.name(end))?)));
        }
        Ok(end)
    }

    /// Takes out every slice ending at or before `cutoff`; after this no one can reach them
    /// (I15). Every key in such a slice expired before its end (I10).
    pub(crate) fn take_expired(&self, cutoff: u64) -> Expired {
        let mut slices = self.write();
        let keep = slices.split_off(&cutoff.saturating_add(1));
        let gone = std::mem::replace(&mut *slices, keep);
        drop(slices);
        let mut expired = Expired {
            names: Vec::with_capacity(gone.len()),
            entries: 0,
            bytes: 0,
        };
        for (end, slice) in gone {
            expired.entries += slice.entries.load(Ordering::Relaxed);
            expired.bytes += slice.bytes.load(Ordering::Relaxed);
            expired.names.push(self.name(end));
        }
        expired
    }

    /// Frees what [`Slices::take_expired`] took out.
    pub(crate) fn drop_expired(&self, expired: &Expired) -> Result<(), StoreError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        for name in &expired.names {
            self.db.drop_tree(name)?;
        }
        Ok(())
    }

    /// Entries and bytes over all slices.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.read()
            .values()
            .fold((0, 0), |(entries, bytes), slice| {
                (
                    entries + slice.entries.load(Ordering::Relaxed),
                    bytes + slice.bytes.load(Ordering::Relaxed),
                )
            })
    }
}
