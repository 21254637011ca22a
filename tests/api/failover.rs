//! `amqp.urls`: the relay moves to the next node when it loses one, and says which node it uses.
//! Two proxies to the local broker stand for two nodes here; tests/api/cluster.rs does it with
//! a real RabbitMQ cluster.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use whaticket_relay::config::AmqpUrl;
use whaticket_relay::event::Kind;

use crate::helpers::*;
use crate::load::{drain_until, load_event};

/// The node the metrics show connected (`relay_broker_node_connected{node} 1`), once it is one
/// other than `not`.
pub async fn broker_in_use(app: &TestApp, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = app.metrics_text().await;
        let connected = text.lines().find_map(|line| {
            let rest = line.strip_prefix("relay_broker_node_connected{node=\"")?;
            let (node, value) = rest.split_once("\"} ")?;
            (value.trim() == "1").then(|| node.to_owned())
        });
        if let Some(node) = connected {
            if Some(node.as_str()) != not {
                return node;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never showed a broker node other than {not:?} connected: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one sample line of `/metrics`, e.g. `relay_broker_node_connected{node="…"}`.
pub async fn metric(app: &TestApp, sample: &str) -> Option<f64> {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
}

#[tokio::test]
async fn a_lost_node_moves_the_relay_to_the_next_one() {
    let upstream: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let first = TcpProxy::start(upstream).await;
    let second = TcpProxy::start(upstream).await;
    let nodes = [
        format!("127.0.0.1:{}", first.port),
        format!("127.0.0.1:{}", second.port),
    ];
    let mut options = Options::new();
    options.settings.amqp.urls = vec![AmqpUrl::new(first.url()), AmqpUrl::new(second.url())];
    // `url` is not used once `urls` is set: a dead address proves it.
    options.settings.amqp.url = AmqpUrl::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    assert_eq!(
        broker_in_use(&app, None).await,
        nodes[0],
        "the first node is tried first"
    );
    let connected = |node: &str| format!(r#"relay_broker_node_connected{{node="{node}"}}"#);
    let sessions = |node: &str| format!(r#"relay_broker_connections_total{{node="{node}"}}"#);
    assert_eq!(metric(&app, &connected(&nodes[0])).await, Some(1.0));
    assert_eq!(metric(&app, &connected(&nodes[1])).await, Some(0.0));
    assert_eq!(metric(&app, &sessions(&nodes[1])).await, Some(0.0));

    let run = unique("failover");
    let total = 30;
    for seq in 0..total / 2 {
        app.accept(load_event(&run, seq)).await;
    }
    // The first node goes away for good: the relay must not wait for it.
    first.cut();
    for seq in total / 2..total {
        app.accept(load_event(&run, seq)).await;
    }
    assert_eq!(broker_in_use(&app, Some(&nodes[0])).await, nodes[1]);
    assert_eq!(metric(&app, &connected(&nodes[0])).await, Some(0.0));
    assert_eq!(metric(&app, &connected(&nodes[1])).await, Some(1.0));
    assert_eq!(metric(&app, &sessions(&nodes[1])).await, Some(1.0));

    let want: HashSet<u64> = (0..total).collect();
    let seen = drain_until(&app.channel, &app.queue(Kind::Other), &want).await;
    assert_eq!(
        seen.len(),
        want.len(),
        "every accepted event is delivered, nothing else"
    );
    app.wait_outbox_empty().await;
}

#[tokio::test]
async fn no_node_reachable_is_unready_and_names_none() {
    let first = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    first.cut();
    let mut options = Options::new();
    options.settings.amqp.urls = vec![
        AmqpUrl::new(first.url()),
        AmqpUrl::new("amqp://guest:guest@127.0.0.1:1/%2f"),
    ];
    let app = spawn_app_with(options).await;
    app.accept(load_event(&unique("none"), 0)).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["broker"].is_null(), "{body}");
    // The first node comes back: the next round reaches it.
    first.restore();
    app.wait_ready().await;
    assert_eq!(
        broker_in_use(&app, None).await,
        format!("127.0.0.1:{}", first.port)
    );
    app.take(&app.queue(Kind::Other)).await;
}
