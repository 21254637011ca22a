//! The one thread that flushes sled, about once a second and on request, with a checkpoint.
//!
//! Appends are durable through their segment's fdatasync; what sled holds for them (dedup keys,
//! delivery marks, dead letters) is flushed here, off the hot path. The dedup keys and marks
//! reach sled here too: the writer hands them over as one batch per flush (`deferred`), which
//! this thread writes just before flushing. Before each flush the checkpoint
//! (`meta["checkpoint"]`: the highest seq whose dedup keys are in sled) is written, so once the
//! flush returns every key up to it is on disk; opening the store writes the keys of the records
//! after it again (I6). sled 0.34.7's `flush_async` deadlocks with several awaiters, hence one
//! thread calling the blocking `flush` (I14).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::deferred::{Batch, FlushRequest};
use super::generations::Generations;
use super::marks::{mark_key, mark_value, runs};
use super::writer::{duplicate_error, Command};
use super::{dedup, StoreError};

pub(super) const CHECKPOINT_KEY: &[u8] = b"checkpoint";

pub(super) fn decode_checkpoint(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// What is in sled and what of it a flush has made durable; retention
/// deletes a segment only once both its keys and its last settlement are.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Highest seq whose dedup keys are in sled (set by the flusher after writing a batch, and
    /// at open after the keys past the checkpoint were restored).
    pub(super) applied_seq: AtomicU64,
    pub(super) flushed_seq: AtomicU64,
    /// Settlement counts whose marks are in sled (the writer numbers them per batch; a segment
    /// records the number of the last batch with marks for it).
    pub(super) settled: AtomicU64,
    pub(super) flushed_settled: AtomicU64,
    /// Number of the last batch of keys and marks the flusher wrote into sled.
    pub(super) written_batch: AtomicU64,
    /// Set when writing a batch into sled failed: the writer takes no more appends.
    pub(super) failed: AtomicBool,
}

impl Progress {
    pub(super) fn new(seq: u64, flushed_seq: u64) -> Progress {
        let progress = Progress::default();
        progress.applied_seq.store(seq, Ordering::Relaxed);
        progress.flushed_seq.store(flushed_seq, Ordering::Relaxed);
        progress
    }

    /// Whether everything up to `seq` and settlement `settled` is flushed.
    pub(super) fn is_flushed(&self, seq: u64, settled: u64) -> bool {
        seq <= self.flushed_seq.load(Ordering::Acquire)
            && settled <= self.flushed_settled.load(Ordering::Acquire)
    }
}

pub(super) struct Flusher {
    pub(super) db: sled::Db,
    pub(super) dedup: Arc<Generations>,
    pub(super) meta: sled::Tree,
    pub(super) progress: Arc<Progress>,
    pub(super) interval: Duration,
    /// Weak, so the writer still stops once every store handle is gone.
    pub(super) writer: mpsc::WeakSender<Command>,
    /// Slices whose runs were added to, for the merger thread ([`dedup::merge_runs`]).
    pub(super) merges: std::sync::mpsc::Sender<u64>,
}

impl Flusher {
    /// Flushes every `interval` and for each request, until every sender is gone (one last flush).
    pub(super) fn run(self, requests: Receiver<FlushRequest>) {
        loop {
            let mut waiters = Vec::new();
            let mut batches = Vec::new();
            let mut take = |request: FlushRequest| {
                batches.extend(request.batch);
                waiters.extend(request.reply);
            };
            let last = match requests.recv_timeout(self.interval) {
                Ok(request) => {
                    take(request);
                    false
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.persist();
                    false
                }
                Err(RecvTimeoutError::Disconnected) => true,
            };
            // The writer's hand-over for a timed flush is queued by now (before its answer).
            requests.try_iter().for_each(&mut take);
            for batch in batches {
                if let Err(e) = self.write(batch) {
                    // I2: the writer takes no append from now on.
                    self.progress.failed.store(true, Ordering::Release);
                    tracing::error!(error = %e, "dedup keys or delivery marks not written; the store takes no more writes until restarted");
                }
            }
            let result = self.flush();
            if let Err(e) = &result {
                tracing::error!(error = %e, "store flush failed");
            }
            for reply in waiters {
                let _ = reply.send(result.as_ref().map(drop).map_err(duplicate_error));
            }
            if last {
                // The store is closing: a merge in progress would hold up its close.
                self.dedup.stop_merges();
                return;
            }
        }
    }

    /// Writes a batch the writer handed over into sled (unflushed), then moves what the next
    /// flush's checkpoint and settlement count cover.
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        for end in dedup::insert(&self.dedup, &batch.keys)? {
            // Gone only once the merger stopped, at shutdown: the merge can wait for next time.
            let _ = self.merges.send(end);
        }
        for (tree, marks) in &batch.marks {
            let mut sled_batch = sled::Batch::default();
            for (first, count, state, at) in runs(marks) {
                sled_batch.insert(&mark_key(first, count)[..], &mark_value(state, at)[..]);
            }
            tree.apply_batch(sled_batch)?;
        }
        let progress = &self.progress;
        if let Some(high) = batch.committed {
            progress.applied_seq.fetch_max(high, Ordering::AcqRel);
        }
        if let Some(settled) = batch.settled {
            progress.settled.fetch_max(settled, Ordering::AcqRel);
        }
        progress
            .written_batch
            .store(batch.number, Ordering::Release);
        Ok(())
    }

    /// Has the writer hand over what it deferred (queued on `requests` before it answers), so
    /// the flush after covers it. Barriers need not: the writer hands over with each. Waiting
    /// here is safe only because the writer's sends to this thread never block (I14).
    fn persist(&self) {
        let Some(writer) = self.writer.upgrade() else {
            return;
        };
        let (reply, answer) = oneshot::channel();
        let sent = writer.blocking_send(Command::Persist { reply }).is_ok();
        drop(writer);
        if sent {
            let _ = answer.blocking_recv();
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Read before the flush: only what was in sled when it started is durable after it (I6).
        let applied = self.progress.applied_seq.load(Ordering::Acquire);
        let settled = self.progress.settled.load(Ordering::Acquire);
        self.meta
            .insert(CHECKPOINT_KEY, &applied.to_be_bytes()[..])?;
        self.db.flush()?;
        let progress = &self.progress;
        progress.flushed_seq.fetch_max(applied, Ordering::AcqRel);
        progress
            .flushed_settled
            .fetch_max(settled, Ordering::AcqRel);
        Ok(())
    }
}
