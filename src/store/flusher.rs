//! The one thread that flushes sled, about once a second and on request, with a checkpoint.
//!
//! Appends are durable through their segment's fdatasync; what sled holds for them (dedup keys,
//! delivery marks, dead letters) is flushed here, off the hot path; before a timed flush the
//! writer is asked to write what it keeps in memory for it (`deferred`). Before each flush the
//! checkpoint (`meta["checkpoint"]`: the highest seq whose dedup keys the writer has inserted)
//! is written, so once the flush returns every key up to it is on disk; opening the store
//! writes the keys of the records after it again. sled 0.34.7's `flush_async` deadlocks with
//! several awaiters, hence one thread calling the blocking `flush`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::writer::{duplicate_error, Command, Reply};
use super::StoreError;

pub(super) const CHECKPOINT_KEY: &[u8] = b"checkpoint";

pub(super) fn decode_checkpoint(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// What the writer has put into sled and what of it a flush has made durable; retention
/// deletes a segment only once both its keys and its last settlement are.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Highest seq whose dedup keys are inserted (set by the writer after inserting them).
    pub(super) applied_seq: AtomicU64,
    pub(super) flushed_seq: AtomicU64,
    /// Counts the writer's settlements (marks, dead letters); a segment records the count of
    /// its last one.
    pub(super) settled: AtomicU64,
    pub(super) flushed_settled: AtomicU64,
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
    pub(super) meta: sled::Tree,
    pub(super) progress: Arc<Progress>,
    pub(super) interval: Duration,
    /// Weak, so the writer still stops once every store handle is gone.
    pub(super) writer: mpsc::WeakSender<Command>,
}

impl Flusher {
    /// Flushes every `interval` and for each request, until every sender is gone (one last flush).
    pub(super) fn run(self, requests: Receiver<Reply<()>>) {
        loop {
            let mut waiters = Vec::new();
            let last = match requests.recv_timeout(self.interval) {
                Ok(reply) => {
                    waiters.push(reply);
                    waiters.extend(requests.try_iter());
                    false
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.persist();
                    false
                }
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let result = self.flush();
            if let Err(e) = &result {
                tracing::error!(error = %e, "store flush failed");
            }
            for reply in waiters {
                let _ = reply.send(result.as_ref().map(drop).map_err(duplicate_error));
            }
            if last {
                return;
            }
        }
    }

    /// Has the writer put what it deferred into sled, so the flush after covers it. Requests
    /// need not: the writer wrote its deferred changes before passing them on.
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
        // Read before the flush: only what was in sled when it started is durable after it.
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
