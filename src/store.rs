//! Durable storage behind one API (sled inside): dedup keys + outbox written atomically, dead letters.

use std::time::Duration;

use crate::config::StorageSettings;
use crate::event::Event;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure")]
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

/// Counts for readiness, stats and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub outbox: usize,
    pub dead: usize,
    pub dedup_keys: usize,
    pub disk_bytes: u64,
}

/// Cheap to clone; all clones share one database and one writer thread.
#[derive(Clone)]
pub struct Store {}

impl Store {
    pub fn open(settings: &StorageSettings) -> Result<Store, StoreError> {
        let _ = settings;
        todo!()
    }

    /// Dedup check + outbox insert, atomic, and fsynced before it returns (group commit).
    pub async fn append(&self, event: Event) -> Result<Appended, StoreError> {
        let _ = event;
        todo!()
    }

    /// Up to `limit` outbox entries with `seq > after` (all when `after` is None), in seq order.
    pub fn pending_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Pending>, StoreError> {
        let _ = (after, limit);
        todo!()
    }

    /// Removes delivered entries from the outbox.
    pub fn remove_delivered(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let _ = seqs;
        todo!()
    }

    /// Moves an outbox entry to the dead letters, with the broker's reason.
    pub fn dead_letter(&self, seq: u64, reason: &str) -> Result<(), StoreError> {
        let _ = (seq, reason);
        todo!()
    }

    /// Resolves once an append has happened since the last call (a permit is kept if none waits).
    pub async fn appended(&self) {
        todo!()
    }

    /// Expires dedup keys older than the window; returns how many were removed.
    pub fn sweep_expired(&self) -> Result<usize, StoreError> {
        todo!()
    }

    pub fn stats(&self) -> StoreStats {
        todo!()
    }

    /// Fails when the store cannot take a write right now.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        todo!()
    }

    /// Flushes everything to disk (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        todo!()
    }

    pub fn dedup_window(&self) -> Duration {
        todo!()
    }
}
