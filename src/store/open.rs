//! Opening a store: the sled database (whose directory lock also guards the segments), the
//! migration of an older data dir, recovery of the segments, and the writer, flusher and merger
//! threads.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::feed::Feed;
use super::generations::Generations;
use super::writer::Writer;
use super::{dedup, flusher, migrate, record, recovery, retention, segment};
use super::{millis, Inner, Limits, Store, StoreError};
use super::{COMMAND_QUEUE, FEED_BYTES, FLUSH_INTERVAL, SLICES_PER_WINDOW, THREAD_JOIN_LIMIT};
use crate::config::StorageSettings;

/// Internals tests vary; `Store::open` uses the constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    pub(crate) flush_interval: Duration,
    pub(crate) feed_bytes: u64,
}

/// Joins a store thread on drop, for at most `THREAD_JOIN_LIMIT`.
pub(super) struct Joined(&'static str, Option<JoinHandle<()>>);

impl Drop for Joined {
    fn drop(&mut self) {
        let Some(handle) = self.1.take() else { return };
        // A thread stuck in a dead disk must not keep the process from exiting; what it had
        // not made durable was never acknowledged.
        let deadline = std::time::Instant::now() + THREAD_JOIN_LIMIT;
        while !handle.is_finished() {
            if std::time::Instant::now() >= deadline {
                tracing::error!(
                    thread = self.0,
                    "store thread did not stop within {THREAD_JOIN_LIMIT:?}; leaving it"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.join().is_err() {
            tracing::error!(thread = self.0, "store thread panicked");
        }
    }
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> StoreError {
    StoreError::Io(io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
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

fn spawn(name: &'static str, run: impl FnOnce() + Send + 'static) -> Result<Joined, StoreError> {
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(run)
        .map_err(|e| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("cannot start {name}: {e}"),
            ))
        })?;
    Ok(Joined(name, Some(handle)))
}

impl Store {
    pub fn open(settings: &StorageSettings) -> Result<Store, StoreError> {
        Store::open_tuned(
            settings,
            Tuning {
                flush_interval: FLUSH_INTERVAL,
                feed_bytes: FEED_BYTES,
            },
        )
    }

    /// Tests stretch the flush interval (to see what a crash before a flush leaves) and shrink
    /// the hand-off (to see the publisher sent to the disk).
    pub(crate) fn open_tuned(
        settings: &StorageSettings,
        tuning: Tuning,
    ) -> Result<Store, StoreError> {
        let path = settings.path.as_path();
        let segments_dir: PathBuf = segment::dir(path);
        // sled would create it too, but its error would not name the directory.
        std::fs::create_dir_all(path)
            .map_err(|e| io_error("cannot create storage directory", path, &e))?;
        // sled's lock on the directory also guards the segments: it is taken first.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(settings.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            // The flusher thread flushes; a second flusher inside sled is not wanted.
            .flush_every_ms(None)
            .open()
            .map_err(|e| open_error(path, e))?;
        std::fs::create_dir_all(&segments_dir)
            .map_err(|e| io_error("cannot create segment directory", &segments_dir, &e))?;
        let window_ms = millis(settings.dedup_window);
        let dedup = Arc::new(Generations::open(
            &db,
            "dedup@",
            window_ms / SLICES_PER_WINDOW,
        )?);
        let dead = db.open_tree("dead")?;
        let meta = db.open_tree("meta")?;

        let migrated = migrate::run(&db, &segments_dir)?;
        let checkpoint = meta
            .get(flusher::CHECKPOINT_KEY)?
            .and_then(|v| flusher::decode_checkpoint(&v))
            .unwrap_or(0);
        // New seqs stay above every seq a dead letter or the old outbox used (I5).
        let dead_last = match dead.last()? {
            Some((key, _)) => record::decode_seq(&key)?,
            None => 0,
        };
        let floor = dead_last.max(migrated.last_seq).saturating_add(1);
        let recovered = recovery::open(&db, &segments_dir, &dedup, window_ms, checkpoint, floor)?;
        let progress = Arc::new(flusher::Progress::new(
            recovered.high,
            checkpoint.min(recovered.high),
        ));
        let pending_at_open = recovered.table.outbox > 0;
        let table = Arc::new(Mutex::new(recovered.table));
        let feed_bytes = tuning.feed_bytes.min(settings.max_outbox_bytes.max(1));
        let feed = Arc::new(Feed::new(feed_bytes, recovered.high, pending_at_open));

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (flush_requests, flush_receiver) = std::sync::mpsc::channel();
        let (merges, merge_receiver) = std::sync::mpsc::channel();
        let merging = Arc::clone(&dedup);
        let merger = spawn("store-merger", move || {
            dedup::merge_runs(&merging, merge_receiver)
        })?;
        let flusher = flusher::Flusher {
            db: db.clone(),
            dedup: Arc::clone(&dedup),
            meta: meta.clone(),
            progress: Arc::clone(&progress),
            interval: tuning.flush_interval,
            writer: commands.downgrade(),
            merges,
        };
        let flusher = spawn("store-flusher", move || flusher.run(flush_receiver))?;

        let writer = Writer {
            dedup: Arc::clone(&dedup),
            dead: dead.clone(),
            meta: meta.clone(),
            db: db.clone(),
            table: Arc::clone(&table),
            feed: Arc::clone(&feed),
            window_ms,
            limits: Limits {
                max_outbox: settings.max_outbox as u64,
                max_outbox_bytes: settings.max_outbox_bytes,
            },
            segments_dir,
            segment_bytes: settings.segment_bytes,
            active: recovered.active,
            next_seq: recovered.next_seq,
            progress,
            flush_requests,
            retention: retention::Policy {
                keep_ms: millis(settings.keep_delivered),
                max_bytes: settings.keep_delivered_max_bytes,
            },
            broken: false,
            buf: Vec::with_capacity(1 << 20),
            deferred: Default::default(),
        };
        let writer = spawn("store-writer", move || writer.run(receiver))?;

        let store = Store {
            inner: Arc::new(Inner {
                commands,
                _writer: writer,
                _flusher: flusher,
                _merger: merger,
                db,
                dedup,
                dead,
                meta,
                table,
                feed,
                window: settings.dedup_window,
                keep_delivered: settings.keep_delivered,
                damaged: recovered.damaged,
            }),
        };
        Ok(store)
    }
}
