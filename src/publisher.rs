//! Moves outbox entries to RabbitMQ with publisher confirms, owning the reconnect loop.
//!
//! lapin's automatic recovery is deliberately not used: it is young, and `basic_publish` can hang
//! when the server goes away (amqp-rs/lapin#409). Every broker call is bounded by
//! `settings.timeout` instead, and any failure drops the connection and restarts from the oldest
//! outbox entry. That gives at-least-once delivery: a resent event keeps its `message_id`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::AmqpSettings;
use crate::event::EventMeta;
use crate::metrics::Metrics;
use crate::store::{Pending, Store, StoreError};
use crate::topology;

/// Shown in the RabbitMQ management UI.
const CONNECTION_NAME: &str = "whaticket-relay";
const APP_ID: &str = "whaticket-relay";
/// Upper bound between looks at the outbox and at the connection status when idle.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// `Rfc3339Timestamp`'s Display fails (and `to_string` would panic) from the year 10000 on.
const MAX_RFC3339_SECS: u64 = 253_402_300_800;

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
    /// Confirmed and routed: removed from the outbox.
    pub acked: AtomicU64,
    /// Negatively confirmed: kept and retried.
    pub nacked: AtomicU64,
    /// Confirmed but returned as unroutable: moved to the dead letters.
    pub returned: AtomicU64,
    /// Connection attempts after the first one.
    pub reconnects: AtomicU64,
}

impl PublisherStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Handle on the running publisher task.
pub struct PublisherHandle {
    connected: watch::Receiver<bool>,
    stats: Arc<PublisherStats>,
    task: JoinHandle<()>,
}

impl PublisherHandle {
    /// True while a channel to the broker is open and the topology is declared.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows [`PublisherHandle::is_connected`] as it changes.
    pub fn connected_watch(&self) -> watch::Receiver<bool> {
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
    let (connected_tx, connected) = watch::channel(false);
    let stats = Arc::new(PublisherStats::default());
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
pub(crate) fn properties(meta: &EventMeta) -> BasicProperties {
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
    let received_at = Duration::from_millis(meta.received_at_ms);
    if received_at.as_secs() < MAX_RFC3339_SECS {
        if let Some(time) = UNIX_EPOCH.checked_add(received_at) {
            let text = humantime::format_rfc3339_millis(time).to_string();
            headers.insert(
                "received_at".into(),
                AMQPValue::LongString(LongString::from(text)),
            );
        }
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(meta.id.to_string().into())
        .with_type(meta.kind.as_str().into())
        .with_timestamp(meta.received_at_ms / 1000)
        .with_app_id(APP_ID.into())
        .with_headers(headers)
}

/// Events of one ticket must reach the broker in order; this identifies the ticket.
fn ticket_of(meta: &EventMeta) -> Option<(&str, Option<i64>, i64)> {
    meta.ticket_id
        .map(|ticket| (meta.connection.as_str(), meta.company_id, ticket))
}

/// The loaded part of the outbox: waiting events in seq order and those awaiting a confirm.
///
/// Pure bookkeeping, no I/O: it decides what may be published next so that at most
/// `max_in_flight` events are unconfirmed and a ticket never has two events in flight.
#[derive(Debug)]
pub(crate) struct Window {
    max_in_flight: usize,
    next_after: Option<u64>,
    waiting: VecDeque<Pending>,
    in_flight: HashMap<u64, Pending>,
    /// Tickets with an event in flight, keyed by ticket id then `(connection, company)`, so a
    /// lookup needs no allocation.
    busy: HashMap<i64, Vec<(String, Option<i64>)>>,
}

impl Window {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            next_after: None,
            waiting: VecDeque::new(),
            in_flight: HashMap::new(),
            busy: HashMap::new(),
        }
    }

    /// Highest seq loaded so far: where the next outbox read continues.
    pub(crate) fn next_after(&self) -> Option<u64> {
        self.next_after
    }

    /// Whether another outbox read is worth it.
    pub(crate) fn wants_more(&self) -> bool {
        self.waiting.len() < self.max_in_flight
    }

    /// How many to read so that up to one full window waits behind the one in flight.
    pub(crate) fn refill_limit(&self) -> usize {
        self.max_in_flight
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Appends a batch read with `seq > next_after`; anything already seen is ignored.
    pub(crate) fn load(&mut self, batch: Vec<Pending>) {
        for pending in batch {
            if self.next_after.is_some_and(|after| pending.seq <= after) {
                continue;
            }
            self.next_after = Some(pending.seq);
            self.waiting.push_back(pending);
        }
    }

    fn is_busy(&self, meta: &EventMeta) -> bool {
        match ticket_of(meta) {
            Some((connection, company, ticket)) => self
                .busy
                .get(&ticket)
                .is_some_and(|held| held.iter().any(|(c, co)| c == connection && *co == company)),
            None => false,
        }
    }

    fn hold(&mut self, meta: &EventMeta) {
        if let Some((connection, company, ticket)) = ticket_of(meta) {
            self.busy
                .entry(ticket)
                .or_default()
                .push((connection.to_owned(), company));
        }
    }

    fn release(&mut self, meta: &EventMeta) {
        if let Some((connection, company, ticket)) = ticket_of(meta) {
            if let Some(held) = self.busy.get_mut(&ticket) {
                held.retain(|(c, co)| !(c == connection && *co == company));
                if held.is_empty() {
                    self.busy.remove(&ticket);
                }
            }
        }
    }

    /// Takes the oldest waiting event that may go now and marks it in flight.
    ///
    /// A waiting event whose ticket is not busy is necessarily that ticket's oldest waiting
    /// event (an older one would have been taken first and made the ticket busy), so checking
    /// the busy set alone keeps each ticket in seq order; events without a ticket never wait.
    pub(crate) fn next_publishable(&mut self) -> Option<Pending> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let index = self
            .waiting
            .iter()
            .position(|p| !self.is_busy(&p.event.meta))?;
        let pending = self.waiting.remove(index)?;
        self.hold(&pending.event.meta);
        self.in_flight.insert(pending.seq, pending.clone());
        Some(pending)
    }

    /// The broker settled `seq` for good (acked or returned): its ticket may move on.
    pub(crate) fn confirmed(&mut self, seq: u64) -> Option<Pending> {
        let pending = self.in_flight.remove(&seq)?;
        self.release(&pending.event.meta);
        Some(pending)
    }

    /// The broker refused `seq`: it goes back among the waiting, in seq order, so it is the
    /// next of its ticket to go.
    pub(crate) fn nacked(&mut self, seq: u64) -> Option<&Pending> {
        let pending = self.confirmed(seq)?;
        let index = self.waiting.partition_point(|p| p.seq < pending.seq);
        self.waiting.insert(index, pending);
        self.waiting.get(index)
    }
}

/// What a confirm meant for the outbox.
enum Settled {
    /// Routed and confirmed: remove from the outbox.
    Delivered,
    /// Unroutable: already moved to the dead letters.
    DeadLettered,
    /// Refused: back in the window for a later retry.
    Nacked,
}

type ConfirmResult = Result<Result<Confirmation, lapin::Error>, tokio::time::error::Elapsed>;
type ConfirmOutcome = (u64, ConfirmResult);

async fn await_confirm(seq: u64, confirm: PublisherConfirm, limit: Duration) -> ConfirmOutcome {
    (seq, timeout(limit, confirm).await)
}

struct Publisher {
    store: Store,
    settings: AmqpSettings,
    shutdown: CancellationToken,
    connected: watch::Sender<bool>,
    stats: Arc<PublisherStats>,
    metrics: Metrics,
}

impl Publisher {
    async fn run(self) {
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        let mut first_attempt = true;
        loop {
            if !first_attempt {
                PublisherStats::bump(&self.stats.reconnects);
            }
            first_attempt = false;

            let connected = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                connected = self.connect() => connected,
            };
            match connected {
                Ok((conn, channel)) => {
                    backoff.reset();
                    self.connected.send_replace(true);
                    tracing::info!(url = %self.settings.url.masked(), "connected to RabbitMQ");
                    let result = self.session(&conn, &channel).await;
                    self.connected.send_replace(false);
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "RabbitMQ session ended");
                    }
                    if self.shutdown.is_cancelled() {
                        self.close(conn, channel).await;
                        break;
                    }
                    // Dropping the handles lets lapin close what is left of the connection
                    // without us waiting on a broker that may be gone.
                    drop(channel);
                    drop(conn);
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
                        url = %self.settings.url.masked(),
                        retry_in = ?delay,
                        "cannot reach RabbitMQ"
                    );
                    if !self.pause(delay).await {
                        break;
                    }
                }
            }
        }
        self.connected.send_replace(false);
        tracing::info!("publisher stopped");
    }

    /// Sleeps unless shutdown comes first; false when shutting down.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), PublishError> {
        let limit = self.settings.timeout;
        let properties =
            ConnectionProperties::default().with_connection_name(CONNECTION_NAME.into());
        let conn = bounded(
            limit,
            "connect",
            Connection::connect(self.settings.url.expose(), properties),
        )
        .await?;
        let channel = bounded(limit, "channel.open", conn.create_channel()).await?;
        bounded(
            limit,
            "confirm.select",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        bounded(
            limit,
            "topology declare",
            topology::declare(&channel, &self.settings),
        )
        .await?;
        Ok((conn, channel))
    }

    async fn close(&self, conn: Connection, channel: Channel) {
        let limit = self.settings.timeout;
        if let Err(e) = bounded(
            limit,
            "channel.close",
            channel.close(200, "shutdown".into()),
        )
        .await
        {
            tracing::debug!(error = %e, "closing the channel");
        }
        if let Err(e) = bounded(
            limit,
            "connection.close",
            conn.close(200, "shutdown".into()),
        )
        .await
        {
            tracing::debug!(error = %e, "closing the connection");
        }
    }

    /// Publishes until shutdown (Ok, after draining) or a broker/outbox failure (Err).
    async fn session(&self, conn: &Connection, channel: &Channel) -> Result<(), PublishError> {
        let limit = self.settings.timeout;
        let exchange =
            topology::short(self.settings.exchange.as_str()).map_err(amqp("basic.publish"))?;
        let mut window = Window::new(self.settings.max_in_flight);
        let mut in_flight = FuturesUnordered::new();
        // True once a read came back short: no point reading again until something is appended.
        let mut drained = false;
        // Set after a nack: publishing pauses so a struggling broker is not hammered.
        let mut hold_until: Option<Instant> = None;
        let mut nack_backoff =
            Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        // `interval` panics on zero; validated settings never have it, hand-built ones might.
        let mut tick = tokio::time::interval(IDLE_TICK.min(limit).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            if self.shutdown.is_cancelled() {
                return self.drain(&mut window, &mut in_flight).await;
            }

            if !drained && window.wants_more() {
                let limit = window.refill_limit();
                let batch = self.store.pending_after(window.next_after(), limit)?;
                drained = batch.len() < limit;
                window.load(batch);
            }

            if hold_until.is_some_and(|until| until <= Instant::now()) {
                hold_until = None;
            }
            if hold_until.is_none() {
                while let Some(pending) = window.next_publishable() {
                    let meta = &pending.event.meta;
                    let Ok(routing_key) = ShortString::try_new(meta.routing_key()) else {
                        // Cannot happen with validated connection names; never let one event
                        // wedge the outbox if it does.
                        tracing::error!(id = %meta.id, kind = %meta.kind, "routing key longer than 255 bytes");
                        self.store
                            .dead_letter(pending.seq, "routing key longer than 255 bytes")?;
                        window.confirmed(pending.seq);
                        continue;
                    };
                    let options = BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    };
                    let publish = channel.basic_publish(
                        exchange.clone(),
                        routing_key,
                        options,
                        &pending.event.body,
                        properties(meta),
                    );
                    let confirm = bounded(limit, "basic.publish", publish).await?;
                    PublisherStats::bump(&self.stats.published);
                    in_flight.push(await_confirm(pending.seq, confirm, limit));
                }
            }

            let mut outcomes = Vec::new();
            // Unbiased on purpose: a steady stream of confirms must not starve the wake-ups
            // that let the window refill.
            tokio::select! {
                _ = self.shutdown.cancelled() => continue,
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    outcomes.push(outcome);
                    // Settle whatever else is ready too, so the outbox removal is batched.
                    while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                        outcomes.push(outcome);
                    }
                }
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(Instant::now)), if hold_until.is_some() => {}
                _ = self.store.appended() => drained = false,
                _ = tick.tick() => {
                    drained = false;
                    // An idle session sends nothing, so a dead broker would otherwise only show
                    // with the next publish.
                    if !conn.status().connected() || !channel.status().connected() {
                        return Err(PublishError::ConnectionLost);
                    }
                }
            }

            let mut delivered = Vec::new();
            let mut failure = None;
            for (seq, outcome) in outcomes {
                match self.settle(&mut window, seq, outcome) {
                    Ok(Settled::Delivered) => {
                        delivered.push(seq);
                        nack_backoff.reset();
                    }
                    Ok(Settled::DeadLettered) => {}
                    Ok(Settled::Nacked) => {
                        hold_until = Some(Instant::now() + nack_backoff.next_delay());
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Confirmed ones are removed even when the session is about to end, so a
            // reconnect resends as little as possible.
            if !delivered.is_empty() {
                self.store.remove_delivered(&delivered)?;
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// Applies one confirm to the window, the stats and (for returns) the dead letters.
    fn settle(
        &self,
        window: &mut Window,
        seq: u64,
        outcome: ConfirmResult,
    ) -> Result<Settled, PublishError> {
        let confirmation = outcome
            .map_err(|_| PublishError::Timeout("publisher confirm"))?
            .map_err(amqp("publisher confirm"))?;
        match confirmation {
            Confirmation::Ack(None) => {
                if let Some(pending) = window.confirmed(seq) {
                    self.metrics.delivered(pending.event.meta.received_at_ms);
                }
                PublisherStats::bump(&self.stats.acked);
                Ok(Settled::Delivered)
            }
            Confirmation::Ack(Some(returned)) => {
                // With `mandatory`, the broker acks a message no queue took after returning it:
                // it is stored nowhere, so it must not count as delivered.
                let reason = format!(
                    "unroutable: {} {}",
                    returned.reply_code, returned.reply_text
                );
                if let Some(pending) = window.confirmed(seq) {
                    let meta = &pending.event.meta;
                    tracing::error!(
                        id = %meta.id,
                        kind = %meta.kind,
                        routing_key = %meta.routing_key(),
                        reason = %reason,
                        "RabbitMQ could not route the event; moved to the dead letters"
                    );
                }
                self.store.dead_letter(seq, &reason)?;
                PublisherStats::bump(&self.stats.returned);
                Ok(Settled::DeadLettered)
            }
            Confirmation::Nack(_) => {
                if let Some(pending) = window.nacked(seq) {
                    let meta = &pending.event.meta;
                    tracing::warn!(id = %meta.id, kind = %meta.kind, "RabbitMQ refused the event; retrying");
                }
                PublisherStats::bump(&self.stats.nacked);
                Ok(Settled::Nacked)
            }
            Confirmation::NotRequested => Err(PublishError::NotConfirmed),
        }
    }

    /// Shutdown: nothing new goes out; confirms already under way get up to one timeout.
    async fn drain<F>(
        &self,
        window: &mut Window,
        in_flight: &mut FuturesUnordered<F>,
    ) -> Result<(), PublishError>
    where
        F: Future<Output = ConfirmOutcome>,
    {
        let mut delivered = Vec::new();
        let deadline = tokio::time::sleep(self.settings.timeout);
        tokio::pin!(deadline);
        while !in_flight.is_empty() {
            tokio::select! {
                outcome = in_flight.next() => {
                    let Some((seq, outcome)) = outcome else { break };
                    match self.settle(window, seq, outcome) {
                        Ok(Settled::Delivered) => delivered.push(seq),
                        // Nacked ones stay in the outbox for the next run.
                        Ok(Settled::DeadLettered | Settled::Nacked) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "confirms lost during shutdown; they will be resent");
                            break;
                        }
                    }
                }
                _ = &mut deadline => {
                    tracing::warn!(
                        unconfirmed = in_flight.len(),
                        "shutdown timeout with confirms outstanding; they will be resent"
                    );
                    break;
                }
            }
        }
        if !delivered.is_empty() {
            self.store.remove_delivered(&delivered)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lapin::options::BasicGetOptions;

    use super::*;
    use crate::event::{Event, EventId, Kind};
    use crate::topology::tests::{connect, unique_settings, with_cleanup};

    fn meta(id: u8, kind: Kind, ticket: Option<i64>) -> EventMeta {
        EventMeta {
            id: EventId([id; 16]),
            kind,
            connection: "main".to_owned(),
            action: Some("update".to_owned()),
            company_id: Some(7),
            ticket_id: ticket,
            from_me: Some(false),
            received_at_ms: 1_700_000_000_123,
        }
    }

    fn pending(seq: u64, meta: EventMeta) -> Pending {
        Pending {
            seq,
            event: Event {
                meta,
                body: Bytes::from(format!("{{\"seq\":{seq}}}")),
            },
        }
    }

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
        assert_eq!(headers.len(), 6);
        assert_eq!(long_string(&headers["connection"]), "main");
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
            ..meta(1, Kind::Other, None)
        };
        let props = properties(&m);
        let headers = props.headers().as_ref().expect("headers").inner();
        let mut keys: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["connection", "received_at"]);
    }

    #[test]
    fn window_holds_a_ticket_while_its_event_is_in_flight() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, meta(2, Kind::Message, Some(5))),
            pending(3, meta(3, Kind::Message, Some(6))),
            pending(4, meta(4, Kind::Status, None)),
            pending(5, meta(5, Kind::Message, Some(5))),
        ]);
        assert_eq!(window.next_after(), Some(5));

        let taken: Vec<u64> = std::iter::from_fn(|| window.next_publishable())
            .map(|p| p.seq)
            .collect();
        assert_eq!(
            taken,
            [1, 3, 4],
            "ticket 5 waits behind seq 1; other tickets and no-ticket events go"
        );
        assert_eq!(window.in_flight(), 3);

        assert_eq!(window.confirmed(1).map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert!(
            window.next_publishable().is_none(),
            "seq 5 waits behind seq 2"
        );
        window.confirmed(2);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(5));
        assert_eq!(window.waiting(), 0);
    }

    #[test]
    fn window_tells_tickets_of_other_connections_and_companies_apart() {
        let mut window = Window::new(10);
        let mut other_connection = meta(2, Kind::Message, Some(5));
        other_connection.connection = "second".to_owned();
        let mut other_company = meta(3, Kind::Message, Some(5));
        other_company.company_id = Some(8);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, other_connection),
            pending(3, other_company),
        ]);
        let taken: Vec<u64> = std::iter::from_fn(|| window.next_publishable())
            .map(|p| p.seq)
            .collect();
        assert_eq!(taken, [1, 2, 3]);
    }

    #[test]
    fn window_caps_what_is_in_flight() {
        let mut window = Window::new(2);
        window.load(
            (1..=4)
                .map(|seq| pending(seq, meta(seq as u8, Kind::Tags, None)))
                .collect(),
        );
        assert!(!window.wants_more());
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert!(window.next_publishable().is_none());
        assert!(!window.wants_more(), "a full window is still waiting");
        window.confirmed(2);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(3));
        assert!(window.wants_more());
    }

    #[test]
    fn window_puts_a_nacked_event_back_in_seq_order_first() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, meta(2, Kind::Message, None)),
            pending(3, meta(3, Kind::Message, Some(5))),
        ]);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert_eq!(window.nacked(1).map(|p| p.seq), Some(1));
        assert_eq!(window.waiting(), 2);
        assert_eq!(
            window.next_publishable().map(|p| p.seq),
            Some(1),
            "the refused event goes again first"
        );
        assert!(
            window.next_publishable().is_none(),
            "seq 3 still waits behind it"
        );
    }

    #[test]
    fn window_ignores_entries_already_loaded() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, None)),
            pending(2, meta(2, Kind::Message, None)),
        ]);
        window.load(vec![
            pending(2, meta(2, Kind::Message, None)),
            pending(3, meta(3, Kind::Message, None)),
        ]);
        assert_eq!(window.waiting(), 3);
        assert_eq!(window.next_after(), Some(3));
    }

    fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::open(&crate::store::tests::settings(
            &dir.path().join("db"),
            Duration::from_secs(3600),
        ))
        .expect("open store")
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn start_does_not_wait_for_an_unreachable_broker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(&dir);
        let mut settings = unique_settings("down");
        settings.url = crate::config::AmqpUrl::new("amqp://guest:guest@127.0.0.1:1/%2f");
        settings.reconnect_min = Duration::from_millis(20);
        settings.reconnect_max = Duration::from_millis(40);
        let shutdown = CancellationToken::new();
        let handle = start(store, settings, shutdown.clone());
        let stats = handle.stats();
        eventually("reconnect attempts", || {
            stats.reconnects.load(Ordering::Relaxed) >= 2
        })
        .await;
        assert!(!handle.is_connected());
        shutdown.cancel();
        timeout(Duration::from_secs(5), handle.stopped())
            .await
            .expect("stops promptly");
    }

    async fn wait_connected(handle: &PublisherHandle) {
        timeout(
            Duration::from_secs(15),
            handle.connected_watch().wait_for(|c| *c),
        )
        .await
        .expect("publisher connects")
        .expect("publisher alive");
    }

    async fn append(store: &Store, meta: &EventMeta, n: usize) {
        let event = Event {
            meta: meta.clone(),
            body: Bytes::from(format!("{{\"n\":{n}}}")),
        };
        store.append(event).await.expect("append");
    }

    async fn get(
        channel: &Channel,
        settings: &AmqpSettings,
        kind: Kind,
    ) -> Option<lapin::message::Delivery> {
        let queue = topology::queue_name(settings, kind);
        let mut delivery = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")?
            .delivery;
        // Quorum queues add their own delivery counter; everything else must be ours.
        if let Some(headers) = delivery.properties.headers().clone() {
            let mut ours = FieldTable::default();
            for (key, value) in headers.inner() {
                if key.as_str() != "x-delivery-count" {
                    ours.insert(key.clone(), value.clone());
                }
            }
            delivery.properties = delivery.properties.with_headers(ours);
        }
        Some(delivery)
    }

    #[tokio::test]
    async fn publishes_in_order_and_dead_letters_unroutable_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(&dir);
        let mut settings = unique_settings("publisher");
        settings.max_in_flight = 4;
        let admin = connect(&settings).await;
        with_cleanup(&admin, &settings, async {
            let shutdown = CancellationToken::new();
            let handle = start(store.clone(), settings.clone(), shutdown.clone());
            wait_connected(&handle).await;

            // Without its binding nothing takes `other.*`: the broker returns those.
            let channel = admin.create_channel().await.expect("channel");
            channel
                .queue_unbind(
                    topology::queue_name(&settings, Kind::Other).as_str().into(),
                    settings.exchange.as_str().into(),
                    topology::binding_key(Kind::Other).as_str().into(),
                    FieldTable::default(),
                )
                .await
                .expect("unbind other");

            let events = [
                meta(1, Kind::Message, Some(9)),
                meta(2, Kind::Message, Some(9)),
                meta(3, Kind::Status, Some(9)),
                meta(4, Kind::Other, None),
            ];
            for (n, m) in events.iter().enumerate() {
                append(&store, m, n).await;
            }

            eventually("an empty outbox", || store.stats().outbox == 0).await;
            let stats = handle.stats();
            assert_eq!(stats.published.load(Ordering::Relaxed), 4);
            assert_eq!(stats.acked.load(Ordering::Relaxed), 3);
            assert_eq!(stats.returned.load(Ordering::Relaxed), 1);
            assert_eq!(stats.nacked.load(Ordering::Relaxed), 0);

            let dead = store.dead_list(10).expect("dead list");
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].event.meta, events[3]);
            assert_eq!(dead[0].reason, "unroutable: 312 NO_ROUTE");

            for (n, expected) in events[..3].iter().enumerate() {
                let delivery = get(&channel, &settings, expected.kind)
                    .await
                    .unwrap_or_else(|| panic!("event {n} missing"));
                assert_eq!(delivery.data, format!("{{\"n\":{n}}}").into_bytes());
                assert_eq!(delivery.routing_key.as_str(), expected.routing_key());
                assert_eq!(delivery.exchange.as_str(), settings.exchange);
                assert_eq!(delivery.properties, properties(expected), "event {n}");
            }
            assert!(get(&channel, &settings, Kind::Message).await.is_none());
            assert!(get(&channel, &settings, Kind::Other).await.is_none());

            shutdown.cancel();
            timeout(Duration::from_secs(15), handle.stopped())
                .await
                .expect("publisher stops");
            assert_eq!(store.stats().outbox, 0);
        })
        .await;
    }

    #[tokio::test]
    async fn reconnects_and_redeclares_after_a_channel_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(&dir);
        let mut settings = unique_settings("reconnect");
        settings.reconnect_min = Duration::from_millis(50);
        settings.reconnect_max = Duration::from_millis(200);
        let admin = connect(&settings).await;
        with_cleanup(&admin, &settings, async {
            let shutdown = CancellationToken::new();
            let handle = start(store.clone(), settings.clone(), shutdown.clone());
            wait_connected(&handle).await;

            // Publishing to a missing exchange makes the broker close the publisher's channel.
            let channel = admin.create_channel().await.expect("channel");
            channel
                .exchange_delete(
                    settings.exchange.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await
                .expect("delete exchange");
            let event = meta(1, Kind::Media, Some(3));
            append(&store, &event, 0).await;

            let stats = handle.stats();
            eventually("a reconnect", || {
                stats.reconnects.load(Ordering::Relaxed) >= 1
            })
            .await;
            eventually("an empty outbox", || store.stats().outbox == 0).await;
            wait_connected(&handle).await;
            assert!(
                stats.published.load(Ordering::Relaxed) >= 2,
                "the event was sent again"
            );
            assert_eq!(store.stats().dead, 0);

            let delivery = get(&channel, &settings, Kind::Media)
                .await
                .expect("event delivered after reconnect");
            assert_eq!(delivery.properties, properties(&event));
            assert!(get(&channel, &settings, Kind::Media).await.is_none());

            shutdown.cancel();
            timeout(Duration::from_secs(15), handle.stopped())
                .await
                .expect("publisher stops");
        })
        .await;
    }
}
