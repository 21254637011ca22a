//! Every metric the relay exports, defined once: names, help texts, labels and buckets, registered
//! into a registry of one `Application`'s own.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use super::{EventClock, History};

/// Latency buckets of the `202` answer (seconds): dominated by the group-commit fsync.
const ACCEPT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Receive → broker-confirm buckets (seconds): from a healthy broker to an hours-long outage.
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0, 21600.0,
];

/// The registry and its handles, shared by every clone of one `Metrics`.
pub(super) struct Inner {
    pub(super) registry: Registry,
    pub(super) accepted: IntCounterVec,
    pub(super) by_format: IntCounterVec,
    pub(super) duplicate: IntCounterVec,
    pub(super) rejected: IntCounterVec,
    pub(super) accept_latency: Histogram,
    pub(super) delivery_latency: Histogram,
    pub(super) outbox_events: IntGauge,
    pub(super) outbox_bytes: IntGauge,
    pub(super) oldest_pending_age: Gauge,
    pub(super) dead: IntGauge,
    pub(super) dedup_keys: IntGauge,
    pub(super) delivered_bytes: IntGauge,
    pub(super) disk_bytes: IntGauge,
    pub(super) damaged_bytes: IntGauge,
    pub(super) lost_records: IntGauge,
    pub(super) published: IntCounter,
    pub(super) confirms: IntCounter,
    pub(super) nacks: IntCounter,
    pub(super) returns: IntCounter,
    pub(super) unreadable: IntCounter,
    pub(super) reconnects: IntCounter,
    pub(super) broker_connected: IntGauge,
    pub(super) store_writable: IntGauge,
    pub(super) max_outbox_events: IntGauge,
    pub(super) max_outbox_bytes: IntGauge,
    pub(super) last_event: GaugeVec,
    /// Each connection's [`EventClock`], by name: locked when rules are prepared and at a
    /// scrape, never on the webhook path (which holds its clock directly).
    pub(super) clocks: Mutex<HashMap<String, EventClock>>,
    pub(super) broker_node: IntGaugeVec,
    pub(super) broker_connections: IntCounterVec,
    pub(super) connections_closed: IntCounterVec,
    pub(super) admin_auth_failures: IntCounterVec,
    /// Serialises scrapes: the publisher counters are caught up by difference.
    pub(super) scrape: Mutex<()>,
    /// The last hour per connection, for the status page.
    pub(super) history: History,
}

/// Registers `metric`, whose definition is a constant of this file, in a registry that holds no
/// names yet: neither can fail (a unit test builds every metric).
fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(registry, metric)
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("valid metric definition"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("valid metric definition"),
    )
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric definition");
    register(registry, metric)
}

impl Inner {
    /// A fresh registry with every relay metric.
    pub(super) fn new() -> Self {
        let r = Registry::new();
        let oldest = Gauge::new(
            "relay_outbox_oldest_pending_age_seconds",
            "Age of the oldest event waiting for the broker (0 when none waits)",
        )
        .expect("valid metric definition");
        let oldest = register(&r, oldest);
        let last_event = GaugeVec::new(
            Opts::new(
                "relay_connection_last_event_timestamp_seconds",
                "When the connection last had an event accepted or recognised as a duplicate \
             (unix seconds; absent until its first event since start)",
            ),
            &["connection"],
        )
        .expect("valid metric definition");
        let last_event = register(&r, last_event);
        // The standard `process_*` series (resident memory, CPU seconds, open and max fds,
        // threads, start time), read from /proc at each scrape: what grows with the dedup window
        // is alerted against the process's memory limit (docs/deploy.md, Capacity).
        r.register(Box::new(ProcessCollector::for_self()))
            .expect("metric registered once");
        Inner {
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
            connections_closed: counter_vec(
                &r,
                "relay_connections_closed_total",
                "Webhook connections the relay closed: a request head not complete within \
                 server.client_timeout (head_timeout), or the longest idle one when every slot \
                 was taken (evicted_idle)",
                &["reason"],
            ),
            admin_auth_failures: counter_vec(
                &r,
                "relay_admin_auth_failures_total",
                "Wrong admin tokens (API bearer or status page login): refused after a check, or \
                 throttled (answered 429 without one)",
                &["outcome"],
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
            unreadable: counter(
                &r,
                "relay_outbox_unreadable_total",
                "Pending records that could not be read from their segment (a flipped bit, a torn \
                 header): moved to the dead letters with the reason",
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
                register(&r, metric)
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
        }
    }
}
