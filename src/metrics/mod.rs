//! Prometheus metrics of one `Application`, in a registry of its own, served by `GET /metrics`.
//!
//! A per-application registry (not the process-global one) keeps relays started side by side in
//! one process — the integration tests do that — from counting into each other. Labels carry
//! configured connection names and kinds only, never anything from a body.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::event::{Format, Kind};

pub mod history;
mod registry;
mod scrape;

pub use history::History;
pub use scrape::{ConnectionTotals, PublisherTotals, Snapshot};

use registry::Inner;

/// Label used when a request named a connection that is not configured: the name itself is
/// attacker-chosen text and must not grow the label set.
pub const UNKNOWN_CONNECTION: &str = "<unknown>";

/// Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
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

impl Metrics {
    /// A fresh registry with every relay metric (see `registry.rs`).
    pub fn new() -> Self {
        let inner = Inner::new();
        // Present at 0 from the start, so that rate() and alerts see the first one.
        for reason in ["head_timeout", "evicted_idle"] {
            inner.connections_closed.with_label_values(&[reason]);
        }
        for outcome in ["refused", "throttled"] {
            inner.admin_auth_failures.with_label_values(&[outcome]);
        }
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

    /// The relay closed a webhook connection; `reason` is a fixed word of `http::slots`.
    pub fn connection_closed(&self, reason: &str) {
        self.inner
            .connections_closed
            .with_label_values(&[reason])
            .inc();
    }

    /// A wrong admin token: `outcome` is `refused` (checked) or `throttled` (not checked).
    pub fn admin_auth_failure(&self, outcome: &str) {
        self.inner
            .admin_auth_failures
            .with_label_values(&[outcome])
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

#[cfg(test)]
mod tests {
    use prometheus::TextEncoder;

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
        assert!(!text.contains("connection=\"idle\""), "{text}");

        drop(loja);
        drop(idle);
        let text = metrics.render(&Snapshot::default());
        assert!(
            !text.contains("loja"),
            "removed connection still exported: {text}"
        );
    }

    #[test]
    fn the_process_own_figures_are_exported() {
        let text = Metrics::new().render(&Snapshot::default());
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} missing: {text}"));
            let value: f64 = value.parse().expect("a number");
            // This test process has memory and open files: a zero would be a failed read.
            if name != "process_cpu_seconds_total" {
                assert!(value > 0.0, "{name} {value}");
            }
        }
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
