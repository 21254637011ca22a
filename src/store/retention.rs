//! Segment lifecycle: starting a segment, and retention, which drops WHOLE segments once every
//! record in them is settled and either old enough or over the byte cap.
//!
//! A segment goes only when its dedup keys are flushed (its last seq is at or below the
//! flusher's checkpoint: opening the store rebuilds keys from the segments after the
//! checkpoint, so a deleted segment must not hold a key not yet on disk), and so is its last
//! settlement (a dead letter's copy must be on disk before its segment goes): I7.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::flusher::Progress;
use super::marks::marks_tree_name;
use super::table::{Segment, Table};
use super::writer::{lock, Active};
use super::{segment, StoreError};

/// `storage.keep_delivered` and `keep_delivered_max_bytes`, in the units retention uses.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    pub(super) keep_ms: u64,
    pub(super) max_bytes: u64,
}

/// Creates segment `first_seq` (and makes its directory entry durable) with its marks tree.
pub(super) fn open_segment(
    db: &sled::Db,
    dir: &Path,
    first_seq: u64,
) -> Result<(Active, Segment), StoreError> {
    let path = dir.join(segment::file_name(first_seq));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)?;
    // I12: the entry is durable before any record goes into the file.
    segment::sync_dir(dir)?;
    let len = file.metadata()?.len();
    let reader = File::open(&path)?;
    let marks = db.open_tree(marks_tree_name(first_seq))?;
    let mut info = Segment::new(path, Arc::new(reader), marks);
    info.len = len;
    Ok((
        Active {
            first_seq,
            file,
            len,
        },
        info,
    ))
}

/// Drops what the policy lets go; returns how many kept delivered events went with them.
pub(super) fn sweep(
    db: &sled::Db,
    table: &Mutex<Table>,
    policy: &Policy,
    active_first: u64,
    progress: &Progress,
) -> Result<usize, StoreError> {
    let cutoff = super::now_ms().saturating_sub(policy.keep_ms);
    let doomed: Vec<u64> = {
        let table = lock(table);
        let candidates: Vec<(u64, &Segment)> = table
            .segments
            .iter()
            // I7.
            .filter(|(first, s)| {
                **first != active_first
                    && s.fully_settled()
                    && progress.is_flushed(s.last_seq().unwrap_or(0), s.settled)
            })
            .map(|(first, s)| (*first, s))
            .collect();
        let (_, mut kept_bytes) = table.delivered();
        let mut doomed = Vec::new();
        for (first, s) in candidates {
            // Oldest first: over the cap, the oldest fully settled segments go whatever their age.
            if policy.keep_ms == 0 || s.last_settled_ms <= cutoff || kept_bytes > policy.max_bytes {
                kept_bytes = kept_bytes.saturating_sub(s.delivered_bytes);
                doomed.push(first);
            }
        }
        doomed
    };
    let mut dropped = 0u64;
    for first in doomed {
        let Some(s) = lock(table).segments.remove(&first) else {
            continue;
        };
        dropped += s.delivered;
        if let Err(e) = std::fs::remove_file(&s.path) {
            tracing::warn!(error = %e, segment = %s.path.display(), "cannot delete a settled segment");
        }
        drop(s);
        db.drop_tree(marks_tree_name(first))?;
    }
    Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
}
