//! The store's one error type. It is `Clone` (its causes are shared), so one failure answers
//! every waiter of a group or a flush.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    /// The directory is locked by another process (sled's lock on `<dir>/db`).
    #[error(
        "storage failure: cannot open storage directory {} (it is in use by another process: is \
         another relay running on it?): {source}",
        path.display()
    )]
    Locked { path: PathBuf, source: sled::Error },
    /// Bytes read back that hold no valid record, key or value.
    #[error("stored record is corrupt")]
    Corrupt(#[source] Corrupt),
    /// A pending record that fails its checks (a reader that cannot set it aside).
    #[error("pending record {0} cannot be read")]
    Unreadable(u64),
    /// A segment file could not be read or written.
    #[error("segment I/O failure: {0}")]
    Io(#[source] Arc<io::Error>),
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

/// Why stored bytes were unreadable.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Corrupt {
    /// A binary layout (frame, record, metadata, key) that does not hold.
    #[error("{0}")]
    Layout(&'static str),
    /// The JSON of an earlier version's record or of a dead letter's header.
    #[error(transparent)]
    Json(Arc<serde_json::Error>),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> StoreError {
        StoreError::Io(Arc::new(e))
    }
}

impl StoreError {
    /// The directory is locked by another process: another relay, or the predecessor of a
    /// restart still draining.
    pub fn is_lock_held(&self) -> bool {
        matches!(self, StoreError::Locked { .. })
    }

    /// An error opening the sled database at `path`, naming it; a held lock becomes
    /// [`StoreError::Locked`]. The one place sled's lock error is recognised: sled reports it
    /// only as text (an `io::Error` of kind `Other`).
    pub(crate) fn opening(path: &std::path::Path, err: sled::Error) -> StoreError {
        match err {
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    path: path.to_path_buf(),
                    source: sled::Error::Io(e),
                }
            }
            sled::Error::Io(e) => StoreError::Sled(sled::Error::Io(io::Error::new(
                e.kind(),
                format!("cannot open storage directory {}: {e}", path.display()),
            ))),
            other => StoreError::Sled(other),
        }
    }

    /// An I/O error with what was being done and to which path.
    pub(crate) fn io_at(what: &str, path: &std::path::Path, e: &io::Error) -> StoreError {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display())).into()
    }
}

/// A [`StoreError::Corrupt`] for a binary layout that does not hold.
pub(crate) fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt(Corrupt::Layout(what))
}

/// A [`StoreError::Corrupt`] for JSON that does not parse (or cannot be written).
pub(crate) fn corrupt_json(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(Corrupt::Json(Arc::new(e)))
}
