//! Durable storage behind one API (sled inside): dedup keys + outbox written atomically, dead letters.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::StorageSettings;
use crate::event::Event;

mod record;
mod writer;

#[cfg(test)]
mod tests;

use writer::{Command, Writer};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt")]
    Corrupt(#[source] serde_json::Error),
    #[error("storage writer has stopped")]
    Closed,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub outbox: usize,
    pub dead: usize,
    pub dedup_keys: usize,
    pub disk_bytes: u64,
}

/// Room for appends waiting for the writer; beyond it `append` waits (backpressure).
const COMMAND_QUEUE: usize = 4096;

/// Index entries handled per sweep transaction: keeps the global sled write lock short.
const SWEEP_BATCH: usize = 512;

/// The trees; cheap to clone (handles to one database).
#[derive(Clone)]
struct Trees {
    /// event id (16 bytes) → expiry, unix ms (8 bytes BE)
    dedup: sled::Tree,
    /// expiry (8 bytes BE) ++ event id → empty: lets the sweeper range-scan by expiry
    dedup_exp: sled::Tree,
    /// seq (8 bytes BE) → outbox record
    outbox: sled::Tree,
    /// seq (8 bytes BE) → dead record
    dead: sled::Tree,
    /// write probes
    meta: sled::Tree,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Trees, StoreError> {
        Ok(Trees {
            dedup: db.open_tree("dedup")?,
            dedup_exp: db.open_tree("dedup_exp")?,
            outbox: db.open_tree("outbox")?,
            dead: db.open_tree("dead")?,
            meta: db.open_tree("meta")?,
        })
    }
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
    dedup_keys: Arc<AtomicUsize>,
    window: Duration,
}

/// Joins the writer thread on drop: it finishes the queue, its last flush included, and
/// releases its database handle, so the directory can be reopened right after.
struct WriterThread(Option<JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
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
                format!("cannot open storage directory {}{hint}: {text}", path.display()),
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
        let trees = Trees::open(&db)?;
        let dedup_keys = Arc::new(AtomicUsize::new(trees.dedup.len()));
        let appended = Arc::new(Notify::new());
        let window_ms = u64::try_from(settings.dedup_window.as_millis()).unwrap_or(u64::MAX);

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            appended: Arc::clone(&appended),
            dedup_keys: Arc::clone(&dedup_keys),
            window_ms,
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
                dedup_keys,
                window: settings.dedup_window,
            }),
        })
    }

    /// Sends a command to the writer and waits for its answer.
    async fn request<T>(&self, command: impl FnOnce(writer::Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Dedup check + outbox insert, atomic, and fsynced before it returns (group commit).
    pub async fn append(&self, event: Event) -> Result<Appended, StoreError> {
        self.request(|reply| Command::Append { event, reply }).await
    }

    /// Up to `limit` outbox entries with `seq > after` (all when `after` is None), in seq order.
    pub fn pending_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let start = match after {
            None => 0,
            Some(seq) => match seq.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
        };
        let mut pending = Vec::new();
        for entry in self.inner.trees.outbox.range(record::seq_key(start)..).take(limit) {
            let (key, value) = entry?;
            pending.push(Pending {
                seq: record::decode_seq(&key)?,
                event: record::decode_event(&value)?,
            });
        }
        Ok(pending)
    }

    /// Removes delivered entries from the outbox.
    pub fn remove_delivered(&self, seqs: &[u64]) -> Result<(), StoreError> {
        // Not flushed: a removal lost in a crash only resends the event (at-least-once).
        let mut batch = sled::Batch::default();
        for &seq in seqs {
            batch.remove(&record::seq_key(seq)[..]);
        }
        self.inner.trees.outbox.apply_batch(batch)?;
        Ok(())
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
            }
            Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
        });
        match result {
            Ok(()) => Ok(()),
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

    /// Resolves once an append has happened since the last call (a permit is kept if none waits).
    pub async fn appended(&self) {
        self.inner.appended.notified().await;
    }

    /// Expires dedup keys older than the window; returns how many were removed.
    pub fn sweep_expired(&self) -> Result<usize, StoreError> {
        let trees = &self.inner.trees;
        // Keys sort by expiry first: everything below (now + 1, id 0) has expiry <= now, which is
        // exactly what the append path treats as expired.
        let end = record::expiry_key(now_ms().saturating_add(1), &crate::event::EventId([0; 16]));
        let mut removed_total = 0;
        loop {
            let mut batch = Vec::with_capacity(SWEEP_BATCH);
            for entry in trees.dedup_exp.range(..end).keys().take(SWEEP_BATCH) {
                batch.push(entry?);
            }
            if batch.is_empty() {
                break;
            }
            let removed = self.sweep_batch(&batch)?;
            removed_total += removed;
            let _ = self
                .inner
                .dedup_keys
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(removed))
                });
            if batch.len() < SWEEP_BATCH {
                break;
            }
        }
        Ok(removed_total)
    }

    /// Removes the given index entries, and each dedup entry whose expiry they still match: a key
    /// re-accepted after expiring has a newer expiry and stays.
    fn sweep_batch(&self, index_keys: &[sled::IVec]) -> Result<usize, StoreError> {
        let trees = (&self.inner.trees.dedup, &self.inner.trees.dedup_exp);
        let result = trees.transaction(|(dedup, dedup_exp)| {
            let mut removed = 0usize;
            for key in index_keys {
                dedup_exp.remove(key.as_ref())?;
                let Some((expiry, id)) = record::decode_expiry_key(key) else {
                    tracing::warn!("malformed dedup index key removed");
                    continue;
                };
                let current = dedup.get(id)?;
                if current.as_deref().and_then(record::decode_expiry) == Some(expiry) {
                    dedup.remove(&id[..])?;
                    removed += 1;
                }
            }
            Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(removed)
        });
        match result {
            Ok(removed) => Ok(removed),
            Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
    }

    /// Runs [`Store::sweep_expired`] every `interval` (first run right away) until `shutdown`.
    pub fn spawn_sweeper(&self, interval: Duration, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
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
                match tokio::task::spawn_blocking(move || sweeping.sweep_expired()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(removed)) => tracing::debug!(removed, "expired dedup keys swept"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "dedup sweep failed; retrying next interval"),
                    Err(e) => tracing::warn!(error = %e, "dedup sweep task failed"),
                }
            }
        })
    }

    pub fn stats(&self) -> StoreStats {
        let trees = &self.inner.trees;
        StoreStats {
            outbox: trees.outbox.len(),
            dead: trees.dead.len(),
            dedup_keys: self.inner.dedup_keys.load(Ordering::Relaxed),
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

    pub fn dedup_window(&self) -> Duration {
        self.inner.window
    }
}
