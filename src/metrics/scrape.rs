//! A scrape: the store's and the publisher's state set into the gauges and counters, then the
//! text format; and the per-connection totals the status page reads from the same counters.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use prometheus::TextEncoder;

use super::Metrics;

impl Metrics {
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
            (&inner.unreadable, publisher.unreadable),
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
    /// Pending records moved to the dead letters because they could not be read.
    pub unreadable: u64,
    pub reconnects: u64,
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
