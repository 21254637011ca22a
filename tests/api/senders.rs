//! Other Whaticket-family senders, with the credentials where each puts them: every fork body in
//! `tests/fixtures/forks/` is taken through the real endpoint with its sender's headers
//! (`expected.json`), and the same request with a tampered credential or body is refused; each
//! gets its kind, dedup behaviour, queue and `format` header.

use std::collections::BTreeMap;

use lapin::types::AMQPValue;
use reqwest::StatusCode;
use serde_json::Value;
use whaticket_relay::config::RuleSettings;
use whaticket_relay::event::Kind;
use whaticket_relay::http::verify::sign_body;

use crate::helpers::*;

/// `expected.json`: per file, the headers its sender uses (`{token}`, `{hmac_hex}` placeholders).
fn expected() -> Vec<(String, Vec<(String, String)>)> {
    let index: Value =
        serde_json::from_slice(&fixture("forks/expected.json")).expect("expected.json is JSON");
    let files = index.as_object().expect("expected.json is an object");
    assert!(files.len() >= 13, "the fork fixtures are all listed");
    files
        .iter()
        .map(|(file, spec)| {
            let headers = spec["headers"]
                .as_object()
                .expect("headers object")
                .iter()
                .map(|(name, value)| {
                    let value = value.as_str().expect("header template is text");
                    (name.clone(), value.to_owned())
                })
                .collect();
            (file.clone(), headers)
        })
        .collect()
}

fn hmac_hex(body: &[u8]) -> String {
    sign_body(HMAC_SECRET.as_bytes(), body)["sha256=".len()..].to_owned()
}

/// Posts `body` as its sender does: with headers to `/hooks/{connection}`, without them to the
/// URL carrying the token (what a Whaticket user pastes).
async fn send(
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

#[tokio::test]
async fn each_fork_authenticates_the_way_its_sender_does() {
    let app = spawn_app().await;
    for (file, headers) in expected() {
        let body = fixture(&format!("forks/{file}"));
        let response = send(&app, &headers, TOKEN, &body, body.clone()).await;
        let status = response.status();
        // Two files are one event in two formats: the second may be a duplicate (200).
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::OK,
            "{file}: {status}"
        );
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(answer["id"].as_str().map(str::len), Some(32), "{file}");
    }
}

#[tokio::test]
async fn each_fork_with_a_tampered_credential_or_body_is_refused() {
    let app = spawn_app().await;
    let wrong_token = format!("{}x", &TOKEN[..TOKEN.len() - 1]);
    for (file, headers) in expected() {
        let body = fixture(&format!("forks/{file}"));
        let signed = headers.iter().any(|(_, v)| v.contains("{hmac_hex}"));
        if signed {
            // The signature is over the body, not the token: tamper with the body instead.
            let mut tampered = body.clone();
            let last = tampered.len() - 2;
            tampered[last] = b' ';
            let refused = send(&app, &headers, TOKEN, &body, tampered).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{file}");
            let answer: Value = refused.json().await.expect("JSON answer");
            assert_eq!(answer["error"], "unauthorized", "{file}");
            // And a signature of other bytes.
            let mut other = body.clone();
            other.push(b' ');
            let refused = send(&app, &headers, TOKEN, &other, body.clone()).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{file}");
        } else {
            let response = send(&app, &headers, &wrong_token, &body, body.clone()).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{file}");
            let answer: Value = response.json().await.expect("JSON answer");
            assert_eq!(answer["error"], "unauthorized", "{file}");
        }
    }
    // Nothing refused was stored.
    assert_eq!(app.store.stats().outbox, 0);
    assert_eq!(app.store.stats().dedup_keys, 0);
}

/// The format each fork fixture is in (what the `format` header and metric must say).
fn format_of(file: &str) -> &'static str {
    match file.split('-').next() {
        Some("saas" | "n8n" | "chamado") => "whaticket-saas",
        Some("baileys") => "baileys",
        Some("wwebjs") => "wwebjs",
        Some("izing") => "izing",
        Some("whazing") => "whazing",
        Some("envelope") => "envelope",
        _ => panic!("{file}: no format known for this fixture"),
    }
}

/// `expected.json`'s kind and `same_event_as` group of a file.
fn spec(file: &str) -> (Kind, Option<String>) {
    let index: Value =
        serde_json::from_slice(&fixture("forks/expected.json")).expect("expected.json is JSON");
    let entry = &index[file];
    let kind = Kind::ALL
        .into_iter()
        .find(|k| entry["kind"] == k.as_str())
        .unwrap_or_else(|| panic!("{file}: unknown kind {}", entry["kind"]));
    (kind, entry["same_event_as"].as_str().map(str::to_owned))
}

fn header_text(delivery: &lapin::message::BasicGetMessage, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn each_fork_gets_its_kind_dedup_and_queue_with_its_format() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // Per accepted id: the file, its kind and its format.
    let mut accepted: BTreeMap<String, (String, Kind, &'static str)> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<(String, StatusCode, String)>> = BTreeMap::new();
    for (file, headers) in expected() {
        let body = fixture(&format!("forks/{file}"));
        let response = send(&app, &headers, TOKEN, &body, body.clone()).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON answer");
        let id = answer["id"].as_str().expect("an id").to_owned();
        let (kind, group) = spec(&file);
        if let Some(group) = group {
            groups
                .entry(group)
                .or_default()
                .push((file.clone(), status, id.clone()));
        }
        if status == StatusCode::ACCEPTED {
            assert_eq!(answer["kind"], kind.as_str(), "{file}");
            let clash = accepted.insert(id, (file.clone(), kind, format_of(&file)));
            assert!(clash.is_none(), "{file} shares an id with {clash:?}");
        } else {
            assert_eq!(status, StatusCode::OK, "{file}: {answer}");
            assert_eq!(answer["status"], "duplicate", "{file}");
        }
    }
    // The same message in two formats: one event, the second a duplicate.
    assert!(!groups.is_empty(), "expected.json pairs some files");
    for (group, members) in &groups {
        assert!(members.len() >= 2, "{group}: {members:?}");
        let (first, rest) = members.split_first().expect("members");
        assert_eq!(first.1, StatusCode::ACCEPTED, "{group}: {members:?}");
        for member in rest {
            assert_eq!(member.1, StatusCode::OK, "{group}: {members:?}");
            assert_eq!(member.2, first.2, "{group}: {members:?}");
        }
    }
    let unpaired = expected().len() - groups.values().map(|m| m.len() - 1).sum::<usize>();
    assert_eq!(
        accepted.len(),
        unpaired,
        "every other file is an event of its own"
    );

    // Each event reaches its kind's queue, with the sender's format as a header.
    let mut per_kind: BTreeMap<&str, (Kind, usize)> = BTreeMap::new();
    for (_, kind, _) in accepted.values() {
        per_kind.entry(kind.as_str()).or_insert((*kind, 0)).1 += 1;
    }
    assert!(per_kind.contains_key("receipt") && per_kind.contains_key("connection"));
    for (kind, count) in per_kind.into_values() {
        for delivery in app.take_n(&app.queue(kind), count).await {
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .expect("message_id");
            let (file, expected_kind, format) = &accepted[&id];
            assert_eq!(*expected_kind, kind, "{file}");
            assert_eq!(
                header_text(&delivery, "format").as_deref(),
                Some(*format),
                "{file}"
            );
        }
    }

    // The operator sees which forks post to the connection.
    let metrics = app.metrics_text().await;
    for format in [
        "whaticket-saas",
        "izing",
        "whazing",
        "baileys",
        "wwebjs",
        "envelope",
    ] {
        let count = accepted.values().filter(|(_, _, f)| *f == format).count();
        let line = format!(
            "relay_events_by_format_total{{connection=\"{CONNECTION}\",format=\"{format}\"}} {count}"
        );
        assert!(metrics.contains(&line), "no `{line}` in:\n{metrics}");
    }
}

#[tokio::test]
async fn one_message_from_two_forks_or_replayed_is_one_event_over_http() {
    let app = spawn_app().await;
    let post = |body: Vec<u8>| {
        let app = &app;
        async move {
            let response = app.post_hook(body).await;
            let status = response.status();
            let answer: Value = response.json().await.expect("JSON answer");
            (status, answer["id"].as_str().expect("id").to_owned())
        }
    };
    let (status, wwebjs) = post(fixture("forks/wwebjs-raw.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The same WhatsApp message as a raw Baileys message, timestamp as a protobuf Long.
    let baileys = br#"{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":false,"id":"3EB0CAFE00000001"},"messageTimestamp":{"low":1714644000,"high":0,"unsigned":true},"message":{"conversation":"preciso de ajuda"}}"#;
    assert_eq!(
        post(baileys.to_vec()).await,
        (StatusCode::OK, wwebjs.clone())
    );
    // And n8n-wrapped, timestamp as a string.
    let wrapped = br#"{"headers":{"host":"n8n"},"body":{"message":{"key":{"id":"3EB0CAFE00000001"},"messageTimestamp":"1714644000"}},"executionMode":"production"}"#;
    assert_eq!(
        post(wrapped.to_vec()).await,
        (StatusCode::OK, wwebjs.clone())
    );
    // Another ack of an acknowledged message is another receipt; the same ack again is not.
    let ack = fixture("forks/izing-ack.json");
    let (first, read) = post(ack.clone()).await;
    assert_eq!(first, StatusCode::ACCEPTED);
    let again = String::from_utf8(ack.clone())
        .expect("UTF-8")
        .replace("1714644009000", "1714644099000");
    assert_eq!(
        post(again.into_bytes()).await,
        (StatusCode::OK, read.clone())
    );
    let played = String::from_utf8(ack)
        .expect("UTF-8")
        .replace(r#""ack": 3"#, r#""ack": 4"#);
    let (status, other) = post(played.into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(other, read);
}

/// The next fork, without a release: a connection's rules classify its bodies and key them, and
/// a reload (what SIGHUP does) puts new rules in force or refuses invalid ones naming the key.
#[tokio::test]
async fn a_connections_rules_classify_the_next_fork_and_reload_with_the_config() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let body = |id: &str| {
        format!(r#"{{"evento":"mensagem_recebida","dados":{{"mensagemId":"{id}","texto":"oi"}}}}"#)
    };
    let first = app.post_hook(body("3EB0C0FFEE000001")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let answer: Value = first.json().await.expect("JSON answer");
    assert_eq!(answer["kind"], "other", "no rule yet");

    let mut settings = app.settings.clone();
    settings.connections[0].rules = vec![RuleSettings {
        pointer: "/evento".to_owned(),
        equals: Some("mensagem_recebida".to_owned()),
        kind: "message".to_owned(),
        id: Some("/dados/mensagemId".to_owned()),
        ticket: None,
        time: None,
    }];
    app.reload
        .apply(settings.clone())
        .expect("valid rules apply");
    let response = app.post_hook(body("3EB0C0FFEE000002")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(answer["kind"], "message");
    // Keyed by the WhatsApp message id: the same message from a built-in sender is a duplicate.
    let baileys = app.post_hook(r#"{"key":{"id":"3EB0C0FFEE000002"}}"#).await;
    assert_eq!(baileys.status(), StatusCode::OK);
    let delivery = app.take(&app.queue(Kind::Message)).await;
    assert_eq!(
        delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        answer["id"].as_str()
    );

    let mut invalid = settings.clone();
    invalid.connections[0].rules[0].pointer = "evento".to_owned();
    let refused = app
        .reload
        .apply(invalid)
        .expect_err("an invalid pointer is refused");
    let text = whaticket_relay::report::chain(&refused);
    assert!(text.contains("connections[0].rules[0].pointer"), "{text}");
    // The rules in force stay.
    let again = app.post_hook(body("3EB0C0FFEE000003")).await;
    let answer: Value = again.json().await.expect("JSON answer");
    assert_eq!(answer["kind"], "message");
}
