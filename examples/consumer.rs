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

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

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

/// The application's work. Here: parse the body and print what identifies it (never the body:
/// it carries names and phone numbers).
fn process(delivery: &Delivery) -> Outcome {
    match serde_json::from_slice::<serde_json::Value>(&delivery.data) {
        Ok(serde_json::Value::Object(body)) => {
            let kind = delivery
                .properties
                .kind()
                .as_ref()
                .map(|k| k.as_str())
                .unwrap_or("?");
            let action = body
                .get("acao")
                .or_else(|| body.get("action"))
                .and_then(|a| a.as_str());
            println!(
                "{kind} event on {} (action {})",
                delivery.routing_key.as_str(),
                action.unwrap_or("-")
            );
            Outcome::Processed
        }
        Ok(_) => Outcome::Poison("body is not a JSON object"),
        Err(_) => Outcome::Poison("body is not JSON"),
    }
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
