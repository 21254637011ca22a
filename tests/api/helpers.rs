//! `spawn_app()` and the typed helpers every integration test uses; a real RabbitMQ is required.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use lapin::options::{
    BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use whaticket_relay::config::{AmqpUrl, ConnectionSettings, QueueType, Secret, Settings};
use whaticket_relay::event::Kind;
use whaticket_relay::http::verify::sign_body;
use whaticket_relay::publish::topology;
use whaticket_relay::store::{Store, StoreError};
use whaticket_relay::Application;

pub use super::proxy::TcpProxy;

pub const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const TOKEN: &str = "test-token-0123456789";
pub const OLD_TOKEN: &str = "old-token-0123456789";
pub const HMAC_SECRET: &str = "hmac-secret-for-tests";
pub const CONNECTION: &str = "suporte-x";

/// A webhook body shipped in `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Names unique to one test, so tests never see each other's messages.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The status of a JSON POST of `body` to `url`, on a connection of its own.
pub async fn post_status(url: &str, body: impl Into<reqwest::Body>) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Connects to the local broker, failing the test with instructions when it is not running.
pub async fn broker_connection() -> Connection {
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(BROKER_URL, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        other => panic!(
            "RabbitMQ is not reachable at {BROKER_URL} ({other:?}). Start it with `rabbitmq-server -detached` \
             (install: `apt-get install -y rabbitmq-server`), or run `.ci/run`, which does both."
        ),
    }
}

/// What a test may change before the relay starts.
pub struct Options {
    pub settings: Settings,
    /// Reuse this data directory (restart tests).
    pub data_dir: Option<Arc<TempDir>>,
}

pub struct TestApp {
    pub address: String,
    pub settings: Settings,
    pub data_dir: Arc<TempDir>,
    pub http: reqwest::Client,
    pub store: Store,
    /// The admin API's port, when the test set `admin.token`.
    pub admin_port: Option<u16>,
    /// `http://127.0.0.1:<port>` of the metrics listener (`metrics.bind`).
    pub metrics_address: String,
    /// What SIGHUP does, callable directly.
    pub reload: whaticket_relay::process::reload::ReloadHandle,
    pub channel: Channel,
    _broker: Connection,
    handle: ServerHandle,
    join: Option<JoinHandle<Result<(), StoreError>>>,
    /// Delete the broker objects on drop; off once stopped for a restart on the same names.
    cleanup: bool,
}

/// Settings for one test: its own data dir, exchange and queue names, a known connection.
pub fn test_settings(data_dir: &TempDir) -> Settings {
    let mut s = Settings::default();
    s.server.bind = ([127, 0, 0, 1], 0).into();
    s.server.workers = 2;
    s.server.shutdown_timeout = Duration::from_secs(5);
    s.metrics.bind = Some(([127, 0, 0, 1], 0).into());
    s.storage.path = data_dir.path().join("data");
    s.storage.cache_capacity_bytes = 8 * 1024 * 1024;
    s.amqp.url = AmqpUrl::new(BROKER_URL);
    let name = unique("test");
    s.amqp.exchange = name.clone();
    s.amqp.queue_prefix = name;
    s.amqp.queue_type = QueueType::Classic;
    s.amqp.timeout = Duration::from_secs(3);
    s.amqp.reconnect_min = Duration::from_millis(100);
    s.amqp.reconnect_max = Duration::from_millis(500);
    s.connections = vec![ConnectionSettings {
        name: CONNECTION.to_owned(),
        tokens: vec![Secret::new(TOKEN), Secret::new(OLD_TOKEN)],
        hmac_secrets: vec![Secret::new(HMAC_SECRET)],
        company_id: None,
        rules: Vec::new(),
        body: None,
    }];
    s
}

impl Options {
    pub fn new() -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self {
            settings: test_settings(&dir),
            data_dir: Some(dir),
        }
    }

    /// The topology is the operators' (`amqp.declare_topology = false`): the test declares it
    /// before the relay starts, and an unroutable event goes straight to the dead store.
    pub fn topology_managed_elsewhere(mut self) -> Self {
        self.settings.amqp.declare_topology = false;
        self
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::new()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    init_test_logging();
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let data_dir = options.data_dir.expect("data dir");
    let settings = options.settings;
    if !settings.amqp.declare_topology {
        topology::declare(&channel, &settings.amqp)
            .await
            .expect("the test declares the topology");
    }
    let app = Application::build(settings.clone())
        .await
        .expect("relay failed to start");
    let port = app.port();
    let store = app.store().clone();
    let admin_port = app.admin_port();
    let metrics_port = app.metrics_port().expect("tests listen for metrics");
    let handle = app.handle();
    let reload = app.reload_handle();
    let join = tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        settings,
        data_dir,
        http: reqwest::Client::new(),
        store,
        admin_port,
        metrics_address: format!("http://127.0.0.1:{metrics_port}"),
        reload,
        channel,
        _broker: broker,
        handle,
        join: Some(join),
        cleanup: true,
    }
}

/// `TEST_LOG=1 cargo test` shows the relay's logs.
fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info,lapin=warn")
                .with_test_writer()
                .try_init();
        }
    });
}

impl TestApp {
    /// Waits until the store holds `count` dead letters, failing after `within`.
    pub async fn wait_dead(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.store.stats().dead != count {
            assert!(
                Instant::now() < deadline,
                "dead letters: {} (want {count})",
                self.store.stats().dead
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn hook_url(&self, connection: &str, token: &str) -> String {
        format!("{}/hooks/{connection}/{token}", self.address)
    }

    /// `relay_broker_reconnects_total`: sessions attempted after the first.
    pub async fn publisher_reconnects(&self) -> u64 {
        self.counter("relay_broker_reconnects_total").await
    }

    /// `GET /metrics` of the metrics listener: its text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("metrics request failed")
            .text()
            .await
            .expect("metrics text")
    }

    /// The counter `name` whose one label has `value`, as `/metrics` shows it now.
    pub async fn counter_with(&self, name: &str, value: &str) -> u64 {
        let text = self.metrics_text().await;
        let tail = format!("=\"{value}\"}} ");
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix('{')?;
                let at = rest.find(&tail)?;
                rest[at + tail.len()..].trim().parse().ok()
            })
            .unwrap_or_else(|| panic!("{name}{{…=\"{value}\"}} in /metrics"))
    }

    /// A counter without labels, as `/metrics` shows it now.
    pub async fn counter(&self, name: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    }

    /// POSTs a body that must be accepted; its event id.
    pub async fn accept(&self, body: impl Into<reqwest::Body>) -> String {
        let response = self.post_hook(body).await;
        assert_eq!(response.status(), 202, "the event must be accepted");
        let body: serde_json::Value = response.json().await.expect("JSON answer");
        body["id"].as_str().expect("an event id").to_owned()
    }

    /// POSTs a body to `/hooks/{CONNECTION}/{TOKEN}` as Whaticket does.
    pub async fn post_hook(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_hook_as(CONNECTION, TOKEN, body).await
    }

    /// As [`TestApp::post_hook`], with another connection name or token in the URL.
    pub async fn post_hook_as(
        &self,
        connection: &str,
        token: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(self.hook_url(connection, token))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request failed")
    }

    pub fn queue(&self, kind: Kind) -> String {
        format!("{}.{}", self.settings.amqp.queue_prefix, kind)
    }

    /// Removes the only binding that routes `{kind}.#`, so the broker returns that kind's events.
    pub async fn unbind(&self, kind: Kind) {
        self.channel
            .queue_unbind(
                self.queue(kind).as_str().into(),
                self.settings.amqp.exchange.as_str().into(),
                format!("{kind}.#").as_str().into(),
                FieldTable::default(),
            )
            .await
            .expect("unbind");
    }

    /// Puts back the binding [`TestApp::unbind`] removed.
    pub async fn rebind(&self, kind: Kind) {
        self.channel
            .queue_bind(
                self.queue(kind).as_str().into(),
                self.settings.amqp.exchange.as_str().into(),
                format!("{kind}.#").as_str().into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }

    /// Messages ready in a queue (passive declare).
    pub async fn queue_len(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue} missing: {e}"))
            .message_count()
    }

    /// Waits until the relay has declared its topology and is connected.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.get("/readyz").await.status();
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "relay not ready after 20 s (last /readyz {status})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes one message from `queue`, waiting up to 10 s for it.
    pub async fn take(&self, queue: &str) -> lapin::message::BasicGetMessage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap_or_else(|e| panic!("basic_get {queue}: {e}"));
            if let Some(message) = got {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no message arrived in {queue} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes every message that arrives in `queue` until `count` are there or 15 s pass.
    pub async fn take_n(&self, queue: &str, count: usize) -> Vec<lapin::message::BasicGetMessage> {
        self.take_n_within(queue, count, Duration::from_secs(15))
            .await
    }

    /// As [`TestApp::take_n`], waiting up to `within`.
    pub async fn take_n_within(
        &self,
        queue: &str,
        count: usize,
        within: Duration,
    ) -> Vec<lapin::message::BasicGetMessage> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < count {
            let got = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap_or_else(|e| panic!("basic_get {queue}: {e}"));
            match got {
                Some(message) => out.push(message),
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "only {} of {count} messages arrived in {queue} within {within:?}",
                        out.len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        out
    }

    /// Takes one delivery per kind listed (one per accepted event) from the kinds' queues, each
    /// with its kind and `message_id`.
    pub async fn take_each(
        &self,
        kinds: impl IntoIterator<Item = Kind>,
    ) -> Vec<(Kind, String, lapin::message::BasicGetMessage)> {
        let mut counts: BTreeMap<&str, (Kind, usize)> = BTreeMap::new();
        for kind in kinds {
            counts.entry(kind.as_str()).or_insert((kind, 0)).1 += 1;
        }
        let mut out = Vec::new();
        for (kind, count) in counts.into_values() {
            for delivery in self.take_n(&self.queue(kind), count).await {
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str().to_owned())
                    .expect("every event has a message_id");
                out.push((kind, id, delivery));
            }
        }
        out
    }

    /// Waits until the outbox is empty (everything confirmed by the broker).
    pub async fn wait_outbox_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.store.stats().outbox > 0 {
            assert!(
                Instant::now() < deadline,
                "outbox still holds {} events after 20 s",
                self.store.stats().outbox
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop (what SIGTERM does); returns the data dir for a restart.
    pub async fn stop(mut self) -> (Settings, Arc<TempDir>) {
        self.handle.stop(true).await;
        let join = self.join.take().expect("running");
        tokio::time::timeout(Duration::from_secs(20), join)
            .await
            .expect("relay did not stop within 20 s")
            .expect("relay task panicked")
            .expect("final flush failed");
        self.cleanup = false;
        (self.settings.clone(), self.data_dir.clone())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            join.abort();
        }
        if self.cleanup {
            remove_topology(&self.settings);
        }
    }
}

/// Deletes the queues and exchanges `settings` name, which outlive a test otherwise; for a test
/// that stopped its relay for good (`TestApp::stop` leaves them, for a restart). Runs on a thread
/// of its own with its own runtime, so that `Drop`, which cannot await, can call it too.
pub fn remove_topology(settings: &Settings) {
    remove_names(&settings.amqp.queue_prefix, &settings.amqp.exchange);
}

/// [`remove_topology`] by the names: the queues of `queue_prefix` and `exchange`.
pub fn remove_names(queue_prefix: &str, exchange: &str) {
    let (queue_prefix, exchange) = (queue_prefix.to_owned(), exchange.to_owned());
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(Ok(conn)) = tokio::time::timeout(
                Duration::from_secs(5),
                Connection::connect(BROKER_URL, ConnectionProperties::default()),
            )
            .await
            else {
                return;
            };
            if let Ok(channel) = conn.create_channel().await {
                delete_queues_and_exchanges(&channel, &queue_prefix, &exchange).await;
            }
            let _ = conn.close(200, "test done".into()).await;
        });
    })
    .join();
}

/// Deletes the kind queues and the dead-letter queue named after `queue_prefix`, and `exchange`
/// with its dead-letter exchange; missing ones are fine (deleting is idempotent on RabbitMQ).
pub async fn delete_queues_and_exchanges(channel: &Channel, queue_prefix: &str, exchange: &str) {
    let queues = Kind::ALL
        .iter()
        .map(|kind| format!("{queue_prefix}.{kind}"))
        .chain([format!("{queue_prefix}.dead")]);
    for queue in queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [exchange.to_owned(), format!("{exchange}.dlx")] {
        let _ = channel
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// The bare hex HMAC-SHA256 of `body` under the test secret (`X-Webhook-Signature`).
pub fn hmac_hex(body: &[u8]) -> String {
    sign_body(HMAC_SECRET.as_bytes(), body)["sha256=".len()..].to_owned()
}

/// Posts `body` as its sender does: with headers to `/hooks/{connection}`, without them to the
/// URL carrying the token (what a Whaticket user pastes).
pub async fn send(
    app: &TestApp,
    headers: &[(String, String)],
    token: &str,
    signed_body: &[u8],
    body: Vec<u8>,
) -> reqwest::Response {
    let url = if headers.is_empty() {
        app.hook_url(CONNECTION, token)
    } else {
        format!("{}/hooks/{CONNECTION}", app.address)
    };
    let mut request = app
        .http
        .post(url)
        .header("content-type", "application/json");
    for (name, template) in headers {
        let value = template
            .replace("{token}", token)
            .replace("{hmac_hex}", &hmac_hex(signed_body));
        request = request.header(name.as_str(), value);
    }
    request.body(body).send().await.expect("request failed")
}

/// A text header of a delivery.
pub fn header_text(delivery: &lapin::message::BasicGetMessage, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// A body as JSON.
pub fn json_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("a JSON body")
}

/// `value` serialised with every object's members in reverse order, whatever serde_json's map
/// keeps (and without spaces): a repeat that only a parse of the values can tell.
pub fn reversed(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), reversed(v)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(reversed).collect();
            format!("[{}]", items.join(","))
        }
        leaf => leaf.to_string(),
    }
}

/// `body` again with every object's members in reverse order.
pub fn reordered(body: &[u8]) -> Vec<u8> {
    let again = reversed(&json_of(body)).into_bytes();
    assert_ne!(again, body, "reordered differs in its bytes");
    again
}
