//! The bench's side of RabbitMQ: connecting, unique names, counting queues exactly, cleaning up.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use lapin::options::{
    BasicConsumeOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use whaticket_relay::config::AmqpSettings;
use whaticket_relay::event::Kind;
use whaticket_relay::publish::topology;

pub async fn connect(url: &str) -> Result<Connection> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        other => bail!(
            "RabbitMQ is not reachable at {url} ({}). Start it with `rabbitmq-server -detached` \
             (install: `apt-get install -y rabbitmq-server`), or run `tests/run.sh`, which starts it.",
            match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            }
        ),
    }
}

pub fn unique_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("relay-bench-{what}-{}-{nanos}", std::process::id())
}

pub fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

/// The relay's queues, one per kind.
pub fn kind_queues(amqp: &AmqpSettings) -> Vec<String> {
    Kind::ALL
        .iter()
        .map(|k| topology::queue_name(amqp, *k))
        .collect()
}

pub async fn queue_count(channel: &Channel, queue: &str) -> Result<u64> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .with_context(|| format!("queue {queue}"))?;
    Ok(u64::from(q.message_count()))
}

/// Waits until `queues` hold exactly `expected` messages together (120 s at most); fails as soon
/// as they hold more (resent after a reconnect?) or `dead` holds any.
pub async fn await_counted(
    channel: &Channel,
    queues: &[String],
    dead: Option<&str>,
    expected: u64,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut total = 0;
        for queue in queues {
            total += queue_count(channel, queue).await?;
        }
        if let Some(dead) = dead {
            let dead_count = queue_count(channel, dead).await?;
            ensure!(dead_count == 0, "{dead_count} events were dead-lettered");
        }
        ensure!(
            total <= expected,
            "{total} messages in the queues for {expected} accepted events (resent after a reconnect?)"
        );
        if total == expected {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {total} of {expected} accepted events reached their queues within 120 s after the load"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A consumer of `queue` that takes each message as it comes (no acks).
pub async fn consume(channel: &Channel, queue: &str) -> Result<lapin::Consumer> {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    Ok(channel
        .basic_consume(queue.into(), "".into(), options, FieldTable::default())
        .await?)
}

pub async fn purge(channel: &Channel, queues: &[String]) -> Result<()> {
    for queue in queues {
        channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await?;
    }
    Ok(())
}

/// Broker objects to delete at the end, whatever happened.
#[derive(Default)]
pub struct Cleanup {
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
}

impl Cleanup {
    pub fn relay(&mut self, amqp: &AmqpSettings) {
        self.queues.extend(kind_queues(amqp));
        self.queues.push(topology::dead_queue_name(amqp));
        self.exchanges.push(amqp.exchange.clone());
        self.exchanges.push(topology::dead_exchange_name(amqp));
    }

    /// Deletes what is listed so far and forgets it. Called after each phase too, so that the
    /// next phase does not share the broker with a hundred thousand messages of the last one
    /// (whatever the broker does with them would be counted in that phase's CPU figures).
    pub async fn run(&mut self, broker: &Connection) -> Result<()> {
        let channel = broker.create_channel().await.context("cleanup channel")?;
        let (queues, exchanges) = (
            std::mem::take(&mut self.queues),
            std::mem::take(&mut self.exchanges),
        );
        for queue in &queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .with_context(|| format!("delete queue {queue}"))?;
        }
        for exchange in &exchanges {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .with_context(|| format!("delete exchange {exchange}"))?;
        }
        Ok(())
    }
}
