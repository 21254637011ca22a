//! The relay's own logs, at trace level, through a run of every fixture: no phone number, name,
//! message text, token or secret in them. Runs the real binary so every thread's output is caught.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::load::*;

/// Keys whose string values are personal data or credentials in Whaticket bodies.
const PERSONAL: [&str; 13] = [
    "body",
    "lastMessage",
    "mensagem",
    "name",
    "number",
    "sender",
    "remoteJid",
    "text",
    "conversao",
    "profilePicUrl",
    "token_origin",
    "webhook",
    "caption",
];

fn collect(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if PERSONAL.contains(&k.as_str()) && s.len() >= 5 => {
                        out.insert(s.clone());
                    }
                    _ => collect(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn logs_carry_no_personal_data_or_secrets() {
    let config = ChildConfig::new();
    let broker = broker_connection().await;
    let channel = broker.create_channel().await.expect("channel");
    let mut relay = config.spawn().await;
    let http = reqwest::Client::new();

    let mut sensitive = BTreeSet::new();
    let mut accepted = 0;
    // Every body shipped: Whaticket's own, the other forks' and those carrying credentials
    // (their index files are no bodies).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut names: Vec<String> = ["", "forks/", "credentials/"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(format!("{root}/{dir}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.ends_with(".json"))
                .filter(|name| name != "expected.json" && name != "secrets.json")
                .map(move |name| format!("{dir}{name}"))
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 31,
        "the three fixture folders were read: {names:?}"
    );
    // The credentials' values, wherever they stand in their bodies.
    let secrets: Value = serde_json::from_slice(&fixture("credentials/secrets.json")).unwrap();
    for spec in secrets.as_object().unwrap().values() {
        for value in spec["secret_values"].as_array().unwrap() {
            sensitive.insert(value.as_str().unwrap().to_owned());
        }
    }
    for name in &names {
        let body = fixture(name);
        collect(&serde_json::from_slice(&body).unwrap(), &mut sensitive);
        let response = http
            .post(relay.hook_url())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        // 200: some fixtures are the other format of an earlier one's message (deduplicated).
        assert!(
            matches!(response.status().as_u16(), 200 | 202),
            "{name}: {}",
            response.status()
        );
        accepted += usize::from(response.status() == 202);
        // Duplicates, bad credentials and broken bodies are logged too.
        assert_eq!(
            http.post(relay.hook_url())
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let wrong = relay.url(&format!("/hooks/{CONNECTION}/{TOKEN}-wrong"));
        assert_eq!(
            http.post(wrong)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let unknown = relay.url(&format!("/hooks/{TOKEN}/{HMAC_SECRET}"));
        assert_eq!(
            http.post(unknown)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        let truncated = body[..body.len() / 2].to_vec();
        assert_eq!(
            http.post(relay.hook_url())
                .body(truncated)
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
    }
    // A queue or session called "suporte" is no personal data, and the log names the connection
    // (`suporte-x`) on every line: such a value would be found for the wrong reason.
    sensitive.retain(|value| !CONNECTION.contains(value.as_str()));
    assert!(
        sensitive.len() > 20,
        "fixtures yielded too few values to look for: {sensitive:?}"
    );
    // The events reach the broker, so publisher logging is exercised as well.
    let total = accepted;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let delivered = loop {
        let mut delivered = 0;
        for kind in whaticket_relay::event::Kind::ALL {
            delivered += channel
                .queue_declare(
                    config.queue(kind).as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .map(|q| q.message_count() as usize)
                .unwrap_or(0);
        }
        if delivered >= total || std::time::Instant::now() >= deadline {
            break delivered;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    relay.signal("TERM");
    assert!(relay.wait_exit(Duration::from_secs(20)).await.success());

    let log = relay.log();
    assert!(log.contains("webhook"), "trace logs were captured: {log}");
    // Each accepted and each duplicate event has its line; refusals have one line per reason
    // (and minute), however many came.
    assert!(
        log.lines().count() > names.len() * 2,
        "too few log lines to mean anything"
    );
    let refusal_lines = log
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .count();
    assert!(
        (1..=2).contains(&refusal_lines),
        "{} refusals of two reasons logged in {refusal_lines} lines",
        names.len() * 3
    );
    for secret in [TOKEN, OLD_TOKEN, HMAC_SECRET, "guest:guest"] {
        assert!(!log.contains(secret), "secret {secret:?} in the logs");
    }
    for value in &sensitive {
        assert!(
            !log.contains(value.as_str()),
            "personal value {value:?} in the logs"
        );
    }
    assert_eq!(delivered, total, "every fixture reached its queue");
    delete_topology(&channel, &config.exchange).await;
}

#[test]
fn config_errors_never_echo_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // Wrong type on a secret key: figment quotes the value it found.
        (
            "[[connections]]\nname = \"a\"\ntokens = \"tok-secret-1\"\n",
            "tok-secret-1",
            vec![],
        ),
        (
            "[[connections]]\nname = \"a\"\ntokens = [98765432]\n",
            "98765432",
            vec![],
        ),
        ("[amqp]\nurl = 1234567\n", "1234567", vec![]),
        // A syntax error quotes the line it is on.
        (
            "[[connections]]\nname = \"a\"\ntokens = [\"tok-secret-2\n",
            "tok-secret-2",
            vec![],
        ),
        // The environment layer too.
        (
            "",
            "tok-env-secret-3",
            vec![(
                "RELAY__CONNECTIONS",
                "[{name=\"a\",tokens=\"tok-env-secret-3\"}]",
            )],
        ),
    ];
    for (i, (text, secret, env)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_whaticket-relay"))
            .args(["check-config", "--config"])
            .arg(&path)
            .envs(env)
            .output()
            .unwrap();
        assert!(!out.status.success(), "case {i} is invalid");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("invalid configuration"), "case {i}: {all}");
        assert!(!all.contains(secret), "case {i} printed the secret: {all}");
    }
}
