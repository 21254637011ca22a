//! One broker session: publish from the window with confirms, hand the outcomes back to the
//! store in batches, and drain on shutdown (`connection` opens and closes it).

use std::future::Future;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{Channel, Confirmation, Connection, PublisherConfirm};
use tokio::time::{timeout, Instant};

use super::returns::{Returns, Verdict};
use super::window::Window;
use super::IDLE_TICK;
use super::{
    amqp, bounded, properties, topology, Backoff, Outbox, PublishError, Publisher, PublisherStats,
};
use crate::clock::now_ms;
use crate::store::{Next, Settlement};

/// Publishes polled together at most: enough that lapin's I/O thread writes many per wake-up,
/// few enough that the frames serialized at once stay within its send buffer (32 frames).
const PUBLISH_BATCH: usize = 32;

/// What a confirm meant for the outbox.
enum Settled {
    /// Routed and confirmed: handed back as delivered.
    Delivered,
    /// Unroutable: back in the window, to go once the topology is declared again.
    Returned,
    /// Unroutable even after that: handed back as a dead letter.
    DeadLettered,
    /// Refused: back in the window for a later retry.
    Nacked,
}

type ConfirmResult = Result<Result<Confirmation, lapin::Error>, tokio::time::error::Elapsed>;
type ConfirmOutcome = (u64, ConfirmResult);

pub(super) async fn await_confirm(
    seq: u64,
    confirm: PublisherConfirm,
    limit: Duration,
) -> ConfirmOutcome {
    (seq, timeout(limit, confirm).await)
}

impl Publisher {
    /// Publishes until shutdown (Ok, after draining) or a broker/outbox failure (Err). What is
    /// unconfirmed when it ends stays in `outbox` for the next session.
    pub(super) async fn session(
        &self,
        outbox: &mut Outbox,
        conn: &Connection,
        channel: &Channel,
    ) -> Result<(), PublishError> {
        let result = self.publish_loop(outbox, conn, channel).await;
        outbox.window.requeue_in_flight();
        result
    }

    async fn publish_loop(
        &self,
        outbox: &mut Outbox,
        conn: &Connection,
        channel: &Channel,
    ) -> Result<(), PublishError> {
        let limit = self.settings.timeout;
        let exchange =
            topology::short(self.settings.exchange.as_str()).map_err(amqp("basic.publish"))?;
        let window = &mut outbox.window;
        let disk_until = &mut outbox.disk_until;
        let mut in_flight = FuturesUnordered::new();
        let mut returns = Returns::new(self.settings.declare_topology);
        // True once the store had nothing new: no point asking again until something is appended.
        let mut drained = false;
        // Set after a nack: publishing pauses so a struggling broker is not hammered.
        let mut hold_until: Option<Instant> = None;
        let mut nack_backoff =
            Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        // Since when every confirm has been a nack. A channel opened while a quorum queue had
        // no leader was seen (RabbitMQ 3.10, tests/api/cluster.rs) to go on nacking after the
        // election; a new session, on the next node, clears that.
        let mut refused_since: Option<Instant> = None;
        // `interval` panics on zero; validated settings never have it, hand-built ones might.
        let mut tick = tokio::time::interval(IDLE_TICK.min(limit).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            if self.shutdown.is_cancelled() {
                return self.drain(window, &mut in_flight, &mut returns).await;
            }

            self.catch_up(window).await?;
            while !drained && window.wants_more() {
                drained = self.refill(window, disk_until).await?;
            }

            if hold_until.is_some_and(|until| until <= Instant::now()) {
                hold_until = None;
            }
            if returns.must_declare() {
                bounded(
                    limit,
                    "topology declare",
                    topology::declare(channel, &self.settings),
                )
                .await?;
                returns.declared();
                tracing::warn!("RabbitMQ returned events as unroutable; exchange, queues and bindings declared again");
            }
            while hold_until.is_none() {
                let mut batch = Vec::new();
                while batch.len() < PUBLISH_BATCH {
                    let Some(pending) = window.next_publishable() else {
                        break;
                    };
                    let meta = &pending.event.meta;
                    let Ok(routing_key) = ShortString::try_new(meta.routing_key()) else {
                        // Cannot happen with validated connection names; never let one event
                        // wedge the outbox if it does.
                        tracing::error!(id = %meta.id, kind = %meta.kind, "routing key longer than 255 bytes");
                        window.confirmed(pending.seq);
                        let reason = "routing key longer than 255 bytes".to_owned();
                        self.store
                            .settle_later(Settlement {
                                dead: vec![(pending, reason)],
                                ..Settlement::default()
                            })
                            .await?;
                        continue;
                    };
                    batch.push((pending, routing_key));
                }
                if batch.is_empty() {
                    break;
                }
                // Polled together, each publish queues its frames (and takes its delivery
                // tag) in order on its first poll, and lapin's I/O thread writes them all in
                // one wake-up: awaited one by one, every event cost a round trip to that
                // thread (about 1.3 context switches per event).
                let publishes = batch.iter().map(|(pending, routing_key)| {
                    let options = BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    };
                    channel.basic_publish(
                        exchange.clone(),
                        routing_key.clone(),
                        options,
                        &pending.event.body,
                        properties(&pending.event.meta),
                    )
                });
                let published = bounded(limit, "basic.publish", async {
                    Ok::<_, lapin::Error>(futures_util::future::join_all(publishes).await)
                })
                .await?;
                // One clock read per batch: the event index's "published" step (I16).
                let now = now_ms();
                for ((pending, _), confirm) in batch.iter().zip(published) {
                    let confirm = confirm.map_err(amqp("basic.publish"))?;
                    PublisherStats::bump(&self.stats.published);
                    window.published(pending.seq, now);
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
                    // Settle whatever else is ready too, so what goes back to the store is batched.
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

            let mut settlement = Settlement::default();
            let mut failure = None;
            returns.note(confirmations(&outcomes));
            for (seq, outcome) in outcomes {
                match self.settle(window, seq, outcome, &mut returns, &mut settlement) {
                    Ok(Settled::Delivered) => {
                        nack_backoff.reset();
                        refused_since = None;
                    }
                    Ok(Settled::Returned | Settled::DeadLettered) => {}
                    Ok(Settled::Nacked) => {
                        let now = Instant::now();
                        let since = *refused_since.get_or_insert(now);
                        if now.duration_since(since) > limit {
                            failure = Some(PublishError::Refused(limit));
                            break;
                        }
                        hold_until = Some(now + nack_backoff.next_delay());
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            // Confirmed ones are handed back even when the session is about to end, so a
            // reconnect resends as little as possible; one command per batch of confirms.
            self.store.settle_later(settlement).await?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// Applies one confirm to the window, the stats and the returns.
    fn settle(
        &self,
        window: &mut Window,
        seq: u64,
        outcome: ConfirmResult,
        returns: &mut Returns,
        settlement: &mut Settlement,
    ) -> Result<Settled, PublishError> {
        let confirmation = outcome
            .map_err(|_| PublishError::Timeout("publisher confirm"))?
            .map_err(amqp("publisher confirm"))?;
        match confirmation {
            Confirmation::Ack(_) => {
                let verdict = window
                    .in_flight_event(seq)
                    .and_then(|pending| returns.on_ack(&pending.event.meta.id));
                // With `mandatory`, the broker acks a message no queue took after returning it:
                // it is stored nowhere, so it must not count as delivered.
                // Settled for good (delivered or dead): its first publish time goes back with
                // it, for the event index's timeline.
                if !matches!(verdict, Some(Verdict::Resend)) {
                    settlement
                        .published
                        .extend(window.published_at(seq).map(|at| (seq, at)));
                }
                match verdict {
                    None => {
                        if let Some(pending) = window.confirmed(seq) {
                            self.metrics.delivered(pending.event.meta.received_at_ms);
                        }
                        settlement.delivered.push(seq);
                        PublisherStats::bump(&self.stats.acked);
                        Ok(Settled::Delivered)
                    }
                    Some(Verdict::Resend) => {
                        PublisherStats::bump(&self.stats.returned);
                        if let Some(pending) = window.nacked(seq) {
                            let meta = &pending.event.meta;
                            tracing::warn!(
                                id = %meta.id,
                                kind = %meta.kind,
                                routing_key = %meta.routing_key(),
                                "RabbitMQ could not route the event; resending it once the topology is declared again"
                            );
                        }
                        Ok(Settled::Returned)
                    }
                    Some(Verdict::Dead(reason)) => {
                        PublisherStats::bump(&self.stats.returned);
                        if let Some(pending) = window.confirmed(seq) {
                            let meta = &pending.event.meta;
                            tracing::error!(
                                id = %meta.id,
                                kind = %meta.kind,
                                routing_key = %meta.routing_key(),
                                reason = %reason,
                                "RabbitMQ could not route the event after the topology was declared again; moved to the dead letters"
                            );
                            settlement.dead.push((pending, reason));
                        }
                        Ok(Settled::DeadLettered)
                    }
                }
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
        returns: &mut Returns,
    ) -> Result<(), PublishError>
    where
        F: Future<Output = ConfirmOutcome>,
    {
        let mut settlement = Settlement::default();
        let deadline = tokio::time::sleep(self.settings.timeout);
        tokio::pin!(deadline);
        while !in_flight.is_empty() {
            tokio::select! {
                outcome = in_flight.next() => {
                    let Some(item) = outcome else { break };
                    returns.note(confirmations(std::slice::from_ref(&item)));
                    let (seq, outcome) = item;
                    match self.settle(window, seq, outcome, returns, &mut settlement) {
                        // Nacked and returned ones stay in the outbox for the next run.
                        Ok(_) => {}
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
        self.store.settle_later(settlement).await?;
        Ok(())
    }

    /// Takes more into the window: from the store's in-memory hand-off, or from the segments
    /// while it says events are on disk only. True when there was nothing new.
    async fn refill(
        &self,
        window: &mut Window,
        disk_until: &mut Option<u64>,
    ) -> Result<bool, PublishError> {
        let room = window.room();
        if let Some(until) = *disk_until {
            let records = self
                .store
                .read_records(window.next_after(), until, room)
                .await?;
            // A batch ends at the room as well as at the last record: only an empty one says
            // the disk is caught up (the room always admits one record).
            if records.last.is_none() {
                // Caught up with the disk: the hand-off holds everything after `until`.
                *disk_until = None;
            }
            self.load(window, records).await?;
            return Ok(false);
        }
        match self.store.take_new(room) {
            Next::Events(batch) => {
                window.load(batch);
                Ok(false)
            }
            Next::FromDisk { until } => {
                *disk_until = Some(until);
                Ok(false)
            }
            Next::Idle => Ok(true),
        }
    }
}

/// The confirmations among a batch of outcomes (failed ones carry no return).
fn confirmations(outcomes: &[(u64, ConfirmResult)]) -> impl Iterator<Item = &Confirmation> {
    outcomes.iter().filter_map(|(_, outcome)| match outcome {
        Ok(Ok(confirmation)) => Some(confirmation),
        _ => None,
    })
}
