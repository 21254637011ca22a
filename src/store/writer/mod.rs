//! The single writer thread: group commit of appends and replays into the active segment (one
//! `write`, one fdatasync per group), then the hand-off to the publisher and the replies; and,
//! in the same queue, the publisher's batched confirms and retention. Dedup keys and marks wait
//! in `deferred`, which the flusher takes before each flush and writes into sled.
//!
//! Only this thread changes the delivery index, the dedup keys and the dead letters, so no check
//! can race and nothing needs a sled transaction. Nothing here flushes sled (the flusher does);
//! requests to the flusher go through an unbounded channel and never block, and the flusher
//! never waits on this thread (I14). `Writer`'s state is private to this folder: `group`
//! commits, `settle` applies confirms, dead letters and retention.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::dedup::{self, Slices};
use super::deferred::{Deferred, FlushRequest};
use super::error::StoreError;
use super::events::{Events, Note, Stamp};
use super::feed::Feed;
use super::index::{Changed, Table};
use super::layout::PROBE_KEY;
use super::ledger::Ledger;
use super::retention;
use super::segment::Active;
use super::types::{Appended, Limits, Reply, Settlement};
use crate::clock::now_ms;
use crate::event::Event;

mod group;
mod settle;

/// Most commands taken into one group: bounds the batch size and the wait of the first.
const MAX_GROUP: usize = 1024;

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

/// Where a replayed event comes from; it is taken out there once its copy is durable (I13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// Seq key in the `dead` tree.
    Dead(u64),
    /// A delivered record of a live segment.
    Delivered(u64),
}

impl Source {
    /// The seq of the record put back.
    pub(super) fn seq(&self) -> u64 {
        match self {
            Source::Dead(seq) | Source::Delivered(seq) => *seq,
        }
    }
}

pub(super) struct Requeue {
    pub(super) event: Event,
    pub(super) source: Source,
}

/// What the writer is given (`open`): handles it shares and settings.
pub(super) struct Setup {
    pub(super) db: sled::Db,
    pub(super) dead: sled::Tree,
    pub(super) meta: sled::Tree,
    pub(super) dedup: Arc<Slices>,
    pub(super) table: Arc<Mutex<Table>>,
    pub(super) feed: Arc<Feed>,
    pub(super) ledger: Arc<Ledger>,
    /// Dedup keys and marks not yet in sled, shared with the flusher.
    pub(super) deferred: Arc<Deferred>,
    pub(super) flush_requests: std::sync::mpsc::Sender<FlushRequest>,
    pub(super) window_ms: u64,
    /// Keys expiring by then may have been written by an earlier release (`dedup::earlier_until`).
    pub(super) earlier_until: u64,
    pub(super) limits: Limits,
    pub(super) retention: retention::Policy,
    pub(super) segments_dir: PathBuf,
    pub(super) segment_bytes: u64,
    /// The event index, which retention prunes, and its `event-dups` tree (I16).
    pub(super) events: Arc<Events>,
    pub(super) event_dups: sled::Tree,
}

/// The writer thread's state, its own: no other thread sees it.
pub(super) struct Writer {
    setup: Setup,
    /// The segment appends go to, and the seq the next record gets.
    active: Active,
    next_seq: u64,
    /// Set by a failed segment write: the file's state is unknown after a failed fdatasync,
    /// so nothing more is written until the process reopens the store (I2).
    broken: bool,
    /// The group's frames, written with one `write`.
    buf: Vec<u8>,
    /// Duplicates the group answered (the id it repeats, when), for the event index.
    dups: Vec<(crate::event::EventId, u64)>,
}

/// An event that made it into the group, with where it goes.
struct Staged {
    event: Event,
    seq: u64,
    offset: u64,
    len: u32,
    key: Option<dedup::NewKey>,
    done: Done,
}

enum Done {
    Append(Reply<Appended>),
    /// Index into the group's requeue replies.
    Requeue(usize, Source),
}

impl Writer {
    /// A writer appending to `active`, its next record numbered `next_seq`.
    pub(super) fn new(setup: Setup, active: Active, next_seq: u64) -> Writer {
        Writer {
            setup,
            active,
            next_seq,
            broken: false,
            buf: Vec::with_capacity(1 << 20),
            dups: Vec::new(),
        }
    }

    /// Serves until every sender is gone, then returns after finishing what was queued. Its
    /// end drops the flusher's last sender: the flusher then takes what is deferred and
    /// flushes once more.
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

    fn process_group(&mut self, group: Vec<Command>) {
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
            if self.is_broken() {
                let _ = reply.send(Err(StoreError::Unwritable));
                continue;
            }
            // A probe must exercise the write path, not just a flush of nothing.
            if probe {
                if let Err(e) = self
                    .setup
                    .meta
                    .insert(PROBE_KEY, &now_ms().to_be_bytes()[..])
                {
                    let _ = reply.send(Err(StoreError::Sled(e)));
                    continue;
                }
            }
            self.ask_flush(Some(reply));
        }
    }

    /// Whether this store takes no more writes: a segment write failed here, or writing dedup
    /// keys or marks into sled failed in the flusher (I2).
    fn is_broken(&self) -> bool {
        self.broken || self.setup.ledger.has_failed()
    }

    /// Keeps the keys of a committed group (whose last seq is `high`) for the flusher, counting
    /// the new ones in their slices now so that `stats` is exact before they reach sled.
    fn defer_keys(&mut self, keys: &[dedup::NewKey], high: u64) {
        let counted = self.setup.deferred.add_keys(keys, high);
        dedup::remember(&self.setup.dedup, &counted);
    }

    /// Keeps state changes for the flusher to write as marks (I7), with the times they bring
    /// the event index (I16).
    fn defer_marks(&mut self, changed: Vec<Changed>, stamps: Vec<Stamp>) {
        self.setup
            .deferred
            .add_marks(&self.setup.table, changed, stamps);
    }

    /// Hands the event index what the group stored and answered (I16): the events it already
    /// holds, shared, and the duplicates; asks the flusher to take them early when they fill up.
    fn hand_notes(&mut self, notes: Vec<Note>) {
        let dups = std::mem::take(&mut self.dups);
        if self.setup.deferred.add_notes(notes, dups) {
            let _ = self.setup.flush_requests.send(FlushRequest {
                reply: None,
                notes_only: true,
            });
        }
    }

    /// Asks the flusher for a flush, with `reply` answered after it; the flusher takes what is
    /// deferred first. Sent for each barrier, and early when the deferred keys fill up.
    fn ask_flush(&self, reply: Option<Reply<()>>) {
        if let Err(std::sync::mpsc::SendError(request)) =
            self.setup.flush_requests.send(FlushRequest {
                reply,
                notes_only: false,
            })
        {
            if let Some(reply) = request.reply {
                let _ = reply.send(Err(StoreError::Closed));
            }
        }
    }
}
