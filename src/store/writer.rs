//! The single writer thread: group commit of appends and replays into the active segment (one
//! `write`, one fdatasync per group), then dedup keys, the hand-off to the publisher and the
//! replies; and, in the same queue, the publisher's batched confirms and retention.
//!
//! Only this thread changes the delivery index, the dedup keys and the dead letters, so no check
//! can race and nothing needs a sled transaction. Nothing here flushes sled (the flusher does).

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use super::feed::Feed;
use super::generations::Generations;
use super::table::{mark_value, Changed, Entry, State, Table};
use super::{dedup, record, retention, segment};
use super::{now_ms, Appended, Limits, Pending, Settlement, StoreError};
use crate::event::Event;

/// Most commands taken into one group: bounds the batch size and the wait of the first.
pub(super) const MAX_GROUP: usize = 1024;

/// Key in the `meta` tree that write probes overwrite.
pub(super) const PROBE_KEY: &[u8] = b"probe";

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Command {
    Append {
        event: Event,
        reply: Reply<Appended>,
    },
    /// Durability barrier: answered after the flusher's next flush.
    Flush { reply: Reply<()> },
    /// Readiness: a real sled write plus a flush, failing at once if segment writes failed.
    Probe { reply: Reply<()> },
    /// Operator replay: events appended again under new seqs; answers how many.
    Requeue {
        items: Vec<Requeue>,
        reply: Reply<usize>,
    },
    /// Confirms and dead letters from the publisher; answered once applied (if anyone asks).
    Settle {
        settlement: Settlement,
        reply: Option<Reply<()>>,
    },
    /// Retention: drops whole segments; answers how many kept delivered events went.
    Sweep { reply: Reply<usize> },
}

/// Where a replayed event comes from; it is taken out there once its copy is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// Seq key in the `dead` tree.
    Dead(u64),
    /// A delivered record of a live segment.
    Delivered(u64),
}

pub(super) struct Requeue {
    pub(super) event: Event,
    pub(super) source: Source,
}

/// The segment being appended to.
pub(super) struct Active {
    pub(super) first_seq: u64,
    pub(super) file: File,
    pub(super) len: u64,
}

pub(super) struct Writer {
    pub(super) dedup: Arc<Generations>,
    pub(super) dead: sled::Tree,
    pub(super) meta: sled::Tree,
    pub(super) db: sled::Db,
    pub(super) table: Arc<Mutex<Table>>,
    pub(super) feed: Arc<Feed>,
    pub(super) window_ms: u64,
    pub(super) limits: Limits,
    pub(super) segments_dir: PathBuf,
    pub(super) segment_bytes: u64,
    pub(super) active: Active,
    pub(super) next_seq: u64,
    pub(super) applied: Arc<AtomicU64>,
    pub(super) flushed: Arc<AtomicU64>,
    pub(super) flush_requests: std::sync::mpsc::Sender<Reply<()>>,
    pub(super) retention: retention::Policy,
    /// Set by a failed segment write: the file's state is unknown after a failed fdatasync,
    /// so nothing more is written until the process reopens the store.
    pub(super) broken: bool,
    pub(super) buf: Vec<u8>,
}

/// An event that made it into the group, with where it goes.
struct Staged {
    event: Event,
    seq: u64,
    offset: u64,
    len: u32,
    key: Option<dedup::Key>,
    done: Done,
}

enum Done {
    Append(Reply<Appended>),
    /// Index into the group's requeue replies.
    Requeue(usize, Source),
}

pub(super) fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Updates are plain field writes the writer makes in one go: a panic leaves nothing torn.
    table.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    /// Serves until every sender is gone, then returns after finishing what was queued.
    pub(super) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut group = Vec::with_capacity(16);
            group.push(first);
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            self.process_group(group);
        }
        tracing::debug!("store writer stopped: all store handles dropped");
    }

    pub(super) fn process_group(&mut self, group: Vec<Command>) {
        let mut appends = Vec::new();
        let mut requeues = Vec::new();
        let mut barriers = Vec::new();
        let mut sweeps = Vec::new();
        let mut probe = false;
        for command in group {
            match command {
                Command::Append { event, reply } => appends.push((event, reply)),
                Command::Requeue { items, reply } => requeues.push((items, reply)),
                Command::Settle { settlement, reply } => {
                    let result = self.settle(settlement);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "recording confirms failed");
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Command::Flush { reply } => barriers.push(reply),
                Command::Probe { reply } => {
                    probe = true;
                    barriers.push(reply);
                }
                Command::Sweep { reply } => sweeps.push(reply),
            }
        }

        let mut requeue_replies: Vec<(Result<usize, StoreError>, Reply<usize>)> = Vec::new();
        let mut staged = self.stage(appends);
        let mut taken = HashSet::new();
        for (items, reply) in requeues {
            let slot = requeue_replies.len();
            requeue_replies.push((Ok(0), reply));
            for item in items {
                if self.source_holds(item.source) && taken.insert(item.source) {
                    self.push_staged(
                        &mut staged,
                        item.event,
                        None,
                        Done::Requeue(slot, item.source),
                    );
                }
            }
        }
        let committed = if staged.is_empty() {
            Ok(())
        } else {
            self.commit(&staged)
        };
        self.finish(staged, committed, &mut requeue_replies);
        for (result, reply) in requeue_replies {
            let _ = reply.send(result);
        }

        for reply in sweeps {
            let _ = reply.send(self.sweep());
        }
        for reply in barriers {
            if self.broken {
                let _ = reply.send(Err(StoreError::Unwritable));
                continue;
            }
            // A probe must exercise the write path, not just a flush of nothing.
            if probe {
                if let Err(e) = self.meta.insert(PROBE_KEY, &now_ms().to_be_bytes()[..]) {
                    let _ = reply.send(Err(StoreError::Sled(e)));
                    continue;
                }
            }
            if let Err(std::sync::mpsc::SendError(reply)) = self.flush_requests.send(reply) {
                let _ = reply.send(Err(StoreError::Closed));
            }
        }
    }

    /// Dedup check and limits, in queue order; accepted events get their seq and slot.
    fn stage(&mut self, appends: Vec<(Event, Reply<Appended>)>) -> Vec<Staged> {
        let mut staged = Vec::with_capacity(appends.len());
        if appends.is_empty() {
            return staged;
        }
        let now = now_ms();
        let mut last_end = None;
        let live = dedup::live(&self.dedup, now);
        let (mut events, mut bytes) = {
            let table = lock(&self.table);
            (table.outbox, table.outbox_bytes)
        };
        let mut in_group = HashSet::with_capacity(appends.len());
        for (event, reply) in appends {
            if self.broken {
                let _ = reply.send(Err(StoreError::Unwritable));
                continue;
            }
            let id = event.meta.id;
            if in_group.contains(&id) {
                let _ = reply.send(Ok(Appended::Duplicate));
                continue;
            }
            let expiry = event.meta.received_at_ms.saturating_add(self.window_ms);
            let end = self.dedup.end_of(expiry);
            // New slices are made up front: that takes the slices' write lock.
            if last_end != Some(end) {
                if let Err(e) = self.dedup.ensure(expiry) {
                    let _ = reply.send(Err(e));
                    continue;
                }
                last_end = Some(end);
            }
            let (duplicate, overwrites) = match dedup::lookup(&self.dedup, &live, &id, end, now) {
                Ok(found) => found,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    continue;
                }
            };
            if duplicate {
                let _ = reply.send(Ok(Appended::Duplicate));
                continue;
            }
            let before = staged.len();
            self.push_staged(
                &mut staged,
                event,
                Some((end, id, expiry, !overwrites)),
                Done::Append(reply),
            );
            let Some(len) = staged.get(before).map(|item| u64::from(item.len)) else {
                continue;
            };
            if events >= self.limits.max_outbox
                || bytes.saturating_add(len) > self.limits.max_outbox_bytes
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
    fn push_staged(
        &mut self,
        staged: &mut Vec<Staged>,
        event: Event,
        key: Option<dedup::Key>,
        done: Done,
    ) {
        let offset = self.active.len + self.buf.len() as u64;
        let mark = self.buf.len();
        match segment::frame(&mut self.buf, self.next_seq, &event) {
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

    /// One write and one fdatasync for the whole group, then its dedup keys (unflushed).
    fn commit(&mut self, staged: &[Staged]) -> Result<(), StoreError> {
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
            return Err(StoreError::Io(e));
        }
        self.active.len += size;
        let mut keys: Vec<dedup::Key> = staged.iter().filter_map(|s| s.key).collect();
        keys.sort_by_key(|k| k.0);
        dedup::insert(&self.dedup, &keys)?;
        if let Some(last) = staged.last() {
            self.applied.store(last.seq, Ordering::Release);
        }
        Ok(())
    }

    /// Index, hand-off and replies once the group is durable (or failed).
    fn finish(
        &mut self,
        staged: Vec<Staged>,
        committed: Result<(), StoreError>,
        requeue_replies: &mut [(Result<usize, StoreError>, Reply<usize>)],
    ) {
        if let Err(e) = &committed {
            for item in staged {
                match item.done {
                    Done::Append(reply) => {
                        let _ = reply.send(Err(duplicate_error(e)));
                    }
                    Done::Requeue(slot, _) => requeue_replies[slot].0 = Err(duplicate_error(e)),
                }
            }
            return;
        }
        let now = now_ms();
        let high = self.next_seq.saturating_sub(1);
        let mut handed = Vec::with_capacity(staged.len());
        let mut accepted = Vec::with_capacity(staged.len());
        let mut changed = Vec::new();
        {
            let mut table = lock(&self.table);
            for item in staged {
                let found = segment::Found {
                    seq: item.seq,
                    offset: item.offset,
                    len: item.len,
                };
                if let Some(segment) = table.segments.get_mut(&self.active.first_seq) {
                    segment.len = self.active.len;
                    segment.push(Entry::pending(found, item.event.meta.received_at_ms));
                }
                table.added_pending(item.len);
                match item.done {
                    Done::Append(reply) => accepted.push(reply),
                    Done::Requeue(slot, source) => {
                        if let Ok(n) = &mut requeue_replies[slot].0 {
                            *n += 1;
                        }
                        if let Source::Delivered(seq) = source {
                            changed.extend(table.transition(
                                seq,
                                State::Delivered,
                                State::Replayed,
                                now,
                            ));
                        }
                        if let Source::Dead(seq) = source {
                            if let Err(e) = self.dead.remove(record::seq_key(seq)) {
                                requeue_replies[slot].0 = Err(StoreError::Sled(e));
                            }
                        }
                    }
                }
                handed.push((
                    Pending {
                        seq: item.seq,
                        event: Arc::new(item.event),
                    },
                    item.len,
                ));
            }
        }
        // Handed over before the replies: whoever saw a 202 finds the event with the publisher.
        self.feed.push(handed, high);
        for reply in accepted {
            // A dropped receiver means the caller gave up; the event is stored regardless.
            let _ = reply.send(Ok(Appended::Accepted));
        }
        if let Err(e) = self.write_marks(&changed) {
            tracing::error!(error = %e, "recording replayed marks failed");
        }
        self.roll_if_full();
    }

    /// Whether a replay's source is still there: a second replay of one entry finds it gone.
    fn source_holds(&self, source: Source) -> bool {
        match source {
            Source::Dead(seq) => matches!(self.dead.contains_key(record::seq_key(seq)), Ok(true)),
            Source::Delivered(seq) => lock(&self.table).state_of(seq) == Some(State::Delivered),
        }
    }

    /// Applies confirms and dead letters: marks (unflushed), dead copies, counts.
    fn settle(&mut self, settlement: Settlement) -> Result<(), StoreError> {
        let now = now_ms();
        let mut changed = Vec::with_capacity(settlement.delivered.len() + settlement.dead.len());
        {
            let mut table = lock(&self.table);
            for seq in &settlement.delivered {
                changed.extend(table.transition(*seq, State::Pending, State::Delivered, now));
            }
            for (pending, _) in &settlement.dead {
                changed.extend(table.transition(pending.seq, State::Pending, State::Dead, now));
            }
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
            // Rare, and it must outlive its segment: the dead letter keeps its own copy.
            let mut value = record::dead_prefix(reason, now)?;
            record::encode_event_into(&mut value, &pending.event)?;
            self.dead.insert(record::seq_key(pending.seq), value)?;
        }
        self.write_marks(&changed)
    }

    fn write_marks(&self, changed: &[Changed]) -> Result<(), StoreError> {
        let mut changed = changed;
        while let Some(first) = changed.first() {
            let same = changed
                .iter()
                .take_while(|c| c.segment == first.segment)
                .count();
            let (group, rest) = changed.split_at(same);
            changed = rest;
            let marks = {
                let table = lock(&self.table);
                match table.segments.get(&first.segment) {
                    Some(segment) => segment.marks.clone(),
                    None => continue,
                }
            };
            let mut batch = sled::Batch::default();
            for c in group {
                batch.insert(
                    &record::seq_key(c.entry.seq)[..],
                    &mark_value(c.entry.state, c.entry.at_ms)[..],
                );
            }
            marks.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Starts a new segment once the active one reached `segment_bytes`.
    fn roll_if_full(&mut self) {
        if self.active.len < self.segment_bytes {
            return;
        }
        match retention::open_segment(&self.db, &self.segments_dir, self.next_seq) {
            Ok((active, segment)) => {
                lock(&self.table).segments.insert(active.first_seq, segment);
                self.active = active;
            }
            // The full segment keeps taking writes; the next group tries again.
            Err(e) => tracing::error!(error = %e, "cannot start a new segment"),
        }
    }

    fn sweep(&mut self) -> Result<usize, StoreError> {
        let flushed = self.flushed.load(Ordering::Acquire);
        retention::sweep(
            &self.db,
            &self.table,
            &self.retention,
            self.active.first_seq,
            flushed,
        )
    }
}

/// One failure answers many waiters; `StoreError` is not `Clone` because its sources are not.
pub(super) fn duplicate_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Sled(e) => StoreError::Sled(e.clone()),
        StoreError::Corrupt(e) => record::corrupt(&e.to_string()),
        StoreError::Io(e) => StoreError::Io(std::io::Error::new(e.kind(), e.to_string())),
        StoreError::Closed => StoreError::Closed,
        StoreError::OutboxFull => StoreError::OutboxFull,
        StoreError::Unwritable => StoreError::Unwritable,
        StoreError::Migration(text) => StoreError::Migration(text.clone()),
    }
}
