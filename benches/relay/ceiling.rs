//! The ceiling: a bare lapin publisher, persistent messages to a quorum queue, 256 confirms in flight.

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ExchangeKind};
use whaticket_relay::clock::now_ms;
use whaticket_relay::event::{Change, EventId, EventMeta, Format, Kind};
use whaticket_relay::publish::properties;

use crate::bodies::Bodies;
use crate::broker::{queue_count, quorum_args, unique_name, Cleanup};
use crate::{CONNECTION, TICKETS};

/// Confirms in flight (the relay's `amqp.max_in_flight` default).
const IN_FLIGHT: usize = 256;

/// What the relay sends with a Whaticket message: its own `publish::properties`, so the ceiling
/// cannot drift from the relay's message contract.
fn relay_like_properties(seq: u64) -> BasicProperties {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&seq.to_be_bytes());
    properties(&EventMeta {
        id: EventId(id),
        kind: Kind::Message,
        connection: CONNECTION.to_owned(),
        action: Some("start".to_owned()),
        format: Some(Format::WhaticketSaas),
        company_id: Some(1),
        ticket_id: Some(1000 + (seq % TICKETS) as i64),
        from_me: Some(false),
        received_at_ms: now_ms(),
        change: Some(Change::Created),
        body: Default::default(),
    })
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
