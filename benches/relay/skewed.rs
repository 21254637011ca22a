//! The skewed backlog (issue #31): a backlog accepted while the broker was out of reach, then
//! drained into quorum queues; uniform over many tickets, and with half of it on one hot ticket
//! (a busy WhatsApp group), and the hot ticket's share left out. It measures how long the drain
//! takes, when every other ticket's last event is delivered (in time, and its position among
//! the deliveries), and the hot ticket's own rate: one confirm round trip per event, set beside
//! a confirm round trip measured alone (one persistent publish of the size into a quorum queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Connection};
use serde_json::{json, Map, Value};
use whaticket_relay::config::{AmqpUrl, Settings};
use whaticket_relay::publish::topology;

use crate::broker::{consume, kind_queues, quorum_args, unique_name, Cleanup};
use crate::load::post;
use crate::plan::Plan;
use crate::process::mb;
use crate::relay::{relay_command, spawn_relay};
use crate::{each_size, SizeRun, CONNECTION, TOKEN};

/// When a message came to the consumer, and its `ticket_id` header.
type Delivery = (Instant, Option<i64>);

/// The hot ticket's id; the others' are 1000 and up.
const HOT: i64 = 1;

/// How a backlog's events are spread over tickets.
#[derive(Clone, Copy, Debug)]
enum Mix {
    /// Every event on one of the other tickets, in turn.
    Uniform,
    /// Every other event on the hot ticket, the rest on the others in turn.
    Skewed,
    /// The skewed backlog without the hot ticket's events: what the others take alone.
    OthersAlone,
}

impl Mix {
    fn label(self) -> &'static str {
        match self {
            Mix::Uniform => "uniform",
            Mix::Skewed => "skewed",
            Mix::OthersAlone => "others alone",
        }
    }

    /// The `i`th event's body number and ticket, for a backlog of `total` (skewed) events
    /// over `others` other tickets.
    fn event(self, i: u64, others: u64) -> (u64, i64) {
        let other = |n: u64| 1000 + (n % others) as i64;
        match self {
            Mix::Uniform => (i, other(i)),
            Mix::Skewed if i.is_multiple_of(2) => (i, HOT),
            Mix::Skewed => (i, other(i / 2)),
            Mix::OthersAlone => (2 * i + 1, other(i)),
        }
    }

    fn events(self, total: u64) -> u64 {
        match self {
            Mix::OthersAlone => total / 2,
            Mix::Uniform | Mix::Skewed => total,
        }
    }
}

/// The three backlogs of `plan.backlog` events (half of it for the others alone), each drained
/// by a relay started on it with RabbitMQ in reach.
pub async fn measure(run: &SizeRun<'_>, cleanup: &mut Cleanup) -> Result<Value> {
    let total = run.plan.backlog.max(2);
    // 1 000 other tickets for the 12 000 events: 6 each in the skewed backlog.
    let others = (total / 12).max(1);
    let mut out = serde_json::Map::new();
    for mix in [Mix::Uniform, Mix::Skewed, Mix::OthersAlone] {
        let figures = drain(run, cleanup, mix, total, others)
            .await
            .with_context(|| format!("skewed backlog, {}", mix.label()))?;
        out.insert(mix.label().to_owned(), figures);
        cleanup
            .run(run.broker)
            .await
            .context("cleanup between backlogs")?;
    }
    let others_done = |mix: &str| out[mix]["others_done_secs"].as_f64();
    let ratio = match (others_done("skewed"), others_done("others alone")) {
        (Some(skewed), Some(alone)) if alone > 0.0 => {
            json!((skewed / alone * 100.0).round() / 100.0)
        }
        _ => Value::Null,
    };
    out.insert("others_done_skewed_to_alone".to_owned(), ratio);
    let round_trip = confirm_round_trip(run, cleanup)
        .await
        .context("confirm round trip")?;
    out.insert("confirm_round_trip_ms".to_owned(), json!(round_trip));
    let skewed = &out["skewed"];
    println!(
        "skewed backlog ({total} events; hot ticket {} of them, the rest over {others} tickets; \
         quorum queues; times from the first delivery, {} s after the relay's start): drain \
         uniform {} s, skewed {} s; the others' last event delivered after {} s (alone: {} s, \
         ratio {}), at position {} of {total}; the hot ticket {} events/s ({} ms each; one \
         confirm round trip {round_trip} ms); the draining relay's peak RSS uniform {} / skewed {} MB",
        total / 2,
        skewed["first_delivery_secs"],
        out["uniform"]["drain_secs"],
        skewed["drain_secs"],
        skewed["others_done_secs"],
        out["others alone"]["others_done_secs"],
        out["others_done_skewed_to_alone"],
        skewed["others_last_position"],
        skewed["hot_per_sec"],
        skewed["hot_ms_per_event"],
        out["uniform"]["drain_peak_rss_mb"],
        skewed["drain_peak_rss_mb"],
    );
    Ok(Value::Object(out))
}

/// Only the skewed backlog, `plan.rounds` times for each size, on `broker` (`place` says which,
/// for the headings): `BENCH_CLUSTER=1` on the three-node cluster, `BENCH_SKEWED_ONLY=1` on the
/// default broker, without the other phases (which take most of a bench run).
pub async fn sizes(
    plan: &Plan,
    broker: &Connection,
    cleanup: &mut Cleanup,
    place: &str,
) -> Result<Value> {
    let measured = each_size(plan, broker, place, async |run: &SizeRun<'_>| {
        let figures = measure(run, cleanup).await?;
        cleanup.run(broker).await?;
        Ok(figures)
    })
    .await?;
    let mut out = Map::new();
    for (label, _, rounds) in measured {
        out.insert(label.to_owned(), Value::Array(rounds));
    }
    // host:port only: never the URL's credentials.
    let node = plan.broker.rsplit('@').next().unwrap_or_default();
    Ok(json!({ "broker": node, "rounds": plan.rounds, "sizes": out }))
}

/// Confirmed publishes sent one at a time: what one publish of a persistent message of this size
/// into a quorum queue and its confirm take, the least each of the hot ticket's events costs.
const ROUND_TRIPS: u64 = 200;

/// The median of [`ROUND_TRIPS`] confirm round trips, in ms.
async fn confirm_round_trip(run: &SizeRun<'_>, cleanup: &mut Cleanup) -> Result<f64> {
    let queue = unique_name("round-trip-q");
    cleanup.queues.push(queue.clone());
    let channel = run.broker.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, quorum_args())
        .await?;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let mut times = Vec::new();
    for seq in 0..ROUND_TRIPS {
        let body = run.bodies.ticket_body(seq, HOT as u64);
        let sent = Instant::now();
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                persistent.clone(),
            )
            .await?
            .await?;
        ensure!(
            confirm.is_ack(),
            "round trip {seq} not confirmed: {confirm:?}"
        );
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = channel.close(200, "done".into()).await;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok((median * 100.0).round() / 100.0)
}

/// Builds the backlog with the relay's broker out of reach, then starts the relay again on it
/// with the broker in reach and times the deliveries: the first from that start, the others
/// from the first (what the relay's start, the store's opening and the connection take is the
/// same whatever the backlog's mix, and would blur the comparison at small counts).
async fn drain(
    run: &SizeRun<'_>,
    cleanup: &mut Cleanup,
    mix: Mix,
    total: u64,
    others: u64,
) -> Result<Value> {
    let (plan, bodies, http) = (run.plan, run.bodies, run.http);
    let mut amqp = Settings::default().amqp;
    amqp.url = AmqpUrl::new(plan.broker.clone());
    amqp.exchange = unique_name("skew-x");
    amqp.queue_prefix = unique_name("skew-q");
    cleanup.relay(&amqp);

    // Nothing listens on a port just let go of: the relay accepts, its publisher retries.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nowhere = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f");
    let mut relay = spawn_relay(&nowhere, &amqp)?;
    relay
        .wait_ready(http, "/readyz?scope=ingest", |s| {
            s == reqwest::StatusCode::OK
        })
        .await?;
    let events = mix.events(total);
    let url = Arc::new(format!(
        "http://127.0.0.1:{}/hooks/{CONNECTION}/{TOKEN}",
        relay.port
    ));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..plan.clients {
        let (http, url, next, bodies) = (http.clone(), url.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return Ok::<_, anyhow::Error>(());
                }
                let (seq, ticket) = mix.event(i, others);
                let body = bodies.ticket_body(seq, ticket as u64);
                let (status, answer) = post(&http, &url, body).await?;
                ensure!(
                    status == 202,
                    "backlog event {i} answered {status}: {answer:?}"
                );
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    relay.stop()?;

    // The queues are declared (as the relay declares them) and consumed before it starts.
    let channel = run.broker.create_channel().await?;
    topology::declare(&channel, &amqp)
        .await
        .context("declaring the relay's topology")?;
    let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let mut consumers = Vec::new();
    for queue in kind_queues(&amqp) {
        let mut consumer = consume(&channel, &queue).await?;
        let deliveries = deliveries.clone();
        consumers.push(tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let at = Instant::now();
                let ticket = delivery.properties.headers().as_ref().and_then(|h| {
                    match h.inner().get("ticket_id") {
                        Some(AMQPValue::LongLongInt(t)) => Some(*t),
                        _ => None,
                    }
                });
                if let Ok(mut list) = deliveries.lock() {
                    list.push((at, ticket));
                }
            }
        }));
    }

    let started = Instant::now();
    relay.restart(|port, dir| relay_command(port, dir, &plan.broker, &amqp))?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let got = deliveries.lock().map(|l| l.len()).unwrap_or(0) as u64;
        ensure!(
            got <= events,
            "{got} deliveries for {events} events (resent?)"
        );
        if got == events {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {got} of {events} events delivered within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What the drain held at most: read-back bodies, lines, the marks it wrote.
    let drain_memory = relay.memory()?;
    relay.stop()?;
    let _ = channel.close(200, "done".into()).await;
    for consumer in consumers {
        consumer.abort();
    }

    let list = deliveries.lock().map(|l| l.clone()).unwrap_or_default();
    ensure!(
        list.iter().all(|(_, ticket)| ticket.is_some()),
        "a delivery without a ticket_id header"
    );
    let first = list.first().map_or(started, |(at, _)| *at);
    let secs = |from: Instant, at: Instant| {
        (at.duration_since(from).as_secs_f64() * 1000.0).round() / 1000.0
    };
    let hot: Vec<Instant> = list
        .iter()
        .filter(|(_, t)| *t == Some(HOT))
        .map(|(at, _)| *at)
        .collect();
    let others_last = list.iter().rposition(|(_, t)| *t != Some(HOT));
    let mut figures = json!({
        "events": events,
        "first_delivery_secs": secs(started, first),
        "drain_secs": list.last().map(|(at, _)| secs(first, *at)),
        "others_done_secs": others_last.map(|i| secs(first, list[i].0)),
        "others_last_position": others_last.map(|i| i + 1),
        "drain_peak_rss_mb": (mb(drain_memory.hwm_kb) * 10.0).round() / 10.0,
    });
    if let (Some(first), Some(last)) = (hot.first(), hot.last()) {
        let span = last.duration_since(*first).as_secs_f64();
        if hot.len() > 1 && span > 0.0 {
            let per_sec = (hot.len() - 1) as f64 / span;
            figures["hot_events"] = json!(hot.len());
            figures["hot_per_sec"] = json!(per_sec.round());
            figures["hot_ms_per_event"] = json!((1000.0 / per_sec * 100.0).round() / 100.0);
        }
    }
    Ok(figures)
}
