//! Prometheus metrics of one `Application`, in a registry of its own, served by `GET /metrics`.
//!
//! A per-application registry (not the process-global one) keeps relays started side by side in
//! one process — the integration tests do that — from counting into each other. Labels carry
//! configured connection names and kinds only, never anything from a body.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::event::{Format, Kind};

pub mod history;

pub use history::History;

/// Latency buckets of the `202` answer (seconds): dominated by the group-commit fsync.
const ACCEPT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Receive → broker-confirm buckets (seconds): from a healthy broker to an hours-long outage.
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0, 21600.0,
];

/// Label used when a request named a connection that is not configured: the name itself is
/// attacker-chosen text and must not grow the label set.
pub const UNKNOWN_CONNECTION: &str = "<unknown>";

/// Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    accepted: IntCounterVec,
    by_format: IntCounterVec,
    duplicate: IntCounterVec,
    rejected: IntCounterVec,
    accept_latency: Histogram,
    delivery_latency: Histogram,
    outbox_events: IntGauge,
    outbox_bytes: IntGauge,
    oldest_pending_age: Gauge,
    dead: IntGauge,
    dedup_keys: IntGauge,
    delivered_bytes: IntGauge,
    disk_bytes: IntGauge,
    damaged_bytes: IntGauge,
    lost_records: IntGauge,
    published: IntCounter,
    confirms: IntCounter,
    nacks: IntCounter,
    returns: IntCounter,
    reconnects: IntCounter,
    broker_connected: IntGauge,
    store_writable: IntGauge,
    max_outbox_events: IntGauge,
    max_outbox_bytes: IntGauge,
    last_event: GaugeVec,
    /// Each connection's [`EventClock`], by name: locked when rules are prepared and at a
    /// scrape, never on the webhook path (which holds its clock directly).
    clocks: Mutex<HashMap<String, EventClock>>,
    broker_node: IntGaugeVec,
    broker_connections: IntCounterVec,
    /// Serialises scrapes: the publisher counters are caught up by difference.
    scrape: Mutex<()>,
    /// The last hour per connection, for the status page.
    history: History,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

impl Metrics {
    /// A fresh registry with every relay metric. The definitions are constants of this module
    /// and a new registry holds no names yet, so registration cannot fail (a unit test checks).
    pub fn new() -> Self {
        let r = Registry::new();
        let oldest = Gauge::new(
            "relay_outbox_oldest_pending_age_seconds",
            "Age of the oldest event waiting for the broker (0 when none waits)",
        )
        .expect("valid metric definition");
        r.register(Box::new(oldest.clone()))
            .expect("metric registered once");
        let last_event = GaugeVec::new(
            Opts::new(
                "relay_connection_last_event_timestamp_seconds",
                "When the connection last had an event accepted or recognised as a duplicate \
                 (unix seconds; absent until its first event since start)",
            ),
            &["connection"],
        )
        .expect("valid metric definition");
        r.register(Box::new(last_event.clone()))
            .expect("metric registered once");
        let inner = Inner {
            accepted: counter_vec(
                &r,
                "relay_events_accepted_total",
                "Events stored and answered 202",
                &["connection", "kind"],
            ),
            by_format: counter_vec(
                &r,
                "relay_events_by_format_total",
                "Events stored, by the sender's format",
                &["connection", "format"],
            ),
            duplicate: counter_vec(
                &r,
                "relay_events_duplicate_total",
                "Events answered 200 as duplicates",
                &["connection", "kind"],
            ),
            rejected: counter_vec(
                &r,
                "relay_events_rejected_total",
                "Webhook requests refused, by reason",
                &["connection", "reason"],
            ),
            accept_latency: histogram(
                &r,
                "relay_accept_latency_seconds",
                "Time to answer 202 (body read, verify, parse, fsync)",
                ACCEPT_BUCKETS,
            ),
            delivery_latency: histogram(
                &r,
                "relay_delivery_latency_seconds",
                "Time from receipt to the broker's confirm",
                DELIVERY_BUCKETS,
            ),
            outbox_events: gauge(&r, "relay_outbox_events", "Events waiting for the broker"),
            outbox_bytes: gauge(
                &r,
                "relay_outbox_bytes",
                "Bytes of the events waiting for the broker",
            ),
            oldest_pending_age: oldest,
            dead: gauge(
                &r,
                "relay_dead_letters",
                "Events the broker refused, kept for `dead replay`",
            ),
            dedup_keys: gauge(&r, "relay_dedup_keys", "Dedup keys held"),
            delivered_bytes: gauge(
                &r,
                "relay_delivered_kept_bytes",
                "Bytes of delivered events kept for `replay`",
            ),
            disk_bytes: gauge(&r, "relay_store_disk_bytes", "Bytes the store uses on disk"),
            damaged_bytes: gauge(
                &r,
                "relay_store_damaged_bytes",
                "Bytes of segment files found damaged (no whole record) when the store was opened",
            ),
            lost_records: gauge(
                &r,
                "relay_store_lost_records",
                "Records that were in those damaged stretches, lost (each logged as an error)",
            ),
            published: counter(
                &r,
                "relay_publish_total",
                "Messages handed to the broker (resends count again)",
            ),
            confirms: counter(
                &r,
                "relay_publish_confirms_total",
                "Publishes the broker confirmed and routed",
            ),
            nacks: counter(
                &r,
                "relay_publish_nacks_total",
                "Publishes the broker refused (retried)",
            ),
            returns: counter(
                &r,
                "relay_publish_returns_total",
                "Publishes returned unroutable (resent after declaring the topology again)",
            ),
            reconnects: counter(
                &r,
                "relay_broker_reconnects_total",
                "Broker connection attempts after the first",
            ),
            broker_connected: gauge(
                &r,
                "relay_broker_connected",
                "1 while the publisher is connected to the broker, else 0",
            ),
            store_writable: gauge(
                &r,
                "relay_store_writable",
                "1 when the store took a write probe at this scrape, else 0 (webhooks get 503)",
            ),
            max_outbox_events: gauge(
                &r,
                "relay_outbox_max_events",
                "storage.max_outbox: events waiting beyond which webhooks get 503",
            ),
            max_outbox_bytes: gauge(
                &r,
                "relay_outbox_max_bytes",
                "storage.max_outbox_bytes: bytes waiting beyond which webhooks get 503",
            ),
            last_event,
            clocks: Mutex::new(HashMap::new()),
            broker_node: {
                let metric = IntGaugeVec::new(
                    Opts::new(
                        "relay_broker_node_connected",
                        "1 for the broker node (host:port) the publisher is connected to, else 0",
                    ),
                    &["node"],
                )
                .expect("valid metric definition");
                r.register(Box::new(metric.clone()))
                    .expect("metric registered once");
                metric
            },
            broker_connections: counter_vec(
                &r,
                "relay_broker_connections_total",
                "Sessions opened with each broker node (host:port)",
                &["node"],
            ),
            scrape: Mutex::new(()),
            history: History::default(),
            registry: r,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn accepted(&self, connection: &str, kind: Kind, latency: Duration) {
        self.inner
            .accepted
            .with_label_values(&[connection, kind.as_str()])
            .inc();
        self.inner.accept_latency.observe(latency.as_secs_f64());
    }

    /// Which Whaticket-family senders post to a connection (accepted events only).
    pub fn by_format(&self, connection: &str, format: Format) {
        self.inner
            .by_format
            .with_label_values(&[connection, format.as_str()])
            .inc();
    }

    pub fn duplicate(&self, connection: &str, kind: Kind) {
        self.inner
            .duplicate
            .with_label_values(&[connection, kind.as_str()])
            .inc();
    }

    /// `reason` is one of the fixed error codes of `IngestError`.
    pub fn rejected(&self, connection: &str, reason: &str) {
        self.inner
            .rejected
            .with_label_values(&[connection, reason])
            .inc();
    }

    /// The configured broker nodes: each shows as not connected until a session opens.
    pub fn broker_nodes(&self, nodes: &[impl AsRef<str>]) {
        for node in nodes {
            self.inner
                .broker_node
                .with_label_values(&[node.as_ref()])
                .set(0);
            self.inner
                .broker_connections
                .with_label_values(&[node.as_ref()]);
        }
    }

    /// A session with `node` (`host:port`, never a URL) opened or ended.
    pub fn broker_node_connected(&self, node: &str, connected: bool) {
        self.inner
            .broker_node
            .with_label_values(&[node])
            .set(i64::from(connected));
        if connected {
            self.inner
                .broker_connections
                .with_label_values(&[node])
                .inc();
        }
    }

    /// The clock a connection's prepared rules keep and [`EventClock::touch`] per event; the
    /// same one for the same name across config reloads.
    pub fn event_clock(&self, connection: &str) -> EventClock {
        let mut clocks = self
            .inner
            .clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        clocks.entry(connection.to_owned()).or_default().clone()
    }

    /// The broker confirmed an event received at `received_at_ms`.
    pub fn delivered(&self, received_at_ms: u64) {
        let age_ms = crate::clock::now_ms().saturating_sub(received_at_ms);
        self.inner.delivery_latency.observe(age_ms as f64 / 1000.0);
    }

    /// The per-minute rings the webhook path counts into beside these counters.
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// Rejections by reason and accepted events by sender format, per connection, since start.
    pub fn per_connection(&self) -> BTreeMap<String, ConnectionTotals> {
        let mut out: BTreeMap<String, ConnectionTotals> = BTreeMap::new();
        for (vec, second, rejected) in [
            (&self.inner.rejected, "reason", true),
            (&self.inner.by_format, "format", false),
        ] {
            for family in prometheus::core::Collector::collect(vec) {
                for metric in family.get_metric() {
                    let label = |name: &str| {
                        metric
                            .get_label()
                            .iter()
                            .find(|l| l.name() == name)
                            .map(|l| l.value().to_owned())
                    };
                    let (Some(connection), Some(key)) = (label("connection"), label(second)) else {
                        continue;
                    };
                    let count = metric.get_counter().get_value() as u64;
                    let totals = out.entry(connection).or_default();
                    let map = if rejected {
                        &mut totals.rejections
                    } else {
                        &mut totals.formats
                    };
                    *map.entry(key).or_default() += count;
                }
            }
        }
        out
    }

    /// Sum (seconds) and count of the receipt → confirm latencies observed since start.
    pub fn delivery_latency_totals(&self) -> (f64, u64) {
        let h = &self.inner.delivery_latency;
        (h.get_sample_sum(), h.get_sample_count())
    }

    /// Sets the gauges and catches the publisher's counters up from `snapshot`, then renders
    /// the text format.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let inner = &self.inner;
        // A poisoned lock only means an earlier scrape panicked; the data is still counters.
        let _guard = inner.scrape.lock().unwrap_or_else(|e| e.into_inner());
        inner.outbox_events.set(clamp(snapshot.outbox_events));
        inner.outbox_bytes.set(clamp(snapshot.outbox_bytes));
        inner
            .oldest_pending_age
            .set(snapshot.oldest_pending_age.as_secs_f64());
        inner.dead.set(clamp(snapshot.dead_letters));
        inner.dedup_keys.set(clamp(snapshot.dedup_keys));
        inner.delivered_bytes.set(clamp(snapshot.delivered_bytes));
        inner.disk_bytes.set(clamp(snapshot.disk_bytes));
        inner.damaged_bytes.set(clamp(snapshot.damaged_bytes));
        inner.lost_records.set(clamp(snapshot.lost_records));
        inner
            .broker_connected
            .set(i64::from(snapshot.broker_connected));
        inner.store_writable.set(i64::from(snapshot.store_writable));
        inner
            .max_outbox_events
            .set(clamp(snapshot.max_outbox_events));
        inner.max_outbox_bytes.set(clamp(snapshot.max_outbox_bytes));
        self.export_clocks();
        // The publisher keeps its own atomics; counters here catch up by the difference.
        let publisher = &snapshot.publisher;
        for (counter, total) in [
            (&inner.published, publisher.published),
            (&inner.confirms, publisher.confirms),
            (&inner.nacks, publisher.nacks),
            (&inner.returns, publisher.returns),
            (&inner.reconnects, publisher.reconnects),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        match TextEncoder::new().encode_to_string(&inner.registry.gather()) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode metrics");
                String::new()
            }
        }
    }
}

impl Metrics {
    /// Sets each connection's last-event gauge; a connection no prepared rules hold any more
    /// (removed by a reload) loses its clock and its series.
    fn export_clocks(&self) {
        let inner = &self.inner;
        let mut clocks = inner.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        clocks.retain(|name, clock| {
            if Arc::strong_count(&clock.0) == 1 {
                // Absent when it never had an event: nothing to remove then.
                let _ = inner.last_event.remove_label_values(&[name]);
                return false;
            }
            let at_ms = clock.0.load(Relaxed);
            if at_ms > 0 {
                inner
                    .last_event
                    .with_label_values(&[name])
                    .set(at_ms as f64 / 1000.0);
            }
            true
        });
    }
}

/// When one connection last had an event, in unix ms (0: none since start). Cloned into the
/// connection's prepared rules, so the webhook path stamps it with one atomic store, no lock.
#[derive(Clone, Debug, Default)]
pub struct EventClock(Arc<AtomicU64>);

impl EventClock {
    pub fn touch(&self, at_ms: u64) {
        self.0.fetch_max(at_ms, Relaxed);
    }
}

/// The store's and the publisher's state at a scrape, read by whoever serves `/metrics`; this
/// module knows neither of them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub outbox_events: u64,
    pub outbox_bytes: u64,
    /// Zero when nothing waits.
    pub oldest_pending_age: Duration,
    pub dead_letters: u64,
    pub dedup_keys: u64,
    pub delivered_bytes: u64,
    pub disk_bytes: u64,
    /// Found damaged when the store was opened, and the records lost with it.
    pub damaged_bytes: u64,
    pub lost_records: u64,
    pub publisher: PublisherTotals,
    pub broker_connected: bool,
    /// The store took a write probe at this scrape.
    pub store_writable: bool,
    /// `storage.max_outbox` and `max_outbox_bytes`, so alerts can compare the outbox with them.
    pub max_outbox_events: u64,
    pub max_outbox_bytes: u64,
}

/// What [`Metrics::per_connection`] gives for one connection.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ConnectionTotals {
    pub rejections: BTreeMap<String, u64>,
    pub formats: BTreeMap<String, u64>,
}

/// The publisher's running totals since start.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublisherTotals {
    pub published: u64,
    pub confirms: u64,
    pub nacks: u64,
    pub returns: u64,
    pub reconnects: u64,
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_registries_do_not_share_counts() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.accepted("loja", Kind::Message, Duration::from_millis(3));
        a.rejected(UNKNOWN_CONNECTION, "unauthorized");
        let text = TextEncoder::new()
            .encode_to_string(&a.inner.registry.gather())
            .unwrap();
        assert!(
            text.contains(r#"relay_events_accepted_total{connection="loja",kind="message"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"relay_events_rejected_total{connection="<unknown>",reason="unauthorized"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("relay_accept_latency_seconds_count 1"),
            "{text}"
        );
        a.broker_nodes(&["rabbit-0:5672", "rabbit-1:5672"]);
        a.broker_node_connected("rabbit-1:5672", true);
        let text = TextEncoder::new()
            .encode_to_string(&a.inner.registry.gather())
            .unwrap();
        for line in [
            r#"relay_broker_node_connected{node="rabbit-0:5672"} 0"#,
            r#"relay_broker_node_connected{node="rabbit-1:5672"} 1"#,
            r#"relay_broker_connections_total{node="rabbit-0:5672"} 0"#,
            r#"relay_broker_connections_total{node="rabbit-1:5672"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        a.broker_node_connected("rabbit-1:5672", false);
        let text = TextEncoder::new()
            .encode_to_string(&a.inner.registry.gather())
            .unwrap();
        assert!(
            text.contains(r#"relay_broker_node_connected{node="rabbit-1:5672"} 0"#),
            "{text}"
        );
        let other = TextEncoder::new()
            .encode_to_string(&b.inner.registry.gather())
            .unwrap();
        assert!(!other.contains("loja"), "{other}");
    }

    #[test]
    fn a_connections_clock_is_exported_once_stamped_and_dropped_with_its_rules() {
        let metrics = Metrics::new();
        let name = "relay_connection_last_event_timestamp_seconds";
        let loja = metrics.event_clock("loja");
        let idle = metrics.event_clock("idle");
        let text = metrics.render(&Snapshot::default());
        assert!(!text.contains(&format!("{name}{{")), "no event yet: {text}");

        loja.touch(1_700_000_000_500);
        loja.touch(1_600_000_000_000); // an older stamp from a slower worker does not go back
        metrics.event_clock("loja").touch(1_700_000_000_250);
        let text = metrics.render(&Snapshot::default());
        assert!(
            text.contains(&format!("{name}{{connection=\"loja\"}} 1700000000.5")),
            "{text}"
        );
        assert!(!text.contains("idle"), "{text}");

        drop(loja);
        drop(idle);
        let text = metrics.render(&Snapshot::default());
        assert!(
            !text.contains("loja"),
            "removed connection still exported: {text}"
        );
    }

    #[test]
    fn state_gauges_follow_the_snapshot() {
        let metrics = Metrics::new();
        let text = metrics.render(&Snapshot {
            broker_connected: true,
            store_writable: false,
            max_outbox_events: 1000,
            max_outbox_bytes: 4096,
            ..Snapshot::default()
        });
        for line in [
            "relay_broker_connected 1",
            "relay_store_writable 0",
            "relay_outbox_max_events 1000",
            "relay_outbox_max_bytes 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing: {text}");
        }
    }

    #[test]
    fn per_connection_totals_group_reasons_and_formats() {
        let m = Metrics::new();
        m.rejected("loja", "unauthorized");
        m.rejected("loja", "unauthorized");
        m.rejected("loja", "bad_request");
        m.by_format("loja", Format::Unknown);
        m.by_format("outra", Format::Unknown);
        let totals = m.per_connection();
        assert_eq!(totals["loja"].rejections["unauthorized"], 2);
        assert_eq!(totals["loja"].rejections["bad_request"], 1);
        assert_eq!(totals["loja"].formats[Format::Unknown.as_str()], 1);
        assert!(totals["outra"].rejections.is_empty());
    }
}
