//! Settling: the publisher's confirms and dead letters applied to the delivery index, their
//! marks deferred to the flusher (a lost mark is a resend), and retention run on the writer
//! thread, which keeps a segment until the marks for it are flushed.

use std::collections::HashSet;

use super::{Source, Writer};
use crate::clock::now_ms;
use crate::store::error::StoreError;
use crate::store::events::Stamp;
use crate::store::index::{self, Changed};
use crate::store::layout::marks::{marks_tree_name, State};
use crate::store::layout::record;
use crate::store::retention;
use crate::store::types::Settlement;

impl Writer {
    /// Whether a replay's source is still there: a second replay of one entry finds it gone (I13).
    pub(super) fn source_holds(&self, source: Source) -> bool {
        match source {
            Source::Dead(seq) => {
                matches!(self.setup.dead.contains_key(record::seq_key(seq)), Ok(true))
            }
            Source::Delivered(seq) => {
                index::lock(&self.setup.table).state_of(seq) == Some(State::Delivered)
            }
        }
    }

    /// Applies confirms and dead letters: the index now, dead copies into sled, marks deferred.
    pub(super) fn settle(&mut self, settlement: Settlement) -> Result<(), StoreError> {
        let now = now_ms();
        let mut changed = Vec::with_capacity(settlement.delivered.len() + settlement.dead.len());
        {
            let mut table = index::lock(&self.setup.table);
            for seq in &settlement.delivered {
                changed.extend(table.transition(*seq, State::Pending, State::Delivered, now));
            }
            for (pending, _) in &settlement.dead {
                changed.extend(table.transition(pending.seq, State::Pending, State::Dead, now));
            }
            // A segment these settled for good keeps its index packed from now on.
            table.pack_settled(self.active.first_seq);
        }
        let dead_now: HashSet<u64> = changed
            .iter()
            .filter(|c| c.entry.state == State::Dead)
            .map(|c| c.entry.seq)
            .collect();
        for (pending, reason) in settlement
            .dead
            .iter()
            .filter(|(p, _)| dead_now.contains(&p.seq))
        {
            // Rare, and it must outlive its segment: the dead letter keeps its own copy, written
            // before its mark is deferred (I8).
            let mut value = record::dead_prefix(reason, now)?;
            record::encode_event_into(&mut value, &pending.event)?;
            self.setup
                .dead
                .insert(record::seq_key(pending.seq), value)?;
        }
        let stamps = published_stamps(&settlement.published, &changed);
        self.defer_marks(changed, stamps);
        Ok(())
    }

    /// Deletes the segments retention lets go (with their marks trees); returns how many kept
    /// delivered events went with them.
    pub(super) fn sweep(&mut self) -> Result<usize, StoreError> {
        let doomed = retention::doomed(
            &index::lock(&self.setup.table),
            &self.setup.retention,
            self.active.first_seq,
            &self.setup.ledger,
            now_ms(),
        );
        let mut dropped = 0u64;
        for first in doomed {
            let Some(s) = index::lock(&self.setup.table).segments.remove(&first) else {
                continue;
            };
            dropped += s.delivered;
            if let Err(e) = std::fs::remove_file(&s.path) {
                tracing::warn!(error = %e, segment = %s.path.display(), "cannot delete a settled segment");
            }
            drop(s);
            self.setup.db.drop_tree(marks_tree_name(first))?;
            // The event index keeps an event as long as its record (I16).
            let next = index::lock(&self.setup.table)
                .segments
                .range(first..)
                .next()
                .map_or(u64::MAX, |(&next, _)| next);
            for id in self.setup.events.drop_range(first, next) {
                self.setup.event_dups.remove(id.0)?;
            }
        }
        Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
    }
}

/// The first publish times of the records this settlement moved (a confirm of one already
/// settled, a resend's, brings none): for the event index's timeline.
fn published_stamps(published: &[(u64, u64)], changed: &[Changed]) -> Vec<Stamp> {
    if published.is_empty() {
        return Vec::new();
    }
    let moved: HashSet<u64> = changed.iter().map(|c| c.entry.seq).collect();
    published
        .iter()
        .filter(|(seq, _)| moved.contains(seq))
        .map(|&(seq, at)| Stamp {
            seq,
            published_at_ms: Some(at),
            confirmed_at_ms: None,
        })
        .collect()
}
