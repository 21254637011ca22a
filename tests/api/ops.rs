//! Operations: /metrics, the admin API, the `stats` / `dead` / `replay` commands, back-pressure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lapin::types::FieldTable;
use serde_json::Value;
use whaticket_relay::config::{AmqpUrl, Secret};
use whaticket_relay::event::Kind;

use crate::helpers::*;

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123";

pub fn with_admin(mut options: Options) -> Options {
    options.settings.admin.bind = ([127, 0, 0, 1], 0).into();
    options.settings.admin.token = Some(Secret::new(ADMIN_TOKEN));
    options
}

/// The value of one sample (`name{labels}` exactly as rendered), or None when absent.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

pub(crate) async fn metrics(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .expect("metrics request");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

pub(crate) async fn eventually_metric(app: &TestApp, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(app).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn admin_url(app: &TestApp, path: &str) -> String {
    format!(
        "http://127.0.0.1:{}{path}",
        app.admin_port.expect("admin API enabled")
    )
}

/// A config file for the binary pointing at the test relay's data dir and admin API.
pub(crate) fn config_file(app: &TestApp) -> PathBuf {
    let path = app.data_dir.path().join("ops.toml");
    let text = format!(
        "[storage]\npath = {:?}\n\n[admin]\nbind = \"127.0.0.1:{}\"\ntoken = \"{ADMIN_TOKEN}\"\n\n[[connections]]\nname = \"x\"\ntokens = [\"some-connection-token\"]\n",
        app.settings.storage.path.display().to_string(),
        app.admin_port.unwrap_or(1),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary (blocking work off the test runtime); returns stdout as JSON.
pub(crate) async fn relay_cli(config: PathBuf, args: &[&str]) -> Value {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
            .args(&args)
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

pub(crate) fn message_id(message: &lapin::message::BasicGetMessage) -> String {
    message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .expect("message_id")
        .to_string()
}

#[tokio::test]
async fn metrics_count_requests_and_confirms() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let conn = format!("connection=\"{CONNECTION}\"");

    assert_eq!(
        app.post_hook(fixture("status-open.json")).await.status(),
        202
    );
    assert_eq!(
        app.post_hook(fixture("status-open.json")).await.status(),
        200
    );
    assert_eq!(
        app.post_hook(fixture("message-start.json")).await.status(),
        202
    );
    let refused = app.post_hook_as(CONNECTION, "wrong-token-123456", "{}");
    assert_eq!(refused.await.status(), 401);
    let unknown = app.post_hook_as("nobody", TOKEN, "{}");
    assert_eq!(unknown.await.status(), 401);

    app.wait_outbox_empty().await;
    let text = eventually_metric(&app, "relay_publish_confirms_total", 2.0).await;
    assert_eq!(
        sample(
            &text,
            &format!("relay_events_accepted_total{{{conn},kind=\"status\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("relay_events_accepted_total{{{conn},kind=\"message\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("relay_events_duplicate_total{{{conn},kind=\"status\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("relay_events_rejected_total{{{conn},reason=\"unauthorized\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    // An unknown connection name never becomes a label.
    assert_eq!(
        sample(
            &text,
            "relay_events_rejected_total{connection=\"<unknown>\",reason=\"unauthorized\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("nobody"), "{text}");
    assert_eq!(
        sample(&text, "relay_accept_latency_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "relay_delivery_latency_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "relay_publish_total"), Some(2.0), "{text}");
    assert_eq!(sample(&text, "relay_outbox_events"), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "relay_outbox_oldest_pending_age_seconds"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "relay_dedup_keys"), Some(2.0), "{text}");
    assert!(
        sample(&text, "relay_store_disk_bytes").unwrap() > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, "relay_delivered_kept_bytes").unwrap() > 0.0,
        "{text}"
    );

    // A second relay in the same process counts on its own.
    let other = spawn_app().await;
    let fresh = metrics(&other).await;
    assert_eq!(
        sample(
            &fresh,
            &format!("relay_events_accepted_total{{{conn},kind=\"status\"}}")
        ),
        None,
        "{fresh}"
    );
}

#[tokio::test]
async fn admin_api_refuses_a_missing_or_connection_token() {
    let app = spawn_app_with(with_admin(Options::new())).await;
    let url = admin_url(&app, "/admin/stats");
    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    for token in [TOKEN, HMAC_SECRET, "admin-token-for-tests-012"] {
        let response = app.http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{token}");
    }
    let replay = app
        .http
        .post(admin_url(&app, "/admin/dead/replay"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    // The admin paths do not exist on the webhook listener at all.
    assert_eq!(app.get("/admin/stats").await.status(), 404);

    let ok = app
        .http
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let stats: Value = ok.json().await.unwrap();
    assert_eq!(stats["outbox"], 0, "{stats}");
}

#[tokio::test]
async fn dead_letters_list_show_and_replay_through_the_cli() {
    let app = spawn_app_with(with_admin(Options::new().topology_managed_elsewhere())).await;
    app.wait_ready().await;
    app.unbind(Kind::Other).await;
    let answer: Value = app
        .post_hook(r#"{"acao":"nobody-listens","chamadoId":5}"#)
        .await
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    app.wait_dead(1, Duration::from_secs(10)).await;
    let config = config_file(&app);

    // The relay holds the store: these go through the admin API.
    let list = relay_cli(config.clone(), &["dead", "list"]).await;
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["kind"], "other");
    assert!(
        entries[0]["reason"].as_str().unwrap().contains("312"),
        "{list}"
    );
    assert!(
        entries[0].get("body").is_none(),
        "list shows no bodies: {list}"
    );
    let seq = entries[0]["seq"].as_u64().unwrap().to_string();

    let shown = relay_cli(config.clone(), &["dead", "show", &id]).await;
    assert_eq!(shown["seq"].as_u64().unwrap().to_string(), seq);
    assert_eq!(shown["body"]["acao"], "nobody-listens", "{shown}");

    app.rebind(Kind::Other).await;
    let replayed = relay_cli(config.clone(), &["dead", "replay", &seq]).await;
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let message = app.take(&app.queue(Kind::Other)).await;
    assert_eq!(message_id(&message), id, "replayed with its original id");
    app.wait_dead(0, Duration::from_secs(10)).await;
    app.wait_outbox_empty().await;

    // Replaying again finds nothing; an unknown id is an error.
    let again = relay_cli(config.clone(), &["dead", "replay", "--all"]).await;
    assert_eq!(again["replayed"], 0);
    let out = Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
        .args(["dead", "show", "999999", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The operators' topology (`amqp.declare_topology = false`) with its exchange deleted: the relay
/// keeps accepting, never declares the exchange itself, keeps the events (not dead letters), and
/// publishes them once the operators declare it again.
#[tokio::test]
async fn a_missing_exchange_of_a_managed_topology_holds_events_until_it_is_back() {
    let app = spawn_app_with(Options::new().topology_managed_elsewhere()).await;
    app.wait_ready().await;
    let exchange = app.settings.amqp.exchange.clone();
    app.channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .expect("delete exchange");
    let id = app
        .accept(r#"{"acao":"while-the-exchange-is-gone","chamadoId":6}"#)
        .await;

    // The relay retries every 100-500 ms here; give it a few rounds to (wrongly) declare.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe = broker_connection().await;
    let passive = probe
        .create_channel()
        .await
        .expect("channel")
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(
        passive.is_err(),
        "the relay declared the operators' exchange"
    );
    let stats = app.store.stats();
    assert_eq!(
        (stats.outbox, stats.dead),
        (1, 0),
        "kept, not dead: {stats:?}"
    );

    let operators = probe.create_channel().await.expect("channel");
    whaticket_relay::publish::topology::declare(&operators, &app.settings.amqp)
        .await
        .expect("the operators declare their topology again");
    let message = app.take(&app.queue(Kind::Other)).await;
    assert_eq!(message_id(&message), id);
    app.wait_outbox_empty().await;
    assert_eq!(app.store.stats().dead, 0);
}

#[tokio::test]
async fn replay_since_republishes_delivered_events_with_their_message_id() {
    let app = spawn_app_with(with_admin(Options::new())).await;
    app.wait_ready().await;
    let answer: Value = app
        .post_hook(fixture("status-closed.json"))
        .await
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    let first = app.take(&app.queue(Kind::Status)).await;
    assert_eq!(message_id(&first), id);
    app.wait_outbox_empty().await;
    assert_eq!(app.store.stats().delivered_kept, 1);

    // A filter that matches nothing moves nothing.
    let none = app
        .http
        .post(admin_url(&app, "/admin/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"since_ms": 0, "kind": "message"}))
        .send()
        .await
        .unwrap();
    assert_eq!(none.json::<Value>().await.unwrap()["replayed"], 0);

    let config = config_file(&app);
    let replayed = relay_cli(
        config,
        &[
            "replay",
            "--since",
            "10m",
            "--kind",
            "status",
            "--connection",
            CONNECTION,
        ],
    )
    .await;
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let again = app.take(&app.queue(Kind::Status)).await;
    assert_eq!(message_id(&again), id, "same message_id");
    assert_eq!(again.delivery.data, first.delivery.data, "same body");
    app.wait_outbox_empty().await;
    // Re-delivered, it is kept again (once).
    assert_eq!(app.store.stats().delivered_kept, 1);
}

#[tokio::test]
async fn a_full_outbox_answers_503_until_the_broker_drains_it() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse::<SocketAddr>().unwrap()).await;
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    options.settings.storage.max_outbox = 3;
    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    proxy.cut();

    for i in 0..3 {
        let response = app
            .post_hook(format!(r#"{{"acao":"burst","n":{i}}}"#))
            .await;
        assert_eq!(response.status(), 202, "event {i}");
    }
    let full = app.post_hook(r#"{"acao":"burst","n":99}"#).await;
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["error"], "outbox_full", "{body}");
    // A duplicate of a stored event is still recognised.
    assert_eq!(
        app.post_hook(r#"{"acao":"burst","n":0}"#).await.status(),
        200
    );

    let text = metrics(&app).await;
    let conn = format!("connection=\"{CONNECTION}\"");
    assert_eq!(
        sample(
            &text,
            &format!("relay_events_rejected_total{{{conn},reason=\"outbox_full\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "relay_outbox_events"), Some(3.0), "{text}");
    assert!(
        sample(&text, "relay_outbox_oldest_pending_age_seconds").is_some(),
        "{text}"
    );

    proxy.restore();
    app.wait_outbox_empty().await;
    assert_eq!(
        app.post_hook(r#"{"acao":"burst","n":99}"#).await.status(),
        202
    );
    assert_eq!(app.take_n(&app.queue(Kind::Other), 4).await.len(), 4);
}

#[tokio::test]
async fn stats_work_through_the_admin_api_and_offline() {
    let app = spawn_app_with(with_admin(Options::new())).await;
    app.wait_ready().await;
    assert_eq!(app.post_hook(fixture("tag-sync.json")).await.status(), 202);
    app.wait_outbox_empty().await;
    let config = config_file(&app);

    let live = relay_cli(config.clone(), &["stats"]).await;
    assert_eq!(live["dedup_keys"], 1, "{live}");
    assert_eq!(live["outbox"], 0, "{live}");
    assert_eq!(live["delivered_kept"], 1, "{live}");

    // Keep the data dir alive past the stop.
    let (settings, _data_dir) = app.stop().await;
    let offline = relay_cli(config, &["stats"]).await;
    assert_eq!(offline["dedup_keys"], 1, "{offline}");
    assert_eq!(offline["delivered_kept"], 1, "{offline}");
    assert!(offline["disk_bytes"].as_u64().unwrap() > 0, "{offline}");
    // Stopped for good: its queues (the tag event still in one) are not left on the broker.
    remove_topology(&settings);
}

#[test]
fn the_admin_token_may_not_be_a_connection_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir);
    settings.admin.token = Some(Secret::new(TOKEN));
    let err = settings.validate().unwrap_err().to_string();
    assert!(err.contains("admin.token"), "{err}");
    settings.admin.token = Some(Secret::new(ADMIN_TOKEN));
    settings.validate().unwrap();
}
