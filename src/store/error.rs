//! The store's one error type, and how its threads share one failure among many waiters.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record is corrupt")]
    Corrupt(#[source] serde_json::Error),
    /// A segment file could not be read or written.
    #[error("segment I/O failure: {0}")]
    Io(#[from] std::io::Error),
    /// A data dir of an earlier version that cannot be taken over safely.
    #[error("cannot migrate the storage directory: {0}")]
    Migration(String),
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

/// A `Corrupt` error for layout problems that serde_json did not see itself, so callers get one
/// error kind for any unreadable record.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(<serde_json::Error as serde::de::Error>::custom(what))
}

/// One failure answers many waiters; `StoreError` is not `Clone` because its sources are not.
pub(crate) fn duplicate_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Sled(e) => StoreError::Sled(e.clone()),
        StoreError::Corrupt(e) => corrupt(&e.to_string()),
        StoreError::Io(e) => StoreError::Io(std::io::Error::new(e.kind(), e.to_string())),
        StoreError::Closed => StoreError::Closed,
        StoreError::OutboxFull => StoreError::OutboxFull,
        StoreError::Unwritable => StoreError::Unwritable,
        StoreError::Migration(text) => StoreError::Migration(text.clone()),
    }
}
