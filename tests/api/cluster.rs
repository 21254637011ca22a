//! A real three-node RabbitMQ cluster (`tests/cluster.sh`, beside the default broker): the
//! relay's node killed under load, the quorum leader's node killed, the whole cluster down and
//! back. The tests share one cluster, started once per run, and take turns on it.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{Mutex, MutexGuard};
use whaticket_relay::config::{AmqpUrl, QueueType};
use whaticket_relay::event::Kind;
use whaticket_relay::publish::topology;

use crate::failover::broker_in_use;
use crate::helpers::*;
use crate::load::{load_event, Load};

const NODES: [usize; 3] = [1, 2, 3];
/// Generous: on a loaded 2-core machine a quorum queue may take a while to elect and recover.
const DELIVERY_LIMIT: Duration = Duration::from_secs(90);

/// What the last test left. Held for a whole test: the tests kill nodes, so they must not
/// overlap.
static CLUSTER: Mutex<State> = Mutex::const_new(State::NotStarted);

#[derive(Clone, Copy, PartialEq)]
enum State {
    /// Not yet in this run: a fresh cluster, nothing left from earlier runs' queues.
    NotStarted,
    Whole,
    /// A test stopped midway: `tests/cluster.sh start` brings back what it left down.
    Unknown,
}

struct Cluster {
    state: MutexGuard<'static, State>,
}

/// Runs `tests/cluster.sh` off the async workers; fails the test with its message.
async fn script(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster.sh");
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(&path).args(&args).output())
            .await
            .expect("script task")
            .unwrap_or_else(|e| panic!("cannot run tests/cluster.sh: {e}"));
    assert!(
        out.status.success(),
        "tests/cluster.sh failed ({}); the cluster tests need it to start three RabbitMQ nodes \
         (rabbitmq-server installed, run as root or rabbitmq): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn port(node: usize) -> u16 {
    let base: u16 = std::env::var("RELAY_CLUSTER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5781);
    base + node as u16 - 1
}

fn url(node: usize) -> AmqpUrl {
    AmqpUrl::new(format!("amqp://guest:guest@127.0.0.1:{}/%2f", port(node)))
}

/// The node behind a `host:port` the relay reports.
fn node_at(address: &str) -> usize {
    NODES
        .into_iter()
        .find(|n| address == format!("127.0.0.1:{}", port(*n)))
        .unwrap_or_else(|| panic!("{address} is no node of the test cluster"))
}

fn erlang_name(node: usize) -> String {
    format!("relayc{node}@localhost")
}

impl Cluster {
    async fn get() -> Cluster {
        let mut state = CLUSTER.lock().await;
        match *state {
            State::NotStarted => script(&["fresh"]).await,
            State::Unknown => script(&["start"]).await,
            State::Whole => String::new(),
        };
        // Until this test gives it back whole.
        *state = State::Unknown;
        Cluster { state }
    }

    /// The cluster is whole again: the test's queues go, so later tests' nodes do not carry them.
    async fn done(mut self, app: TestApp) {
        let (conn, channel) = self.channel(1).await;
        let amqp = &app.settings.amqp;
        let queues = Kind::ALL
            .into_iter()
            .map(|kind| topology::queue_name(amqp, kind))
            .chain([topology::dead_queue_name(amqp)]);
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .unwrap_or_else(|e| panic!("delete {queue}: {e}"));
        }
        let _ = conn.close(200, "done".into()).await;
        *self.state = State::Whole;
    }

    async fn stop(&self, nodes: &[usize]) {
        let mut args = vec!["stop-node".to_owned()];
        args.extend(nodes.iter().map(|n| n.to_string()));
        script(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }

    async fn kill(&self, nodes: &[usize]) {
        let mut args = vec!["kill".to_owned()];
        args.extend(nodes.iter().map(|n| n.to_string()));
        script(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }

    async fn start(&self, nodes: &[usize]) {
        let mut args = vec!["start-node".to_owned()];
        args.extend(nodes.iter().map(|n| n.to_string()));
        script(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }

    /// The node leading a quorum queue.
    async fn leader(&self, queue: &str) -> usize {
        let name = script(&["leader", queue]).await;
        NODES
            .into_iter()
            .find(|n| name == erlang_name(*n))
            .unwrap_or_else(|| panic!("queue {queue} has no leader in the cluster: {name:?}"))
    }

    /// Takes messages from `queue` through `node` until every id in `ids` arrived. A quorum
    /// queue answers `basic.get` with an error (closing the connection) while it has no
    /// leader, so errors are retried on a new connection until the limit.
    async fn take_ids(&self, node: usize, queue: &str, ids: &HashSet<String>) {
        let deadline = Instant::now() + DELIVERY_LIMIT;
        let mut seen = HashSet::new();
        let mut last_error = String::new();
        while seen.len() < ids.len() {
            assert!(
                Instant::now() < deadline,
                "only {} of {} events arrived in {queue} within {DELIVERY_LIMIT:?} (last error: {last_error})",
                seen.len(),
                ids.len()
            );
            let (conn, channel) = self.channel(node).await;
            loop {
                match channel
                    .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                    .await
                {
                    Ok(Some(message)) => {
                        let id = message
                            .properties
                            .message_id()
                            .as_ref()
                            .map(|id| id.to_string())
                            .expect("every message has a message_id");
                        assert!(
                            ids.contains(&id),
                            "{queue} holds an unexpected message {id}"
                        );
                        seen.insert(id);
                        if seen.len() == ids.len() {
                            break;
                        }
                    }
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        last_error = e.to_string();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
            let _ = conn.close(200, "done".into()).await;
        }
    }

    async fn channel(&self, node: usize) -> (Connection, Channel) {
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(url(node).expose(), ConnectionProperties::default()),
        )
        .await
        .unwrap_or_else(|_| panic!("node {node} did not answer within 10 s"))
        .unwrap_or_else(|e| panic!("node {node}: {e}"));
        let channel = conn.create_channel().await.expect("channel");
        (conn, channel)
    }
}

/// A relay on the cluster: quorum queues of three replicas, the nodes tried in `order`.
async fn relay(order: &[usize]) -> TestApp {
    let mut options = Options::new();
    let amqp = &mut options.settings.amqp;
    amqp.urls = order.iter().map(|n| url(*n)).collect();
    amqp.queue_type = QueueType::Quorum;
    amqp.quorum_initial_group_size = Some(3);
    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    app
}

#[tokio::test]
async fn killing_the_relays_node_under_load_loses_nothing() {
    let cluster = Cluster::get().await;
    let app = relay(&NODES).await;
    let first = node_at(&broker_in_use(&app, None).await);

    let load = Load::start(app.hook_url(CONNECTION, TOKEN), unique("load"), 2);
    load.accept_more(100).await;
    cluster.kill(&[first]).await;
    let second = node_at(&broker_in_use(&app, Some(&format!("127.0.0.1:{}", port(first)))).await);
    assert_ne!(second, first);
    load.accept_more(100).await;
    let tally = load.stop().await;
    tally.assert_all_accepted("while a node died");
    let ids: HashSet<String> = tally.accepted.into_values().collect();
    cluster
        .take_ids(second, &app.queue(Kind::Other), &ids)
        .await;
    app.wait_outbox_empty().await;
    cluster.start(&[first]).await;
    cluster.done(app).await;
}

#[tokio::test]
async fn killing_the_quorum_leaders_node_lets_publishing_resume() {
    let cluster = Cluster::get().await;
    // The queues are declared through node 2 first, as another relay would; the relay itself
    // goes to another node, so the leader's loss is not its own node's loss.
    let mut options = Options::new();
    let settings = &mut options.settings.amqp;
    settings.queue_type = QueueType::Quorum;
    settings.quorum_initial_group_size = Some(3);
    {
        let (conn, channel) = cluster.channel(2).await;
        topology::declare(&channel, settings)
            .await
            .expect("declare through node 2");
        let _ = conn.close(200, "declared".into()).await;
    }
    let queue = topology::queue_name(settings, Kind::Other);
    let leader = cluster.leader(&queue).await;
    settings.urls = NODES
        .into_iter()
        .filter(|n| *n != leader)
        .chain([leader])
        .map(url)
        .collect();
    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    let relay_node = node_at(&broker_in_use(&app, None).await);
    assert_ne!(
        relay_node, leader,
        "the relay connects to a node that does not lead"
    );

    let run = unique("leader");
    let mut before = HashSet::new();
    for i in 0..20u64 {
        before.insert(app.accept(load_event(&run, i)).await);
    }
    cluster.take_ids(relay_node, &queue, &before).await;

    cluster.kill(&[leader]).await;
    let mut after = HashSet::new();
    for i in 20..60u64 {
        after.insert(app.accept(load_event(&run, i)).await);
    }
    cluster.take_ids(relay_node, &queue, &after).await;
    app.wait_outbox_empty().await;
    let new_leader = cluster.leader(&queue).await;
    assert_ne!(new_leader, leader, "a new leader was elected");

    cluster.start(&[leader]).await;
    cluster.done(app).await;
}

#[tokio::test]
async fn the_whole_cluster_down_then_back_drains_the_outbox() {
    let cluster = Cluster::get().await;
    let app = relay(&NODES).await;
    let run = unique("down");
    let mut ids = HashSet::new();
    for i in 0..10u64 {
        ids.insert(app.accept(load_event(&run, i)).await);
    }

    // Stopped, not killed: RabbitMQ 3.10 killed on every node seconds after declaring a
    // quorum queue was seen to bring it back with no Raft state (all members followers at
    // term 0, no leader elected, ever); a crash of a minority is what the tests above cover.
    cluster.stop(&NODES).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get("/readyz").await.status() != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still ready with every node down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 10..40u64 {
        ids.insert(app.accept(load_event(&run, i)).await);
    }
    assert!(
        app.store.stats().outbox > 0,
        "nothing can be confirmed with every node down"
    );

    cluster.start(&NODES).await;
    app.wait_ready().await;
    let node = node_at(&broker_in_use(&app, None).await);
    cluster.take_ids(node, &app.queue(Kind::Other), &ids).await;
    app.wait_outbox_empty().await;
    cluster.done(app).await;
}
