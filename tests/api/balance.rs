//! Two relays behind nginx (Debian's package, run unprivileged from a temp dir) with the
//! consistent hash on the connection, configured by the nginx block of docs/deploy.md itself:
//! a connection sticks to one relay, moves when its relay stops, loses no webhook on the way,
//! and the stopped relay's outbox is delivered when it starts again, under the same event ids.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use whaticket_relay::config::{AmqpUrl, ConnectionSettings, Secret};
use whaticket_relay::event::Kind;

use crate::helpers::*;
use crate::load::{drain_until, load_event, Load};

/// Connections spread over the two relays; with 16, the chance that all hash to one relay is
/// 2 in 65 536.
const CONNECTIONS: usize = 16;
/// Seqs of the events posted one by one, above those of the load (which counts from 0).
const HASHED: u64 = 1_000_000;
const MARKER: u64 = 2_000_000;

struct Nginx {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The `nginx` block of docs/deploy.md, pointed at `upstreams` and listening on `port`.
fn deploy_config(dir: &Path, port: u16, upstreams: &[u16]) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy.md"))
        .expect("docs/deploy.md");
    let start = doc
        .find("```nginx\n")
        .expect("an nginx block in docs/deploy.md")
        + 9;
    let block = &doc[start..start + doc[start..].find("```").expect("end of the block")];
    let mut servers_written = false;
    let mut out = String::new();
    for line in block.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("server relay-") {
            if !servers_written {
                for upstream in upstreams {
                    out.push_str(&format!("    server 127.0.0.1:{upstream} max_fails=0;\n"));
                }
                servers_written = true;
            }
            continue;
        }
        let line = match trimmed {
            "listen 443 ssl;" => format!("    listen 127.0.0.1:{port};"),
            t if t.starts_with("access_log ") => {
                format!("    access_log {}/access.log relay;", dir.display())
            }
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        servers_written,
        "the block lists the relays as `server relay-…`"
    );
    let d = dir.display();
    format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\nmaster_process off;\n\
         events {{}}\nhttp {{\n\
         client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\nuwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
         {out}}}\n"
    )
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Nginx {
    async fn start(upstreams: &[u16]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, deploy_config(dir.path(), port, upstreams)).expect("write config");
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if running_as_root() {
            // Unprivileged: as nobody, in a directory of its own.
            use std::os::unix::process::CommandExt;
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).expect("chown");
            command.uid(65534).gid(65534);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run nginx: {e} (install it: apt-get install -y nginx; .ci/run does)")
        });
        let mut nginx = Nginx {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = nginx.child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log"))
                    .unwrap_or_default();
                panic!("nginx exited ({status}): {err}{log}");
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    fn hook_url(&self, connection: &str) -> String {
        format!("http://127.0.0.1:{}/hooks/{connection}/{TOKEN}", self.port)
    }
}

impl Drop for Nginx {
    /// One process (`master_process off`): killing it leaves no worker behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(app: &TestApp) -> u16 {
    app.address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

fn connection(i: usize) -> String {
    format!("loja-{i}")
}

async fn accepted(app: &TestApp, connection: &str) -> u64 {
    let sample =
        format!(r#"relay_events_accepted_total{{connection="{connection}",kind="other"}}"#);
    crate::failover::metric(app, &sample).await.unwrap_or(0.0) as u64
}

#[tokio::test]
async fn two_relays_behind_nginx_share_connections_and_hand_them_over() {
    // Relay A reaches the broker through a proxy: cut, its events stay in its outbox.
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let mut a = Options::new();
    a.settings.connections = (0..CONNECTIONS)
        .map(|i| ConnectionSettings {
            name: connection(i),
            tokens: vec![Secret::new(TOKEN)],
            hmac_secrets: Vec::new(),
            company_id: None,
            rules: Vec::new(),
            body: None,
        })
        .collect();
    let mut b = Options::new();
    // The same exchange and queues: one system, two relays.
    b.settings.amqp = a.settings.amqp.clone();
    b.settings.connections = a.settings.connections.clone();
    a.settings.amqp.url = AmqpUrl::new(proxy.url());
    let relay_a = spawn_app_with(a).await;
    let relay_b = spawn_app_with(b).await;
    relay_a.wait_ready().await;
    relay_b.wait_ready().await;
    let nginx = Nginx::start(&[port_of(&relay_a), port_of(&relay_b)]).await;
    let http = reqwest::Client::new();
    let post = |connection: String, body: String| {
        let (http, url) = (http.clone(), nginx.hook_url(&connection));
        async move {
            let response = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("nginx answers");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("JSON");
            (status, body["id"].as_str().unwrap_or_default().to_owned())
        }
    };

    // Each connection lands on one relay, and stays there: a repeat is a duplicate.
    let run = unique("hash");
    let mut on_a = None;
    for i in 0..CONNECTIONS {
        let c = connection(i);
        let body = load_event(&run, HASHED + i as u64);
        assert_eq!(post(c.clone(), body.clone()).await.0, 202);
        assert_eq!(
            post(c.clone(), body).await.0,
            200,
            "{c}: the repeat meets the same relay"
        );
        let (at_a, at_b) = (accepted(&relay_a, &c).await, accepted(&relay_b, &c).await);
        assert_eq!(at_a + at_b, 1, "{c} was stored once");
        if at_a == 1 && on_a.is_none() {
            on_a = Some(c);
        }
    }
    let moving = on_a.expect("some connection hashes to relay A");
    let mut want: HashSet<u64> = (HASHED..HASHED + CONNECTIONS as u64).collect();

    // Relay A cannot deliver; what it accepts stays in its outbox.
    proxy.cut();
    let marker = load_event(&run, MARKER);
    let (status, marker_id) = post(moving.clone(), marker.clone()).await;
    assert_eq!(status, 202);
    want.insert(MARKER);

    let load = Load::start(nginx.hook_url(&moving), unique("moving"), 2);
    load.accept_more(50).await;
    assert!(
        relay_a.store.stats().outbox > 0,
        "relay A holds undelivered events"
    );
    let (settings_a, data_a) = relay_a.stop().await;
    load.accept_more(50).await;
    let tally = load.stop().await;
    tally.assert_all_accepted("while the connection moved to the other relay");
    // Relay B has never seen the marker: it takes it, under the id relay A gave it.
    let (status, moved_id) = post(moving.clone(), marker).await;
    assert_eq!(status, 202, "relay B accepts what relay A holds");
    assert_eq!(
        moved_id, marker_id,
        "the event id is the same on every relay"
    );

    // Relay A back: its outbox is delivered.
    proxy.restore();
    let relay_a = spawn_app_with(Options {
        settings: settings_a,
        data_dir: Some(data_a),
    })
    .await;
    relay_a.wait_ready().await;
    relay_a.wait_outbox_empty().await;
    want.extend(tally.accepted.keys());
    let seen = drain_until(&relay_b.channel, &relay_b.queue(Kind::Other), &want).await;
    for (seq, id) in &tally.accepted {
        assert!(
            seen[seq].iter().all(|got| got == id),
            "event {seq}: message ids {:?}, answered {id}",
            seen[seq]
        );
    }
    let copies = &seen[&MARKER];
    assert!(
        copies.len() >= 2 && copies.iter().all(|id| *id == marker_id),
        "the marker came from both relays with one message_id: {copies:?}"
    );
}
