//! Moves stored events to RabbitMQ with publisher confirms, owning the reconnect loop.
//!
//! lapin's automatic recovery is deliberately not used: it is young, and `basic_publish` can hang
//! when the server goes away (amqp-rs/lapin#409). Every broker call is bounded by
//! `settings.timeout` instead, and any failure drops the connection; the next session resends
//! what was unconfirmed. That gives at-least-once delivery: a resent event keeps its `message_id`.
//!
//! Events come from the store's in-memory hand-off (read from the segments only after a restart
//! or when memory overflowed, and a busy ticket's later events when their turn comes: `window`,
//! `backlog`); confirms and dead letters go back to it in batches.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::config::AmqpSettings;
use crate::event::EventMeta;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

mod backlog;
mod connection;
mod lines;
mod returns;
pub use returns::UNROUTABLE;
mod session;
pub mod topology;
mod window;

use window::Window;

/// Shown in the RabbitMQ management UI.
pub(crate) const CONNECTION_NAME: &str = "whaticket-relay";
const APP_ID: &str = "whaticket-relay";
/// Upper bound between looks at the store and at the connection status when idle.
pub(crate) const IDLE_TICK: Duration = Duration::from_secs(1);

/// Why a broker session ended.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ did not answer {0} within the timeout")]
    Timeout(&'static str),
    #[error("RabbitMQ {op} failed: {source}")]
    Amqp {
        op: &'static str,
        #[source]
        source: lapin::Error,
    },
    #[error("the RabbitMQ connection or channel is no longer open")]
    ConnectionLost,
    #[error("RabbitMQ refused every publish for {0:?}; opening a new session")]
    Refused(Duration),
    #[error("RabbitMQ answered a publish without a confirm although confirms are on")]
    NotConfirmed,
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
}

fn amqp(op: &'static str) -> impl FnOnce(lapin::Error) -> PublishError {
    move |source| PublishError::Amqp { op, source }
}

/// Runs a broker call under the timeout, flattening both failure layers.
async fn bounded<T>(
    limit: Duration,
    op: &'static str,
    call: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, PublishError> {
    timeout(limit, call)
        .await
        .map_err(|_| PublishError::Timeout(op))?
        .map_err(amqp(op))
}

/// Counters for metrics and tests; monotonically increasing.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Messages handed to the broker (resends after a reconnect count again).
    pub published: AtomicU64,
    /// Confirmed and routed: handed back to the store as delivered.
    pub acked: AtomicU64,
    /// Negatively confirmed: kept and retried.
    pub nacked: AtomicU64,
    /// Confirmed but returned as unroutable: resent after the topology is declared again, or
    /// moved to the dead letters when returned after that too.
    pub returned: AtomicU64,
    /// Pending records that could not be read from their segment: moved to the dead letters.
    pub unreadable: AtomicU64,
    /// Connection attempts after the first one.
    pub reconnects: AtomicU64,
    /// Unix ms of the last change between connected and not (the start counts as one).
    pub state_since_ms: AtomicU64,
}

impl PublisherStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The broker node a publisher is connected to, as `host:port` (never with credentials); `None`
/// while it is connected to none.
pub type BrokerNode = Option<Arc<str>>;

/// Handle on the running publisher task.
pub struct PublisherHandle {
    connected: watch::Receiver<BrokerNode>,
    stats: Arc<PublisherStats>,
    task: JoinHandle<()>,
}

impl PublisherHandle {
    /// True while a channel to the broker is open and the topology is declared.
    pub fn is_connected(&self) -> bool {
        self.connected.borrow().is_some()
    }

    /// The node in use and, as it changes, the next one (`None` between sessions).
    pub fn connected_watch(&self) -> watch::Receiver<BrokerNode> {
        self.connected.clone()
    }

    pub fn stats(&self) -> Arc<PublisherStats> {
        Arc::clone(&self.stats)
    }

    /// Waits until the task has finished after `shutdown` was cancelled: confirms in flight are
    /// awaited (bounded by the broker timeout) and the connection is closed.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "publisher task failed");
        }
    }
}

/// Starts the publisher on the current tokio runtime.
///
/// Never waits for the broker: the task connects in the background, so the HTTP side can
/// accept (and durably store) events while RabbitMQ is down.
pub fn start(store: Store, settings: AmqpSettings, shutdown: CancellationToken) -> PublisherHandle {
    start_with_metrics(store, settings, shutdown, Metrics::new())
}

/// As [`start`], observing each confirm's receive → confirm latency into `metrics`.
pub fn start_with_metrics(
    store: Store,
    settings: AmqpSettings,
    shutdown: CancellationToken,
    metrics: Metrics,
) -> PublisherHandle {
    let (connected_tx, connected) = watch::channel(None);
    let stats = Arc::new(PublisherStats::default());
    stats
        .state_since_ms
        .store(crate::clock::now_ms(), Ordering::Relaxed);
    let publisher = Publisher {
        store,
        settings,
        shutdown,
        connected: connected_tx,
        stats: Arc::clone(&stats),
        metrics,
    };
    let task = tokio::spawn(publisher.run());
    PublisherHandle {
        connected,
        stats,
        task,
    }
}

/// Exponential delay: `min`, doubling, capped at `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        // A zero delay would turn a dead broker into a busy loop.
        let max = max.max(Duration::from_millis(1));
        let min = min.clamp(Duration::from_millis(1), max);
        Self {
            min,
            max,
            next: min,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// AMQP properties and headers for an event: everything a consumer needs besides the body.
pub fn properties(meta: &EventMeta) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "connection".into(),
        AMQPValue::LongString(LongString::from(meta.connection.as_str())),
    );
    if let Some(action) = &meta.action {
        headers.insert(
            "action".into(),
            AMQPValue::LongString(LongString::from(action.as_str())),
        );
    }
    // What happened, as the routing key's last word says it.
    headers.insert(
        "change".into(),
        AMQPValue::LongString(LongString::from(meta.change().as_str())),
    );
    // The sender's format lets a consumer branch on the body's shape.
    if let Some(format) = meta.format {
        headers.insert(
            "format".into(),
            AMQPValue::LongString(LongString::from(format.as_str())),
        );
    }
    // Whaticket ids are database integers; 64 bits so no id is ever truncated.
    if let Some(company_id) = meta.company_id {
        headers.insert("company_id".into(), AMQPValue::LongLongInt(company_id));
    }
    if let Some(ticket_id) = meta.ticket_id {
        headers.insert("ticket_id".into(), AMQPValue::LongLongInt(ticket_id));
    }
    if let Some(from_me) = meta.from_me {
        headers.insert("from_me".into(), AMQPValue::Boolean(from_me));
    }
    if let Some(text) = crate::clock::rfc3339_millis(meta.received_at_ms) {
        headers.insert(
            "received_at".into(),
            AMQPValue::LongString(LongString::from(text)),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(meta.body.content_type().into())
        .with_message_id(meta.id.hex().as_str().into())
        .with_type(meta.kind.as_str().into())
        .with_timestamp(meta.received_at_ms / 1000)
        .with_app_id(APP_ID.into())
        .with_headers(headers)
}

struct Publisher {
    store: Store,
    settings: AmqpSettings,
    shutdown: CancellationToken,
    connected: watch::Sender<BrokerNode>,
    stats: Arc<PublisherStats>,
    metrics: Metrics,
}

/// What the publisher holds across sessions: the window, and whether the segments must be
/// read (up to which seq) before taking from the store's hand-off again.
struct Outbox {
    window: Window,
    disk_until: Option<u64>,
}

impl Publisher {
    async fn run(self) {
        let mut outbox = Outbox {
            window: Window::new(self.settings.max_in_flight),
            disk_until: None,
        };
        let nodes: Vec<Arc<str>> = self
            .settings
            .nodes()
            .iter()
            .map(|url| Arc::from(url.node()))
            .collect();
        self.metrics.broker_nodes(&nodes);
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        let mut first_attempt = true;
        // Where the next round of connection attempts begins.
        let mut start_at = 0;
        loop {
            if !first_attempt {
                PublisherStats::bump(&self.stats.reconnects);
            }
            first_attempt = false;

            let connected = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                connected = self.connect_any(&nodes, start_at) => connected,
            };
            match connected {
                Ok((index, conn, channel)) => {
                    let node = &nodes[index];
                    backoff.reset();
                    self.set_connected(Some(Arc::clone(node)));
                    self.metrics.broker_node_connected(node, true);
                    tracing::info!(node = %node, "connected to RabbitMQ");
                    let result = self.session(&mut outbox, &conn, &channel).await;
                    self.set_connected(None);
                    self.metrics.broker_node_connected(node, false);
                    if let Err(e) = &result {
                        tracing::warn!(node = %node, error = %e, "RabbitMQ session ended");
                    }
                    if self.shutdown.is_cancelled() {
                        self.close(conn, channel).await;
                        break;
                    }
                    // Dropping the handles lets lapin close what is left of the connection
                    // without us waiting on a broker that may be gone.
                    drop(channel);
                    drop(conn);
                    // The node just lost is the likeliest to be down: the others come first.
                    start_at = (index + 1) % nodes.len();
                    let delay = backoff.next_delay();
                    tracing::warn!(retry_in = ?delay, "reconnecting to RabbitMQ");
                    if !self.pause(delay).await {
                        break;
                    }
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %e,
                        nodes = nodes.len(),
                        retry_in = ?delay,
                        "cannot reach RabbitMQ"
                    );
                    if !self.pause(delay).await {
                        break;
                    }
                }
            }
        }
        self.connected.send_replace(None);
        tracing::info!("publisher stopped");
    }

    /// One round over the nodes from `start_at` on, each under the timeout: the first that
    /// connects and takes the declarations wins, with its index. The error is the last node's.
    async fn connect_any(
        &self,
        nodes: &[Arc<str>],
        start_at: usize,
    ) -> Result<(usize, lapin::Connection, lapin::Channel), PublishError> {
        let urls = self.settings.nodes();
        let mut last = PublishError::ConnectionLost;
        for step in 0..urls.len() {
            let index = (start_at + step) % urls.len();
            match self.connect(&urls[index]).await {
                Ok((conn, channel)) => return Ok((index, conn, channel)),
                Err(e) => {
                    if step + 1 < urls.len() {
                        tracing::warn!(node = %nodes[index], error = %e, "cannot reach RabbitMQ node; trying the next");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Publishes the broker state and stamps when it changed (the status page's "since").
    fn set_connected(&self, node: BrokerNode) {
        self.stats
            .state_since_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
        self.connected.send_replace(node);
    }

    /// Sleeps unless shutdown comes first; false when shutting down.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::window::tests::meta;
    use super::*;
    use crate::event::Kind;

    fn long_string(value: &AMQPValue) -> String {
        match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("expected a long string, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
    }

    #[test]
    fn properties_carry_ids_kind_time_and_headers() {
        let mut m = meta(0xab, Kind::Status, Some(42));
        m.from_me = Some(true);
        m.format = Some(crate::event::Format::Izing);
        m.change = Some(crate::event::Change::Closed);
        let props = properties(&m);
        assert_eq!(*props.delivery_mode(), Some(2));
        assert_eq!(
            props.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            props.message_id().as_ref().map(|s| s.as_str()),
            Some("ab".repeat(16).as_str())
        );
        assert_eq!(props.kind().as_ref().map(|s| s.as_str()), Some("status"));
        assert_eq!(*props.timestamp(), Some(1_700_000_000));
        assert_eq!(
            props.app_id().as_ref().map(|s| s.as_str()),
            Some("whaticket-relay")
        );

        let headers = props.headers().as_ref().expect("headers").inner();
        assert_eq!(headers.len(), 8);
        assert_eq!(long_string(&headers["connection"]), "main");
        assert_eq!(long_string(&headers["change"]), "closed");
        assert_eq!(long_string(&headers["format"]), "izing");
        assert_eq!(long_string(&headers["action"]), "update");
        assert_eq!(headers["company_id"], AMQPValue::LongLongInt(7));
        assert_eq!(headers["ticket_id"], AMQPValue::LongLongInt(42));
        assert_eq!(headers["from_me"], AMQPValue::Boolean(true));
        assert_eq!(
            long_string(&headers["received_at"]),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn properties_leave_out_unknown_headers() {
        let m = EventMeta {
            action: None,
            company_id: None,
            ticket_id: None,
            from_me: None,
            change: None,
            ..meta(1, Kind::Other, None)
        };
        let props = properties(&m);
        let headers = props.headers().as_ref().expect("headers").inner();
        let mut keys: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        // The change is always named, as the routing key's last word: `other` when unknown.
        assert_eq!(keys, ["change", "connection", "received_at"]);
        assert_eq!(long_string(&headers["change"]), "other");
    }

    #[test]
    fn the_content_type_is_the_stored_body_s() {
        let raw = meta(1, Kind::Message, Some(3));
        let cloud = EventMeta {
            body: crate::event::BodyMode::CloudEvents,
            ..raw.clone()
        };
        let content_type = |m: &EventMeta| {
            properties(m)
                .content_type()
                .as_ref()
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(content_type(&raw).as_deref(), Some("application/json"));
        assert_eq!(
            content_type(&cloud).as_deref(),
            Some("application/cloudevents+json")
        );
        // Everything else is the same in both shapes.
        let headers = |m: &EventMeta| properties(m).headers().clone();
        assert_eq!(headers(&raw), headers(&cloud));
    }
}
