//! Durable storage behind one API: event records in append-only segment files, and in sled what
//! it is good at (dedup keys, delivery marks, dead letters); the counters back-pressure and
//! metrics read; the in-memory hand-off of new events to the publisher.
//!
//! Crash rule: an accepted append is in its segment and fdatasync'd before `append` returns;
//! sled is flushed off the hot path (about once a second), and opening the store rebuilds from
//! the segments what sled had not flushed (see `flusher` and `recovery`).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::event::Event;

mod dedup;
mod deferred;
mod feed;
mod flusher;
mod generations;
mod group;
mod marks;
mod meta;
mod migrate;
mod open;
mod packed;
mod private;
mod record;
mod recovery;
mod replay;
mod retention;
mod runs;
mod segment;
mod settle;
mod table;
mod types;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

pub use feed::Next;
pub use types::*;

use feed::Feed;
use generations::Generations;
use open::Joined;
use table::Table;
use writer::Command;

/// Room for appends waiting for the writer; beyond it `append` waits (backpressure).
const COMMAND_QUEUE: usize = 4096;

/// Time slices per dedup window: a slice is dropped once all of it has expired, so up to a
/// quarter more than the window is kept, in exchange for expiring a slice with one `drop_tree`.
const SLICES_PER_WINDOW: u64 = 4;

/// Bytes of accepted events held in memory for the publisher; beyond it they wait on disk only
/// and the publisher reads them back from the segments (the page cache, usually). As much again
/// as the publisher's own window holds (`publish::window::WINDOW_BYTES`), so a keeping-up
/// publisher never reads back; small enough that a backlog costs disk, not resident memory (at
/// 64 MiB the relay's RSS reached 131 MB in the 18 KB saturation bench, at 8 MiB 64 MB).
const FEED_BYTES: u64 = 4 * 1024 * 1024;

/// How often sled is flushed (with a checkpoint) when nothing asks for it.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// How long dropping the last store handle waits for each of its threads to finish.
const THREAD_JOIN_LIMIT: Duration = Duration::from_secs(10);

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A running count as a `usize` for the API (saturating on 32-bit targets).
pub(super) fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub(crate) use crate::clock::now_ms;

/// Cheap to clone; all clones share one database, one writer and one flusher thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

// Fields drop in declaration order: the sender goes first so the writer sees the channel close,
// then the writer is joined (dropping its flush sender, so the flusher flushes once more and
// stops), then the flusher, so the directory is released once the last `Store` is gone.
struct Inner {
    commands: mpsc::Sender<Command>,
    _writer: Joined,
    _flusher: Joined,
    /// Dropped after the flusher, whose end ends it.
    _merger: Joined,
    db: sled::Db,
    dedup: Arc<Generations>,
    dead: sled::Tree,
    #[cfg_attr(not(test), allow(dead_code))]
    meta: sled::Tree,
    table: Arc<Mutex<Table>>,
    feed: Arc<Feed>,
    window: Duration,
    keep_delivered: Duration,
    /// Found by the scan at open; never changes while the store runs.
    damaged: Damaged,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("window", &self.inner.window)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Sends a command to the writer and waits for its answer.
    async fn request<T>(
        &self,
        command: impl FnOnce(writer::Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Dedup check and segment append, fdatasync'd before it returns (group commit); the event
    /// is then handed to the publisher in memory.
    pub async fn append(&self, event: Event) -> Result<Appended, StoreError> {
        self.request(|reply| Command::Append { event, reply }).await
    }

    /// What the publisher takes next: events handed over in memory, or word to read the
    /// segments first (after a restart, or when it fell behind by more than memory holds).
    pub fn take_new(&self, room: Room) -> Next {
        self.inner.feed.take(room)
    }

    /// Resolves once new events were handed over since the last call.
    pub async fn appended(&self) {
        self.inner.feed.pushed().await;
    }

    /// Up to `limit` pending events with `after < seq <= until`, in seq order, read from the
    /// segments. Blocking file reads: call it off the async workers (see [`Store::read_pending`]).
    pub fn pending_between(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Result<Vec<Pending>, StoreError> {
        let found = writer::lock(&self.inner.table).pending_between(after, until, room);
        let mut out = Vec::with_capacity(found.len());
        // Pending records mostly follow each other in their segment: one read per run of them.
        let mut rest = &found[..];
        while let Some((file, first)) = rest.first() {
            let mut end = first.offset + u64::from(first.len);
            let run = 1 + rest[1..]
                .iter()
                .take_while(|(f, e)| {
                    let next = Arc::ptr_eq(f, file) && e.offset == end;
                    end += u64::from(e.len);
                    next
                })
                .count();
            let lens: Vec<u32> = rest[..run].iter().map(|(_, e)| e.len).collect();
            for (seq, event) in segment::read_run(file, first.offset, &lens)? {
                out.push(Pending {
                    seq,
                    event: Arc::new(event),
                });
            }
            rest = &rest[run..];
        }
        Ok(out)
    }

    /// As [`Store::pending_between`] with no upper bound.
    pub fn pending_after(
        &self,
        after: Option<u64>,
        room: Room,
    ) -> Result<Vec<Pending>, StoreError> {
        self.pending_between(after, u64::MAX, room)
    }

    /// [`Store::pending_between`] on the blocking pool: one hop per batch, not per event.
    pub async fn read_pending(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Result<Vec<Pending>, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.pending_between(after, until, room))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Queues confirms and dead letters for the writer without waiting for them to be applied
    /// (a lost mark only means a resend). Marks are not flushed on their own.
    pub async fn settle_later(&self, settlement: Settlement) -> Result<(), StoreError> {
        if settlement.is_empty() {
            return Ok(());
        }
        self.inner
            .commands
            .send(Command::Settle {
                settlement,
                reply: None,
            })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// As [`Store::settle_later`], answering once the writer applied it.
    pub async fn settle(&self, settlement: Settlement) -> Result<(), StoreError> {
        self.request(|reply| Command::Settle {
            settlement,
            reply: Some(reply),
        })
        .await
    }

    /// Events and bytes in the outbox (pending in the segments).
    pub fn outbox_usage(&self) -> (u64, u64) {
        let table = writer::lock(&self.inner.table);
        (table.outbox, table.outbox_bytes)
    }

    /// Bytes of the delivered events kept for replay.
    pub fn delivered_bytes(&self) -> u64 {
        self.kept(&writer::lock(&self.inner.table)).1
    }

    /// Kept delivered events and bytes; none with `keep_delivered = "0s"`, whose confirmed
    /// records only wait in their segment for its deletion.
    fn kept(&self, table: &Table) -> (u64, u64) {
        if self.inner.keep_delivered.is_zero() {
            return (0, 0);
        }
        table.delivered()
    }

    /// Receive time of the oldest pending event.
    pub fn oldest_pending_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(writer::lock(&self.inner.table).oldest_pending_ms())
    }

    /// Drops whole segments that are settled and past `keep_delivered` (or over
    /// `keep_delivered_max_bytes`, oldest first); returns how many kept events went.
    pub async fn sweep_delivered(&self) -> Result<usize, StoreError> {
        self.request(|reply| Command::Sweep { reply }).await
    }

    /// Expires dedup keys older than the window (whole slices); returns how many were removed.
    pub fn sweep_expired(&self) -> Result<usize, StoreError> {
        // A slice holds expiries below its end: one ending at or before now holds only keys
        // the append path already treats as expired.
        let dedup = &self.inner.dedup;
        let expired = dedup.take_expired(now_ms());
        dedup.drop_expired(&expired)?;
        Ok(count(expired.entries))
    }

    /// Runs both sweeps every `interval` (first run right away) until `shutdown`.
    pub fn spawn_sweeper(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        // tokio's interval panics on zero.
        let interval = interval.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let sweeping = store.clone();
                let keys = tokio::task::spawn_blocking(move || sweeping.sweep_expired());
                let segments = store.sweep_delivered().await;
                match (keys.await, segments) {
                    (Ok(Ok(0)), Ok(0)) => {}
                    (Ok(Ok(removed)), Ok(dropped)) => tracing::debug!(
                        removed,
                        dropped,
                        "expired dedup keys and delivered events swept"
                    ),
                    (Ok(Err(e)), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "sweep failed; retrying next interval")
                    }
                    (Err(e), _) => tracing::warn!(error = %e, "dedup sweep task failed"),
                }
            }
        })
    }

    pub fn stats(&self) -> StoreStats {
        let (outbox, outbox_bytes, oldest, (kept, kept_bytes)) = {
            let table = writer::lock(&self.inner.table);
            (
                table.outbox,
                table.outbox_bytes,
                table.oldest_pending_ms(),
                self.kept(&table),
            )
        };
        StoreStats {
            outbox: count(outbox),
            outbox_bytes,
            oldest_pending_ms: oldest,
            dead: self.dead_count(),
            dedup_keys: self.dedup_keys(),
            delivered_kept: count(kept),
            delivered_bytes: kept_bytes,
            disk_bytes: self.disk_bytes(),
            damaged: self.damaged(),
        }
    }

    /// Damage the scan read past when the store was opened.
    pub fn damaged(&self) -> Damaged {
        self.inner.damaged
    }

    /// Fails when the store cannot take a write right now.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Probe { reply }).await
    }

    /// Makes everything so far durable, sled included (shutdown, operator commands).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Flush { reply }).await
    }

    /// How many dead letters are kept (counts the tree: it is small unless something is wrong).
    pub fn dead_count(&self) -> usize {
        self.inner.dead.len()
    }

    /// How many dedup keys are held (running counts per slice).
    pub fn dedup_keys(&self) -> usize {
        count(self.inner.dedup.totals().0)
    }

    /// Bytes on disk: sled's files and the segments. Informational: a failed query counts 0.
    pub fn disk_bytes(&self) -> u64 {
        let segments = writer::lock(&self.inner.table).segment_bytes();
        self.inner.db.size_on_disk().unwrap_or(0) + segments
    }

    pub fn dedup_window(&self) -> Duration {
        self.inner.window
    }
}
