//! The event index at open (I16): rows from each live segment's `events@` tree, and for the
//! records it lacks (written before the index existed, or after the last flush before a crash)
//! summaries made again from the segment's records and written back; states from the delivery
//! index (the marks). Trees of segments that are gone, and duplicates of events no longer
//! indexed, are dropped.

use std::collections::HashMap;

use super::write::write_blocks;
use super::{id_prefix, Events};
use crate::event::stored_wa_id;
use crate::store::error::StoreError;
use crate::store::index::{Entry, Table};
use crate::store::layout::summary::{
    decode_block, decode_dups, events_tree_name, parse_events_tree_name, Summary, DUPS_TREE,
};
use crate::store::segment;

/// The index of the segments in `table`; returns it with the `event-dups` tree.
pub(crate) fn rebuild(db: &sled::Db, table: &Table) -> Result<(Events, sled::Tree), StoreError> {
    for name in db.tree_names() {
        if let Some(first) = parse_events_tree_name(&name) {
            if !table.segments.contains_key(&first) {
                db.drop_tree(&name)?;
            }
        }
    }
    let events = Events::default();
    for (&first, info) in &table.segments {
        let tree = db.open_tree(events_tree_name(first))?;
        let mut known: HashMap<u64, Summary> = HashMap::new();
        for item in tree.iter() {
            let (_, value) = item?;
            match decode_block(&value) {
                Ok(block) => known.extend(block.into_iter().map(|s| (s.seq, s))),
                // A damaged block is made again from the records below.
                Err(e) => {
                    tracing::warn!(error = %e, segment = first, "unreadable event index block ignored")
                }
            }
        }
        let mut rows = events.write();
        let mut missing: Vec<Summary> = Vec::new();
        for entry in table.entries_of(first) {
            let summary = match known.remove(&entry.seq) {
                Some(summary) => summary,
                None => match made_again(&info.file, &entry) {
                    Some(summary) => {
                        missing.push(summary.clone());
                        summary
                    }
                    None => continue,
                },
            };
            rows.add(first, &summary, entry.state);
        }
        rows.trees.insert(first, tree.clone());
        drop(rows);
        // Runs of consecutive records each get their blocks, so a block's key is always the
        // nearest one below each of its seqs.
        let mut run: Vec<Summary> = Vec::new();
        let entries = table.entries_of(first);
        let mut next_in_segment: HashMap<u64, u64> = HashMap::new();
        for pair in entries.windows(2) {
            next_in_segment.insert(pair[0].seq, pair[1].seq);
        }
        for summary in missing {
            let follows = run
                .last()
                .is_some_and(|last| next_in_segment.get(&last.seq) == Some(&summary.seq));
            if !follows && !run.is_empty() {
                write_blocks(&tree, &std::mem::take(&mut run))?;
            }
            run.push(summary);
        }
        if !run.is_empty() {
            write_blocks(&tree, &run)?;
        }
    }
    let dups = db.open_tree(DUPS_TREE)?;
    {
        let mut rows = events.write();
        let ids: std::collections::HashSet<u32> =
            rows.parts.values().flatten().map(|r| r.id).collect();
        for item in dups.iter() {
            let (key, value) = item?;
            let id = <[u8; 16]>::try_from(&key[..])
                .ok()
                .map(crate::event::EventId);
            match (id, decode_dups(&value)) {
                (Some(id), Some(counted)) if ids.contains(&id_prefix(&id)) => {
                    rows.dups.insert(id, counted);
                }
                _ => {
                    dups.remove(key)?;
                }
            }
        }
    }
    Ok((events, dups))
}

/// A summary made from the record itself (its stored time unknown: its receive time).
fn made_again(file: &std::fs::File, entry: &Entry) -> Option<Summary> {
    match segment::read(file, entry.offset, entry.len) {
        Ok((seq, event)) => {
            let wa_id = stored_wa_id(&event.body);
            Some(Summary::of(seq, &event, event.meta.received_at_ms, wa_id))
        }
        Err(e) => {
            // Damage the scan read past: the record is not shown.
            tracing::warn!(error = %e, seq = entry.seq, "record not indexed: unreadable");
            None
        }
    }
}
