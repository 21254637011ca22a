//! The single writer thread: group commit of appends (and operator replays), one fsync per group.
//!
//! sled 0.34.7's `flush_async` deadlocks when several tasks await it at once (spacejam/sled#1308),
//! so every write that must be durable goes through this one thread, which batches whatever is
//! queued into one batch per tree and one blocking `flush`.
//!
//! No sled transaction: this thread is the only one adding outbox entries and dedup keys, so the
//! dedup check cannot race, and order gives crash safety instead (sled recovers a prefix of its
//! log): a group's events are written before their dedup keys, a replayed record enters the
//! outbox before it leaves its source.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sled::IVec;
use tokio::sync::{mpsc, oneshot, Notify};

use super::generations::Slice;
use super::record;
use super::{now_ms, Appended, Counters, Limits, StoreError, Trees};
use crate::event::{Event, EventId};

/// Most commands taken into one group: bounds the batch size and the wait of the first.
pub(super) const MAX_GROUP: usize = 1024;

/// Key in the `meta` tree that write probes overwrite.
const PROBE_KEY: &[u8] = b"probe";

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Command {
    Append {
        event: Event,
        reply: Reply<Appended>,
    },
    /// Durability barrier: answered after the next flush.
    Flush { reply: Reply<()> },
    /// Readiness: a real write plus a flush.
    Probe { reply: Reply<()> },
    /// Operator replay: records put back into the outbox under new seqs, drawn here so seqs
    /// keep increasing in commit order (the publisher reads the outbox past its last seq).
    /// Answers how many were moved.
    Requeue {
        items: Vec<Requeue>,
        reply: Reply<usize>,
    },
}

/// Where a replayed record comes from; it is taken out there once it is in the outbox. Replays
/// all run on the writer thread, so two replays of one entry cannot both move it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    /// Key in the `dead` tree.
    Dead([u8; 8]),
    /// Key in the `delivered` tree.
    Delivered([u8; 16]),
}

pub(super) struct Requeue {
    /// The outbox record to enqueue.
    pub(super) record: IVec,
    pub(super) source: Source,
}

pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) trees: Trees,
    pub(super) appended: Arc<Notify>,
    pub(super) window_ms: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) limits: Limits,
}

/// An append that made it into the group.
struct Staged {
    id: EventId,
    expiry_ms: u64,
    seq: u64,
    record: IVec,
    reply: Reply<Appended>,
}

impl Writer {
    /// Serves until every sender is gone, then returns after finishing what was queued.
    pub(super) fn run(self, mut commands: mpsc::Receiver<Command>) {
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

    pub(super) fn process_group(&self, group: Vec<Command>) {
        let mut appends = Vec::new();
        let mut barriers = Vec::new();
        let mut probe = false;
        let mut requeues = Vec::new();
        for command in group {
            match command {
                Command::Append { event, reply } => appends.push((event, reply)),
                Command::Requeue { items, reply } => requeues.push((items, reply)),
                Command::Flush { reply } => barriers.push(reply),
                Command::Probe { reply } => {
                    probe = true;
                    barriers.push(reply);
                }
            }
        }

        let staged = self.stage(appends);
        let committed = if staged.is_empty() {
            Ok(Vec::new())
        } else {
            self.commit(&staged)
        };
        let requeued: Vec<_> = requeues
            .into_iter()
            .map(|(items, reply)| (self.requeue(&items), reply))
            .collect();
        // A probe must exercise the write path, not just a flush of nothing.
        let probed = if probe {
            self.trees
                .meta
                .insert(PROBE_KEY, &now_ms().to_be_bytes()[..])
                .map(drop)
                .map_err(StoreError::Sled)
        } else {
            Ok(())
        };
        let flushed = self.db.flush().map(drop).map_err(StoreError::Sled);

        if let Ok(outcomes) = &committed {
            // The records are in the outbox even if the flush failed: the publisher should see them.
            if outcomes.contains(&Some(Appended::Accepted)) {
                self.appended.notify_one();
            }
        }
        if requeued
            .iter()
            .any(|(moved, _)| matches!(moved, Ok(n) if *n > 0))
        {
            self.appended.notify_one();
        }
        if let Err(e) = committed.as_ref().map(drop).and(flushed.as_ref().map(drop)) {
            tracing::error!(error = %e, events = staged.len(), "store group commit failed");
        }

        match (&committed, &flushed) {
            (Ok(outcomes), Ok(())) => {
                for (item, outcome) in staged.into_iter().zip(outcomes) {
                    // A dropped receiver means the caller gave up; the event is stored regardless.
                    let _ = item.reply.send(outcome.ok_or(StoreError::OutboxFull));
                }
            }
            (Err(e), _) | (Ok(_), Err(e)) => {
                for item in staged {
                    let _ = item.reply.send(Err(duplicate_error(e)));
                }
            }
        }
        for (moved, reply) in requeued {
            let result = match (moved, &flushed) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(duplicate_error(e)),
                (Ok(n), Ok(())) => Ok(n),
            };
            let _ = reply.send(result);
        }
        for reply in barriers {
            let result = match (&probed, &flushed) {
                (Err(e), _) | (_, Err(e)) => Err(duplicate_error(e)),
                _ => Ok(()),
            };
            let _ = reply.send(result);
        }
    }

    /// Encodes records and draws sequence numbers, in queue order on this one thread, so
    /// sequence numbers increase in commit order.
    fn stage(&self, appends: Vec<(Event, Reply<Appended>)>) -> Vec<Staged> {
        let mut staged = Vec::with_capacity(appends.len());
        for (event, reply) in appends {
            let record = match record::encode_event(&event) {
                Ok(record) => IVec::from(record),
                Err(e) => {
                    let _ = reply.send(Err(e));
                    continue;
                }
            };
            let seq = match self.db.generate_id() {
                Ok(seq) => seq,
                Err(e) => {
                    let _ = reply.send(Err(StoreError::Sled(e)));
                    continue;
                }
            };
            staged.push(Staged {
                id: event.meta.id,
                expiry_ms: event.meta.received_at_ms.saturating_add(self.window_ms),
                seq,
                record,
                reply,
            });
        }
        staged
    }

    /// Writes the group; outcomes in group order, `None` for an event refused because the
    /// outbox is at `max_outbox` / `max_outbox_bytes`.
    fn commit(&self, staged: &[Staged]) -> Result<Vec<Option<Appended>>, StoreError> {
        let now = now_ms();
        let dedup = &self.trees.dedup;
        // Slices for the new keys are made first: that needs the write lock, checks the read one.
        let mut last_end = None;
        for item in staged {
            if last_end != Some(dedup.end_of(item.expiry_ms)) {
                last_end = Some(dedup.ensure(item.expiry_ms)?);
            }
        }
        let slices = dedup.read();
        // Newest first: a repeat is most likely recent. Slices ending by now hold only expired keys.
        let live: Vec<(u64, &Slice)> = slices
            .range(now.saturating_add(1)..)
            .rev()
            .map(|(end, s)| (*end, s))
            .collect();
        // Only this thread adds to the outbox, so the limits hold exactly; removals running
        // meanwhile only make them conservative.
        let (mut events, mut bytes) = (
            self.counters.outbox_events.load(Ordering::Relaxed),
            self.counters.outbox_bytes.load(Ordering::Relaxed),
        );
        let (base_events, base_bytes) = (events, bytes);
        let mut outcomes = Vec::with_capacity(staged.len());
        let mut in_group = HashSet::with_capacity(staged.len());
        let mut outbox = sled::Batch::default();
        // (slice end, id, expiry, whether it adds a key rather than overwriting an expired one)
        let mut keys = Vec::with_capacity(staged.len());
        for item in staged {
            if in_group.contains(&item.id) {
                outcomes.push(Some(Appended::Duplicate));
                continue;
            }
            let end = dedup.end_of(item.expiry_ms);
            let (mut duplicate, mut overwrites) = (false, false);
            for (slice_end, slice) in &live {
                let Some(value) = slice.tree.get(item.id.0)? else {
                    continue;
                };
                match record::decode_expiry(&value) {
                    Some(expiry) if expiry > now => {
                        duplicate = true;
                        break;
                    }
                    Some(_) => {}
                    None => tracing::warn!(id = %item.id, "unreadable dedup entry ignored"),
                }
                overwrites |= *slice_end == end;
            }
            if duplicate {
                outcomes.push(Some(Appended::Duplicate));
                continue;
            }
            let size = item.record.len() as u64;
            if events >= self.limits.max_outbox
                || bytes.saturating_add(size) > self.limits.max_outbox_bytes
            {
                outcomes.push(None);
                continue;
            }
            events += 1;
            bytes += size;
            in_group.insert(item.id);
            outbox.insert(&record::seq_key(item.seq)[..], item.record.clone());
            keys.push((end, item.id, item.expiry_ms, !overwrites));
            outcomes.push(Some(Appended::Accepted));
        }
        // The events first, then their keys: a crash between the two can only lose keys of
        // events that were never acknowledged, never leave a key whose event is missing.
        self.trees.outbox.apply_batch(outbox)?;
        self.counters
            .outbox_events
            .fetch_add(events - base_events, Ordering::Relaxed);
        self.counters
            .outbox_bytes
            .fetch_add(bytes - base_bytes, Ordering::Relaxed);
        let mut keys = keys.as_slice();
        while let Some(&(end, ..)) = keys.first() {
            let same = keys.iter().take_while(|key| key.0 == end).count();
            let (group, rest) = keys.split_at(same);
            keys = rest;
            // Gone only if its whole slice expired meanwhile: nothing left to remember then.
            let Some(slice) = slices.get(&end) else {
                continue;
            };
            let mut batch = sled::Batch::default();
            let mut added = 0u64;
            for (_, id, expiry, new) in group {
                batch.insert(&id.0[..], &record::expiry_value(*expiry)[..]);
                added += u64::from(*new);
            }
            slice.tree.apply_batch(batch)?;
            slice.added(added, 0);
        }
        Ok(outcomes)
    }
}

impl Writer {
    /// Moves records back into the outbox under new seqs; entries already gone from their
    /// source (replayed or swept meanwhile) are skipped.
    fn requeue(&self, items: &[Requeue]) -> Result<usize, StoreError> {
        let delivered = self.trees.delivered.read();
        let (mut moved, mut bytes) = (0u64, 0u64);
        for item in items {
            // Only this thread takes entries out of `dead`; in `delivered` the sweeper's size cap
            // may also remove one, which at worst replays an event it was about to drop.
            let key: &[u8] = match &item.source {
                Source::Dead(key) => key,
                Source::Delivered(key) => key,
            };
            let holder = match item.source {
                Source::Dead(_) => self.trees.dead.get(key)?.map(|_| (&self.trees.dead, None)),
                Source::Delivered(_) => {
                    let at = record::decode_delivered_key(key)?.0;
                    // The slice whose range holds `at`; a changed slice width can make two
                    // candidates, so look in each later one until the key is found.
                    let mut found = None;
                    for slice in delivered
                        .range(at.saturating_add(1)..)
                        .map(|(_, slice)| slice)
                    {
                        if slice.tree.get(key)?.is_some() {
                            found = Some((&slice.tree, Some(slice)));
                            break;
                        }
                    }
                    found
                }
            };
            let Some((tree, slice)) = holder else {
                continue;
            };
            self.trees.outbox.insert(
                &record::seq_key(self.db.generate_id()?)[..],
                item.record.clone(),
            )?;
            if let Some(old) = tree.remove(key)? {
                if let Some(slice) = slice {
                    slice.removed(1, old.len() as u64);
                }
            }
            moved += 1;
            bytes += item.record.len() as u64;
        }
        self.counters
            .outbox_events
            .fetch_add(moved, Ordering::Relaxed);
        self.counters
            .outbox_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(super::count(moved))
    }
}

/// One failure answers many waiters; `StoreError` is not `Clone` because `serde_json::Error` is not.
pub(super) fn duplicate_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Sled(e) => StoreError::Sled(e.clone()),
        StoreError::Corrupt(e) => record::corrupt(&e.to_string()),
        StoreError::Closed => StoreError::Closed,
        StoreError::OutboxFull => StoreError::OutboxFull,
        StoreError::Unwritable => StoreError::Unwritable,
    }
}
