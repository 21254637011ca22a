//! The publisher and the topology against the real RabbitMQ, on a store of their own (no HTTP).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use whaticket_relay::config::{AmqpSettings, AmqpUrl, QueueType, Settings};
use whaticket_relay::event::{Change, Event, EventId, EventMeta, Kind};
use whaticket_relay::publish::topology::{
    self, dead_exchange_name, dead_queue_name, declare, queue_name,
};
use whaticket_relay::publish::{properties, start, PublisherHandle};
use whaticket_relay::store::Store;

fn meta(id: u8, kind: Kind, ticket: Option<i64>) -> EventMeta {
    EventMeta {
        id: EventId([id; 16]),
        kind,
        connection: "main".to_owned(),
        action: Some("update".to_owned()),
        format: None,
        company_id: Some(7),
        ticket_id: ticket,
        from_me: Some(false),
        received_at_ms: 1_700_000_000_123,
        change: Some(Change::Updated),
        body: Default::default(),
    }
}

const UNREACHABLE: &str =
    "RabbitMQ is not reachable at amqp://127.0.0.1:5672 — start it with `rabbitmq-server -detached`";

/// Settings with an exchange and prefix no other test run uses.
fn unique_settings(tag: &str) -> AmqpSettings {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let suffix = format!("{tag}-{}-{nanos}", std::process::id());
    let mut settings = Settings::default().amqp;
    settings.exchange = format!("relay-test-x-{suffix}");
    settings.queue_prefix = format!("relay-test-q-{suffix}");
    settings.timeout = Duration::from_secs(5);
    settings
}

async fn connect(settings: &AmqpSettings) -> Connection {
    let connect = Connection::connect(settings.url.expose(), ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(conn)) => conn,
        _ => panic!("{UNREACHABLE}"),
    }
}

/// Deletes the queues and exchanges `settings` name; missing ones are fine (deleting is
/// idempotent on RabbitMQ).
async fn delete_all(conn: &Connection, settings: &AmqpSettings) {
    let channel = conn.create_channel().await.expect("channel for cleanup");
    let mut queues: Vec<String> = Kind::ALL.iter().map(|k| queue_name(settings, *k)).collect();
    queues.push(dead_queue_name(settings));
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("delete queue");
    }
    for exchange in [settings.exchange.clone(), dead_exchange_name(settings)] {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("delete exchange");
    }
}

/// Runs `test`, then removes what it declared even when it panicked.
async fn with_cleanup<F: std::future::Future<Output = ()>>(
    conn: &Connection,
    settings: &AmqpSettings,
    test: F,
) {
    use futures_util::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
    delete_all(conn, settings).await;
    let _ = conn.close(200, "done".into()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn declare_is_idempotent_against_rabbitmq() {
    let settings = unique_settings("topology");
    assert_eq!(settings.queue_type, QueueType::Quorum);
    let conn = connect(&settings).await;
    with_cleanup(&conn, &settings, async {
        let channel = conn.create_channel().await.expect("channel");
        declare(&channel, &settings).await.expect("first declare");
        declare(&channel, &settings)
            .await
            .expect("second declare is a no-op");

        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let mut queues: Vec<String> = Kind::ALL
            .iter()
            .map(|k| queue_name(&settings, *k))
            .collect();
        queues.push(dead_queue_name(&settings));
        for queue in queues {
            channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
                .unwrap_or_else(|e| panic!("queue {queue} missing: {e}"));
        }
        let passive_exchange = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in [settings.exchange.clone(), dead_exchange_name(&settings)] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    passive_exchange,
                    FieldTable::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("exchange {exchange} missing: {e}"));
        }

        // They really are quorum queues: asking for classic ones must be refused.
        let mut classic = settings.clone();
        classic.queue_type = QueueType::Classic;
        let other = conn.create_channel().await.expect("channel");
        assert!(
            declare(&other, &classic).await.is_err(),
            "queue type mismatch must fail"
        );
    })
    .await;
}

/// What docs/deploy.md tells operators: every relay must declare the same group size, and the
/// size of existing queues cannot be changed by declaring another (nor by leaving it unset).
#[tokio::test]
async fn initial_group_size_must_match_the_existing_queues() {
    let mut settings = unique_settings("group");
    settings.quorum_initial_group_size = Some(3);
    let conn = connect(&settings).await;
    with_cleanup(&conn, &settings, async {
        let channel = conn.create_channel().await.expect("channel");
        // The same size again is a no-op: the cluster tests declare through two nodes.
        declare(&channel, &settings).await.expect("declare");
        for size in [Some(5), None] {
            let mut other = settings.clone();
            other.quorum_initial_group_size = size;
            let channel = conn.create_channel().await.expect("channel");
            let err = declare(&channel, &other)
                .await
                .expect_err("another size must be refused")
                .to_string();
            assert!(
                err.contains("PRECONDITION_FAILED") && err.contains("x-quorum-initial-group-size"),
                "{size:?}: {err}"
            );
        }
    })
    .await;
}

fn open_store(dir: &tempfile::TempDir) -> Store {
    let mut storage = Settings::default().storage;
    storage.path = dir.path().join("db");
    storage.cache_capacity_bytes = 4 * 1024 * 1024;
    Store::open(&storage).expect("open store")
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
    settings.url = AmqpUrl::new("amqp://guest:guest@127.0.0.1:1/%2f");
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
        handle.connected_watch().wait_for(|c| c.is_some()),
    )
    .await
    .expect("publisher connects")
    .expect("publisher alive");
}

async fn append(store: &Store, meta: &EventMeta, n: usize) {
    let event = Event {
        meta: meta.clone(),
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        earlier_id: None,
        wa_id: None,
    };
    store.append(event).await.expect("append");
}

/// Without its binding nothing takes `other.*`: the broker returns those.
async fn unbind_other(channel: &Channel, settings: &AmqpSettings) {
    channel
        .queue_unbind(
            topology::queue_name(settings, Kind::Other).as_str().into(),
            settings.exchange.as_str().into(),
            topology::binding_key(Kind::Other).as_str().into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind other");
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
async fn publishes_in_order_and_resends_a_returned_event_once_the_topology_is_declared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir);
    let mut settings = unique_settings("publisher");
    settings.max_in_flight = 4;
    let admin = connect(&settings).await;
    with_cleanup(&admin, &settings, async {
        let shutdown = CancellationToken::new();
        let handle = start(store.clone(), settings.clone(), shutdown.clone());
        wait_connected(&handle).await;

        let channel = admin.create_channel().await.expect("channel");
        unbind_other(&channel, &settings).await;

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
        assert_eq!(
            stats.published.load(Ordering::Relaxed),
            5,
            "the returned one twice"
        );
        assert_eq!(stats.acked.load(Ordering::Relaxed), 4);
        assert_eq!(stats.returned.load(Ordering::Relaxed), 1);
        assert_eq!(stats.nacked.load(Ordering::Relaxed), 0);
        assert_eq!(stats.reconnects.load(Ordering::Relaxed), 0, "same session");
        assert!(store.dead_list(10).expect("dead list").is_empty());

        for (n, expected) in events.iter().enumerate() {
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

/// Many confirms in flight, so the broker acks several at once (`multiple`): a return must resend
/// the event it belongs to, whichever confirm lapin attached it to. Were it matched to the wrong
/// one, the returned event would count as delivered (missing from its queue) and the other would
/// be sent twice.
#[tokio::test]
async fn returns_among_many_in_flight_resend_exactly_the_returned_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir);
    let mut settings = unique_settings("returns");
    settings.max_in_flight = 128;
    let admin = connect(&settings).await;
    with_cleanup(&admin, &settings, async {
        let channel = admin.create_channel().await.expect("channel");
        // Declared by the first session; unbound before anything is stored.
        let shutdown = CancellationToken::new();
        let handle = start(store.clone(), settings.clone(), shutdown.clone());
        wait_connected(&handle).await;
        unbind_other(&channel, &settings).await;

        let mut unroutable = Vec::new();
        for n in 0..240u8 {
            let kind = if n % 12 == 5 {
                Kind::Other
            } else {
                Kind::Message
            };
            let mut m = meta(n, kind, Some(i64::from(n)));
            m.id = EventId([n, 0xa5, n, 0x5a, n, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, n]);
            if kind == Kind::Other {
                unroutable.push(m.id);
            }
            // Unacknowledged appends in parallel: the publisher gets them in large batches.
            let event = Event {
                meta: m,
                body: Bytes::from(format!("{{\"n\":{n}}}")),
                earlier_id: None,
                wa_id: None,
            };
            let store = store.clone();
            tokio::spawn(async move { store.append(event).await.expect("append") });
        }
        let stats = handle.stats();
        eventually("every event confirmed as routed", || {
            stats.acked.load(Ordering::Relaxed) == 240 && store.stats().outbox == 0
        })
        .await;
        assert!(
            store.dead_list(10).expect("dead list").is_empty(),
            "nothing dead-lettered: the topology was declared again"
        );
        let returned = stats.returned.load(Ordering::Relaxed);
        assert!(
            (1..=unroutable.len() as u64).contains(&returned),
            "{returned} returns for {} events sent while unbound",
            unroutable.len()
        );
        let mut seen = std::collections::HashMap::new();
        for kind in [Kind::Message, Kind::Other] {
            while let Some(delivery) = get(&channel, &settings, kind).await {
                let id = delivery
                    .properties
                    .message_id()
                    .clone()
                    .expect("message_id")
                    .to_string();
                *seen.entry((kind, id)).or_insert(0) += 1;
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        assert_eq!(seen.len(), 240, "each event in its queue once");
        for id in &unroutable {
            assert!(
                seen.contains_key(&(Kind::Other, id.to_string())),
                "returned event {id} never delivered"
            );
        }
        shutdown.cancel();
        timeout(Duration::from_secs(15), handle.stopped())
            .await
            .expect("publisher stops");
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
