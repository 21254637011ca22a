//! Opening a store: the sled database (whose directory lock also guards the segments), the
//! migration of an older data dir, recovery of the segments, and the writer, flusher and merger
//! threads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::dedup::{self, Slices, SLICES_PER_WINDOW};
use super::deferred::Deferred;
use super::error::StoreError;
use super::feed::Feed;
use super::flusher::Flusher;
use super::layout::{self, record, CHECKPOINT_KEY, DEAD_TREE, DEDUP_PREFIX, META_TREE};
use super::ledger::Ledger;
use super::threads::spawn;
use super::types::Limits;
use super::writer::{Setup, Writer};
use super::{events, migrate, private, recovery, retention, segment};
use super::{Inner, Store};
use crate::config::StorageSettings;

/// Room for appends waiting for the writer; beyond it `append` waits (backpressure).
const COMMAND_QUEUE: usize = 4096;

/// Bytes of accepted events held in memory for the publisher; beyond it they wait on disk only
/// and the publisher reads them back from the segments (the page cache, usually). As much again
/// as the publisher's own window holds (`publish::window::WINDOW_BYTES`), so a keeping-up
/// publisher never reads back; small enough that a backlog costs disk, not resident memory (at
/// 64 MiB the relay's RSS reached 131 MB in the 18 KB saturation bench, at 8 MiB 64 MB).
pub(super) const FEED_BYTES: u64 = 4 * 1024 * 1024;

/// How often sled is flushed (with a checkpoint) when nothing asks for it.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Internals tests vary; `Store::open` uses the constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    pub(crate) flush_interval: Duration,
    pub(crate) feed_bytes: u64,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
        private::make_private(path)
            .map_err(|e| StoreError::io_at("cannot create storage directory", path, &e))?;
        // sled's lock on the directory also guards the segments: it is taken first.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(settings.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            // The flusher thread flushes; a second flusher inside sled is not wanted.
            .flush_every_ms(None)
            .open()
            .map_err(|e| StoreError::opening(path, e))?;
        std::fs::create_dir_all(&segments_dir)
            .map_err(|e| StoreError::io_at("cannot create segment directory", &segments_dir, &e))?;
        // Again, now that sled has made its files (under whatever umask this process has).
        private::restrict(path).map_err(|e| {
            StoreError::io_at("cannot make the storage directory private", path, &e)
        })?;
        let window_ms = millis(settings.dedup_window);
        let dedup = Arc::new(Slices::open(
            &db,
            DEDUP_PREFIX,
            window_ms / SLICES_PER_WINDOW,
        )?);
        let dead = db.open_tree(DEAD_TREE)?;
        let meta = db.open_tree(META_TREE)?;

        let migrated = migrate::run(&db, &segments_dir)?;
        let checkpoint = meta
            .get(CHECKPOINT_KEY)?
            .and_then(|v| layout::decode_checkpoint(&v))
            .unwrap_or(0);
        // New seqs stay above every seq a dead letter or the old outbox used (I5).
        let dead_last = match dead.last()? {
            Some((key, _)) => record::decode_seq(&key)?,
            None => 0,
        };
        let floor = dead_last.max(migrated.last_seq).saturating_add(1);
        let recovered = recovery::open(&db, &segments_dir, &dedup, window_ms, checkpoint, floor)?;
        let earlier_until = dedup::earlier_until(&db, &meta, &dedup)?;
        let ledger = Arc::new(Ledger::new(recovered.high, checkpoint.min(recovered.high)));
        let (events, event_dups) = events::rebuild(&db, &recovered.table, &segments_dir)?;
        let events = Arc::new(events);
        let pending_at_open = recovered.table.outbox > 0;
        let table = Arc::new(Mutex::new(recovered.table));
        let feed_bytes = tuning.feed_bytes.min(settings.max_outbox_bytes.max(1));
        let feed = Arc::new(Feed::new(feed_bytes, recovered.high, pending_at_open));
        let deferred = Arc::new(Deferred::default());

        // Work goes one way: writer → flusher → merger (I14).
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (flush_requests, flush_receiver) = std::sync::mpsc::channel();
        let (merges, merge_receiver) = std::sync::mpsc::channel();
        let merging = Arc::clone(&dedup);
        let merger = spawn("store-merger", move || {
            dedup::merge_runs(&merging, merge_receiver)
        })?;
        let flusher = Flusher {
            db: db.clone(),
            dedup: Arc::clone(&dedup),
            meta: meta.clone(),
            ledger: Arc::clone(&ledger),
            deferred: Arc::clone(&deferred),
            table: Arc::clone(&table),
            interval: tuning.flush_interval,
            merges,
            events: Arc::clone(&events),
            dups: event_dups.clone(),
        };
        let flusher = spawn("store-flusher", move || flusher.run(flush_receiver))?;

        let writer = Writer::new(
            Setup {
                db: db.clone(),
                dead: dead.clone(),
                meta: meta.clone(),
                dedup: Arc::clone(&dedup),
                table: Arc::clone(&table),
                feed: Arc::clone(&feed),
                ledger,
                deferred,
                flush_requests,
                window_ms,
                earlier_until,
                limits: Limits {
                    max_outbox: settings.max_outbox as u64,
                    max_outbox_bytes: settings.max_outbox_bytes,
                },
                retention: retention::Policy {
                    keep_ms: millis(settings.keep_delivered),
                    max_bytes: settings.keep_delivered_max_bytes,
                },
                segments_dir,
                segment_bytes: settings.segment_bytes,
                events: Arc::clone(&events),
                event_dups,
            },
            recovered.active,
            recovered.next_seq,
        );
        let writer = spawn("store-writer", move || writer.run(receiver))?;

        Ok(Store {
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
                events,
                window: settings.dedup_window,
                keep_delivered: settings.keep_delivered,
                damaged: recovered.damaged,
            }),
        })
    }
}
