//! The steady phase: an open-loop request rate, 202 latency from the schedule, send → delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use futures_util::stream::StreamExt;
use lapin::{Channel, Connection};
use serde_json::Value;

use crate::bodies::Bodies;
use crate::broker::{consume, purge};
use crate::disk;
use crate::load::{histogram, latency, post, record, Target};
use crate::plan::Plan;
use crate::process::{broker_pid, Memory, Periodic};

pub struct Steady {
    pub accepted: Value,
    pub service: Value,
    pub delivered: Value,
    pub duplicates: u64,
    pub rss_kb: Vec<u64>,
    /// What the broker and the disk wrote during the phase ([`crate::disk::summary`]).
    pub disk: Value,
}

/// Brings a server (process `pid`) and the broker to rest after a saturation: its queues
/// purged, then both idle, so that the steady phase does not measure RabbitMQ dropping the
/// backlog nor the server finishing the saturation's work. Prints how long each took.
pub async fn at_rest(channel: &Channel, queues: &[String], pid: u32) -> Result<()> {
    purge(channel, queues).await?;
    let broker_waited = crate::process::settle(crate::process::broker_pid()).await;
    let server_waited = crate::process::settle(Some(pid)).await;
    println!(
        "  (broker idle after {:.1} s, server after {:.1} s more)",
        broker_waited.as_secs_f64(),
        server_waited.as_secs_f64()
    );
    Ok(())
}

/// Open loop on a server (process `pid`): request `i` is due at `start + i / rate` whatever happened to the earlier ones; its
/// 202 latency runs from that due time. Consumers on the kind queues time each delivery; joined
/// with the send time by event id afterwards.
/// The server is the relay or the durable limit: either answers 202 with the event's id and
/// publishes it with that id as `message_id`.
pub async fn steady(
    target: &Target,
    pid: u32,
    http: &reqwest::Client,
    bodies: &Arc<Bodies>,
    plan: &Plan,
    seq_base: u64,
    broker: &Connection,
) -> Result<Steady> {
    let consumer_channel = broker.create_channel().await?;
    let deliveries: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let delivered_count = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for queue in &target.queues {
        let mut consumer = consume(&consumer_channel, queue).await?;
        let (deliveries, count) = (deliveries.clone(), delivered_count.clone());
        consumers.push(tokio::spawn(async move {
            while let Some(delivery) = consumer.next().await {
                let at = Instant::now();
                let Ok(delivery) = delivery else { break };
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default();
                if let Ok(mut list) = deliveries.lock() {
                    list.push((id, at));
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let total = plan.rate * plan.steady_secs;
    let rss = Periodic::start(Duration::from_secs(1), move || {
        Memory::of(pid).ok().map(|m| m.rss_kb)
    });
    let disk = disk::start(broker_pid(), &std::env::temp_dir());

    let url = Arc::new(target.url.clone());
    let period_ns = 1_000_000_000 / plan.rate.max(1);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_nanos(i * period_ns);
        tokio::time::sleep_until(due).await;
        let (http, url, body) = (http.clone(), url.clone(), bodies.body(seq_base + i));
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = post(&http, &url, body).await;
            let done = Instant::now();
            (due.into_std(), sent, done, result)
        });
    }
    let mut accepted = histogram();
    let mut service = histogram();
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut refused: HashMap<u16, u64> = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (due, sent, done, result) = joined?;
        let (status, answer) = result?;
        if status != 202 {
            *refused.entry(status).or_default() += 1;
            continue;
        }
        record(&mut accepted, done.saturating_duration_since(due));
        record(&mut service, done - sent);
        let id = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        sent_at.insert(id.context("202 without an event id")?, sent);
    }
    let rss_kb = rss.stop().await?;
    let disk = disk::summary(&disk.stop().await?);
    ensure!(
        refused.is_empty(),
        "steady: not every request was answered 202: {refused:?}"
    );
    ensure!(
        sent_at.len() as u64 == total,
        "steady: {} distinct ids for {total} requests",
        sent_at.len()
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while (delivered_count.load(Ordering::Relaxed) as u64) < total {
        ensure!(
            Instant::now() < deadline,
            "steady: only {} of {total} accepted events were delivered within 60 s",
            delivered_count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = consumer_channel.close(200, "done".into()).await;
    for consumer in consumers {
        consumer.abort();
    }

    let mut delivered = histogram();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let list = std::mem::take(
        &mut *deliveries
            .lock()
            .map_err(|_| anyhow!("consumer panicked"))?,
    );
    for (id, at) in list {
        let sent = *sent_at
            .get(&id)
            .with_context(|| format!("delivered event {id} was never sent"))?;
        if !seen.insert(id) {
            duplicates += 1;
            continue;
        }
        record(&mut delivered, at.saturating_duration_since(sent));
    }
    ensure!(
        seen.len() as u64 == total,
        "steady: {} of {total} events delivered",
        seen.len()
    );
    Ok(Steady {
        accepted: latency(&accepted),
        service: latency(&service),
        delivered: latency(&delivered),
        duplicates,
        rss_kb,
        disk,
    })
}
