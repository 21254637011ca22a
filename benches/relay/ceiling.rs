//! The ceiling: a bare lapin publisher, persistent messages to a quorum queue, 256 confirms in flight.

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ExchangeKind};

use crate::bodies::Bodies;
use crate::broker::{queue_count, quorum_args, unique_name, Cleanup};
use crate::{CONNECTION, TICKETS};

/// Confirms in flight (the relay's `amqp.max_in_flight` default).
const IN_FLIGHT: usize = 256;

/// What the relay sends with each event (src/publisher.rs `properties`), rebuilt here.
fn relay_like_properties(seq: u64) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "connection".into(),
        AMQPValue::LongString(LongString::from(CONNECTION)),
    );
    headers.insert(
        "action".into(),
        AMQPValue::LongString(LongString::from("start")),
    );
    headers.insert("company_id".into(), AMQPValue::LongLongInt(1));
    headers.insert(
        "ticket_id".into(),
        AMQPValue::LongLongInt((1000 + seq % TICKETS) as i64),
    );
    headers.insert("from_me".into(), AMQPValue::Boolean(false));
    headers.insert(
        "received_at".into(),
        AMQPValue::LongString(LongString::from("2026-01-01T00:00:00.000Z")),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(format!("{seq:032x}").into())
        .with_type("message".into())
        .with_timestamp(1_767_225_600)
        .with_app_id("whaticket-relay".into())
        .with_headers(headers)
}

/// Bare lapin: persistent, mandatory, to a topic exchange bound to one quorum queue, 256 confirms
/// in flight. Messages per second from the first publish to the last confirm.
pub async fn ceiling(
    broker: &Connection,
    bodies: &Bodies,
    n: u64,
    cleanup: &mut Cleanup,
) -> Result<f64> {
    let exchange = unique_name("ceiling-x");
    let queue = unique_name("ceiling-q");
    cleanup.queues.push(queue.clone());
    cleanup.exchanges.push(exchange.clone());
    let channel = broker.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    let qopts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), qopts, quorum_args())
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let mut in_flight = FuturesUnordered::new();
    let (mut next, mut acked) = (0u64, 0u64);
    let started = Instant::now();
    while acked < n {
        while in_flight.len() < IN_FLIGHT && next < n {
            let body = bodies.body(next);
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    "message.1.bench".into(),
                    options,
                    &body,
                    relay_like_properties(next),
                )
                .await?;
            in_flight.push(confirm);
            next += 1;
        }
        match in_flight.next().await {
            Some(Ok(Confirmation::Ack(None))) => acked += 1,
            Some(other) => bail!("ceiling publish not confirmed: {other:?}"),
            None => bail!("ceiling: confirms ended early"),
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let count = queue_count(&channel, &queue).await?;
    ensure!(
        count == n,
        "ceiling queue holds {count} messages, {n} were confirmed"
    );
    let _ = channel.close(200, "done".into()).await;
    Ok(rate)
}
