//! Dedup keys packed in sorted runs of blocks: a flush writes a slice's new keys as one run at
//! the right edge of its tree, and runs of like size are merged, so sled takes a write per block
//! of keys, not per key.
//!
//! Why: one random 16-byte key per sled insert cost 17–18 µs of flusher CPU per event, a fifth
//! of the relay's work (docs/benchmarks.md, fifth round). A block's key is `[run number, 8 bytes
//! BE][its first id, 16 bytes]`; its value is up to [`BLOCK_KEYS`] entries `[id, 16][expiry ms,
//! 8 BE]` sorted by id. The first id of each block (its fence) is kept in memory, so a lookup
//! reads at most one block per run, and a slice holds at most about [`MAX_RUNS`] runs. Earlier
//! versions wrote one key per id (16 bytes → expiry); those are still read: 16-byte keys never
//! collide with 24-byte block keys.
//!
//! Crash rule: a merge writes its run before the runs it replaces are removed, and sled recovers
//! a prefix of its writes, so after a crash a key is in the new run, the old ones, or both (I11).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::store::error::StoreError;
use crate::store::layout::block::{
    block_key, decode_entry, encode_entry, search, Id, IdExpiry, BLOCK_KEY, BLOCK_KEYS, ENTRY,
};

/// Runs of one size class merged at once: each key is rewritten about once per class it climbs.
const FAN_IN: usize = 8;
/// Above this many runs the newest [`FAN_IN`] are merged whatever their sizes, which bounds the
/// sled reads of a lookup when flushes vary in size.
const MAX_RUNS: usize = 4 * FAN_IN;
/// Block writes or removals per sled batch: a batch keeps every node version it replaces.
const BATCH_BLOCKS: usize = 32;

/// One run: its number (the first 8 bytes of its block keys), its entries and its fences.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub(crate) number: u64,
    pub(crate) keys: u64,
    fences: Vec<Id>,
}

impl Run {
    fn size_class(&self) -> u32 {
        self.keys.max(1).ilog(FAN_IN as u64)
    }

    /// The fence of the only block that can hold `id`.
    fn fence_for(&self, id: &Id) -> Option<&Id> {
        let after = self.fences.partition_point(|fence| fence <= id);
        self.fences.get(after.checked_sub(1)?)
    }
}

/// A slice's runs, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    list: Vec<Run>,
}

impl Runs {
    /// Rebuilds the runs from a slice's block keys (as [`decode_block_key`] gives them, in
    /// tree order) and their entry counts.
    pub(crate) fn from_blocks(blocks: impl IntoIterator<Item = (u64, Id, u64)>) -> Runs {
        let mut list: Vec<Run> = Vec::new();
        for (number, first, keys) in blocks {
            match list.last_mut() {
                Some(run) if run.number == number => {
                    run.fences.push(first);
                    run.keys += keys;
                }
                _ => list.push(Run {
                    number,
                    keys,
                    fences: vec![first],
                }),
            }
        }
        Runs { list }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn highest_number(&self) -> Option<u64> {
        self.list.iter().map(|run| run.number).max()
    }

    pub(crate) fn push(&mut self, run: Run) {
        if run.keys > 0 {
            self.list.push(run);
        }
    }

    /// The latest expiry `tree` holds for `id` in these runs, newest run first; stops at the
    /// first one after `now` (enough to call it a duplicate).
    pub(crate) fn find(
        &self,
        tree: &sled::Tree,
        id: &Id,
        now: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut found: Option<u64> = None;
        for run in self.list.iter().rev() {
            let Some(fence) = run.fence_for(id) else {
                continue;
            };
            let Some(block) = tree.get(block_key(run.number, fence))? else {
                tracing::warn!(
                    run = run.number,
                    "dedup block missing; its keys are not checked"
                );
                continue;
            };
            if let Some(expiry) = search(&block, id) {
                found = found.max(Some(expiry));
                if expiry > now {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The runs to merge next, if any: the newest [`FAN_IN`] when they share a size class or
    /// when there are more than [`MAX_RUNS`].
    pub(crate) fn to_merge(&self) -> Option<Vec<Run>> {
        let tail = self.list.get(self.list.len().checked_sub(FAN_IN)?..)?;
        let class = tail.first()?.size_class();
        let alike = tail.iter().all(|run| run.size_class() == class);
        (alike || self.list.len() > MAX_RUNS).then(|| tail.to_vec())
    }

    /// Puts `merged` in place of the runs it was merged from.
    pub(crate) fn replace(&mut self, merged_from: &[Run], merged: Run) {
        self.list
            .retain(|run| !merged_from.iter().any(|old| old.number == run.number));
        self.push(merged);
    }
}

/// Writes blocks as they fill, in batches; gives the run they make up.
struct RunWriter<'t> {
    tree: &'t sled::Tree,
    run: Run,
    block: Vec<u8>,
    batch: sled::Batch,
    batched: usize,
}

impl<'t> RunWriter<'t> {
    fn new(tree: &'t sled::Tree, number: u64) -> RunWriter<'t> {
        RunWriter {
            tree,
            run: Run {
                number,
                ..Run::default()
            },
            block: Vec::with_capacity(BLOCK_KEYS * ENTRY),
            batch: sled::Batch::default(),
            batched: 0,
        }
    }

    fn push(&mut self, key: IdExpiry) -> Result<(), StoreError> {
        if self.block.is_empty() {
            self.run.fences.push(key.id);
        }
        encode_entry(&mut self.block, key);
        self.run.keys += 1;
        if self.block.len() >= BLOCK_KEYS * ENTRY {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<(), StoreError> {
        let Some(first) = self.run.fences.last() else {
            return Ok(());
        };
        if self.block.is_empty() {
            return Ok(());
        }
        self.batch
            .insert(&block_key(self.run.number, first)[..], &self.block[..]);
        self.block.clear();
        self.batched += 1;
        if self.batched >= BATCH_BLOCKS {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.batched = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Run, StoreError> {
        self.end_block()?;
        if self.batched > 0 {
            self.tree.apply_batch(self.batch)?;
        }
        Ok(self.run)
    }
}

/// Writes `entries` (any order; a repeated id keeps its latest expiry) as run `number`.
pub(crate) fn write(
    tree: &sled::Tree,
    number: u64,
    mut entries: Vec<IdExpiry>,
) -> Result<Run, StoreError> {
    entries.sort_unstable();
    let mut writer = RunWriter::new(tree, number);
    let mut iter = entries.into_iter().peekable();
    while let Some(entry) = iter.next() {
        // Sorted by (id, expiry): the last of equal ids has the latest expiry.
        if iter.peek().is_some_and(|next| next.id == entry.id) {
            continue;
        }
        writer.push(entry)?;
    }
    writer.finish()
}

/// Reads one run's entries in order, a block at a time.
struct RunReader {
    blocks: sled::Iter,
    block: sled::IVec,
    at: usize,
}

impl RunReader {
    fn new(tree: &sled::Tree, run: &Run) -> RunReader {
        RunReader {
            blocks: tree.scan_prefix(run.number.to_be_bytes()),
            block: sled::IVec::default(),
            at: 0,
        }
    }

    fn peek(&mut self) -> Result<Option<IdExpiry>, StoreError> {
        while self.at + ENTRY > self.block.len() {
            let Some(next) = self.blocks.next() else {
                return Ok(None);
            };
            let (key, block) = next?;
            if key.len() != BLOCK_KEY {
                continue;
            }
            self.block = block;
            self.at = 0;
        }
        let chunk = self.block[self.at..].first_chunk::<ENTRY>();
        Ok(chunk.map(decode_entry))
    }
}

/// Merges `runs` into run `number` (a repeated id keeps its latest expiry); the merged runs
/// stay in the tree until [`remove`]. `None` if `stop` was set first (checked once a block): the
/// blocks written so far stay, a run no list holds whose keys the merged runs still have.
pub(crate) fn merge(
    tree: &sled::Tree,
    runs: &[Run],
    number: u64,
    stop: &AtomicBool,
) -> Result<Option<Run>, StoreError> {
    let mut readers: Vec<RunReader> = runs.iter().map(|run| RunReader::new(tree, run)).collect();
    let mut writer = RunWriter::new(tree, number);
    let mut heads: Vec<Option<IdExpiry>> = Vec::with_capacity(readers.len());
    loop {
        if writer.run.keys.is_multiple_of(BLOCK_KEYS as u64) && stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        heads.clear();
        for reader in &mut readers {
            heads.push(reader.peek()?);
        }
        let Some(id) = heads.iter().flatten().map(|head| head.id).min() else {
            break;
        };
        let mut expiry_ms = 0;
        for (reader, head) in readers.iter_mut().zip(&heads) {
            if let Some(head) = head {
                if head.id == id {
                    expiry_ms = expiry_ms.max(head.expiry_ms);
                    reader.at += ENTRY;
                }
            }
        }
        writer.push(IdExpiry { id, expiry_ms })?;
    }
    writer.finish().map(Some)
}

/// Removes the blocks of `runs` from `tree`.
pub(crate) fn remove(tree: &sled::Tree, runs: &[Run]) -> Result<(), StoreError> {
    for run in runs {
        for fences in run.fences.chunks(BATCH_BLOCKS) {
            let mut batch = sled::Batch::default();
            for fence in fences {
                batch.remove(&block_key(run.number, fence)[..]);
            }
            tree.apply_batch(batch)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::block::{decode_block_key, entries, ID};

    fn key(id: Id, expiry_ms: u64) -> IdExpiry {
        IdExpiry { id, expiry_ms }
    }

    fn id(n: u32) -> Id {
        let mut id = [0u8; ID];
        // Spread over the id space like hashes, yet reproducible.
        id[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_be_bytes());
        id[12..].copy_from_slice(&n.to_be_bytes());
        id
    }

    fn tree() -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("slice").unwrap();
        (db, tree)
    }

    /// Merges as the store does after each flush, numbering merged runs after `number`.
    fn merge_due(tree: &sled::Tree, runs: &mut Runs, number: &mut u64) {
        while let Some(chosen) = runs.to_merge() {
            *number += 1;
            let merged = merge(tree, &chosen, *number, &AtomicBool::new(false))
                .unwrap()
                .expect("not stopped");
            runs.replace(&chosen, merged);
            remove(tree, &chosen).unwrap();
        }
    }

    fn runs_in(tree: &sled::Tree) -> Runs {
        Runs::from_blocks(tree.iter().map(|entry| {
            let (key, value) = entry.unwrap();
            let (number, first) = decode_block_key(&key).unwrap();
            (number, first, (value.len() / ENTRY) as u64)
        }))
    }

    #[test]
    fn a_run_finds_every_key_it_holds_and_no_other() {
        let (_db, tree) = tree();
        let entries: Vec<IdExpiry> = (0..1000)
            .map(|n| key(id(n), 5_000 + u64::from(n)))
            .collect();
        let mut runs = Runs::default();
        runs.push(write(&tree, 1, entries).unwrap());
        assert_eq!(
            tree.len(),
            1000usize.div_ceil(BLOCK_KEYS),
            "one sled key per block"
        );
        for n in 0..1000 {
            assert_eq!(
                runs.find(&tree, &id(n), 0).unwrap(),
                Some(5_000 + u64::from(n))
            );
        }
        for n in 1000..1100 {
            assert_eq!(runs.find(&tree, &id(n), 0).unwrap(), None, "id {n}");
        }
    }

    #[test]
    fn a_repeated_id_keeps_its_latest_expiry_in_a_run_and_in_a_merge() {
        let (_db, tree) = tree();
        let first = write(
            &tree,
            1,
            vec![key(id(1), 10), key(id(2), 10), key(id(1), 30)],
        )
        .unwrap();
        assert_eq!(first.keys, 2);
        let second = write(&tree, 2, vec![key(id(1), 20), key(id(3), 10)]).unwrap();
        let both = [first.clone(), second.clone()];
        let merged = merge(&tree, &both, 3, &AtomicBool::new(false))
            .unwrap()
            .expect("not stopped");
        remove(&tree, &[first, second]).unwrap();
        assert_eq!(merged.keys, 3);
        let mut runs = Runs::default();
        runs.push(merged);
        assert_eq!(runs.find(&tree, &id(1), 0).unwrap(), Some(30));
        assert_eq!(tree.len(), 1, "merged runs are gone");
    }

    #[test]
    fn a_stopped_merge_leaves_the_runs_it_merges_whole() {
        let (_db, tree) = tree();
        let mut runs = Runs::default();
        let entries: Vec<IdExpiry> = (0..1000).map(|n| key(id(n), 9)).collect();
        let first = write(&tree, 1, entries[..500].to_vec()).unwrap();
        let second = write(&tree, 2, entries[500..].to_vec()).unwrap();
        runs.push(first.clone());
        runs.push(second.clone());
        let stopped = merge(&tree, &[first, second], 3, &AtomicBool::new(true)).unwrap();
        assert!(stopped.is_none());
        for n in 0..1000 {
            assert_eq!(runs.find(&tree, &id(n), 0).unwrap(), Some(9), "id {n}");
        }
    }

    #[test]
    fn find_reports_an_expired_copy_and_a_live_one_in_another_run() {
        let (_db, tree) = tree();
        let mut runs = Runs::default();
        runs.push(write(&tree, 1, vec![key(id(7), 100)]).unwrap());
        assert_eq!(runs.find(&tree, &id(7), 500).unwrap(), Some(100), "expired");
        runs.push(write(&tree, 2, vec![key(id(7), 900)]).unwrap());
        assert_eq!(runs.find(&tree, &id(7), 500).unwrap(), Some(900), "live");
    }

    /// Flushes of like size: runs are merged as they accumulate, every key stays findable, and
    /// what is in the tree is what the runs in memory say (rebuilt as at open).
    #[test]
    fn merging_as_runs_accumulate_keeps_every_key_and_bounds_the_runs() {
        let (_db, tree) = tree();
        let mut runs = Runs::default();
        let mut number = 0;
        let mut next = 0u32;
        for flush in 0..200u32 {
            // Sizes vary, so both the size-class and the count rule merge.
            let size = 50 + (flush * 37) % 400;
            let entries = (next..next + size)
                .map(|n| key(id(n), u64::from(n)))
                .collect();
            next += size;
            number += 1;
            runs.push(write(&tree, number, entries).unwrap());
            merge_due(&tree, &mut runs, &mut number);
            assert!(
                runs.len() <= MAX_RUNS,
                "{} runs after flush {flush}",
                runs.len()
            );
        }
        let total: u64 = runs.list.iter().map(|run| run.keys).sum();
        assert_eq!(total, u64::from(next));
        for n in (0..next).step_by(7) {
            assert_eq!(
                runs.find(&tree, &id(n), 0).unwrap(),
                Some(u64::from(n)),
                "id {n}"
            );
        }
        let reopened = runs_in(&tree);
        assert_eq!(reopened.len(), runs.len());
        for (a, b) in reopened.list.iter().zip(&runs.list) {
            assert_eq!((a.number, a.keys, &a.fences), (b.number, b.keys, &b.fences));
        }
    }

    /// Against a plain map: runs of random ids (drawn from a small space, so ids repeat within
    /// and across runs) with random expiries, merged as they come due; after every step each id
    /// of the space is found with the latest expiry written for it, or not at all.
    #[test]
    fn runs_and_merges_answer_as_a_map_of_latest_expiries() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let (_db, tree) = tree();
        let mut runs = Runs::default();
        let mut model: std::collections::HashMap<Id, u64> = std::collections::HashMap::new();
        let mut number = 0;
        const SPACE: u64 = 3_000;
        for step in 0..120 {
            let size = 1 + random(600);
            let entries: Vec<IdExpiry> = (0..size)
                .map(|_| key(id(random(SPACE) as u32), 1 + random(1_000_000)))
                .collect();
            for IdExpiry { id, expiry_ms } in &entries {
                let slot = model.entry(*id).or_default();
                *slot = (*slot).max(*expiry_ms);
            }
            number += 1;
            runs.push(write(&tree, number, entries).unwrap());
            merge_due(&tree, &mut runs, &mut number);
            if step % 10 == 9 {
                for n in 0..SPACE as u32 {
                    // `now` past every expiry: every run is read, and the latest must come back.
                    let found = runs.find(&tree, &id(n), u64::MAX).unwrap();
                    assert_eq!(found, model.get(&id(n)).copied(), "id {n} at step {step}");
                }
            }
        }
        let stored: usize = tree
            .iter()
            .map(|entry| entries(&entry.unwrap().1).count())
            .sum();
        let listed: u64 = runs.list.iter().map(|run| run.keys).sum();
        assert_eq!(
            stored as u64, listed,
            "the tree holds exactly the listed runs"
        );
    }

    #[test]
    fn merges_wait_for_fan_in_runs_of_one_class() {
        let mut runs = Runs::default();
        for number in 1..FAN_IN as u64 {
            runs.push(Run {
                number,
                keys: 100,
                fences: vec![id(0)],
            });
        }
        assert!(runs.to_merge().is_none());
        runs.push(Run {
            number: 99,
            keys: 5_000,
            fences: vec![id(0)],
        });
        assert!(runs.to_merge().is_none(), "another size class");
        runs.push(Run {
            number: 100,
            keys: 0,
            fences: Vec::new(),
        });
        assert_eq!(runs.len(), FAN_IN, "an empty run is not kept");
    }
}
