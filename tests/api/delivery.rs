//! End to end: each fixture reaches its queue with the documented properties, once.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use whaticket_relay::config::QueueType;
use whaticket_relay::event::Kind;

use crate::helpers::*;

const FIXTURES: &[(&str, Kind, &str, &str)] = &[
    ("message-start.json", Kind::Message, "start", "created"),
    ("message-from-me.json", Kind::Message, "start", "created"),
    ("message-group.json", Kind::Message, "start", "created"),
    ("message-no-caption.json", Kind::Message, "start", "created"),
    ("message-no-queue.json", Kind::Message, "start", "created"),
    (
        "message-from-internal.json",
        Kind::Message,
        "from_internal",
        "created",
    ),
    ("media-fila-data.json", Kind::Media, "fila-data", "created"),
    ("status-open.json", Kind::Status, "open", "open"),
    ("status-closed.json", Kind::Status, "closed", "closed"),
    ("tag-sync.json", Kind::Tags, "tag-sync", "sync"),
];

fn header<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a AMQPValue> {
    headers.inner().get(name)
}

fn header_str(headers: &FieldTable, name: &str) -> String {
    match header(headers, name) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => panic!("header {name}: {other:?}"),
    }
}

#[tokio::test]
async fn every_fixture_lands_in_its_queue_with_the_documented_properties() {
    let mut options = Options::new();
    // The production default, so the quorum topology is exercised end to end.
    options.settings.amqp.queue_type = QueueType::Quorum;
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    for (name, kind, action, change) in FIXTURES {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let response = app.post_hook(fixture(name)).await;
        assert_eq!(response.status(), 202, "{name}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["kind"], kind.as_str(), "{name}");
        let id = answer["id"].as_str().unwrap().to_owned();

        let message = app.take(&app.queue(*kind)).await;
        let delivery = &message.delivery;
        let props = &delivery.properties;
        let input: Value = serde_json::from_slice(&fixture(name)).unwrap();
        let company = input["companyId"]
            .as_i64()
            .or(input["tags"]["tags"][0]["companyId"].as_i64())
            .unwrap_or(0);
        assert_eq!(
            delivery.routing_key.as_str(),
            format!("{kind}.{company}.{CONNECTION}.{change}"),
            "{name}"
        );
        assert_eq!(
            props.message_id().as_ref().map(|s| s.as_str()),
            Some(id.as_str()),
            "{name}"
        );
        assert_eq!(
            props.kind().as_ref().map(|s| s.as_str()),
            Some(kind.as_str()),
            "{name}"
        );
        assert_eq!(
            props.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            props.app_id().as_ref().map(|s| s.as_str()),
            Some("whaticket-relay")
        );
        assert_eq!(*props.delivery_mode(), Some(2), "persistent");
        let ts = props.timestamp().expect("timestamp");
        assert!(ts >= before && ts <= before + 5, "{name}: timestamp {ts}");

        let headers = props.headers().as_ref().expect("headers");
        assert_eq!(header_str(headers, "connection"), CONNECTION);
        assert_eq!(header_str(headers, "action"), *action);
        assert_eq!(header_str(headers, "change"), *change, "{name}");
        let received_at = header_str(headers, "received_at");
        assert!(
            received_at.ends_with('Z') && received_at.contains('.'),
            "{received_at}"
        );
        if let Some(ticket) = input["chamadoId"].as_i64() {
            assert!(
                matches!(header(headers, "ticket_id"), Some(AMQPValue::LongLongInt(t)) if *t == ticket)
                    || matches!(header(headers, "ticket_id"), Some(AMQPValue::LongInt(t)) if i64::from(*t) == ticket),
                "{name}: ticket_id {:?}",
                header(headers, "ticket_id")
            );
        }

        // The relayed body is the received one, byte for byte, but for redacted values.
        let relayed = String::from_utf8(delivery.data.clone()).unwrap();
        let original = String::from_utf8(fixture(name)).unwrap();
        let expected = original.replace(
            r#""token_origin": "c0nn3ct10n-t0k3n""#,
            r#""token_origin": "[redacted]""#,
        );
        assert_eq!(relayed, expected, "{name}");
    }
    app.wait_outbox_empty().await;
    for kind in Kind::ALL {
        assert_eq!(
            app.queue_len(&app.queue(kind)).await,
            0,
            "{kind}: an event was relayed twice"
        );
    }
}

#[tokio::test]
async fn a_body_larger_than_a_frame_arrives_byte_for_byte() {
    // The publisher proposes 32 KiB frames: a media message with its file inline (some forks
    // send base64) goes out in many body frames and must arrive whole, unchanged.
    let app = spawn_app().await;
    app.wait_ready().await;
    let mut input: Value = serde_json::from_slice(&fixture("message-from-me.json")).unwrap();
    let blob: String = (0..300_000u32)
        .map(|i| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(i * 7 % 64) as usize],
            )
        })
        .collect();
    input["mediaBase64"] = Value::String(blob);
    let body = serde_json::to_vec(&input).unwrap();
    assert!(body.len() > 9 * 32 * 1024, "{} bytes", body.len());
    let response = app.post_hook(body.clone()).await;
    assert_eq!(response.status(), 202);
    let message = app.take(&app.queue(Kind::Message)).await;
    assert!(
        message.delivery.data == body,
        "relayed {} bytes for {} sent, or other bytes",
        message.delivery.data.len(),
        body.len()
    );
}

#[tokio::test]
async fn one_message_in_two_formats_is_relayed_once() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let first = app.post_hook(fixture("message-from-internal.json")).await;
    assert_eq!(first.status(), 202);
    let second = app.post_hook(fixture("message-queue-webhook.json")).await;
    assert_eq!(second.status(), 200);
    let replay = app.post_hook(fixture("message-from-internal.json")).await;
    assert_eq!(replay.status(), 200);

    let message = app.take(&app.queue(Kind::Message)).await;
    assert!(String::from_utf8_lossy(&message.delivery.data).contains("from_internal"));
    app.wait_outbox_empty().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.queue_len(&app.queue(Kind::Message)).await, 0);
}

#[tokio::test]
async fn n8n_wrapped_body_is_unwrapped() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let inner = String::from_utf8(fixture("status-closed.json")).unwrap();
    let wrapped = format!(
        r#"{{"headers":{{"host":"n8n"}},"params":{{}},"query":{{}},"body":{inner},"webhookUrl":"https://n8n/x","executionMode":"production"}}"#
    );
    let response = app.post_hook(wrapped).await;
    assert_eq!(response.status(), 202);
    let message = app.take(&app.queue(Kind::Status)).await;
    assert_eq!(
        String::from_utf8(message.delivery.data.clone()).unwrap(),
        inner
    );
    // The same event unwrapped is a duplicate of the wrapped one.
    assert_eq!(app.post_hook(inner).await.status(), 200);
}

#[tokio::test]
async fn unknown_actions_are_relayed_as_other() {
    let app = spawn_app().await;
    app.wait_ready().await;
    for action in ["queue_webhook_update", "end", "something-new"] {
        let body = format!(r#"{{"acao":"{action}","chamadoId":9,"companyId":3}}"#);
        let response = app.post_hook(body.clone()).await;
        assert_eq!(response.status(), 202, "{action}");
        let message = app.take(&app.queue(Kind::Other)).await;
        assert_eq!(message.delivery.data, body.as_bytes());
        assert_eq!(
            message.delivery.routing_key.as_str(),
            format!("other.3.{CONNECTION}.other")
        );
    }
}

/// A kind queue unbound under the relay: the broker returns the event (NO_ROUTE); the relay
/// declares its topology again and resends it, so it is delivered, not dead-lettered.
#[tokio::test]
async fn an_unbound_queue_is_bound_again_and_its_event_delivered() {
    let app = spawn_app().await;
    app.wait_ready().await;
    app.unbind(Kind::Other).await;
    let body = r#"{"acao":"nobody-listens"}"#;
    let response = app.post_hook(body).await;
    assert_eq!(response.status(), 202);
    let message = app.take(&app.queue(Kind::Other)).await;
    assert_eq!(message.delivery.data, body.as_bytes());
    assert_eq!(app.counter("relay_publish_returns_total").await, 1);
    assert!(
        app.store.dead_list(10).expect("dead list").is_empty(),
        "nothing dead-lettered"
    );
    app.wait_outbox_empty().await;
    // Other kinds still flow.
    assert_eq!(
        app.post_hook(fixture("status-open.json")).await.status(),
        202
    );
    app.take(&app.queue(Kind::Status)).await;
}
