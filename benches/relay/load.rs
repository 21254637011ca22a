//! The closed-loop load (saturation) and the latency histograms every phase records into.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use hdrhistogram::Histogram;
use lapin::Channel;
use serde_json::{json, Value};

use crate::bodies::Bodies;
use crate::broker::await_counted;

pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record((d.as_micros() as u64).max(1));
}

/// p50 / p99 / max in milliseconds.
pub fn latency(hist: &Histogram<u64>) -> Value {
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "count": hist.len(),
        "p50_ms": ms(hist.value_at_quantile(0.50)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "max_ms": ms(hist.max()),
    })
}

/// One POST; the status and the answer's body.
pub async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(u16, bytes::Bytes)> {
    let resp = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("POST to the server under test")?;
    let status = resp.status().as_u16();
    let answer = resp.bytes().await.context("reading the answer")?;
    Ok((status, answer))
}

/// How long the closed loop runs: so many requests, or so long.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    Requests(u64),
    For(Duration),
}

pub struct Saturation {
    /// Requests sent (and answered 202), bodies `0..requests`.
    pub requests: u64,
    pub load_secs: f64,
    pub accepted_per_sec: f64,
    pub latency: Value,
    /// From the last answer until the last event was counted in its queue.
    pub drain_secs: f64,
    pub confirmed_per_sec: f64,
}

/// Where the load goes and where its accepted events must arrive.
pub struct Target {
    pub url: String,
    pub queues: Vec<String>,
    /// A queue that must stay empty (the relay's dead letters).
    pub dead: Option<String>,
}

/// Closed loop: `clients` keep-alive clients send bodies 0, 1, … as fast as they are answered,
/// for as long as `load` says; then every accepted event must arrive in the target's queues,
/// exactly once each.
pub async fn saturation(
    http: &reqwest::Client,
    bodies: &Arc<Bodies>,
    load: Load,
    clients: usize,
    target: &Target,
    channel: &Channel,
) -> Result<Saturation> {
    let url = Arc::new(target.url.clone());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, next, bodies) = (http.clone(), url.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut refused: HashMap<u16, u64> = HashMap::new();
            loop {
                // A number taken is always sent, and none is taken once the load is over: the
                // bodies sent are 0..the count.
                let taken = next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seq| {
                    let over = match load {
                        Load::Requests(n) => seq >= n,
                        Load::For(d) => started.elapsed() >= d,
                    };
                    (!over).then_some(seq + 1)
                });
                let Ok(seq) = taken else {
                    return Ok::<_, anyhow::Error>((hist, refused));
                };
                let body = bodies.body(seq);
                let sent = Instant::now();
                let (status, _) = post(&http, &url, body).await?;
                record(&mut hist, sent.elapsed());
                if status != 202 {
                    *refused.entry(status).or_default() += 1;
                }
            }
        }));
    }
    let mut hist = histogram();
    let mut refused: HashMap<u16, u64> = HashMap::new();
    for task in tasks {
        let (h, r) = task.await??;
        hist.add(&h).map_err(|e| anyhow!("histogram: {e:?}"))?;
        for (status, count) in r {
            *refused.entry(status).or_default() += count;
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    let load_end = Instant::now();
    let n = next.load(Ordering::Relaxed);
    ensure!(
        refused.is_empty(),
        "not every request was answered 202: {refused:?}"
    );
    let accepted = hist.len();
    ensure!(accepted == n, "{accepted} answers for {n} requests");

    // Every accepted event must reach its queue: exactly once each, nothing dead-lettered.
    await_counted(channel, &target.queues, target.dead.as_deref(), accepted).await?;
    let drain_secs = load_end.elapsed().as_secs_f64();
    Ok(Saturation {
        requests: n,
        load_secs,
        accepted_per_sec: n as f64 / load_secs,
        latency: latency(&hist),
        drain_secs,
        confirmed_per_sec: n as f64 / started.elapsed().as_secs_f64(),
    })
}
