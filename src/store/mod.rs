//! Durable storage behind one API: event records in append-only segment files, and in sled what
//! it is good at (dedup keys, delivery marks, dead letters); the counters back-pressure and
//! metrics read; the in-memory hand-off of new events to the publisher.
//!
//! # Where things are
//!
//! Dependencies point down this list; nothing below imports what is above it.
//!
//! ```text
//! open, replay    Store::open (sled, migration, recovery, the threads); operator reads, replays
//! read            the publisher's reads of pending records: after a seq, or by seq
//! (this file)     Store: the API the relay calls
//! writer/         the writer thread: group commit (group), confirms, dead letters, retention (settle)
//! flusher         the flusher thread: deferred keys and marks into sled, checkpoint, flush
//! recovery        opening the segments: scan, damage, torn tail, index from marks, keys restored
//! migrate         a data dir of the sled-only version
//! deferred        what the writer changed that sled lacks, taken by the flusher each cycle
//! retention       which whole segments may go: a decision over the index and the ledger
//! segment         segment files: create, scan, read back
//! dedup/          dedup keys: lookups and writes (mod), time slices (slices), runs of blocks (runs)
//! index/          the delivery index in memory: entries, packed settled records, per-segment table
//! events/         the event index (I16): rows in memory, summary files, search, rebuild
//! feed            the in-memory hand-off of new events to the publisher
//! layout/         byte layouts, pure: frame, record, meta, marks, block; tree and key names
//! types, error    public types and the one error type
//! ledger          how far keys and marks are in sled and on disk; depends on nothing
//! threads         starting and joining the store's threads
//! private         the data dir's modes: the relay's user's alone
//! fuzz, tests/    the fuzz targets' checks of every decoder; the tests by concern, and a model
//!                 test of the whole store (both built for tests only; fuzz also for `fuzz/`)
//! ```
//!
//! # The storage contract
//!
//! What the store keeps on disk and the rules that let a crash lose nothing acknowledged. Each
//! rule is numbered and cited as `(In)` where the code keeps it. A data dir written by an
//! earlier version opens in this one with its keys, outbox and kept events (`migrate`).
//!
//! ## Files
//!
//! ```text
//! <storage.path>/                   sled's files (db, conf, blobs/, snap.*); its lock on `db`
//!                                   guards the whole directory, segments included
//! <storage.path>/segments/<first seq, 20 digits>.log
//!                                   a segment: frames of event records, appended only
//! <storage.path>/segments/<first seq, 20 digits>.events
//!                                   its summaries (I16): frames of summary blocks, appended
//!                                   only; a block appended again supersedes its earlier copy
//! <storage.path>/segments/migrating.tmp
//!                                   an unfinished migration (renamed when whole)
//! ```
//!
//! Folders are 0700 and files 0600, narrowed at each open whatever made them (`private`).
//!
//! ## Segment frame (`layout::frame`)
//!
//! ```text
//! frame    [payload_len: u32 LE][crc32 of payload: u32 LE][payload]
//! payload  [seq: u64 BE][event record]            payload_len ≤ 256 MiB
//!          [first seq: u64 BE][summary block]     in a summary file (`layout::summary`)
//! ```
//!
//! ## Event and dead records (`layout::record`, `layout::meta`)
//!
//! ```text
//! event record (binary)  [0x01][id: 16][received_at_ms: u64 BE][flags: u8]
//!                        [company_id: i64 BE]?[ticket_id: i64 BE]?[kind: u8 len + name]
//!                        [connection: u32 BE len + UTF-8][action: u32 BE len + UTF-8]?
//!                        [format: u8 len + name]?[body, raw]
//!                        flags: 1 action, 2 company_id, 4 ticket_id, 8 from_me known,
//!                        16 from_me true, 32 format
//! event record (JSON)    [header_len: u32 BE][EventMeta as JSON][body, raw]
//!                        earlier versions; read, never written (first byte 0: never the tag)
//! dead record            [info_len: u32 BE][{"reason", "dead_at_ms"} as JSON][event record]
//! ```
//!
//! ## sled trees
//!
//! ```text
//! tree                       key                                 value
//! meta                       "checkpoint"                        u64 BE: see I6
//! meta                       "probe"                             u64 BE: time of the last write probe
//! dead                       seq: u64 BE                         dead record
//! dedup@<slice end ms, 20>   [run: u64 BE][first id: 16]         ≤ 170 × [id: 16][expiry ms: u64 BE],
//!                                                                sorted by id (a block of a run)
//! dedup@<slice end ms, 20>   id: 16 (earlier versions; at open)  expiry ms: u64 BE
//! marks@<first seq, 20>      [first seq: u64 BE][count: u32 BE]  [state: u8][at ms: u64 BE]
//!                                                                state 1 delivered, 2 dead, 3 replayed
//! events@<first seq, 20>     [first seq of block: u64 BE]         block of event summaries: earlier
//!                                                                versions; moved to the segment's
//!                                                                summary file at open, then dropped
//! event-dups                 id: 16                              [count: u32 BE][last at ms: u64 BE]
//! outbox, delivered@<…>      the sled-only version's outbox and kept events: migrated, then dropped
//! ```
//!
//! A dedup slice holds the keys whose expiry (received time + window) falls in
//! `[end - window / 4, end)`. A mark covers `count` seqs from `first seq` of its segment.
//!
//! ## Invariants
//!
//! - **I1, durable before acknowledged.** An append is answered `Accepted` only once its frame
//!   is written and fdatasync'd in the active segment (one write and one fdatasync per group),
//!   and it is with the publisher before the answer. Nothing in sled has to be on disk for it.
//! - **I2, no write after a failed write.** After a failed segment write or fdatasync the
//!   file's state is unknown: the store refuses every write (`Unwritable`) until the process
//!   opens it again. So does a failed write of keys or marks into sled.
//! - **I3, a record is a whole, checked frame in sequence.** A frame is taken for a record only
//!   when it is whole, its CRC (which covers the seq) matches, and its seq is at least the one
//!   after the record before it (the segment's first seq for the first) and less than 2^32
//!   above that. Seqs rise strictly within a segment.
//! - **I4, damage is read past, a torn tail is cut.** At open, a bad stretch that a whole frame
//!   follows is damage: reported (`Damaged`), never cut. A bad stretch at the end of the newest
//!   segment is a write a crash cut short (never acknowledged) and is cut off; at the end of an
//!   older segment it is left in place and reported. A record in a damaged stretch whose seq
//!   still reads where a frame's would and that has no mark stays pending, its extent up to
//!   the next such record or the stretch's end; a pending record that fails its checks when
//!   read (then or later) is handed to the publisher apart (`Records::unreadable`), with what
//!   could be read of it, and goes to the dead letters with its reason like a refused event:
//!   a reader never stops behind it.
//! - **I5, seqs are never reused.** The next seq is above every seq in the segments, the dead
//!   letters and a migrated outbox; a segment is named by a seq no record in it is below.
//! - **I6, keys can always be rebuilt.** Before each sled flush the checkpoint is set to the
//!   highest seq whose dedup keys were in sled when the flush started. At open the keys of every
//!   record after the checkpoint are written again from the segments (unless expired). So a key
//!   is missing from sled after a crash only while its record is in a segment after the
//!   checkpoint.
//! - **I7, a segment goes only when nothing depends on it.** Retention deletes a segment only
//!   when it is not the active one, no record in it is pending, its last seq is at or below the
//!   flushed checkpoint (I6: once it is gone its keys could not be rebuilt), and the flush that
//!   made its latest marks durable has happened (its dead letters' copies with them, I8).
//! - **I8, a dead letter before its mark.** A dead letter's copy is written into `dead` before
//!   its mark is deferred; sled recovers a prefix of its writes, so a durable dead mark always
//!   has its dead letter.
//! - **I9, marks only move forward.** pending → delivered → replayed, or pending → dead;
//!   overlapping marks resolve to the highest state code. A lost mark means the event is
//!   published again (at least once), never lost. A marks tree lives and dies with its
//!   segment; one whose segment is gone is dropped at open.
//! - **I10, a duplicate is found wherever its key is.** A key the writer took is answered from
//!   memory until the flusher has written it into sled, and from sled after; a slice's filter
//!   learns a key before the key can be looked up. A key lies in the slice of its expiry, and
//!   a slice is dropped whole only once its end has passed (every key in it has expired).
//! - **I11, a merge loses no key.** A merge of dedup runs writes the merged run before the
//!   runs it replaces are removed: after a crash a key is in the new run, the old ones, or
//!   both, and a lookup takes the latest expiry it finds.
//! - **I12, a new file is durable in its directory before it is relied on.** A new segment's
//!   directory entry is synced before records go into it; a migration writes and fsyncs a
//!   temporary file, renames it, syncs the directory, and only then drops the old `outbox`.
//! - **I13, a replay moves an event, never copies it twice.** A replayed event's source (its
//!   dead letter, or its delivered record, marked replayed) is taken out only once its new
//!   copy is durable, in the same group; a source already taken is not replayed again.
//! - **I14, one writer, one flusher, work one way.** Only the writer thread appends to
//!   segments and changes the delivery index, the dedup keys and the dead letters, so nothing
//!   needs a sled transaction. Only the flusher thread calls sled's `flush` (sled 0.34.7's
//!   `flush_async` deadlocks with several awaiters). Work goes writer → flusher → merger and
//!   never back: the writer's requests to the flusher go through an unbounded channel and never
//!   block, the flusher takes what the writer deferred without asking it, and nothing the
//!   flusher or the merger does waits on the writer.
//! - **I16, the event index is beside the path and lives with its records.** A segment's
//!   summary file holds a summary of each of its records (ids, numbers, times, the
//!   connection's name, kind, change, format, size: never a name, phone number or text), and
//!   sled's `event-dups` the duplicates answered per event id. The writer only hands over what
//!   it has (the stored events, shared, and the ids it answered as duplicates) in `deferred`;
//!   the flusher writes them in its batches, before the keys of the same records (so I7's
//!   checkpoint rule keeps a segment until its summaries are written too), and syncs the files
//!   before each sled flush, with no fdatasync on the writer's path. Not in sled: its cache
//!   would hold every summary written, about 100 bytes of memory per kept event. Times learnt later (the first publish, which the publisher hands back with the
//!   confirm; a replayed record's first confirm, which the replay's mark replaces) are deferred
//!   with the marks of the same changes, so their segments are live when the flusher puts them
//!   on their summaries: held ones (an early take waits for the next timed one) take them
//!   before their one write, written ones have their block appended again. A file goes with its
//!   segment, a duplicate count with the last record of its id. A summary the file lacks (a
//!   crash before the sync, a block that fails its checks and what follows it, a data dir of a
//!   version without the index) is made again from the record at open, without those times;
//!   states come from the delivery index (the marks).
//! - **I15, no use of a dropped tree.** A dedup slice's tree is used only under the slices'
//!   read lock; an expired slice is taken out of the map first and its tree dropped after,
//!   under the maintenance lock that merges hold.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::event::Event;

mod dedup;
mod deferred;
mod error;
mod events;
mod feed;
mod flusher;
/// For the fuzz targets in `fuzz/` (and the store's tests); not an API.
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
mod index;
mod layout;
mod ledger;
mod migrate;
mod open;
mod private;
mod read;
mod recovery;
mod replay;
mod retention;
mod segment;
mod threads;
mod types;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

pub use error::{Corrupt, StoreError};
pub use events::{EventFilter, EventState, IndexedEvent};
pub use feed::Next;
pub use replay::Replays;
pub use types::{
    Appended, Damaged, DeadLetter, Delivered, Pending, Records, ReplayFilter, Room, Settlement,
    StoreStats,
};

use dedup::Slices;
use feed::Feed;
use index::Table;
use threads::Joined;
use types::Reply;
use writer::Command;

/// A running count as a `usize` for the API (saturating on 32-bit targets).
fn count(n: u64) -> usize {
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
    dedup: Arc<Slices>,
    dead: sled::Tree,
    #[cfg_attr(not(test), allow(dead_code))]
    meta: sled::Tree,
    table: Arc<Mutex<Table>>,
    feed: Arc<Feed>,
    events: Arc<events::Events>,
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
    async fn request<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
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
        let table = index::lock(&self.inner.table);
        (table.outbox, table.outbox_bytes)
    }

    /// Bytes of the delivered events kept for replay.
    pub fn delivered_bytes(&self) -> u64 {
        self.kept(&index::lock(&self.inner.table)).1
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
        Ok(index::lock(&self.inner.table).oldest_pending_ms())
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
            let table = index::lock(&self.inner.table);
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

    /// Bytes on disk: sled's files, the segments and their summaries. Informational: a failed
    /// query counts 0.
    pub fn disk_bytes(&self) -> u64 {
        let segments = index::lock(&self.inner.table).segment_bytes();
        self.inner.db.size_on_disk().unwrap_or(0) + segments + self.inner.events.file_bytes()
    }

    pub fn dedup_window(&self) -> Duration {
        self.inner.window
    }
}
