//! The flusher's side of the event index: the writer's notes of stored events become summaries
//! in their segment's summary file (blocks, one write per segment) and rows; duplicates
//! answered are counted for their event; times learnt after the store (the first publish, a
//! replayed record's first confirm) go onto their summaries. Nothing here runs on the writer
//! thread (I14, I16).
//!
//! A summary is written once as a rule: those taken early (between two flushes, to free the
//! bodies the notes share) wait as summaries for the next timed take, by which time most of
//! their events were published and confirmed, and go in with their times. Only a time that
//! comes later (a confirm after that take: a broker away, a backlog) rewrites its block.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use super::file::{self, SummaryFile};
use super::Events;
use crate::event::{Event, EventId};
use crate::store::error::StoreError;
use crate::store::layout::marks::State;
use crate::store::layout::summary::{dups_value, Summary};

/// Summaries (and duplicates) held between two timed takes at most; past it they are written
/// at once. About 3 MB: a second at saturation, well within a flush interval's notes.
const MAX_HELD: usize = 16_384;

/// What the writer hands over for each event it stored: what it already has.
pub(crate) struct Note {
    /// First seq of the segment the record went to.
    pub(crate) segment: u64,
    pub(crate) seq: u64,
    /// When its group was made durable.
    pub(crate) stored_at_ms: u64,
    pub(crate) event: Arc<Event>,
    /// The record a replay copied into this one: listed in its stead from now on.
    pub(crate) replay_of: Option<u64>,
}

/// Times of a record learnt after it was stored, for its summary: when the publisher first
/// handed it to the broker (carried with its confirm or dead letter), and its first confirm
/// (when a replay's mark takes that time from the delivery index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) seq: u64,
    pub(crate) published_at_ms: Option<u64>,
    pub(crate) confirmed_at_ms: Option<u64>,
}

impl Stamp {
    /// Onto `summary`; a time it has stays (the first one is kept).
    fn apply(&self, summary: &mut Summary) {
        summary.published_at_ms = summary.published_at_ms.or(self.published_at_ms);
        summary.confirmed_at_ms = summary.confirmed_at_ms.or(self.confirmed_at_ms);
    }
}

/// What waits for the next timed take.
#[derive(Default)]
pub(super) struct Held {
    /// By segment, in seq order.
    summaries: Vec<(u64, Summary)>,
    dups: Vec<(EventId, u64)>,
}

/// What the flusher took from the writer for the index.
#[derive(Default)]
pub(crate) struct Taken {
    pub(crate) notes: Vec<Note>,
    pub(crate) dups: Vec<(EventId, u64)>,
    pub(crate) stamps: Vec<Stamp>,
}

fn summary_of(note: Note) -> (u64, Summary) {
    // A replayed copy was read back from its record, which does not keep the WhatsApp id: read
    // again from the body (replays are rare).
    let wa_id = match (&note.event.wa_id, note.replay_of) {
        (None, Some(_)) => crate::event::stored_wa_id(&note.event.body),
        (wa_id, _) => wa_id.clone(),
    };
    let mut summary = Summary::of(note.seq, &note.event, note.stored_at_ms, wa_id);
    summary.replay_of = note.replay_of;
    (note.segment, summary)
}

impl Events {
    fn held(&self) -> MutexGuard<'_, Held> {
        // A few pushes and takes: a panic leaves nothing torn.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in what the flusher took: summaries of the notes, with the times learnt since, into
    /// their segments' files (unsynced: the flusher's next sync makes them durable, and a crash
    /// before it is made good at open) and rows; then the duplicates. With `hold` (an early take)
    /// the summaries and duplicates wait for the next take instead, unless [`MAX_HELD`] wait.
    pub(crate) fn take_in(
        &self,
        dups_tree: &sled::Tree,
        taken: Taken,
        hold: bool,
    ) -> Result<(), StoreError> {
        let mut held = self.held();
        held.summaries
            .extend(taken.notes.into_iter().map(summary_of));
        held.dups.extend(taken.dups);
        let late = stamp_held(&mut held.summaries, taken.stamps);
        if !hold || held.summaries.len() + held.dups.len() >= MAX_HELD {
            let Held { summaries, dups } = std::mem::take(&mut *held);
            drop(held);
            let written = self.write_summaries(summaries);
            // The duplicates of events whose summaries failed are still counted in memory.
            self.write_dups(dups_tree, dups)?;
            written?;
        } else {
            drop(held);
        }
        self.stamp_written(late)
    }

    /// Writes summaries into their segments' files and adds their rows.
    fn write_summaries(&self, summaries: Vec<(u64, Summary)>) -> Result<(), StoreError> {
        let mut by_segment: BTreeMap<u64, Vec<Summary>> = BTreeMap::new();
        for (segment, summary) in summaries {
            by_segment.entry(segment).or_default().push(summary);
        }
        for (segment, summaries) in by_segment {
            self.file_for(segment)?.write(&summaries)?;
            let mut rows = self.write();
            for summary in &summaries {
                rows.add(segment, summary, State::Pending);
            }
        }
        Ok(())
    }

    /// Puts times onto summaries already written: each block they fall in is read, changed and
    /// written again, one write per segment. A time whose record is no longer indexed
    /// (retention took its segment) is dropped.
    fn stamp_written(&self, mut stamps: Vec<Stamp>) -> Result<(), StoreError> {
        if stamps.is_empty() {
            return Ok(());
        }
        stamps.sort_unstable_by_key(|s| s.seq);
        let mut batches: Batches = BTreeMap::new();
        // The block the last stamps fell in: stamps in seq order visit each block once.
        let mut block: Option<Block> = None;
        for stamp in stamps {
            if !block.as_ref().is_some_and(|b| b.holds(stamp.seq)) {
                if let Some(done) = block.take() {
                    done.into(&mut batches);
                }
                block = self.block_of(stamp.seq)?;
            }
            if let Some(b) = block.as_mut() {
                b.stamp(&stamp);
            }
        }
        if let Some(done) = block {
            done.into(&mut batches);
        }
        for (_, (file, blocks)) in batches {
            file.append(blocks.iter().map(Vec::as_slice))?;
        }
        Ok(())
    }

    /// The written block holding `seq`'s summary, if its segment is live.
    fn block_of(&self, seq: u64) -> Result<Option<Block>, StoreError> {
        let Some((segment, file)) = self.segment_of(seq) else {
            return Ok(None);
        };
        let Some(summaries) = file.block_at(seq)? else {
            return Ok(None);
        };
        Ok(Some(Block {
            segment,
            file,
            summaries,
            changed: false,
        }))
    }

    /// The segment's summary file, created the first time.
    fn file_for(&self, segment: u64) -> Result<Arc<SummaryFile>, StoreError> {
        if let Some(file) = self.read().files.get(&segment) {
            return Ok(file.clone());
        }
        // Only the flusher adds files: no other can have come in between.
        let (opened, _) = SummaryFile::open(&file::path(&self.dir, segment))?;
        let opened = Arc::new(opened);
        self.write().files.insert(segment, opened.clone());
        Ok(opened)
    }

    /// Counts duplicates answered (id, when) for the events they repeat; one whose event is no
    /// longer indexed (retention took it) is not kept.
    pub(crate) fn write_dups(
        &self,
        tree: &sled::Tree,
        dups: Vec<(EventId, u64)>,
    ) -> Result<(), StoreError> {
        if dups.is_empty() {
            return Ok(());
        }
        // Under the lock, so that retention's pruning (`drop_range`) sees map and tree alike.
        let mut rows = self.write();
        for (id, at) in dups {
            if !rows.dups.contains_key(&id) && !rows.has_id(&id) {
                continue;
            }
            let entry = rows.dups.entry(id).or_insert((0, 0));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = entry.1.max(at);
            let (count, last) = *entry;
            tree.insert(id.0, &dups_value(count, last)[..])?;
        }
        Ok(())
    }
}

/// Puts each stamp onto its held summary; returns those whose summaries are not held (written
/// before).
fn stamp_held(held: &mut [(u64, Summary)], stamps: Vec<Stamp>) -> Vec<Stamp> {
    if held.is_empty() {
        return stamps;
    }
    // In seq order as a rule (notes come in commit order): then this sort costs one pass.
    held.sort_by_key(|(_, s)| s.seq);
    let mut late = Vec::new();
    for stamp in stamps {
        match held.binary_search_by_key(&stamp.seq, |(_, s)| s.seq) {
            Ok(at) => stamp.apply(&mut held[at].1),
            Err(_) => late.push(stamp),
        }
    }
    late
}

/// Blocks to write again, with their segment's file, by segment.
type Batches = BTreeMap<u64, (Arc<SummaryFile>, Vec<Vec<Summary>>)>;

/// A written block read back to take times.
struct Block {
    segment: u64,
    file: Arc<SummaryFile>,
    summaries: Vec<Summary>,
    changed: bool,
}

impl Block {
    /// Whether `seq` falls in this block (its first summary to its last).
    fn holds(&self, seq: u64) -> bool {
        let first = self.summaries.first().map_or(u64::MAX, |s| s.seq);
        let last = self.summaries.last().map_or(0, |s| s.seq);
        (first..=last).contains(&seq)
    }

    fn stamp(&mut self, stamp: &Stamp) {
        if let Some(summary) = self.summaries.iter_mut().find(|s| s.seq == stamp.seq) {
            let before = (summary.published_at_ms, summary.confirmed_at_ms);
            stamp.apply(summary);
            self.changed |= before != (summary.published_at_ms, summary.confirmed_at_ms);
        }
    }

    /// Into its segment's batch, if a time was put on it.
    fn into(self, batches: &mut Batches) {
        if !self.changed {
            return;
        }
        batches
            .entry(self.segment)
            .or_insert_with(|| (self.file, Vec::new()))
            .1
            .push(self.summaries);
    }
}
