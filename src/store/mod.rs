//! Durable storage behind one API (sled inside): outbox and dedup keys, dead letters, delivered
//! events kept for replay, and the counters back-pressure and metrics read.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::StorageSettings;
use crate::event::Event;

mod generations;
mod record;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

use generations::Generations;
use writer::{Command, Requeue, Source, Writer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt")]
    Corrupt(#[source] serde_json::Error),
    #[error("storage writer has stopped")]
    Closed,
    /// Writes have failed or hung for a while: sled stays failed after an I/O error (or blocks in
    /// its flush on a full disk) until the process reopens it.
    #[error("storage has stopped taking writes")]
    Unwritable,
    /// `storage.max_outbox` or `storage.max_outbox_bytes` reached: the broker is not keeping up.
    #[error("the outbox is full (storage.max_outbox / max_outbox_bytes reached)")]
    OutboxFull,
}

impl StoreError {
    /// The directory is locked by another process: another relay, or the predecessor of a
    /// restart still draining.
    pub fn is_lock_held(&self) -> bool {
        // sled reports a held lock only as text (ErrorKind::Other).
        matches!(self, StoreError::Sled(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock"))
    }
}

/// Result of appending an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// New event, durably in the outbox (fsynced).
    Accepted,
    /// Its dedup key is held: nothing was written.
    Duplicate,
}

/// An outbox entry waiting for its publisher confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Outbox position: increasing in acceptance order, never reused.
    pub seq: u64,
    pub event: Event,
}

/// An event the broker refused for good, kept for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its former outbox position.
    pub seq: u64,
    pub event: Event,
    pub reason: String,
    pub dead_at_ms: u64,
}

/// Counts for readiness, stats and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub outbox: usize,
    /// Bytes of the events in the outbox (what `max_outbox_bytes` limits).
    pub outbox_bytes: u64,
    /// Receive time of the oldest event waiting for the broker.
    pub oldest_pending_ms: Option<u64>,
    pub dead: usize,
    pub dedup_keys: usize,
    /// Delivered events kept for replay, and their bytes.
    pub delivered_kept: usize,
    pub delivered_bytes: u64,
    pub disk_bytes: u64,
}

/// Running totals kept beside the trees, so the hot path and metrics never count a tree.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) outbox_events: AtomicU64,
    pub(crate) outbox_bytes: AtomicU64,
}

/// Back-pressure limits the writer enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_outbox: u64,
    pub(crate) max_outbox_bytes: u64,
}

/// A kept delivered event (see `storage.keep_delivered`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub delivered_at_ms: u64,
    pub event: Event,
}

/// Which kept delivered events `replay` re-publishes.
#[derive(Clone, Debug, Default)]
pub struct ReplayFilter {
    /// Delivered at or after (unix ms).
    pub since_ms: u64,
    /// Delivered before (unix ms); `None`: up to now.
    pub until_ms: Option<u64>,
    pub kind: Option<crate::event::Kind>,
    pub connection: Option<String>,
}

/// Records handed to the writer per replay command: bounds one group.
const REQUEUE_BATCH: usize = 1024;

/// Room for appends waiting for the writer; beyond it `append` waits (backpressure).
const COMMAND_QUEUE: usize = 4096;

/// Kept delivered events removed per batch when trimming to the byte cap.
const SWEEP_BATCH: usize = 512;

/// Time slices per dedup window (and per `keep_delivered`): a slice is dropped once all of it
/// has expired, so up to a quarter more than the window is kept, in exchange for expiring a
/// slice with one `drop_tree` instead of a delete per key.
const SLICES_PER_WINDOW: u64 = 4;

/// The trees; cheap to clone (handles to one database).
#[derive(Clone)]
struct Trees {
    /// event id (16 bytes) → expiry, unix ms (8 bytes BE); sliced by expiry
    dedup: Arc<Generations>,
    /// seq (8 bytes BE) → outbox record
    outbox: sled::Tree,
    /// seq (8 bytes BE) → dead record
    dead: sled::Tree,
    /// delivered_at (8 bytes BE) ++ seq → outbox record, kept for replay; sliced by delivery time
    delivered: Arc<Generations>,
    /// write probes
    meta: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db, window_ms: u64, keep_delivered_ms: u64) -> Result<Trees, StoreError> {
        Ok(Trees {
            dedup: Arc::new(Generations::open(
                db,
                "dedup@",
                window_ms / SLICES_PER_WINDOW,
            )?),
            outbox: db.open_tree("outbox")?,
            dead: db.open_tree("dead")?,
            delivered: Arc::new(Generations::open(
                db,
                "delivered@",
                keep_delivered_ms / SLICES_PER_WINDOW,
            )?),
            meta: db.open_tree("meta")?,
        })
    }
}

/// Takes `n` off a running count, stopping at zero (counts are informational; a race must not wrap them).
pub(super) fn subtract(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_sub(n))
    });
}

/// A running count as a `usize` for the API (saturating on 32-bit targets).
pub(super) fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Cheap to clone; all clones share one database and one writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

// Fields drop in declaration order: the sender goes first so the writer sees the channel close,
// then the writer is joined, so the database is released once the last `Store` is gone.
struct Inner {
    commands: mpsc::Sender<Command>,
    _writer: WriterThread,
    trees: Trees,
    db: sled::Db,
    appended: Arc<Notify>,
    window: Duration,
    counters: Arc<Counters>,
    keep_delivered: Duration,
    keep_delivered_max_bytes: u64,
}

/// Joins the writer thread on drop: it finishes the queue, its last flush included, and
/// releases its database handle, so the directory can be reopened right after.
struct WriterThread(Option<JoinHandle<()>>);

/// How long dropping the last store handle waits for the writer to finish its queue.
const WRITER_JOIN_LIMIT: Duration = Duration::from_secs(10);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // A writer stuck inside sled (a full disk can block its flush for good) must not
            // keep the process from exiting; what it had not flushed was never acknowledged.
            let deadline = std::time::Instant::now() + WRITER_JOIN_LIMIT;
            while !handle.is_finished() {
                if std::time::Instant::now() >= deadline {
                    tracing::error!(
                        "store writer did not stop within {WRITER_JOIN_LIMIT:?}; leaving it"
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("window", &self.inner.window)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    // A clock before 1970 reads as 0: every dedup entry then counts as unexpired, the safe side.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Adds the path and, for a held lock, the likely cause to an open error.
fn open_error(path: &Path, err: sled::Error) -> StoreError {
    match err {
        sled::Error::Io(e) => {
            let text = e.to_string();
            // sled reports a held lock only as text (ErrorKind::Other).
            let hint = if text.contains("could not acquire lock") {
                " (it is in use by another process: is another relay running on it?)"
            } else {
                ""
            };
            StoreError::Sled(sled::Error::Io(io::Error::new(
                e.kind(),
                format!(
                    "cannot open storage directory {}{hint}: {text}",
                    path.display()
                ),
            )))
        }
        other => StoreError::Sled(other),
    }
}

impl Store {
    pub fn open(settings: &StorageSettings) -> Result<Store, StoreError> {
        let path = settings.path.as_path();
        // sled would create it too, but its error would not name the directory.
        std::fs::create_dir_all(path).map_err(|e| {
            StoreError::Sled(sled::Error::Io(io::Error::new(
                e.kind(),
                format!("cannot create storage directory {}: {e}", path.display()),
            )))
        })?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(settings.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            // Background flushes bound what non-durable writes (removals, dead letters) can lose;
            // appends are flushed by the writer before they are acknowledged.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| open_error(path, e))?;
        let window_ms = millis(settings.dedup_window);
        let trees = Trees::open(&db, window_ms, millis(settings.keep_delivered))?;
        // One pass over the outbox at start; it is bounded (max_outbox_bytes). The slices count
        // themselves when opened.
        let counters = Arc::new(Counters::default());
        for entry in trees.outbox.iter() {
            let (_, value) = entry?;
            counters.outbox_events.fetch_add(1, Ordering::Relaxed);
            counters
                .outbox_bytes
                .fetch_add(value.len() as u64, Ordering::Relaxed);
        }
        let appended = Arc::new(Notify::new());

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            appended: Arc::clone(&appended),
            window_ms,
            counters: Arc::clone(&counters),
            limits: Limits {
                max_outbox: settings.max_outbox as u64,
                max_outbox_bytes: settings.max_outbox_bytes,
            },
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|e| {
                StoreError::Sled(sled::Error::Io(io::Error::new(
                    e.kind(),
                    format!("cannot start the store writer thread: {e}"),
                )))
            })?;

        Ok(Store {
            inner: Arc::new(Inner {
                commands,
                _writer: WriterThread(Some(handle)),
                trees,
                db,
                appended,
                window: settings.dedup_window,
                counters,
                keep_delivered: settings.keep_delivered,
                keep_delivered_max_bytes: settings.keep_delivered_max_bytes,
            }),
        })
    }

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

    /// Dedup check, outbox insert and dedup key, fsynced before it returns (group commit).
    pub async fn append(&self, event: Event) -> Result<Appended, StoreError> {
        self.request(|reply| Command::Append { event, reply }).await
    }

    /// Up to `limit` outbox entries with `seq > after` (all when `after` is None), in seq order.
    pub fn pending_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError> {
        let start = match after {
            None => 0,
            Some(seq) => match seq.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
        };
        let mut pending = Vec::new();
        for entry in self
            .inner
            .trees
            .outbox
            .range(record::seq_key(start)..)
            .take(limit)
        {
            let (key, value) = entry?;
            pending.push(Pending {
                seq: record::decode_seq(&key)?,
                event: record::decode_event(&value)?,
            });
        }
        Ok(pending)
    }

    /// Removes delivered entries from the outbox, keeping them for replay when `keep_delivered`
    /// is set.
    pub fn remove_delivered(&self, seqs: &[u64]) -> Result<(), StoreError> {
        // Not flushed: a removal lost in a crash only resends the event (at-least-once).
        let outbox = &self.inner.trees.outbox;
        if !self.inner.keep_delivered.is_zero() {
            let now = now_ms();
            let delivered = &self.inner.trees.delivered;
            let end = delivered.ensure(now)?;
            let slices = delivered.read();
            if let Some(slice) = slices.get(&end) {
                let mut batch = sled::Batch::default();
                let (mut kept, mut bytes) = (0u64, 0u64);
                for &seq in seqs {
                    if let Some(value) = outbox.get(record::seq_key(seq))? {
                        kept += 1;
                        bytes += value.len() as u64;
                        batch.insert(&record::delivered_key(now, seq)[..], value);
                    }
                }
                // Kept before it leaves the outbox: sled recovers a prefix of its log, so a crash
                // in between can resend an event but never lose it from replay.
                slice.tree.apply_batch(batch)?;
                slice.added(kept, bytes);
            }
        }
        let (mut removed, mut bytes) = (0u64, 0u64);
        for &seq in seqs {
            if let Some(value) = outbox.remove(record::seq_key(seq))? {
                removed += 1;
                bytes += value.len() as u64;
            }
        }
        self.outbox_removed(removed, bytes);
        Ok(())
    }

    fn outbox_removed(&self, events: u64, bytes: u64) {
        let counters = &self.inner.counters;
        subtract(&counters.outbox_events, events);
        subtract(&counters.outbox_bytes, bytes);
    }

    /// Events and bytes in the outbox, from the running counters (O(1)).
    pub fn outbox_usage(&self) -> (u64, u64) {
        let counters = &self.inner.counters;
        (
            counters.outbox_events.load(Ordering::Relaxed),
            counters.outbox_bytes.load(Ordering::Relaxed),
        )
    }

    /// Bytes of the delivered events kept for replay (running counts per slice).
    pub fn delivered_bytes(&self) -> u64 {
        self.inner.trees.delivered.totals().1
    }

    /// Receive time of the oldest outbox entry.
    pub fn oldest_pending_ms(&self) -> Result<Option<u64>, StoreError> {
        match self.inner.trees.outbox.first()? {
            Some((_, value)) => Ok(Some(record::decode_meta(&value)?.received_at_ms)),
            None => Ok(None),
        }
    }

    /// Moves an outbox entry to the dead letters, with the broker's reason.
    pub fn dead_letter(&self, seq: u64, reason: &str) -> Result<(), StoreError> {
        let prefix = record::dead_prefix(reason, now_ms())?;
        let key = record::seq_key(seq);
        let trees = (&self.inner.trees.outbox, &self.inner.trees.dead);
        let result = trees.transaction(|(outbox, dead)| {
            if let Some(stored) = outbox.remove(&key[..])? {
                let mut value = Vec::with_capacity(prefix.len() + stored.len());
                value.extend_from_slice(&prefix);
                value.extend_from_slice(&stored);
                dead.insert(&key[..], value)?;
                return Ok(Some(stored.len() as u64));
            }
            Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(None)
        });
        match result {
            Ok(moved) => {
                if let Some(bytes) = moved {
                    self.outbox_removed(1, bytes);
                }
                Ok(())
            }
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
    }

    /// Up to `limit` dead letters, oldest outbox position first.
    pub fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters = Vec::new();
        for entry in self.inner.trees.dead.iter().take(limit) {
            let (key, value) = entry?;
            let (info, event) = record::decode_dead(&value)?;
            letters.push(DeadLetter {
                seq: record::decode_seq(&key)?,
                event,
                reason: info.reason,
                dead_at_ms: info.dead_at_ms,
            });
        }
        Ok(letters)
    }

    /// The dead letter at outbox position `seq`.
    pub fn dead_get(&self, seq: u64) -> Result<Option<DeadLetter>, StoreError> {
        match self.inner.trees.dead.get(record::seq_key(seq))? {
            Some(value) => Ok(Some(dead_letter_of(seq, &value)?)),
            None => Ok(None),
        }
    }

    /// The dead letters of one event id (normally one; more if it died, was replayed, died again).
    pub fn dead_find(&self, id: &crate::event::EventId) -> Result<Vec<DeadLetter>, StoreError> {
        let mut found = Vec::new();
        for entry in self.inner.trees.dead.iter() {
            let (key, value) = entry?;
            let letter = dead_letter_of(record::decode_seq(&key)?, &value)?;
            if letter.event.meta.id == *id {
                found.push(letter);
            }
        }
        Ok(found)
    }

    /// Moves dead letters back into the outbox (all when `seqs` is `None`), to be published
    /// again with their original ids; returns how many moved. Durable when it returns.
    pub async fn requeue_dead(&self, seqs: Option<&[u64]>) -> Result<usize, StoreError> {
        let mut items = Vec::new();
        let mut add = |key: &[u8], value: &[u8]| -> Result<(), StoreError> {
            let key: [u8; 8] = key
                .try_into()
                .map_err(|_| record::corrupt("sequence key is not 8 bytes"))?;
            items.push(Requeue {
                record: sled::IVec::from(record::dead_record(value)?),
                source: Source::Dead(key),
            });
            Ok(())
        };
        match seqs {
            None => {
                for entry in self.inner.trees.dead.iter() {
                    let (key, value) = entry?;
                    add(&key, &value)?;
                }
            }
            Some(seqs) => {
                for &seq in seqs {
                    let key = record::seq_key(seq);
                    if let Some(value) = self.inner.trees.dead.get(key)? {
                        add(&key, &value)?;
                    }
                }
            }
        }
        self.requeue(items).await
    }

    /// Kept delivered events matching `filter`, oldest delivery first, at most `limit`.
    pub fn delivered_matching(
        &self,
        filter: &ReplayFilter,
        limit: usize,
    ) -> Result<Vec<Delivered>, StoreError> {
        let mut out = Vec::new();
        self.scan_delivered(filter, None, |key, value| {
            let event = record::decode_event(value)?;
            if matches(filter, &event.meta) {
                out.push(Delivered {
                    delivered_at_ms: record::decode_delivered_key(key)?.0,
                    event,
                });
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Puts kept delivered events matching `filter` back into the outbox: they are published
    /// again with their original `message_id`. Returns how many.
    pub async fn replay_delivered(&self, filter: &ReplayFilter) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut after = None;
        loop {
            let mut items = Vec::new();
            self.scan_delivered(filter, after, |key, value| {
                let key: [u8; 16] = key
                    .try_into()
                    .map_err(|_| record::corrupt("delivered key is not 16 bytes"))?;
                after = Some(key);
                if matches(filter, &record::decode_meta(value)?) {
                    items.push(Requeue {
                        record: sled::IVec::from(value),
                        source: Source::Delivered(key),
                    });
                }
                Ok(items.len() < REQUEUE_BATCH)
            })?;
            if items.is_empty() {
                return Ok(total);
            }
            total += self.requeue(items).await?;
        }
    }

    /// Visits kept delivered events in the filter's time range (after the key `after`), oldest
    /// first, while `visit` returns true. Synchronous: the slices stay locked meanwhile.
    fn scan_delivered(
        &self,
        filter: &ReplayFilter,
        after: Option<[u8; 16]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut start = record::delivered_key(filter.since_ms, 0).to_vec();
        if let Some(after) = after {
            // Just past `after`: the smallest longer key.
            let mut next = after.to_vec();
            next.push(0);
            start = start.max(next);
        }
        let end = filter.until_ms.map(|until| record::delivered_key(until, 0));
        let slices = self.inner.trees.delivered.read();
        for slice in slices.values() {
            let range = match &end {
                Some(end) if start.as_slice() >= &end[..] => return Ok(()),
                Some(end) => slice.tree.range(start.as_slice()..&end[..]),
                None => slice.tree.range(start.as_slice()..),
            };
            for entry in range {
                let (key, value) = entry?;
                if !visit(&key, &value)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn requeue(&self, items: Vec<Requeue>) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        self.request(|reply| Command::Requeue { items, reply })
            .await
    }

    /// Drops kept delivered events older than `keep_delivered` (whole slices, so up to a quarter
    /// of it later), then the oldest while they take more than `keep_delivered_max_bytes`;
    /// returns how many were dropped.
    pub fn sweep_delivered(&self) -> Result<usize, StoreError> {
        let delivered = &self.inner.trees.delivered;
        let expired =
            delivered.take_expired(now_ms().saturating_sub(millis(self.inner.keep_delivered)));
        delivered.drop_expired(&expired)?;
        let mut dropped = expired.entries;
        loop {
            let over = self
                .delivered_bytes()
                .saturating_sub(self.inner.keep_delivered_max_bytes);
            if over == 0 {
                break;
            }
            let oldest_fits = delivered
                .read()
                .values()
                .next()
                .map(|slice| slice.bytes.load(Ordering::Relaxed) <= over);
            match oldest_fits {
                None => break,
                Some(true) => {
                    if let Some(oldest) = delivered.take_oldest() {
                        delivered.drop_expired(&oldest)?;
                        dropped += oldest.entries;
                    }
                }
                Some(false) => {
                    dropped += self.trim_oldest_delivered(over)?;
                    break;
                }
            }
        }
        Ok(count(dropped))
    }

    /// Removes the oldest kept events of the oldest slice until `over` bytes are freed.
    fn trim_oldest_delivered(&self, over: u64) -> Result<u64, StoreError> {
        let slices = self.inner.trees.delivered.read();
        let Some(slice) = slices.values().next() else {
            return Ok(0);
        };
        let (mut dropped, mut freed) = (0u64, 0u64);
        while freed < over {
            let mut batch = sled::Batch::default();
            let (mut taken, mut bytes) = (0u64, 0u64);
            for entry in slice.tree.iter().take(SWEEP_BATCH) {
                let (key, value) = entry?;
                if freed + bytes >= over {
                    break;
                }
                bytes += value.len() as u64;
                taken += 1;
                batch.remove(key);
            }
            if taken == 0 {
                break;
            }
            slice.tree.apply_batch(batch)?;
            slice.removed(taken, bytes);
            freed += bytes;
            dropped += taken;
        }
        Ok(dropped)
    }

    /// Resolves once an append has happened since the last call (a permit is kept if none waits).
    pub async fn appended(&self) {
        self.inner.appended.notified().await;
    }

    /// Expires dedup keys older than the window (whole slices); returns how many were removed.
    pub fn sweep_expired(&self) -> Result<usize, StoreError> {
        // A slice holds expiries below its end: one ending at or before now holds only keys
        // the append path already treats as expired.
        let dedup = &self.inner.trees.dedup;
        let expired = dedup.take_expired(now_ms());
        dedup.drop_expired(&expired)?;
        Ok(count(expired.entries))
    }

    /// Runs [`Store::sweep_expired`] every `interval` (first run right away) until `shutdown`.
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
                let sweep = move || {
                    Ok::<_, StoreError>((sweeping.sweep_expired()?, sweeping.sweep_delivered()?))
                };
                match tokio::task::spawn_blocking(sweep).await {
                    Ok(Ok((0, 0))) => {}
                    Ok(Ok((removed, dropped))) => tracing::debug!(
                        removed,
                        dropped,
                        "expired dedup keys and delivered events swept"
                    ),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "dedup sweep failed; retrying next interval")
                    }
                    Err(e) => tracing::warn!(error = %e, "dedup sweep task failed"),
                }
            }
        })
    }

    pub fn stats(&self) -> StoreStats {
        let trees = &self.inner.trees;
        StoreStats {
            outbox: trees.outbox.len(),
            outbox_bytes: self.outbox_usage().1,
            // Informational like disk_bytes: an unreadable head shows as none.
            oldest_pending_ms: self.oldest_pending_ms().ok().flatten(),
            dead: trees.dead.len(),
            dedup_keys: self.dedup_keys(),
            delivered_kept: count(trees.delivered.totals().0),
            delivered_bytes: self.delivered_bytes(),
            // Only informational: a failed size query should not fail readiness.
            disk_bytes: self.inner.db.size_on_disk().unwrap_or(0),
        }
    }

    /// Fails when the store cannot take a write right now.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Probe { reply }).await
    }

    /// Flushes everything to disk (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.request(|reply| Command::Flush { reply }).await
    }

    /// How many dead letters are kept (counts the tree: it is small unless something is wrong).
    pub fn dead_count(&self) -> usize {
        self.inner.trees.dead.len()
    }

    /// How many dedup keys are held (running counts per slice).
    pub fn dedup_keys(&self) -> usize {
        count(self.inner.trees.dedup.totals().0)
    }

    /// Bytes sled uses on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.db.size_on_disk().unwrap_or(0)
    }

    pub fn dedup_window(&self) -> Duration {
        self.inner.window
    }
}

fn dead_letter_of(seq: u64, value: &[u8]) -> Result<DeadLetter, StoreError> {
    let (info, event) = record::decode_dead(value)?;
    Ok(DeadLetter {
        seq,
        event,
        reason: info.reason,
        dead_at_ms: info.dead_at_ms,
    })
}

fn matches(filter: &ReplayFilter, meta: &crate::event::EventMeta) -> bool {
    filter.kind.is_none_or(|kind| kind == meta.kind)
        && filter
            .connection
            .as_deref()
            .is_none_or(|c| c == meta.connection)
}
