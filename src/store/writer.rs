//! The single writer thread: group commit of appends and replays into the active segment (one
//! `write`, one fdatasync per group), then the hand-off to the publisher and the replies; and,
//! in the same queue, the publisher's batched confirms and retention. Dedup keys and marks are
//! handed to the flusher once per flush cycle, which writes them into sled (`deferred`).
//!
//! Only this thread changes the delivery index, the dedup keys and the dead letters, so no check
//! can race and nothing needs a sled transaction. Nothing here flushes sled (the flusher does);
//! requests to the flusher go through an unbounded channel and never block (I14).

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use super::deferred::{Deferred, FlushRequest};
use super::feed::Feed;
use super::generations::Generations;
use super::table::Table;
use super::{dedup, flusher, record, retention};
use super::{now_ms, Appended, Limits, Settlement, StoreError};
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
    /// From the flusher before each timed flush: write what waits in memory into sled.
    Persist { reply: Reply<()> },
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
    pub(super) progress: Arc<flusher::Progress>,
    pub(super) flush_requests: std::sync::mpsc::Sender<FlushRequest>,
    pub(super) retention: retention::Policy,
    /// Set by a failed segment write: the file's state is unknown after a failed fdatasync,
    /// so nothing more is written until the process reopens the store.
    pub(super) broken: bool,
    pub(super) buf: Vec<u8>,
    /// Dedup keys and marks not yet in sled.
    pub(super) deferred: Deferred,
}

/// An event that made it into the group, with where it goes.
pub(super) struct Staged {
    pub(super) event: Event,
    pub(super) seq: u64,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) key: Option<dedup::Key>,
    pub(super) done: Done,
}

pub(super) enum Done {
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
        // The flusher's last flush (when this thread drops its sender) makes it durable.
        self.hand_over(None);
        tracing::debug!("store writer stopped: all store handles dropped");
    }

    pub(super) fn process_group(&mut self, group: Vec<Command>) {
        let mut appends = Vec::new();
        let mut requeues = Vec::new();
        let mut barriers = Vec::new();
        let mut sweeps = Vec::new();
        let mut probe = false;
        let mut persist = Vec::new();
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
                Command::Persist { reply } => persist.push(reply),
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
        for reply in persist {
            self.hand_over(None);
            let _ = reply.send(Ok(()));
        }
        for reply in barriers {
            if self.is_broken() {
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
            self.hand_over(Some(reply));
        }
    }

    /// Whether this store takes no more writes: a segment write failed here, or writing dedup
    /// keys or marks into sled failed in the flusher (I2).
    pub(super) fn is_broken(&self) -> bool {
        self.broken
            || self
                .progress
                .failed
                .load(std::sync::atomic::Ordering::Acquire)
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
