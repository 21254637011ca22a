//! The single writer thread: group commit of appends (and operator replays), one fsync per group.
//!
//! sled 0.34.7's `flush_async` deadlocks when several tasks await it at once (spacejam/sled#1308),
//! so every write that must be durable goes through this one thread, which batches whatever is
//! queued into one transaction and one blocking `flush`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::IVec;
use tokio::sync::{mpsc, oneshot, Notify};

use super::record;
use super::{now_ms, Appended, Counters, Limits, StoreError, Trees};
use crate::event::{Event, EventId};

/// Most commands taken into one group: bounds the transaction size and the wait of the first.
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
    Flush {
        reply: Reply<()>,
    },
    /// Readiness: a real write plus a flush.
    Probe {
        reply: Reply<()>,
    },
    /// Operator replay: records put back into the outbox under new seqs, drawn here so seqs
    /// keep increasing in commit order (the publisher reads the outbox past its last seq).
    /// Answers how many were moved.
    Requeue {
        items: Vec<Requeue>,
        reply: Reply<usize>,
    },
}

/// Where a replayed record comes from; it is removed there in the same transaction, so two
/// replays of one entry cannot both enqueue it.
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
    pub(super) dedup_keys: Arc<AtomicUsize>,
    pub(super) window_ms: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) limits: Limits,
}

/// An append that made it into the transaction.
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
        if requeued.iter().any(|(moved, _)| matches!(moved, Ok(n) if *n > 0)) {
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

    /// Encodes records and draws sequence numbers outside the transaction: its closure may run
    /// more than once and must not draw new ids each time. Ids are drawn here, in queue order, on
    /// this one thread, so sequence numbers increase in commit order.
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

    /// One transaction for the whole group; outcomes in group order, `None` for an event
    /// refused because the outbox is at `max_outbox` / `max_outbox_bytes`.
    fn commit(&self, staged: &[Staged]) -> Result<Vec<Option<Appended>>, StoreError> {
        let now = now_ms();
        // Only this thread adds to the outbox, so the limits hold exactly; removals running
        // meanwhile only make them conservative.
        let base_events = self.counters.outbox_events.load(Ordering::Relaxed);
        let base_bytes = self.counters.outbox_bytes.load(Ordering::Relaxed);
        let trees = (&self.trees.dedup, &self.trees.dedup_exp, &self.trees.outbox);
        let result = trees.transaction(|(dedup, dedup_exp, outbox)| {
            let mut outcomes = Vec::with_capacity(staged.len());
            let mut new_keys = 0usize;
            let (mut events, mut bytes) = (base_events, base_bytes);
            for item in staged {
                // The transactional view sees this group's own writes, so a repeat within the
                // group is caught here too.
                let prior = dedup.get(item.id.0)?;
                if let Some(value) = &prior {
                    match record::decode_expiry(value) {
                        Some(expiry) if expiry > now => {
                            outcomes.push(Some(Appended::Duplicate));
                            continue;
                        }
                        Some(_) => {}
                        None => tracing::warn!(id = %item.id, "unreadable dedup entry overwritten"),
                    }
                }
                let size = item.record.len() as u64;
                if events >= self.limits.max_outbox || bytes.saturating_add(size) > self.limits.max_outbox_bytes {
                    outcomes.push(None);
                    continue;
                }
                events += 1;
                bytes += size;
                // An expired entry the sweeper has not reached yet is overwritten; its stale
                // index entry no longer matches and the sweeper leaves this one alone.
                dedup.insert(&item.id.0[..], &record::expiry_value(item.expiry_ms)[..])?;
                dedup_exp.insert(&record::expiry_key(item.expiry_ms, &item.id)[..], &[][..])?;
                outbox.insert(&record::seq_key(item.seq)[..], item.record.clone())?;
                if prior.is_none() {
                    new_keys += 1;
                }
                outcomes.push(Some(Appended::Accepted));
            }
            Ok::<_, ConflictableTransactionError<Infallible>>((outcomes, new_keys, events - base_events, bytes - base_bytes))
        });
        match result {
            Ok((outcomes, new_keys, added_events, added_bytes)) => {
                self.dedup_keys.fetch_add(new_keys, Ordering::Relaxed);
                self.counters.outbox_events.fetch_add(added_events, Ordering::Relaxed);
                self.counters.outbox_bytes.fetch_add(added_bytes, Ordering::Relaxed);
                Ok(outcomes)
            }
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
    }
}

impl Writer {
    /// Moves records back into the outbox under new seqs; entries already gone from their
    /// source (replayed meanwhile) are skipped.
    fn requeue(&self, items: &[Requeue]) -> Result<usize, StoreError> {
        let mut seqs = Vec::with_capacity(items.len());
        for _ in items {
            seqs.push(self.db.generate_id()?);
        }
        let trees = (&self.trees.outbox, &self.trees.dead, &self.trees.delivered);
        let result = trees.transaction(|(outbox, dead, delivered)| {
            let (mut moved, mut bytes, mut from_delivered) = (0u64, 0u64, 0u64);
            for (item, seq) in items.iter().zip(&seqs) {
                match item.source {
                    Source::Dead(key) => {
                        if dead.remove(&key[..])?.is_none() {
                            continue;
                        }
                    }
                    Source::Delivered(key) => match delivered.remove(&key[..])? {
                        Some(old) => from_delivered += old.len() as u64,
                        None => continue,
                    },
                }
                outbox.insert(&record::seq_key(*seq)[..], item.record.clone())?;
                moved += 1;
                bytes += item.record.len() as u64;
            }
            Ok::<_, ConflictableTransactionError<Infallible>>((moved, bytes, from_delivered))
        });
        match result {
            Ok((moved, bytes, from_delivered)) => {
                self.counters.outbox_events.fetch_add(moved, Ordering::Relaxed);
                self.counters.outbox_bytes.fetch_add(bytes, Ordering::Relaxed);
                let _ = self
                    .counters
                    .delivered_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(from_delivered)));
                Ok(usize::try_from(moved).unwrap_or(usize::MAX))
            }
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
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
