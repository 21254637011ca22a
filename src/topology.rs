//! RabbitMQ topology: the exchange, one queue per kind, and the dead-letter exchange and queue.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::ExchangeKind;

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

    let queue_type = AMQPValue::LongString(LongString::from(settings.queue_type.as_str()));
    let mut dead_args = FieldTable::default();
    dead_args.insert("x-queue-type".into(), queue_type.clone());
    let dead_queue = short(dead_queue_name(settings))?;
    channel
        .queue_declare(dead_queue.clone(), queue_options, dead_args)
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
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), queue_type.clone());
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

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::{Connection, ConnectionProperties};

    use super::*;
    use crate::config::{QueueType, Settings};

    pub(crate) const UNREACHABLE: &str =
        "RabbitMQ is not reachable at amqp://127.0.0.1:5672 — start it with `rabbitmq-server -detached`";

    /// Settings with an exchange and prefix no other test run uses.
    pub(crate) fn unique_settings(tag: &str) -> AmqpSettings {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let suffix = format!("{tag}-{}-{nanos}", std::process::id());
        let mut settings = Settings::default().amqp;
        settings.exchange = format!("relay-test-x-{suffix}");
        settings.queue_prefix = format!("relay-test-q-{suffix}");
        settings.timeout = Duration::from_secs(5);
        settings
    }

    pub(crate) async fn connect(settings: &AmqpSettings) -> Connection {
        let connect = Connection::connect(settings.url.expose(), ConnectionProperties::default());
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(conn)) => conn,
            _ => panic!("{UNREACHABLE}"),
        }
    }

    /// Deletes the queues and exchanges `settings` name; missing ones are fine (deleting is
    /// idempotent on RabbitMQ).
    pub(crate) async fn delete_all(conn: &Connection, settings: &AmqpSettings) {
        let channel = conn.create_channel().await.expect("channel for cleanup");
        let mut queues: Vec<String> = Kind::ALL.iter().map(|k| queue_name(settings, *k)).collect();
        queues.push(dead_queue_name(settings));
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .expect("delete queue");
        }
        for exchange in [settings.exchange.clone(), dead_exchange_name(settings)] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .expect("delete exchange");
        }
    }

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

    /// Runs `test`, then removes what it declared even when it panicked.
    pub(crate) async fn with_cleanup<F: std::future::Future<Output = ()>>(
        conn: &Connection,
        settings: &AmqpSettings,
        test: F,
    ) {
        use futures_util::FutureExt;
        let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
        delete_all(conn, settings).await;
        let _ = conn.close(200, "done".into()).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[tokio::test]
    async fn declare_is_idempotent_against_rabbitmq() {
        let settings = unique_settings("topology");
        assert_eq!(settings.queue_type, QueueType::Quorum);
        let conn = connect(&settings).await;
        with_cleanup(&conn, &settings, async {
            let channel = conn.create_channel().await.expect("channel");
            declare(&channel, &settings).await.expect("first declare");
            declare(&channel, &settings)
                .await
                .expect("second declare is a no-op");

            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let mut queues: Vec<String> = Kind::ALL
                .iter()
                .map(|k| queue_name(&settings, *k))
                .collect();
            queues.push(dead_queue_name(&settings));
            for queue in queues {
                channel
                    .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                    .await
                    .unwrap_or_else(|e| panic!("queue {queue} missing: {e}"));
            }
            let passive_exchange = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            for exchange in [settings.exchange.clone(), dead_exchange_name(&settings)] {
                channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        ExchangeKind::Topic,
                        passive_exchange,
                        FieldTable::default(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("exchange {exchange} missing: {e}"));
            }

            // They really are quorum queues: asking for classic ones must be refused.
            let mut classic = settings.clone();
            classic.queue_type = QueueType::Classic;
            let other = conn.create_channel().await.expect("channel");
            assert!(
                declare(&other, &classic).await.is_err(),
                "queue type mismatch must fail"
            );
        })
        .await;
    }
}
