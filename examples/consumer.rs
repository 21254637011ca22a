//! Example consumer of the relay's queues: manual acks, a prefetch, dedup on `message_id`, ctrl-c.
//!
//! ```sh
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f QUEUE=whaticket.message \
//!     cargo run --example consumer
//! ```
//!
//! Delivery from the relay is at least once (a relay restart or failover can publish an event
//! twice), and the same event always carries the same `message_id` on every relay. This consumer
//! remembers the last `DEDUP_CAPACITY` ids in memory; a real one keeps them where its results go
//! (e.g. a unique index on `message_id` in the same transaction), so that they survive restarts.
//!
//! It reads both body shapes, told apart by `content_type`, event by event (a connection can
//! switch modes with a backlog queued): the sender's own JSON (`application/json`, raw mode) and a
//! CloudEvents envelope (`application/cloudevents+json`, `amqp.body = "cloudevents"`), whose
//! `data` has the same facts for every fork and whose `data.raw` is what raw mode publishes.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

/// The ids seen most recently, at most `capacity`: the oldest is forgotten first.
///
/// Duplicates from the relay arrive close together (a failover republishes the last moments), so
/// a bounded window catches them without the set growing forever.
struct RecentIds {
    capacity: usize,
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: &str) {
        if !self.set.insert(id.to_owned()) {
            return;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
    }
}

/// What the consumer decided for one delivery.
enum Outcome {
    Processed,
    Duplicate,
    /// Can never be processed: rejected without requeue, so it goes to `whaticket.dead`.
    Poison(&'static str),
}

const CLOUDEVENTS: &str = "application/cloudevents+json";

/// What the application works on, from either shape: the sender's body, and the normalised
/// facts where the relay gave them (CloudEvents mode). Public, as [`read`] is, for the tests
/// that run this reader on what the relay publishes (tests/api/cloudevents.rs).
pub struct Received {
    /// The sender's body, redacted: the whole raw body, or a CloudEvent's `data.raw`.
    pub raw: Value,
    /// A CloudEvent's `data`, less `raw`.
    pub facts: Option<Value>,
}

/// Reads a delivery in either shape: a raw body is a JSON object; a CloudEvent is one whose
/// `specversion` is 1.0 and whose `data.raw` is the object raw mode would have published.
pub fn read(delivery: &Delivery) -> Result<Received, &'static str> {
    let body: Value = serde_json::from_slice(&delivery.data).map_err(|_| "body is not JSON")?;
    let content_type = delivery.properties.content_type().as_ref();
    if content_type.is_some_and(|c| c.as_str() == CLOUDEVENTS) {
        let Value::Object(mut envelope) = body else {
            return Err("CloudEvent is not a JSON object");
        };
        if envelope.get("specversion").and_then(Value::as_str) != Some("1.0") {
            return Err("not a CloudEvents 1.0 event");
        }
        let mut data = envelope.remove("data").ok_or("CloudEvent without data")?;
        let raw = data
            .as_object_mut()
            .and_then(|d| d.remove("raw"))
            .ok_or("CloudEvent without data.raw")?;
        return Ok(Received {
            raw,
            facts: Some(data),
        });
    }
    if !body.is_object() {
        return Err("body is not a JSON object");
    }
    Ok(Received {
        raw: body,
        facts: None,
    })
}

/// The application's work. Here: print what identifies the event (never the body or the
/// contact: they carry names and phone numbers).
fn process(delivery: &Delivery) -> Outcome {
    let received = match read(delivery) {
        Ok(received) => received,
        Err(why) => return Outcome::Poison(why),
    };
    let kind = delivery
        .properties
        .kind()
        .as_ref()
        .map(|k| k.as_str())
        .unwrap_or("?");
    match &received.facts {
        // One shape for every fork: the ticket, the message id, what changed.
        Some(facts) => println!(
            "{kind} event on {}: {} of ticket {} (message {})",
            delivery.routing_key.as_str(),
            facts["change"].as_str().unwrap_or("-"),
            facts["ticket"]["id"],
            facts["message"]["id"].as_str().unwrap_or("-"),
        ),
        // The sender's own shape: here the SaaS `acao`/`action`.
        None => {
            let action = received
                .raw
                .get("acao")
                .or_else(|| received.raw.get("action"))
                .and_then(|a| a.as_str());
            println!(
                "{kind} event on {} (action {})",
                delivery.routing_key.as_str(),
                action.unwrap_or("-")
            );
        }
    }
    Outcome::Processed
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let queue = std::env::var("QUEUE").unwrap_or_else(|_| "whaticket.message".to_owned());
    // Prefetch: how many unacked deliveries the broker sends ahead. Bounds memory and the number
    // of messages redelivered if this consumer dies.
    let prefetch: u16 = env_or("PREFETCH", 50);
    let mut seen = RecentIds::new(env_or("DEDUP_CAPACITY", 100_000));

    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    // The queue is declared by the relay (quorum, with its dead-letter exchange): consume only,
    // as a declaration with other arguments would fail.
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "example-consumer".into(),
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    println!("consuming {queue} (prefetch {prefetch}); ctrl-c to stop");

    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let delivery = tokio::select! {
            _ = &mut stop => break,
            next = consumer.next() => match next {
                Some(delivery) => delivery?,
                None => break,
            },
        };
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        let outcome = match &id {
            Some(id) if seen.contains(id) => Outcome::Duplicate,
            _ => process(&delivery),
        };
        match outcome {
            Outcome::Processed | Outcome::Duplicate => {
                // Remembered only once processed: a crash before the ack means a redelivery,
                // which must be processed, not skipped.
                if let Some(id) = &id {
                    seen.insert(id);
                }
                if matches!(outcome, Outcome::Duplicate) {
                    println!("duplicate {} skipped", id.as_deref().unwrap_or("-"));
                }
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Outcome::Poison(why) => {
                eprintln!("rejecting {}: {why}", id.as_deref().unwrap_or("-"));
                delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
            }
        }
    }

    // Graceful stop: unacked deliveries (none here, each is acked before the next) go back to
    // the queue when the channel closes.
    println!("stopping");
    let close = async {
        channel.close(200, "bye".into()).await?;
        connection.close(200, "bye".into()).await
    };
    match tokio::time::timeout(Duration::from_secs(5), close).await {
        Ok(result) => result?,
        Err(_) => eprintln!("broker did not answer the close within 5 s"),
    }
    Ok(())
}
