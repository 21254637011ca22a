//! The flusher's side of the event index: the writer's notes of stored events become summaries
//! in their segment's `events@` tree (blocks, one sled batch per segment) and rows; duplicates
//! answered are counted for their event. Nothing here runs on the writer thread (I14, I16).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Events;
use crate::event::{Event, EventId};
use crate::store::error::StoreError;
use crate::store::layout::marks::State;
use crate::store::layout::summary::{dups_value, encode_block, events_tree_name, Summary, BLOCK};

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

impl Events {
    /// Writes the notes' summaries into their segments' trees (unflushed: the next flush makes
    /// them durable, and a crash before it is made good at open) and adds their rows.
    pub(crate) fn write_notes(&self, db: &sled::Db, notes: Vec<Note>) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        let mut by_segment: BTreeMap<u64, Vec<Summary>> = BTreeMap::new();
        for note in notes {
            // A replayed copy was read back from its record, which does not keep the WhatsApp
            // id: read again from the body (replays are rare).
            let wa_id = match (&note.event.wa_id, note.replay_of) {
                (None, Some(_)) => crate::event::stored_wa_id(&note.event.body),
                (wa_id, _) => wa_id.clone(),
            };
            let mut summary = Summary::of(note.seq, &note.event, note.stored_at_ms, wa_id);
            summary.replay_of = note.replay_of;
            by_segment.entry(note.segment).or_default().push(summary);
        }
        for (segment, summaries) in by_segment {
            let tree = self.tree_for(db, segment)?;
            write_blocks(&tree, &summaries)?;
            let mut rows = self.write();
            for summary in &summaries {
                rows.add(summary, State::Pending);
            }
        }
        Ok(())
    }

    /// The segment's tree, opened the first time.
    pub(super) fn tree_for(&self, db: &sled::Db, segment: u64) -> Result<sled::Tree, StoreError> {
        if let Some(tree) = self.read().trees.get(&segment) {
            return Ok(tree.clone());
        }
        let tree = db.open_tree(events_tree_name(segment))?;
        self.write().trees.insert(segment, tree.clone());
        Ok(tree)
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

/// Summaries of consecutive seqs into blocks keyed by their first seq, one sled batch.
pub(super) fn write_blocks(tree: &sled::Tree, summaries: &[Summary]) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for block in summaries.chunks(BLOCK) {
        if let Some(first) = block.first() {
            batch.insert(&first.seq.to_be_bytes()[..], encode_block(block));
        }
    }
    tree.apply_batch(batch)?;
    Ok(())
}
