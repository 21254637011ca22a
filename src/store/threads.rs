//! The store's threads (writer, flusher, merger): started by name, joined on drop within a limit.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use super::error::StoreError;

/// How long dropping the last store handle waits for each of its threads to finish.
const THREAD_JOIN_LIMIT: Duration = Duration::from_secs(10);

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

pub(super) fn spawn(
    name: &'static str,
    run: impl FnOnce() + Send + 'static,
) -> Result<Joined, StoreError> {
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(run)
        .map_err(|e| {
            StoreError::from(io::Error::new(
                e.kind(),
                format!("cannot start {name}: {e}"),
            ))
        })?;
    Ok(Joined(name, Some(handle)))
}
