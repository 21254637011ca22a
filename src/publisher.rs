//! Moves outbox entries to RabbitMQ with publisher confirms, owning the reconnect loop.

use tokio_util::sync::CancellationToken;

use crate::config::AmqpSettings;
use crate::store::Store;

/// Handle on the running publisher task.
pub struct PublisherHandle {}

impl PublisherHandle {
    /// True while a channel to the broker is open and the topology is declared.
    pub fn is_connected(&self) -> bool {
        todo!()
    }

    /// Waits until the task has finished after `shutdown` was cancelled: confirms in flight are
    /// awaited (bounded by the broker timeout) and the connection is closed.
    pub async fn stopped(self) {
        todo!()
    }
}

/// Starts the publisher on the current tokio runtime.
pub fn start(store: Store, settings: AmqpSettings, shutdown: CancellationToken) -> PublisherHandle {
    let _ = (store, settings, shutdown);
    todo!()
}
