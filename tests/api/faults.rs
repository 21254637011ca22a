//! Faults under load: broker cut, server-side close, channel error, nacks, SIGKILL, SIGTERM, full disk.
//! Each test counts events exactly: every 202 is in its queue with its id, nothing else is.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use lapin::options::ExchangeDeleteOptions;
use whaticket_relay::config::AmqpUrl;
use whaticket_relay::event::Kind;

use crate::helpers::*;
use crate::load::*;

const WORKERS: usize = 8;

async fn wait_status(url: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    let http = reqwest::Client::new();
    loop {
        let status = http
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} answered {status}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("rabbitmqctl {args:?}: {e} (install rabbitmq-server; `.ci/run` does)")
        });
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn app_behind_proxy() -> (TcpProxy, TestApp) {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse::<SocketAddr>().unwrap()).await;
    let mut options = Options::new();
    options.settings.amqp.url = AmqpUrl::new(proxy.url());
    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    (proxy, app)
}

async fn finish(app: &TestApp, tally: &Tally) {
    let want: HashSet<u64> = tally.accepted.keys().copied().collect();
    app.wait_outbox_empty().await;
    let dead = app.store.dead_list(10).expect("dead list");
    assert!(
        dead.is_empty(),
        "accepted events dead-lettered, e.g. {:?}",
        dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    let seen = drain_until(&app.channel, &app.queue(Kind::Other), &want).await;
    assert_delivered(tally, &seen);
}

#[tokio::test]
async fn broker_outage_under_concurrent_load_loses_nothing() {
    let (proxy, app) = app_behind_proxy().await;
    let load = Load::start(app.hook_url(CONNECTION, TOKEN), unique("outage"), WORKERS);
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.cut();
    wait_status(
        &format!("{}/readyz", app.address),
        503,
        Duration::from_secs(10),
    )
    .await;
    let before = load.accepted_count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = load.accepted_count() - before;
    assert!(
        app.store.stats().outbox > 0,
        "nothing can be confirmed through a cut proxy"
    );
    proxy.restore();
    // Recovers by itself: no test action besides restoring the network.
    wait_status(
        &format!("{}/readyz", app.address),
        200,
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.stop().await;

    assert!(during > 0, "the relay kept accepting during the outage");
    assert!(
        tally.other.is_empty(),
        "only 202s expected, got {:?}",
        tally.other
    );
    finish(&app, &tally).await;
}

#[tokio::test]
async fn server_side_close_and_deleted_exchange_are_survived() {
    let (proxy, app) = app_behind_proxy().await;
    let load = Load::start(app.hook_url(CONNECTION, TOKEN), unique("close"), WORKERS);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Close only this relay's connection, by the broker's name for it (its peer address).
    let ports = proxy.upstream_ports();
    // `close_connection` takes the connection's pid; the name is "127.0.0.1:{peer port} -> …".
    let listing = rabbitmqctl(&["list_connections", "pid", "peer_port", "-q"]);
    let ours: Vec<&str> = listing
        .lines()
        .filter_map(|line| {
            let (pid, port) = line.trim().split_once('\t')?;
            ports.contains(&port.trim().parse().ok()?).then_some(pid)
        })
        .collect();
    assert!(
        !ours.is_empty(),
        "relay connection not listed (ports {ports:?}):\n{listing}"
    );
    for pid in ours {
        rabbitmqctl(&["close_connection", pid, "fault test"]);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_status(
        &format!("{}/readyz", app.address),
        200,
        Duration::from_secs(15),
    )
    .await;
    let reconnected = proxy.upstream_ports().len();
    assert!(
        reconnected > ports.len(),
        "the relay reconnected on its own"
    );

    // A channel error: the exchange vanishes under the relay; it must redeclare and resend.
    app.channel
        .exchange_delete(
            app.settings.amqp.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .expect("delete exchange");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.stop().await;
    assert!(
        tally.other.is_empty(),
        "only 202s expected, got {:?}",
        tally.other
    );
    finish(&app, &tally).await;
}

/// Sets a policy under which the app's `other` queue refuses every publish (the broker nacks
/// them); returns its name for `clear_policy`.
fn refuse_publishes(app: &TestApp, name: &str) -> String {
    let policy = unique(name);
    let pattern = format!("^{}$", app.queue(Kind::Other).replace('.', "\\."));
    rabbitmqctl(&[
        "set_policy",
        &policy,
        &pattern,
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
        "--apply-to",
        "queues",
        "--priority",
        "100",
    ]);
    policy
}

#[tokio::test]
async fn nacked_publishes_are_resent() {
    let (_proxy, app) = app_behind_proxy().await;
    let policy = refuse_publishes(&app, "nack");
    let load = Load::start(app.hook_url(CONNECTION, TOKEN), unique("nack"), 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait until nacks have happened: the outbox holds events the broker refused.
    while app.store.stats().outbox == 0 || load.accepted_count() < 20 {
        assert!(Instant::now() < deadline, "outbox never filled under nacks");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        app.store.stats().outbox > 0,
        "nacked events stay in the outbox"
    );
    rabbitmqctl(&["clear_policy", &policy]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tally = load.stop().await;
    assert!(
        tally.other.is_empty(),
        "only 202s expected, got {:?}",
        tally.other
    );
    finish(&app, &tally).await;
    assert_eq!(app.store.stats().dead, 0, "a nack is not a dead letter");
}

#[tokio::test]
async fn publishes_refused_longer_than_the_timeout_get_a_new_session() {
    let (_proxy, app) = app_behind_proxy().await;
    let policy = refuse_publishes(&app, "refuse");
    let load = Load::start(app.hook_url(CONNECTION, TOKEN), unique("refuse"), 2);
    // Nacks only, for longer than amqp.timeout (3 s): the session is ended and a new one opened.
    let sessions = app.publisher_reconnects().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.publisher_reconnects().await == sessions {
        assert!(
            Instant::now() < deadline,
            "no new session after 30 s of refused publishes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rabbitmqctl(&["clear_policy", &policy]);
    let tally = load.stop().await;
    assert!(
        tally.other.is_empty(),
        "only 202s expected, got {:?}",
        tally.other
    );
    finish(&app, &tally).await;
    assert_eq!(app.store.stats().dead, 0, "a nack is not a dead letter");
}

#[tokio::test]
async fn sigkill_mid_load_then_restart_delivers_every_202() {
    let config = ChildConfig::new();
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let relay = config.spawn().await;
    let run = unique("kill9");
    let load = Load::start(relay.hook_url(), run.clone(), WORKERS);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut relay = relay;
    relay.signal("KILL");
    relay.wait_exit(Duration::from_secs(5)).await;
    let tally = load.stop().await;
    assert!(
        tally.accepted.len() > 10,
        "too few events before the kill: {}",
        tally.accepted.len()
    );

    let relay = config.spawn().await;
    // Dedup holds across the kill for events answered 202 before it, with the same id.
    let http = reqwest::Client::new();
    for (seq, id) in tally.accepted.iter().take(20) {
        let response = http
            .post(relay.hook_url())
            .body(load_event(&run, *seq))
            .send()
            .await
            .expect("post");
        assert_eq!(
            response.status(),
            200,
            "event {seq} re-posted after the kill"
        );
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["id"].as_str(), Some(id.as_str()));
    }
    let want: HashSet<u64> = tally.accepted.keys().copied().collect();
    let seen = drain_until(&channel, &config.queue(Kind::Other), &want).await;
    assert_delivered(&tally, &seen);
    delete_topology(&channel, &config.exchange).await;
    drop(relay);
}

#[tokio::test]
async fn sigterm_under_load_drains_and_exits_zero() {
    let config = ChildConfig::new();
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let mut relay = config.spawn().await;
    let load = Load::start(relay.hook_url(), unique("term"), WORKERS);
    tokio::time::sleep(Duration::from_millis(800)).await;
    relay.signal("TERM");
    let status = relay.wait_exit(Duration::from_secs(20)).await;
    let tally = load.stop().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", relay.log());
    // A request the relay took was answered; refused ones never connected.
    assert!(
        tally.other.is_empty(),
        "in-flight requests answered {:?}",
        tally.other
    );
    assert!(relay.log().contains("relay stopped"), "clean stop logged");

    // Whatever was not yet confirmed is still in the outbox: a restart delivers it.
    let relay = config.spawn().await;
    let want: HashSet<u64> = tally.accepted.keys().copied().collect();
    let seen = drain_until(&channel, &config.queue(Kind::Other), &want).await;
    assert_delivered(&tally, &seen);
    delete_topology(&channel, &config.exchange).await;
    drop(relay);
}

/// A small tmpfs mounted for one test: a real full disk. Needs mount rights (root in a
/// container with CAP_SYS_ADMIN, as here and in CI); unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn full_disk_answers_503_stores_nothing_exits_and_recovers_on_restart() {
    let Some(tmpfs) = Tmpfs::mount("6m") else {
        panic!("cannot mount a tmpfs here: this test needs root with mount rights (CI has them)");
    };
    // A child process: sled can block for good on ENOSPC, and only a process restart frees it.
    let mut config = ChildConfig::new();
    config.data_path = Some(tmpfs.dir.path().join("data"));
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let mut relay = config.spawn().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let run = unique("full");
    let pad = "x".repeat(16 * 1024);
    let body =
        |seq: u64| format!(r#"{{"acao":"load-test","run":"{run}","seq":{seq},"pad":"{pad}"}}"#);
    let mut tally = Tally::default();
    let mut refused = Vec::new();
    let mut seq = 0u64;
    while refused.is_empty() {
        assert!(seq < 5_000, "a 6 MB disk never filled");
        tally.attempted.insert(seq);
        let response = http
            .post(relay.hook_url())
            .body(body(seq))
            .send()
            .await
            .expect("answered, not hung");
        match response.status().as_u16() {
            202 => {
                let id = response.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                tally.accepted.insert(seq, id);
            }
            503 => {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "503 carries Retry-After"
                );
                refused.push(seq);
            }
            other => panic!("event {seq}: {other}"),
        }
        seq += 1;
    }
    assert!(
        tally.accepted.len() > 10,
        "the disk filled too early to mean anything"
    );
    wait_status(&relay.url("/readyz"), 503, Duration::from_secs(10)).await;
    // Still answers (503), does not hang, while the disk stays full.
    let response = http
        .post(relay.hook_url())
        .body(body(seq))
        .send()
        .await
        .expect("answered, not hung");
    assert_eq!(response.status(), 503);
    tally.attempted.insert(seq);
    refused.push(seq);

    // The relay notices its store stopped taking writes and exits with an error, so that its
    // supervisor restarts it; space comes back and the restarted relay recovers.
    // Worst case: three probes that hang (3 × 15 s), requests in flight (10 s), the writer (10 s).
    let status = relay.wait_exit(Duration::from_secs(150)).await;
    assert!(
        !status.success(),
        "a relay whose store failed must exit with an error: {status}"
    );
    tmpfs.resize("256m");
    drop(relay);
    let relay = config.spawn().await;
    // Nothing half-stored: a refused event is not remembered, so it is taken now.
    for seq in &refused {
        let response = http
            .post(relay.hook_url())
            .body(body(*seq))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "refused event {seq} after recovery");
        let id = response.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        tally.accepted.insert(*seq, id);
    }
    let want: HashSet<u64> = tally.accepted.keys().copied().collect();
    let seen = drain_until(&channel, &config.queue(Kind::Other), &want).await;
    assert_delivered(&tally, &seen);
    delete_topology(&channel, &config.exchange).await;
    drop(relay);
}
