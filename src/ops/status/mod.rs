//! The live status page of the admin listener: what it shows (this file: one JSON state built
//! from counters the relay keeps anyway, and a sampler for the outbox's last hour), who may see
//! it (`session`), its routes and embedded assets (`routes`, the Events view's in `events`) and
//! its languages (`i18n`).
//!
//! Counts, sizes, ages and configured names only: no view carries a body's content except a dead
//! letter's body that an operator opens explicitly.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::history::{MinuteCounts, MINUTES};
use crate::metrics::{ConnectionTotals, Metrics, UNKNOWN_CONNECTION};
use crate::publish::PublisherStats;
use crate::store::Store;

pub mod events;
pub mod i18n;
pub mod routes;
pub mod session;

/// All the page's routes, on the admin listener.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    routes::configure(cfg);
    events::configure(cfg);
}

/// How often the sampler records the outbox and the publisher's totals.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
const SAMPLES_KEPT: usize = 3600 / 5;
/// The span publish rate and confirm latency are averaged over.
const RATE_SPAN_MS: u64 = 60_000;
/// Share of `max_outbox` / `max_outbox_bytes` from which back-pressure is called near.
const NEAR_FULL: f64 = 0.8;

/// What the page reads: the relay's own counters and the store.
pub struct Sources {
    pub store: Store,
    pub metrics: Metrics,
    pub publisher: Arc<PublisherStats>,
    pub connected: watch::Receiver<crate::publish::BrokerNode>,
    pub max_outbox: u64,
    pub max_outbox_bytes: u64,
}

/// One reading of the sampler.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at_ms: u64,
    outbox: u64,
    outbox_bytes: u64,
    oldest_age_secs: u64,
    published: u64,
    latency_sum_secs: f64,
    latency_count: u64,
}

/// The last hour of samples, oldest first.
#[derive(Debug, Default)]
pub struct Samples {
    ring: Mutex<VecDeque<Sample>>,
}

impl Samples {
    fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == SAMPLES_KEPT {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    fn snapshot(&self) -> Vec<Sample> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().copied().collect()
    }
}

impl Sources {
    fn read(&self) -> Sample {
        let store = &self.store;
        let (outbox, outbox_bytes) = store.outbox_usage();
        let now = crate::clock::now_ms();
        let oldest_age_secs = match store.oldest_pending_ms() {
            Ok(Some(at)) => now.saturating_sub(at) / 1000,
            _ => 0,
        };
        let (latency_sum_secs, latency_count) = self.metrics.delivery_latency_totals();
        Sample {
            at_ms: now,
            outbox,
            outbox_bytes,
            oldest_age_secs,
            published: self.publisher.published.load(Relaxed),
            latency_sum_secs,
            latency_count,
        }
    }

    /// The whole state as the page shows it. Touches the disk (sizes): call off the workers.
    pub fn state(&self, samples: &Samples) -> State {
        let now = self.read();
        let history = samples.snapshot();
        let store = &self.store;
        let mut totals = self.metrics.per_connection();
        let mut connections: Vec<ConnectionState> = self
            .metrics
            .history()
            .all()
            .into_iter()
            .map(|(name, ring)| {
                let totals = totals.remove(&name).unwrap_or_default();
                connection_state(name, &ring, totals, now.at_ms)
            })
            .collect();
        let unknown = connection_state(
            UNKNOWN_CONNECTION.to_owned(),
            self.metrics.history().unknown(),
            totals.remove(UNKNOWN_CONNECTION).unwrap_or_default(),
            now.at_ms,
        );
        // Requests to unconfigured names are worth a card only when there were some.
        if unknown.hour.rejected > 0 || !unknown.rejections.is_empty() {
            connections.push(unknown);
        }
        let p = &self.publisher;
        let since = p.state_since_ms.load(Relaxed);
        let base = history
            .iter()
            .rev()
            .find(|s| now.at_ms.saturating_sub(s.at_ms) >= RATE_SPAN_MS)
            .or_else(|| history.first())
            .copied();
        let (publish_rate_per_sec, confirm_latency_ms) = match base {
            Some(base) if now.at_ms > base.at_ms => {
                let secs = (now.at_ms - base.at_ms) as f64 / 1000.0;
                let count = now.latency_count.saturating_sub(base.latency_count);
                let latency = (count > 0).then(|| {
                    (now.latency_sum_secs - base.latency_sum_secs) / count as f64 * 1000.0
                });
                (
                    Some(now.published.saturating_sub(base.published) as f64 / secs),
                    latency,
                )
            }
            _ => (None, None),
        };
        let ratio = (now.outbox as f64 / self.max_outbox.max(1) as f64)
            .max(now.outbox_bytes as f64 / self.max_outbox_bytes.max(1) as f64);
        let back_pressure = if ratio >= 1.0 {
            "full"
        } else if ratio >= NEAR_FULL {
            "near"
        } else {
            "ok"
        };
        let stats = store.stats();
        State {
            now_ms: now.at_ms,
            connections,
            broker: BrokerState {
                connected: self.connected.borrow().is_some(),
                since_ms: since,
                since_secs: now.at_ms.saturating_sub(since) / 1000,
                reconnects: p.reconnects.load(Relaxed),
                published: now.published,
                confirms: p.acked.load(Relaxed),
                nacks: p.nacked.load(Relaxed),
                returns: p.returned.load(Relaxed),
                publish_rate_per_sec,
                confirm_latency_ms,
            },
            outbox: OutboxState {
                events: now.outbox,
                bytes: now.outbox_bytes,
                oldest_pending_age_secs: now.oldest_age_secs,
                max_events: self.max_outbox,
                max_bytes: self.max_outbox_bytes,
                back_pressure,
                minutes: outbox_minutes(&history, now),
            },
            dead_letters: stats.dead as u64,
            store: StoreState {
                disk_bytes: stats.disk_bytes,
                dedup_keys: stats.dedup_keys as u64,
                delivered_kept: stats.delivered_kept as u64,
                delivered_kept_bytes: stats.delivered_bytes,
                damaged_bytes: stats.damaged.bytes,
                lost_records: stats.damaged.lost_records,
            },
        }
    }
}

fn connection_state(
    name: String,
    ring: &crate::metrics::history::ConnHistory,
    totals: ConnectionTotals,
    now_ms: u64,
) -> ConnectionState {
    let minutes = ring.last_hour(now_ms);
    let hour = minutes
        .iter()
        .fold(MinuteCounts::default(), |sum, m| MinuteCounts {
            accepted: sum.accepted + m.accepted,
            duplicate: sum.duplicate + m.duplicate,
            rejected: sum.rejected + m.rejected,
        });
    let last = ring.last_event_ms();
    ConnectionState {
        name,
        last_event_ms: last,
        last_event_age_secs: last.map(|at| now_ms.saturating_sub(at) / 1000),
        hour,
        minutes,
        rejections: totals.rejections,
        formats: totals.formats,
    }
}

/// The outbox's highest depth and oldest age per minute of the last hour, oldest first (`None`:
/// no sample in that minute); the current reading counts in the last minute.
fn outbox_minutes(history: &[Sample], now: Sample) -> Vec<Option<OutboxMinute>> {
    let current = now.at_ms / 60_000;
    let mut out: Vec<Option<OutboxMinute>> = vec![None; MINUTES];
    for sample in history.iter().chain(std::iter::once(&now)) {
        let minute = sample.at_ms / 60_000;
        let Some(back) = current.checked_sub(minute).filter(|&b| b < MINUTES as u64) else {
            continue;
        };
        let slot = &mut out[MINUTES - 1 - back as usize];
        let entry = slot.get_or_insert(OutboxMinute::default());
        entry.events = entry.events.max(sample.outbox);
        entry.oldest_age_secs = entry.oldest_age_secs.max(sample.oldest_age_secs);
    }
    out
}

/// Records a sample every [`SAMPLE_EVERY`] until aborted (the admin listener's stop does).
pub async fn sample_forever(sources: Arc<Sources>, samples: Arc<Samples>) {
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let sources = Arc::clone(&sources);
        // The oldest entry's lookup takes the store's table lock: off the async worker.
        match tokio::task::spawn_blocking(move || sources.read()).await {
            Ok(sample) => samples.push(sample),
            Err(e) => tracing::warn!(error = %e, "status sample failed"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct State {
    pub now_ms: u64,
    pub connections: Vec<ConnectionState>,
    pub broker: BrokerState,
    pub outbox: OutboxState,
    pub dead_letters: u64,
    pub store: StoreState,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectionState {
    pub name: String,
    pub last_event_ms: Option<u64>,
    pub last_event_age_secs: Option<u64>,
    /// Totals of the last hour.
    pub hour: MinuteCounts,
    /// The last 60 minutes, oldest first; the last one is the current minute.
    pub minutes: Vec<MinuteCounts>,
    /// Since start, by reason code.
    pub rejections: std::collections::BTreeMap<String, u64>,
    /// Accepted events since start, by sender format.
    pub formats: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BrokerState {
    pub connected: bool,
    /// When it last connected or lost the connection (or the relay started).
    pub since_ms: u64,
    pub since_secs: u64,
    pub reconnects: u64,
    pub published: u64,
    pub confirms: u64,
    pub nacks: u64,
    pub returns: u64,
    /// Over about the last minute.
    pub publish_rate_per_sec: Option<f64>,
    /// Mean receipt → confirm time over about the last minute; `None` when nothing was confirmed.
    pub confirm_latency_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OutboxState {
    pub events: u64,
    pub bytes: u64,
    pub oldest_pending_age_secs: u64,
    pub max_events: u64,
    pub max_bytes: u64,
    /// `ok`, `near` (80 % of a limit) or `full` (new webhooks answered 503).
    pub back_pressure: &'static str,
    pub minutes: Vec<Option<OutboxMinute>>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct OutboxMinute {
    pub events: u64,
    pub oldest_age_secs: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StoreState {
    pub disk_bytes: u64,
    pub dedup_keys: u64,
    pub delivered_kept: u64,
    pub delivered_kept_bytes: u64,
    /// Segment damage found when the store was opened, and the records lost in it.
    pub damaged_bytes: u64,
    pub lost_records: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_minutes_keep_the_peak_of_each_minute() {
        let at = |min: u64, sec: u64, outbox: u64| Sample {
            at_ms: (1000 + min) * 60_000 + sec * 1000,
            outbox,
            oldest_age_secs: outbox * 10,
            ..Sample::default()
        };
        let history = [at(0, 0, 9), at(58, 1, 3), at(58, 30, 7), at(59, 5, 2)];
        let minutes = outbox_minutes(&history, at(59, 10, 1));
        assert_eq!(minutes.len(), MINUTES);
        assert!(minutes[0].is_some_and(|m| m.events == 9));
        assert!(minutes[1].is_none());
        assert_eq!(minutes[MINUTES - 2].map(|m| m.events), Some(7));
        assert_eq!(minutes[MINUTES - 2].map(|m| m.oldest_age_secs), Some(70));
        assert_eq!(minutes[MINUTES - 1].map(|m| m.events), Some(2));
    }
}
