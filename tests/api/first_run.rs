//! A safe first run: the placeholder `change-me` is refused, a connection without a token gets a
//! generated one that is kept private in the data directory, reused on restart, and shown only in
//! the webhook URL printed at start-up; `check-config` says which connections need one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use whaticket_relay::config::{ConnectionSettings, Secret};

use crate::helpers::*;
use crate::load::{delete_topology, ChildConfig, RelayProcess};

/// The URLs the relay printed to paste into Whaticket: `(connection, token, url)`.
fn printed_urls(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|line| line.strip_prefix("    http://"))
        .map(|rest| {
            let url = format!("http://{rest}");
            let mut parts = rest.rsplitn(3, '/');
            let token = parts.next().expect("token").to_owned();
            let connection = parts.next().expect("connection").to_owned();
            (connection, token, url)
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn check_config(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .expect("run check-config");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).expect("utf-8")
}

/// The printed URLs of one start: loja's and velha's, on this relay's port, each token once in
/// everything the process wrote (trace-level logs included).
fn urls_of(relay: &RelayProcess) -> Vec<(String, String, String)> {
    let log = relay.log();
    let urls = printed_urls(&log);
    let names: Vec<_> = urls.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(names, ["loja", "velha"], "log:\n{log}");
    for (connection, token, url) in &urls {
        let base = format!("http://127.0.0.1:{}/hooks/{connection}/", relay.port);
        assert!(url.starts_with(&base), "{url} is not on {base}");
        assert_eq!(token.len(), 43, "{token}");
        assert_eq!(
            log.matches(token.as_str()).count(),
            1,
            "token shown more than once:\n{log}"
        );
    }
    // Bound to 127.0.0.1, not every interface: no hint to replace the address.
    assert!(!log.contains("listens on every interface"), "{log}");
    urls
}

#[tokio::test]
async fn a_first_run_prints_a_working_url_and_keeps_its_token_private_across_restarts() {
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let mut child = ChildConfig::new();
    child.connections = "[[connections]]\nname = \"loja\"\n\n\
                         [[connections]]\nname = \"velha\"\ntokens = [\"change-me\"]\n"
        .to_owned();
    let data = child.dir.path().join("data");

    let config = child.write(0);
    let notes = check_config(&config);
    assert!(notes.contains("connection `loja` needs a token"), "{notes}");
    assert!(
        notes.contains("connection `velha` needs a token"),
        "{notes}"
    );
    assert!(
        notes.contains("connections[1].tokens: `change-me` is never accepted"),
        "{notes}"
    );
    assert!(
        !data.join("webhook-tokens").exists(),
        "check-config wrote a token"
    );

    let mut relay = child.spawn().await;
    let first = urls_of(&relay);
    for (connection, token, url) in &first {
        assert_eq!(
            post_status(url, fixture("status-open.json")).await,
            202,
            "{url}"
        );
        let file = data.join("webhook-tokens").join(connection);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{token}\n")
        );
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&data.join("webhook-tokens")), 0o700);
    let placeholder = relay.url("/hooks/velha/change-me");
    assert_eq!(
        post_status(&placeholder, fixture("message-start.json")).await,
        401
    );
    let bearer = reqwest::Client::new()
        .post(relay.url("/hooks/velha"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer change-me")
        .body(fixture("message-start.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(bearer.status(), 401);

    let notes = check_config(&config);
    for name in ["loja", "velha"] {
        assert!(
            notes.contains(&format!(
                "connection `{name}` has no token in the configuration; `serve` uses the one generated"
            )),
            "{notes}"
        );
    }

    relay.signal("TERM");
    assert!(relay.wait_exit(Duration::from_secs(20)).await.success());
    let relay = child.spawn().await;
    let second = urls_of(&relay);
    assert!(
        relay.log().contains("generated on its first start"),
        "{}",
        relay.log()
    );
    for ((connection, token, _), (again, kept, url)) in first.iter().zip(&second) {
        assert_eq!(
            (connection, token),
            (again, kept),
            "token changed on restart"
        );
        assert_eq!(
            post_status(url, fixture("message-start.json")).await,
            202,
            "{url}"
        );
    }
    drop(relay);
    delete_topology(&channel, &child.exchange).await;
}

/// The README's first command: `serve` on config/default.toml as shipped, from the checkout
/// (only the data directory, the port and the broker names moved aside for the test).
#[tokio::test]
async fn the_shipped_default_config_prints_a_url_with_a_hint_for_every_interface() {
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|probe| probe.local_addr())
        .expect("free port")
        .port();
    let names = unique("default-config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_whaticket-relay"));
    command
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RELAY__STORAGE__PATH", dir.path().join("data"))
        .env("RELAY__METRICS__BIND", "127.0.0.1:0")
        .env("RELAY__SERVER__BIND", format!("0.0.0.0:{port}"))
        .env("RELAY__AMQP__EXCHANGE", &names)
        .env("RELAY__AMQP__QUEUE_PREFIX", &names)
        .env("RELAY__AMQP__QUEUE_TYPE", "classic");
    let relay = RelayProcess::start(command, port, dir.path().join("relay.log")).await;
    let log = relay.log();
    let urls = printed_urls(&log);
    assert_eq!(urls.len(), 1, "{log}");
    let (connection, _, url) = &urls[0];
    assert_eq!(connection, "default");
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/hooks/default/")),
        "{url}"
    );
    assert!(
        log.contains(&format!(
            "The relay listens on every interface (0.0.0.0:{port}): replace 127.0.0.1"
        )),
        "{log}"
    );
    assert_eq!(
        post_status(url, fixture("message-start.json")).await,
        202,
        "{url}"
    );
    assert_eq!(
        post_status(
            &relay.url("/hooks/default/change-me"),
            fixture("status-open.json")
        )
        .await,
        401
    );
    drop(relay);
    delete_topology(&channel, &names).await;
}

#[tokio::test]
async fn change_me_is_refused_beside_a_real_token() {
    let mut options = Options::new();
    options.settings.connections[0].tokens = vec![Secret::new("change-me"), Secret::new(TOKEN)];
    let app = spawn_app_with(options).await;
    let placeholder = app.post_hook_as(CONNECTION, "change-me", fixture("message-start.json"));
    assert_eq!(placeholder.await.status(), 401);
    assert_eq!(
        app.post_hook(fixture("message-start.json")).await.status(),
        202
    );
    // A real credential is there: nothing was generated.
    assert!(!app.settings.storage.path.join("webhook-tokens").exists());
}

#[tokio::test]
async fn a_connection_added_without_a_token_by_a_reload_gets_one() {
    let app = spawn_app().await;
    let mut settings = app.settings.clone();
    settings.connections.push(ConnectionSettings {
        name: "nova".to_owned(),
        tokens: Vec::new(),
        hmac_secrets: Vec::new(),
        company_id: None,
        rules: Vec::new(),
        body: None,
    });
    let done = app.reload.apply(settings.clone()).expect("reload");
    assert_eq!(done.connections, 2);
    let file = settings.storage.path.join("webhook-tokens").join("nova");
    let token = std::fs::read_to_string(&file).expect("token kept");
    assert_eq!(mode(&file), 0o600);
    let accepted = app.post_hook_as("nova", token.trim(), fixture("message-start.json"));
    assert_eq!(accepted.await.status(), 202);
    // Applying the same config again keeps the same token.
    app.reload.apply(settings).expect("reload");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    let accepted = app.post_hook_as("nova", token.trim(), fixture("status-open.json"));
    assert_eq!(accepted.await.status(), 202);
}
