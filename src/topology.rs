//! RabbitMQ topology: the exchange, one queue per kind, and the dead-letter exchange and queue.

use crate::config::AmqpSettings;
use crate::event::Kind;

/// `{queue_prefix}.{kind}`
pub fn queue_name(settings: &AmqpSettings, kind: Kind) -> String {
    format!("{}.{}", settings.queue_prefix, kind)
}

/// `{queue_prefix}.dead`
pub fn dead_queue_name(settings: &AmqpSettings) -> String {
    format!("{}.dead", settings.queue_prefix)
}

/// `{exchange}.dlx`: the dead-letter exchange the kind queues use.
pub fn dead_exchange_name(settings: &AmqpSettings) -> String {
    format!("{}.dlx", settings.exchange)
}

/// Declares everything, idempotently.
pub async fn declare(channel: &lapin::Channel, settings: &AmqpSettings) -> Result<(), lapin::Error> {
    let _ = (channel, settings);
    todo!("topology::declare")
}
