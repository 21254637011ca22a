//! First start on a data dir of the sled-only version: its pending outbox moves into a segment,
//! its kept delivered events are dropped (with a logged count), nothing pending is lost.
//!
//! The old `outbox` tree (seq → outbox record) is copied under the same seqs into a temporary
//! file, fsynced and renamed to the segment name of its first seq; only then is the tree dropped
//! and sled flushed. A crash in between finds the segment already there and only drops the tree.
//! Dedup keys and dead letters keep their trees and layouts, so they need no migration.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::error::StoreError;
use super::layout::{frame, record};
use super::segment;

const OLD_OUTBOX: &str = "outbox";
const OLD_DELIVERED_PREFIX: &str = "delivered@";
const TEMP_NAME: &str = "migrating.tmp";

/// What a migration did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Migrated {
    pub(super) pending: u64,
    pub(super) delivered_dropped: u64,
    /// Highest seq of the old outbox.
    pub(super) last_seq: u64,
}

pub(super) fn run(db: &sled::Db, dir: &Path) -> Result<Migrated, StoreError> {
    let mut done = Migrated::default();
    let names = db.tree_names();
    if names.iter().any(|n| &n[..] == OLD_OUTBOX.as_bytes()) {
        let outbox = db.open_tree(OLD_OUTBOX)?;
        if let Some((first, _)) = outbox.first()? {
            let first = record::decode_seq(&first)?;
            let target = dir.join(segment::file_name(first));
            let mut buf = Vec::new();
            for item in outbox.iter() {
                let (key, value) = item?;
                let seq = record::decode_seq(&key)?;
                // Refuses a record the new format could not carry rather than dropping it.
                record::decode_meta(&value).map_err(|e| {
                    StoreError::Migration(format!(
                        "old outbox record {seq} is unreadable ({e}); not migrating"
                    ))
                })?;
                frame::frame_record(&mut buf, seq, &value)?;
                done.pending += 1;
                done.last_seq = seq;
            }
            // I12: the segment is whole and durable before the tree goes.
            if !target.exists() {
                let temp = dir.join(TEMP_NAME);
                let mut file = File::create(&temp)?;
                file.write_all(&buf)?;
                file.sync_all()?;
                std::fs::rename(&temp, &target)?;
                segment::sync_dir(dir)?;
            }
            tracing::info!(
                events = done.pending,
                segment = %target.display(),
                "pending outbox of the previous storage format moved into a segment"
            );
        }
        db.drop_tree(OLD_OUTBOX)?;
    }
    for name in names {
        let Some(text) = std::str::from_utf8(&name).ok() else {
            continue;
        };
        if text.starts_with(OLD_DELIVERED_PREFIX) {
            done.delivered_dropped += db.open_tree(&name)?.len() as u64;
            db.drop_tree(&name)?;
        }
    }
    if done.delivered_dropped > 0 {
        tracing::warn!(
            events = done.delivered_dropped,
            "kept delivered events of the previous storage format dropped: they cannot be replayed"
        );
    }
    if done != Migrated::default() {
        db.flush()?;
    }
    Ok(done)
}
