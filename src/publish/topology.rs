//! RabbitMQ topology: the exchange, one queue per kind, and the dead-letter exchange and queue.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::ExchangeKind;

use crate::config::{AmqpSettings, QueueType};
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

/// `{kind}.#`: the binding of a kind queue, matching every routing key the kind produces.
pub fn binding_key(kind: Kind) -> String {
    format!("{kind}.#")
}

/// An AMQP short string (at most 255 bytes), as an error instead of lapin's panic when too long.
pub(crate) fn short(value: impl Into<String>) -> Result<ShortString, lapin::Error> {
    ShortString::try_new(value).map_err(|e| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("AMQP name too long: {e}"),
        ))
    })
}

/// What every queue is declared with: its type and, for quorum queues, how many replicas it
/// starts with. Each relay and each node must be given the same, or RabbitMQ refuses the
/// declaration of an existing queue with different ones (PRECONDITION_FAILED).
pub fn queue_arguments(settings: &AmqpSettings) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(settings.queue_type.as_str())),
    );
    if let (QueueType::Quorum, Some(size)) =
        (settings.queue_type, settings.quorum_initial_group_size)
    {
        args.insert(
            "x-quorum-initial-group-size".into(),
            AMQPValue::LongLongInt(i64::from(size)),
        );
    }
    args
}

/// Declares everything, idempotently.
///
/// Declaring with the same arguments is a no-op on the broker; different arguments for an
/// existing queue (e.g. a classic queue where quorum is configured) fail with
/// PRECONDITION_FAILED and close the channel, which the caller treats like any broker error.
pub async fn declare(
    channel: &lapin::Channel,
    settings: &AmqpSettings,
) -> Result<(), lapin::Error> {
    let exchange_options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    // Quorum queues refuse to be exclusive or auto-delete, and classic ones must survive
    // restarts just the same: the outbox entry is gone once the broker confirms.
    let queue_options = QueueDeclareOptions {
        durable: true,
        exclusive: false,
        auto_delete: false,
        ..QueueDeclareOptions::default()
    };
    let exchange = short(settings.exchange.as_str())?;
    let dlx_name = dead_exchange_name(settings);
    let dlx = short(dlx_name.as_str())?;

    channel
        .exchange_declare(
            exchange.clone(),
            ExchangeKind::Topic,
            exchange_options,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            dlx.clone(),
            ExchangeKind::Fanout,
            exchange_options,
            FieldTable::default(),
        )
        .await?;

    let dead_queue = short(dead_queue_name(settings))?;
    channel
        .queue_declare(dead_queue.clone(), queue_options, queue_arguments(settings))
        .await?;
    channel
        .queue_bind(
            dead_queue,
            dlx.clone(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for kind in Kind::ALL {
        let mut args = queue_arguments(settings);
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(dlx_name.as_str())),
        );
        let queue = short(queue_name(settings, kind))?;
        channel
            .queue_declare(queue.clone(), queue_options, args)
            .await?;
        channel
            .queue_bind(
                queue,
                exchange.clone(),
                short(binding_key(kind))?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Checks that the exchange exists (a passive declare), for a topology managed elsewhere: a
/// missing one fails the session with NOT_FOUND instead of every publish failing.
pub async fn check_exchange(
    channel: &lapin::Channel,
    settings: &AmqpSettings,
) -> Result<(), lapin::Error> {
    let options = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            short(settings.exchange.as_str())?,
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn names() {
        let mut settings = Settings::default().amqp;
        settings.exchange = "wt".into();
        settings.queue_prefix = "relay".into();
        assert_eq!(queue_name(&settings, Kind::Message), "relay.message");
        assert_eq!(dead_queue_name(&settings), "relay.dead");
        assert_eq!(dead_exchange_name(&settings), "wt.dlx");
        assert_eq!(binding_key(Kind::Status), "status.#");
        assert!(short("x".repeat(256)).is_err());
    }

    #[test]
    fn quorum_queues_carry_their_initial_group_size() {
        let mut settings = Settings::default().amqp;
        let keys = |s: &AmqpSettings| {
            let args = queue_arguments(s);
            let mut keys: Vec<String> = args.inner().keys().map(|k| k.to_string()).collect();
            keys.sort_unstable();
            keys
        };
        assert_eq!(keys(&settings), ["x-queue-type"]);
        settings.quorum_initial_group_size = Some(3);
        assert_eq!(
            queue_arguments(&settings).inner()["x-quorum-initial-group-size"],
            AMQPValue::LongLongInt(3)
        );
        settings.queue_type = QueueType::Classic;
        assert_eq!(keys(&settings), ["x-queue-type"]);
    }
}
