//! Group commit: the dedup check and limits, one `write` and one fdatasync of the group's
//! frames, then the index, the hand-off and the replies; the dedup keys wait for the next flush.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use super::{Done, Source, Staged, Writer};
use crate::clock::now_ms;
use crate::event::Event;
use crate::store::dedup::{self, Expiry, Lookup, NewKey};
use crate::store::error::StoreError;
use crate::store::events::{Note, Stamp};
use crate::store::index::{self, Entry};
use crate::store::layout::frame::{self, Found};
use crate::store::layout::marks::State;
use crate::store::layout::record;
use crate::store::segment;
use crate::store::types::{Appended, Pending, Reply};

impl Writer {
    /// Dedup check and limits, in queue order; accepted events get their seq and slot.
    pub(super) fn stage(&mut self, appends: Vec<(Event, Reply<Appended>)>) -> Vec<Staged> {
        let mut staged = Vec::with_capacity(appends.len());
        if appends.is_empty() {
            return staged;
        }
        let now = now_ms();
        let mut last_end = None;
        let live = dedup::live(&self.setup.dedup, now);
        let (mut events, mut bytes) = {
            let table = index::lock(&self.setup.table);
            (table.outbox, table.outbox_bytes)
        };
        let mut in_group = HashSet::with_capacity(appends.len());
        for (event, reply) in appends {
            if self.is_broken() {
                let _ = reply.send(Err(StoreError::Unwritable));
                continue;
            }
            let id = event.meta.id;
            if in_group.contains(&id) {
                self.dups.push((id, now));
                let _ = reply.send(Ok(Appended::Duplicate));
                continue;
            }
            let expiry = event
                .meta
                .received_at_ms
                .saturating_add(self.setup.window_ms);
            let end = self.setup.dedup.end_of(expiry);
            // New slices are made up front: that takes the slices' write lock.
            if last_end != Some(end) {
                if let Err(e) = self.setup.dedup.ensure(expiry) {
                    let _ = reply.send(Err(e));
                    continue;
                }
                last_end = Some(end);
            }
            // Keys of the last second wait in memory before sled has them.
            if self
                .setup
                .deferred
                .expiry_of(&id)
                .is_some_and(|expiry| expiry > now)
            {
                self.dups.push((id, now));
                let _ = reply.send(Ok(Appended::Duplicate));
                continue;
            }
            let replaces = match dedup::lookup(&self.setup.dedup, &live, &id, end, now) {
                Ok(Lookup::New { replaces }) => replaces,
                Ok(Lookup::Duplicate) => {
                    self.dups.push((id, now));
                    let _ = reply.send(Ok(Appended::Duplicate));
                    continue;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    continue;
                }
            };
            // Only while keys of an earlier release can still be live: a change of a message
            // accepted before the upgrade may be the state it was accepted in (event/key.rs).
            let earlier_until = self.setup.earlier_until;
            if let Some(earlier) = event.earlier_id.filter(|_| now < earlier_until) {
                match dedup::held_earlier(&self.setup.dedup, &live, &earlier, now, earlier_until) {
                    Ok(false) => {}
                    Ok(true) => {
                        self.dups.push((earlier, now));
                        let _ = reply.send(Ok(Appended::DuplicateOf(earlier)));
                        continue;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                }
            }
            let before = staged.len();
            self.push_staged(
                &mut staged,
                event,
                Some(NewKey {
                    id,
                    expiry: Expiry {
                        slice_end: end,
                        at_ms: expiry,
                    },
                    adds: !replaces,
                }),
                Done::Append(reply),
            );
            let Some(len) = staged.get(before).map(|item| u64::from(item.len)) else {
                continue;
            };
            if events >= self.setup.limits.max_outbox
                || bytes.saturating_add(len) > self.setup.limits.max_outbox_bytes
            {
                self.unstage(&mut staged, Err(StoreError::OutboxFull));
                continue;
            }
            events += 1;
            bytes += len;
            in_group.insert(id);
        }
        staged
    }

    /// Frames `event` into the group buffer under the next seq.
    pub(super) fn push_staged(
        &mut self,
        staged: &mut Vec<Staged>,
        event: Event,
        key: Option<NewKey>,
        done: Done,
    ) {
        let offset = self.active.len + self.buf.len() as u64;
        let mark = self.buf.len();
        match frame::frame(&mut self.buf, self.next_seq, &event) {
            Ok(len) => {
                staged.push(Staged {
                    event,
                    seq: self.next_seq,
                    offset,
                    len,
                    key,
                    done,
                });
                self.next_seq += 1;
            }
            Err(e) => {
                self.buf.truncate(mark);
                if let Done::Append(reply) = done {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Takes the last staged event out again (its frame is the buffer's tail) and answers it.
    fn unstage(&mut self, staged: &mut Vec<Staged>, answer: Result<Appended, StoreError>) {
        if let Some(item) = staged.pop() {
            self.buf.truncate(self.buf.len() - item.len as usize);
            self.next_seq -= 1;
            if let Done::Append(reply) = item.done {
                let _ = reply.send(answer);
            }
        }
    }

    /// One write and one fdatasync for the whole group (I1); its dedup keys wait in memory for
    /// the next flush cycle (`deferred`). An error means nothing of the group is durable, and
    /// the store takes no more writes (I2).
    pub(super) fn commit(&mut self, staged: &[Staged]) -> Result<(), StoreError> {
        let written = self
            .active
            .file
            .write_all(&self.buf)
            .and_then(|()| self.active.file.sync_data());
        let size = self.buf.len() as u64;
        self.buf.clear();
        if let Err(e) = written {
            self.broken = true;
            // Best effort: a shorter file is what the next open would cut to anyway.
            if let Err(cut) = self.active.file.set_len(self.active.len) {
                tracing::error!(error = %cut, "cannot cut a failed write off the segment");
            }
            tracing::error!(error = %e, events = staged.len(), "segment write failed; the store takes no more writes until restarted");
            return Err(e.into());
        }
        self.active.len += size;
        let mut keys: Vec<NewKey> = staged.iter().filter_map(|s| s.key).collect();
        keys.sort_by_key(|k| k.expiry.slice_end);
        if let Some(last) = staged.last() {
            self.defer_keys(&keys, last.seq);
        }
        Ok(())
    }

    /// Index, hand-off and replies once the group is durable (or failed).
    pub(super) fn finish(
        &mut self,
        staged: Vec<Staged>,
        committed: Result<(), StoreError>,
        requeue_replies: &mut [(Result<usize, StoreError>, Reply<usize>)],
    ) {
        if let Err(e) = &committed {
            for item in staged {
                match item.done {
                    Done::Append(reply) => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    Done::Requeue(slot, _) => requeue_replies[slot].0 = Err(e.clone()),
                }
            }
            return;
        }
        let now = now_ms();
        let high = self.next_seq.saturating_sub(1);
        let mut handed = Vec::with_capacity(staged.len());
        let mut notes = Vec::with_capacity(staged.len());
        let mut accepted = Vec::with_capacity(staged.len());
        let mut changed = Vec::new();
        {
            let mut table = index::lock(&self.setup.table);
            for item in staged {
                let found = Found {
                    seq: item.seq,
                    offset: item.offset,
                    len: item.len,
                };
                if let Some(segment) = table.segments.get_mut(&self.active.first_seq) {
                    segment.len = self.active.len;
                    segment.push(Entry::pending(found, item.event.meta.received_at_ms));
                }
                table.added_pending(item.len);
                let replay_of = match &item.done {
                    Done::Requeue(_, source) => Some(source.seq()),
                    Done::Append(_) => None,
                };
                match item.done {
                    Done::Append(reply) => accepted.push(reply),
                    Done::Requeue(slot, source) => {
                        if let Ok(n) = &mut requeue_replies[slot].0 {
                            *n += 1;
                        }
                        // The copy is durable: its source goes now (I13).
                        if let Source::Delivered(seq) = source {
                            changed.extend(table.transition(
                                seq,
                                State::Delivered,
                                State::Replayed,
                                now,
                            ));
                        }
                        if let Source::Dead(seq) = source {
                            if let Err(e) = self.setup.dead.remove(record::seq_key(seq)) {
                                requeue_replies[slot].0 = Err(StoreError::Sled(e));
                            }
                        }
                    }
                }
                let event = Arc::new(item.event);
                notes.push(Note {
                    segment: self.active.first_seq,
                    seq: item.seq,
                    stored_at_ms: now,
                    event: Arc::clone(&event),
                    replay_of,
                });
                handed.push((
                    Pending {
                        seq: item.seq,
                        event,
                    },
                    item.len,
                ));
            }
            // Segments a replay unpacked to mark are packed again.
            if !changed.is_empty() {
                table.pack_settled(self.active.first_seq);
            }
        }
        // Handed over before the replies: whoever saw a 202 finds the event with the publisher (I1).
        self.setup.feed.push(handed, high);
        for reply in accepted {
            // A dropped receiver means the caller gave up; the event is stored regardless.
            let _ = reply.send(Ok(Appended::Accepted));
        }
        // A replayed record's mark takes the time of its confirm: the event index keeps it.
        let stamps = changed
            .iter()
            .map(|c| Stamp {
                seq: c.entry.seq,
                published_at_ms: None,
                confirmed_at_ms: Some(c.left_at_ms),
            })
            .collect();
        self.defer_marks(changed, stamps);
        self.hand_notes(notes);
        if self.setup.deferred.ask_early() {
            self.ask_flush(None);
        }
        self.roll_if_full();
    }

    /// Starts a new segment once the active one reached `segment_bytes`.
    fn roll_if_full(&mut self) {
        if self.active.len < self.setup.segment_bytes {
            return;
        }
        match segment::create(&self.setup.db, &self.setup.segments_dir, self.next_seq) {
            Ok((active, segment)) => {
                let mut table = index::lock(&self.setup.table);
                table.segments.insert(active.first_seq, segment);
                // The segment just closed may be settled already.
                table.pack_settled(active.first_seq);
                self.active = active;
            }
            // The full segment keeps taking writes; the next group tries again.
            Err(e) => tracing::error!(error = %e, "cannot start a new segment"),
        }
    }
}
