//! `amqp.body = "cloudevents"` and a connection's own `body`: what the relay really publishes
//! for every fixture validates against docs/schemas/cloudevents/{kind}.json, carries in
//! `data.raw` what raw mode publishes for the same body, and is the same event (kind, change,
//! routing) as raw mode's.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use whaticket_relay::config::Secret;
use whaticket_relay::event::{BodyMode, Kind};

use crate::contract::{fixtures, Validators};
use crate::helpers::*;

/// A second connection, publishing CloudEvents by `amqp.body` (the first says `raw` itself).
const CE_CONNECTION: &str = "suporte-ce";
const CE_TOKEN: &str = "ce-token-0123456789";

fn content_type(delivery: &lapin::message::BasicGetMessage) -> Option<&str> {
    delivery
        .properties
        .content_type()
        .as_ref()
        .map(|s| s.as_str())
}

/// The answer's status and event id.
async fn post(app: &TestApp, connection: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app.post_hook_as(connection, token, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// Both modes of one accepted body.
struct Pair {
    name: String,
    kind: Kind,
    raw_id: String,
    ce_id: String,
}

#[tokio::test]
async fn cloudevents_mode_publishes_every_fixture_valid_with_the_raw_body_in_data() {
    let mut options = Options::new();
    let settings = &mut options.settings;
    settings.amqp.body = BodyMode::CloudEvents;
    settings.connections[0].body = Some(BodyMode::Raw);
    let mut ce = settings.connections[0].clone();
    ce.name = CE_CONNECTION.to_owned();
    ce.tokens = vec![Secret::new(CE_TOKEN)];
    ce.hmac_secrets = Vec::new();
    ce.body = None;
    settings.connections.push(ce);
    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    let validators = Validators::cloudevents();

    let mut bodies = fixtures();
    bodies.push((
        "other".to_owned(),
        br#"{"acao":"inventory-sync","companyId":3,"items":[1,2]}"#.to_vec(),
    ));
    let mut pairs = Vec::new();
    for (name, body) in bodies {
        let (raw_status, raw) = post(&app, CONNECTION, TOKEN, body.clone()).await;
        let (ce_status, ce) = post(&app, CE_CONNECTION, CE_TOKEN, body).await;
        // The mode never changes what is a repeat.
        assert_eq!(raw_status, ce_status, "{name}: {raw} / {ce}");
        assert!(raw_status == 202 || raw_status == 200, "{name}: {raw}");
        if raw_status == 202 {
            assert_eq!(raw["kind"], ce["kind"], "{name}");
            let kind = Kind::from_name(raw["kind"].as_str().expect("kind")).expect("a kind");
            let id = |answer: &Value| answer["id"].as_str().expect("id").to_owned();
            pairs.push(Pair {
                name,
                kind,
                raw_id: id(&raw),
                ce_id: id(&ce),
            });
        }
    }
    let covered: BTreeSet<&str> = pairs.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(covered.len(), Kind::ALL.len(), "every kind: {covered:?}");

    let mut delivered: BTreeMap<String, lapin::message::BasicGetMessage> = app
        .take_each(pairs.iter().flat_map(|p| [p.kind, p.kind]))
        .await
        .into_iter()
        .map(|(_, id, delivery)| (id, delivery))
        .collect();
    let mut edited = false;
    for pair in &pairs {
        let name = &pair.name;
        let raw = delivered.remove(&pair.raw_id).expect("raw event delivered");
        let ce = delivered
            .remove(&pair.ce_id)
            .expect("CloudEvents event delivered");
        assert_eq!(content_type(&raw), Some("application/json"), "{name}");
        assert_eq!(
            content_type(&ce),
            Some("application/cloudevents+json"),
            "{name}"
        );
        let envelope = json_of(&ce.data);
        if let Err(e) = validators.check(pair.kind.as_str(), &envelope) {
            panic!("{name}: published CloudEvent breaks docs/schemas/cloudevents/{}.json: {e}\n{envelope:#}", pair.kind);
        }
        assert_eq!(
            envelope["data"]["raw"],
            json_of(&raw.data),
            "{name}: data.raw"
        );
        assert_eq!(envelope["id"], pair.ce_id.as_str(), "{name}");
        assert_eq!(
            envelope["source"],
            format!("/whaticket-relay/{CE_CONNECTION}")
        );
        let change = header_text(&ce, "change").expect("change header");
        assert_eq!(
            header_text(&raw, "change").as_deref(),
            Some(change.as_str())
        );
        assert_eq!(
            envelope["type"],
            format!("whaticket.{}.{change}", pair.kind),
            "{name}"
        );
        assert_eq!(envelope["data"]["change"], change.as_str());
        // The routing key is raw mode's, the connection aside.
        assert_eq!(
            ce.routing_key.as_str(),
            raw.routing_key
                .as_str()
                .replace(&format!(".{CONNECTION}."), &format!(".{CE_CONNECTION}.")),
            "{name}"
        );
        for header in ["format", "action"] {
            assert_eq!(
                header_text(&ce, header),
                header_text(&raw, header),
                "{name}"
            );
        }
        if name == "changes/whazing-edited.json" {
            assert_eq!(envelope["type"], "whaticket.message.edited");
            assert_eq!(envelope["data"]["message"]["id"], "3EB0A7F00D0000000012");
            edited = true;
            consumers_read_both(&raw, &ce);
        }
    }
    assert!(edited, "the edited message was relayed");
    assert!(
        delivered.is_empty(),
        "unexpected deliveries: {:?}",
        delivered.keys()
    );

    // The schemas are strict where the relay is: a wrong type or kind is caught.
    let start = fixture("message-start.json");
    let (status, answer) = post(&app, CE_CONNECTION, CE_TOKEN, reordered(&start)).await;
    assert_eq!(status, 200, "a repeat in CloudEvents mode too: {answer}");
    let mut changed = json_of(&start);
    changed["mensagem"] = json!("outra mensagem");
    let (status, answer) = post(&app, CE_CONNECTION, CE_TOKEN, changed.to_string().into()).await;
    assert_eq!(status, 202, "{answer}");
    let delivery = app.take(&app.queue(Kind::Message)).await;
    let envelope = json_of(&delivery.data);
    assert_eq!(envelope["id"], answer["id"]);
    assert_eq!(envelope["data"]["message"]["text"], "outra mensagem");
    assert_eq!(envelope["subject"], "357");
    for (pointer, wrong) in [
        ("/type", json!("whaticket.message.closed")),
        ("/data/ticket/id", json!("357")),
        ("/data/kind", json!("status")),
        ("/data/raw/mensagem", json!(5)),
        ("/specversion", json!("0.3")),
    ] {
        let mut broken = envelope.clone();
        *broken.pointer_mut(pointer).expect("member exists") = wrong;
        assert!(
            validators.check("message", &broken).is_err(),
            "the message schema accepts {pointer} = {}",
            broken.pointer(pointer).expect("set")
        );
    }
}

/// examples/consumer.rs, compiled into the tests so that its reader is what they call.
#[allow(dead_code)]
#[path = "../../examples/consumer.rs"]
mod consumer_example;

/// The README's Python reader (its `read`, without pika) on `body` with `content_type`: the raw
/// body and the facts it returns, as JSON.
fn python_read(content_type: Option<&str>, body: &[u8]) -> Value {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("def read(")
        .expect("the README's Python read()");
    let end = start
        + readme[start..]
            .find("\ndef ")
            .expect("a function after read()");
    let script = format!(
        "import json, sys, types\n{}\nprops = types.SimpleNamespace(content_type=sys.argv[1] or None)\n\
         raw, facts = read(props, sys.stdin.buffer.read())\nprint(json.dumps([raw, facts]))\n",
        &readme[start..end]
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script, content_type.unwrap_or("")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the README's consumer is checked with it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(out.status.success(), "the README's read() failed");
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

/// Both consumer examples read the raw body and the CloudEvent of one event alike: the same
/// sender's body, and the facts only from the CloudEvent.
fn consumers_read_both(
    raw: &lapin::message::BasicGetMessage,
    ce: &lapin::message::BasicGetMessage,
) {
    let sender_body = json_of(&raw.data);
    let from_raw = consumer_example::read(raw).expect("the Rust example reads raw mode");
    let from_ce = consumer_example::read(ce).expect("the Rust example reads CloudEvents");
    assert_eq!(from_raw.raw, sender_body);
    assert_eq!(from_ce.raw, sender_body);
    assert!(from_raw.facts.is_none());
    let facts = from_ce.facts.expect("facts from the CloudEvent");
    assert_eq!(facts["change"], "edited");

    let [py_raw, py_ce] = [raw, ce].map(|d| python_read(content_type(d), &d.data));
    assert_eq!(py_raw, json!([sender_body, null]));
    assert_eq!(py_ce, json!([sender_body, facts]));
}

/// The relay with a broker it cannot reach: whatever it accepts stays in its outbox.
fn offline(mut options: Options) -> Options {
    options.settings.amqp.url =
        whaticket_relay::config::AmqpUrl::new("amqp://guest:guest@127.0.0.1:1/%2f");
    options
}

#[tokio::test]
async fn a_backlog_is_published_in_the_shape_it_was_stored_in_whatever_the_mode_is_now() {
    // Stored as CloudEvents while the broker is away, published after a restart in raw mode.
    let mut options = offline(Options::new());
    options.settings.amqp.body = BodyMode::CloudEvents;
    let app = spawn_app_with(options).await;
    let stored = app.accept(fixture("message-start.json")).await;
    let (mut settings, data_dir) = app.stop().await;
    settings.amqp.url = whaticket_relay::config::AmqpUrl::new(BROKER_URL);
    settings.amqp.body = BodyMode::Raw;
    let app = spawn_app_with(Options {
        settings,
        data_dir: Some(data_dir),
    })
    .await;
    app.wait_ready().await;
    // A repeat is a repeat across the change of mode.
    let (status, again) = post(&app, CONNECTION, TOKEN, fixture("message-start.json")).await;
    assert_eq!((status, again["id"].as_str()), (200, Some(stored.as_str())));
    let fresh = app.accept(fixture("status-open.json")).await;

    let backlog = app.take(&app.queue(Kind::Message)).await;
    assert_eq!(content_type(&backlog), Some("application/cloudevents+json"));
    let envelope = json_of(&backlog.data);
    assert_eq!(envelope["id"], stored.as_str());
    assert_eq!(
        envelope["data"]["raw"],
        json_of(&fixture("message-start.json"))
    );
    if let Err(e) = Validators::cloudevents().check("message", &envelope) {
        panic!("the stored envelope breaks its schema: {e}");
    }
    let now = app.take(&app.queue(Kind::Status)).await;
    assert_eq!(content_type(&now), Some("application/json"));
    assert_eq!(
        now.properties.message_id().as_ref().map(|s| s.as_str()),
        Some(fresh.as_str())
    );
    assert_eq!(json_of(&now.data), json_of(&fixture("status-open.json")));
    app.wait_outbox_empty().await;
}
