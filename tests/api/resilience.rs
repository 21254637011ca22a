//! Broker outages and restarts: every event answered 202 is delivered, dedup survives restarts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use whaticket_relay::config::{AmqpUrl, Settings};
use whaticket_relay::event::Kind;

use crate::helpers::*;

fn unique_event(i: usize) -> String {
    format!(
        r#"{{"acao":"load-test","seq":{i},"chamadoId":{},"companyId":1}}"#,
        i % 7
    )
}

async fn wait_status(app: &TestApp, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = app.get(path).await.status().as_u16();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answered {status}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn broker_proxy() -> TcpProxy {
    TcpProxy::start("127.0.0.1:5672".parse::<SocketAddr>().unwrap()).await
}

#[tokio::test]
async fn broker_outage_still_accepts_and_delivers_after() {
    let proxy = broker_proxy().await;
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    proxy.cut();
    wait_status(&app, "/readyz", 503).await;
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("broker"),
        "{body}"
    );

    let total = 40;
    for i in 0..total {
        let response = app.post_hook(unique_event(i)).await;
        assert_eq!(response.status(), 202, "event {i} during the outage");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.store.stats().outbox > 0,
        "events cannot have been confirmed through a cut proxy"
    );

    proxy.restore();
    wait_status(&app, "/readyz", 200).await;
    let messages = app.take_n(&app.queue(Kind::Other), total).await;
    let seqs: HashSet<u64> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.delivery.data).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), total, "every accepted event is delivered");
    app.wait_outbox_empty().await;
}

#[tokio::test]
async fn events_of_one_ticket_keep_their_order() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let total = 60;
    let mut posts = Vec::new();
    for i in 0..total {
        // Sequential posts: acceptance order is the order the ticket's events happened in.
        let response = app.post_hook(unique_event(i)).await;
        assert_eq!(response.status(), 202);
        posts.push(i);
    }
    let messages = app.take_n(&app.queue(Kind::Other), total).await;
    let mut last_per_ticket = std::collections::HashMap::new();
    for m in messages {
        let v: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
        let (seq, ticket) = (v["seq"].as_u64().unwrap(), v["chamadoId"].as_u64().unwrap());
        if let Some(prev) = last_per_ticket.insert(ticket, seq) {
            assert!(prev < seq, "ticket {ticket}: {seq} arrived after {prev}");
        }
    }
}

/// A relay started again on a stopped one's settings and data dir, once it is ready.
async fn restart(settings: Settings, data_dir: Arc<TempDir>) -> TestApp {
    let app = spawn_app_with(Options {
        settings,
        data_dir: Some(data_dir),
    })
    .await;
    app.wait_ready().await;
    app
}

/// The fixtures [`outbox_of_three`] posts, one per kind queue.
const THREE: [&str; 3] = ["message-start.json", "status-open.json", "tag-sync.json"];

/// A relay whose broker is cut, holding [`THREE`] in its outbox; `proxy.restore()` lets it reach
/// the broker.
async fn outbox_of_three() -> (TestApp, TcpProxy) {
    let proxy = broker_proxy().await;
    proxy.cut();
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    let app = spawn_app_with(options).await;
    for name in THREE {
        assert_eq!(app.post_hook(fixture(name)).await.status(), 202, "{name}");
    }
    assert_eq!(app.store.stats().outbox, 3);
    (app, proxy)
}

#[tokio::test]
async fn restart_keeps_dedup_and_outbox() {
    let (app, proxy) = outbox_of_three().await;
    let (settings, data_dir) = app.stop().await;

    proxy.restore();
    let app = restart(settings, data_dir).await;
    // Dedup survived the restart.
    assert_eq!(
        app.post_hook(fixture("status-open.json")).await.status(),
        200
    );
    // The outbox survived it and drains now.
    app.take(&app.queue(Kind::Message)).await;
    app.take(&app.queue(Kind::Status)).await;
    app.take(&app.queue(Kind::Tags)).await;
    app.wait_outbox_empty().await;
}

/// The relay of [`outbox_of_three`] stopped, its middle record (of [`THREE`]) damaged on disk by
/// `damage` (given the segment's bytes and where that record's body lies), then started again
/// with the broker in reach: the records around it are delivered, and so is one accepted after
/// the restart; the damaged one is a dead letter with its reason, counted in the metrics.
/// Returns the dead letter and the restarted relay.
async fn restart_on_a_damaged_pending_record(
    damage: impl FnOnce(&mut Vec<u8>, usize),
) -> (whaticket_relay::store::DeadLetter, TestApp) {
    let (app, proxy) = outbox_of_three().await;
    let (settings, data_dir) = app.stop().await;

    let segments = settings.storage.path.join("segments");
    let mut files: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files.pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let body = fixture(THREE[1]);
    let at = bytes
        .windows(body.len())
        .position(|w| w == body.as_slice())
        .expect("the body is stored as received");
    damage(&mut bytes, at);
    std::fs::write(&file, &bytes).unwrap();

    proxy.restore();
    let app = restart(settings, data_dir).await;
    app.take(&app.queue(Kind::Message)).await;
    app.take(&app.queue(Kind::Tags)).await;
    app.wait_dead(1, Duration::from_secs(20)).await;
    app.wait_outbox_empty().await;
    // Publishing goes on after it.
    assert_eq!(app.post_hook(unique_event(1)).await.status(), 202);
    app.take(&app.queue(Kind::Other)).await;
    assert_eq!(app.queue_len(&app.queue(Kind::Status)).await, 0);

    let stats = app.store.stats();
    assert_eq!(stats.damaged.lost_records, 0, "{stats:?}");
    assert!(stats.damaged.bytes > body.len() as u64, "{stats:?}");
    let text = app.metrics_text().await;
    for (name, want) in [
        ("relay_outbox_unreadable_total", 1.0),
        ("relay_dead_letters", 1.0),
        ("relay_store_lost_records", 0.0),
        ("relay_store_damaged_bytes", stats.damaged.bytes as f64),
    ] {
        assert_eq!(
            crate::ops::sample(&text, name),
            Some(want),
            "{name}: {text}"
        );
    }
    let mut letters = app.store.dead_list(10).unwrap();
    assert_eq!(letters.len(), 1);
    (letters.pop().unwrap(), app)
}

/// One flipped bit in the body of an acknowledged record amid others: after a restart it is a
/// dead letter holding what was read of it (its event, one bit off), with the reason.
#[tokio::test]
async fn a_pending_record_with_a_flipped_bit_is_dead_lettered_and_the_rest_delivered() {
    let body = fixture(THREE[1]);
    let (letter, _app) =
        restart_on_a_damaged_pending_record(|bytes, at| bytes[at + body.len() / 2] ^= 0x01).await;
    assert!(letter.reason.contains("checksum"), "{}", letter.reason);
    assert_eq!(letter.event.meta.kind, Kind::Status);
    assert_eq!(letter.event.body.len(), body.len());
    assert_ne!(letter.event.body[..], body[..]);
}

/// A torn frame header (its length overwritten) on an acknowledged record amid others: after a
/// restart it is a dead letter with its whole event and the reason.
#[tokio::test]
async fn a_pending_record_with_a_torn_header_is_dead_lettered_and_the_rest_delivered() {
    let (letter, _app) = restart_on_a_damaged_pending_record(|bytes, _| {
        // The second frame starts after the first: [len: u32 LE][crc: u32 LE][payload].
        let first = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        let second = 8 + first;
        bytes[second..second + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
    })
    .await;
    assert!(letter.reason.contains("length"), "{}", letter.reason);
    assert_eq!(letter.event.meta.kind, Kind::Status);
    assert_eq!(letter.event.body[..], fixture(THREE[1])[..]);
}

#[tokio::test]
async fn graceful_stop_answers_requests_in_flight() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let client = app.http.clone();
    let url = app.hook_url(CONNECTION, TOKEN);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .body(unique_event(i))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    // Stop while most are in flight, but only once one is stored: on a loaded machine 50
    // connections can take longer to open than any fixed pause.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.store.stats().dedup_keys == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (settings, data_dir) = app.stop().await;

    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(202) => accepted += 1,
            Ok(other) => panic!("a request in flight was answered {other}"),
            // Requests that had not connected yet when the listener closed are refused.
            Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
        }
    }
    // Every 202 is durable: after a restart it is in the outbox or already delivered.
    let app = restart(settings, data_dir).await;
    assert!(accepted > 0, "no request was answered before the stop");
    let delivered = app.take_n(&app.queue(Kind::Other), accepted).await;
    assert_eq!(delivered.len(), accepted);
}

#[tokio::test]
async fn ingest_readiness_ignores_the_broker() {
    let proxy = broker_proxy().await;
    proxy.cut();
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    let app = spawn_app_with(options).await;
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/readyz?scope=ingest").await.status(), 200);
    assert_eq!(app.get("/readyz?scope=everything").await.status(), 400);
}
