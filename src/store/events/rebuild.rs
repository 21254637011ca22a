//! The event index at open (I16): rows from each live segment's summary file, and for the
//! records it lacks (written before the index existed, or after the last sync before a crash)
//! summaries made again from the segment's records and written back; states from the delivery
//! index (the marks). The `events@` trees of the versions that kept summaries in sled become
//! files (the file synced before the tree is dropped, so a crash between leaves the tree to
//! read again). Files and trees of segments that are gone, and duplicates of events no longer
//! indexed, are dropped.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::file::{self, SummaryFile};
use super::{id_prefix, Events};
use crate::event::stored_wa_id;
use crate::store::error::StoreError;
use crate::store::index::{Entry, Table};
use crate::store::layout::summary::{
    decode_block, decode_dups, events_tree_name, parse_events_tree_name, Summary, DUPS_TREE,
};
use crate::store::segment;

/// The index of the segments in `table`, their summary files in `dir` (the segments' folder);
/// returns it with the `event-dups` tree.
pub(crate) fn rebuild(
    db: &sled::Db,
    table: &Table,
    dir: &Path,
) -> Result<(Events, sled::Tree), StoreError> {
    let legacy = drop_orphans(db, table, dir)?;
    let events = Events::new(dir.to_owned());
    for (&first, info) in &table.segments {
        let path = file::path(dir, first);
        let from_sled = legacy.contains(&first);
        if from_sled {
            // A migration a crash cut short starts again from the tree.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        let (summary_file, read) = SummaryFile::open(&path)?;
        let summary_file = Arc::new(summary_file);
        let mut known: HashMap<u64, Summary> = read.into_iter().map(|s| (s.seq, s)).collect();
        if from_sled {
            let copied = tree_blocks(db, first)?;
            summary_file.append(copied.iter().map(Vec::as_slice))?;
            known.extend(copied.into_iter().flatten().map(|s| (s.seq, s)));
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
        rows.files.insert(first, summary_file.clone());
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
                summary_file.write(&std::mem::take(&mut run))?;
            }
            run.push(summary);
        }
        if !run.is_empty() {
            summary_file.write(&run)?;
        }
        if from_sled {
            summary_file.sync()?;
            db.drop_tree(events_tree_name(first))?;
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

/// Drops the summary files and `events@` trees of segments that are gone; returns the first
/// seqs of the live segments that have a tree (an earlier version's, to move to their files).
fn drop_orphans(db: &sled::Db, table: &Table, dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut legacy = Vec::new();
    for name in db.tree_names() {
        if let Some(first) = parse_events_tree_name(&name) {
            if table.segments.contains_key(&first) {
                legacy.push(first);
            } else {
                db.drop_tree(&name)?;
            }
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let orphan = entry
            .file_name()
            .to_str()
            .and_then(file::parse_name)
            .is_some_and(|first| !table.segments.contains_key(&first));
        if orphan {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(legacy)
}

/// The blocks of segment `first`'s `events@` tree, as an earlier version wrote them.
fn tree_blocks(db: &sled::Db, first: u64) -> Result<Vec<Vec<Summary>>, StoreError> {
    let mut blocks = Vec::new();
    for item in db.open_tree(events_tree_name(first))?.iter() {
        let (_, value) = item?;
        match decode_block(&value) {
            Ok(block) => blocks.push(block),
            // A damaged block is made again from the records.
            Err(e) => {
                tracing::warn!(error = %e, segment = first, "unreadable event index block ignored")
            }
        }
    }
    Ok(blocks)
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
