//! The one thread that flushes sled, about once a second and on request, with a checkpoint.
//!
//! Appends are durable through their segment's fdatasync; what sled holds for them (dedup keys,
//! delivery marks, dead letters) is flushed here, off the hot path. The dedup keys and marks
//! reach sled here too: before each flush this thread takes what the writer deferred as one
//! batch (`deferred`) and writes it. Before each flush the checkpoint (`meta["checkpoint"]`:
//! the highest seq whose dedup keys are in sled) is written, so once the flush returns every
//! key up to it is on disk; opening the store writes the keys of the records after it again
//! (I6). sled 0.34.7's `flush_async` deadlocks with several awaiters, hence one thread calling
//! the blocking `flush` (I14). Work goes one way: requests come from the writer, slices due a
//! merge go to the merger, and nothing goes back to the writer.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dedup::{self, Slices};
use super::deferred::{Batch, Deferred, FlushRequest};
use super::error::StoreError;
use super::events::{Events, Taken};
use super::index::Table;
use super::layout::marks::{mark_key, mark_value, runs};
use super::layout::CHECKPOINT_KEY;
use super::ledger::Ledger;

pub(super) struct Flusher {
    pub(super) db: sled::Db,
    pub(super) dedup: Arc<Slices>,
    pub(super) meta: sled::Tree,
    pub(super) ledger: Arc<Ledger>,
    pub(super) deferred: Arc<Deferred>,
    /// For the marks trees of a batch's segments.
    pub(super) table: Arc<Mutex<Table>>,
    pub(super) interval: Duration,
    /// Slices whose runs were added to, for the merger thread ([`dedup::merge_runs`]).
    pub(super) merges: std::sync::mpsc::Sender<u64>,
    /// The event index and its `event-dups` tree (I16).
    pub(super) events: Arc<Events>,
    pub(super) dups: sled::Tree,
}

impl Flusher {
    /// Flushes every `interval` and for each request, until every sender is gone (one last flush).
    pub(super) fn run(self, requests: Receiver<FlushRequest>) {
        let mut due = Instant::now() + self.interval;
        loop {
            let mut waiters = Vec::new();
            // An early take of the notes alone does not move the next timed flush.
            let mut flush = false;
            let mut take = |request: FlushRequest, flush: &mut bool| {
                *flush |= !request.notes_only;
                waiters.extend(request.reply);
            };
            let last = match requests.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(request) => {
                    take(request, &mut flush);
                    false
                }
                Err(RecvTimeoutError::Timeout) => {
                    flush = true;
                    false
                }
                Err(RecvTimeoutError::Disconnected) => {
                    flush = true;
                    true
                }
            };
            for request in requests.try_iter() {
                take(request, &mut flush);
            }
            if !flush {
                // Early: the notes' bodies are let go, their summaries wait for the next take.
                self.index(self.deferred.take_notes(), true);
                continue;
            }
            due = Instant::now() + self.interval;
            // Whatever the writer deferred before it sent a request is taken here.
            if let Some(batch) = self.deferred.take(&self.table) {
                let number = batch.number;
                match self.write(batch) {
                    Ok(()) => self.deferred.written(number),
                    Err(e) => {
                        // I2: the writer takes no append from now on.
                        self.ledger.failed.store(true, Ordering::Release);
                        tracing::error!(error = %e, "dedup keys or delivery marks not written; the store takes no more writes until restarted");
                    }
                }
            } else {
                // Summaries an early take held.
                self.index(Taken::default(), false);
            }
            let result = self.flush();
            if let Err(e) = &result {
                tracing::error!(error = %e, "store flush failed");
            }
            for reply in waiters {
                let _ = reply.send(result.clone());
            }
            if last {
                // The store is closing: a merge in progress would hold up its close.
                self.dedup.stop_merges();
                return;
            }
        }
    }

    /// The event index's notes, duplicates and times into its files and the rows (I16); `hold`: an
    /// early take, whose summaries wait for the next.
    fn index(&self, taken: Taken, hold: bool) {
        if let Err(e) = self.events.take_in(&self.dups, taken, hold) {
            // The index is beside the path: it is made good at the next open.
            tracing::error!(error = %e, "event index not written");
        }
    }

    /// Writes a batch the writer deferred into sled (unflushed), then moves what the next
    /// flush's checkpoint and marks batch cover.
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        // Before the keys: a segment retention may drop once its keys are flushed has its
        // summaries written too (I7, I16).
        self.index(batch.index, false);
        for end in dedup::insert(&self.dedup, &batch.keys)? {
            // Gone only once the merger stopped, at shutdown: the merge can wait for next time.
            let _ = self.merges.send(end);
        }
        for (tree, marks) in &batch.marks {
            let mut sled_batch = sled::Batch::default();
            for run in runs(marks) {
                sled_batch.insert(&mark_key(&run)[..], &mark_value(&run)[..]);
            }
            tree.apply_batch(sled_batch)?;
            self.events.apply_marks(marks);
        }
        let ledger = &self.ledger;
        if let Some(high) = batch.committed {
            ledger.keys_written.fetch_max(high, Ordering::AcqRel);
        }
        if let Some(number) = batch.marks_batch {
            ledger.marks_written.fetch_max(number, Ordering::AcqRel);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Read before the flush: only what was in sled when it started is durable after it (I6).
        let keys = self.ledger.keys_written.load(Ordering::Acquire);
        let marks = self.ledger.marks_written.load(Ordering::Acquire);
        self.meta.insert(CHECKPOINT_KEY, &keys.to_be_bytes()[..])?;
        // The summaries and their times as far as sled's marks go; what a crash takes of them
        // is made again at open, without the times (I16).
        if let Err(e) = self.events.sync() {
            tracing::error!(error = %e, "event summaries not synced");
        }
        self.db.flush()?;
        let ledger = &self.ledger;
        ledger.keys_flushed.fetch_max(keys, Ordering::AcqRel);
        ledger.marks_flushed.fetch_max(marks, Ordering::AcqRel);
        Ok(())
    }
}
