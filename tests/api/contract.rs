//! The consumer contract (docs/asyncapi.yaml, docs/schemas/): valid AsyncAPI 3.0.0, true to the
//! topology, and matching what the relay really publishes for every fixture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use lapin::types::AMQPValue;
use serde_json::{json, Value};
use whaticket_relay::config::Settings;
use whaticket_relay::event::{self, Change, Kind};
use whaticket_relay::publish::topology;

use crate::helpers::{fixture, spawn_app, CONNECTION};

pub(crate) fn docs(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(path)
}

pub(crate) fn asyncapi() -> Value {
    let path = docs("asyncapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("docs/asyncapi.yaml is not valid YAML: {e}"))
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Compiled JSON Schemas, by name.
pub(crate) struct Validators {
    schemas: boon::Schemas,
    index: BTreeMap<String, boon::SchemaIndex>,
}

impl Validators {
    fn new() -> Self {
        Self {
            schemas: boon::Schemas::new(),
            index: BTreeMap::new(),
        }
    }

    fn add(&mut self, name: &str, schema: Value) {
        let mut compiler = boon::Compiler::new();
        let loc = format!("urn:whaticket-relay-test:{name}");
        compiler
            .add_resource(&loc, schema)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let index = compiler
            .compile(&loc, &mut self.schemas)
            .unwrap_or_else(|e| panic!("{name} is not a valid JSON Schema: {e:#}"));
        self.index.insert(name.to_owned(), index);
    }

    pub(crate) fn check(&self, name: &str, value: &Value) -> Result<(), String> {
        let index = *self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("no schema {name}"));
        self.schemas
            .validate(value, index)
            .map_err(|e| format!("{e:#}"))
    }

    /// The CloudEvents JSON Schema of every kind, docs/schemas/cloudevents/{kind}.json, compiled
    /// from the file so that its `data.raw` reference loads the raw schema of the kind beside it.
    pub(crate) fn cloudevents() -> Self {
        let mut validators = Self::new();
        for kind in Kind::ALL {
            let path = docs(&format!("schemas/cloudevents/{kind}.json"));
            let path = path.to_str().expect("UTF-8 path");
            let index = boon::Compiler::new()
                .compile(path, &mut validators.schemas)
                .unwrap_or_else(|e| panic!("{path} is not a valid JSON Schema: {e:#}"));
            validators.index.insert(kind.as_str().to_owned(), index);
        }
        validators
    }

    /// The JSON Schema of every kind, from docs/schemas/{kind}.json.
    fn kinds() -> Self {
        let mut validators = Self::new();
        for kind in Kind::ALL {
            validators.add(
                kind.as_str(),
                json_file(&docs(&format!("schemas/{kind}.json"))),
            );
        }
        validators
    }
}

/// The kind the relay itself gives a body.
fn kind_of(body: &[u8]) -> Kind {
    let redact = Settings::default().redact.matcher();
    event::parse("contract", Bytes::copy_from_slice(body), &redact, 0)
        .expect("fixture parses")
        .meta
        .kind
}

/// Every fixture, the other senders' (`forks/`) and their changes (`changes/`) included.
pub(crate) fn fixtures() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = Vec::new();
    for sub in ["", "forks/", "changes/"] {
        let dir = root.join(sub);
        names.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| {
                    let name = e.expect("dir entry").file_name();
                    format!("{sub}{}", name.to_string_lossy())
                })
                .filter(|n| n.ends_with(".json") && !n.ends_with("expected.json")),
        );
    }
    names.sort();
    names
        .into_iter()
        .map(|n| (n.clone(), fixture(&n)))
        .collect()
}

#[test]
fn every_fixture_matches_the_schema_of_its_kind() {
    let validators = Validators::kinds();
    let mut covered = BTreeSet::new();
    for (name, body) in fixtures() {
        let kind = kind_of(&body);
        covered.insert(kind.as_str());
        let value: Value = serde_json::from_slice(&body).expect("fixture is JSON");
        if let Err(e) = validators.check(kind.as_str(), &value) {
            panic!("{name} ({kind}) does not match docs/schemas/{kind}.json: {e}");
        }
    }
    assert_eq!(
        covered,
        BTreeSet::from([
            "connection",
            "media",
            "message",
            "receipt",
            "status",
            "tags"
        ]),
        "fixtures of every kind but other"
    );

    // The schemas are lenient, not empty: wrong types are caught.
    let start: Value = serde_json::from_slice(&fixture("message-start.json")).expect("JSON");
    for (pointer, wrong) in [
        ("/chamadoId", json!("abc")),
        ("/mensagem", json!(5)),
        ("/ticketData/id", json!(true)),
    ] {
        let mut body = start.clone();
        *body.pointer_mut(pointer).expect("field exists") = wrong;
        assert!(
            validators.check("message", &body).is_err(),
            "message schema accepts {pointer} = {}",
            body.pointer(pointer).expect("set")
        );
    }
    assert!(
        validators
            .check("media", &json!({"acao": "start"}))
            .is_err(),
        "media needs acao fila-data"
    );
    assert!(validators
        .check(
            "tags",
            &json!({"action": "tag-sync", "tags": {"ticketId": []}})
        )
        .is_err());
    assert!(
        validators
            .check("receipt", &json!({"ack": "x", "messageId": ""}))
            .is_err(),
        "a receipt names its message"
    );
    assert!(
        validators
            .check("connection", &json!({"name": "x"}))
            .is_err(),
        "a connection event says its state"
    );
    assert!(
        validators.check("other", &json!([])).is_err(),
        "a body is always an object"
    );
    // Missing keys are fine: Whaticket leaves out what it does not know.
    assert!(validators
        .check("message", &json!({"acao": "start"}))
        .is_ok());
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    if let Some(target) = child.as_str() {
                        out.push((at.clone(), target));
                    }
                } else {
                    refs(child, format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn asyncapi_document_is_valid_and_true_to_the_topology() {
    let doc = asyncapi();

    // The official AsyncAPI 3.0.0 JSON Schema (vendored, self-contained).
    let mut official = Validators::new();
    official.add(
        "asyncapi-3.0.0",
        json_file(&docs("vendor/asyncapi/asyncapi-3.0.0.schema.json")),
    );
    if let Err(e) = official.check("asyncapi-3.0.0", &doc) {
        panic!("docs/asyncapi.yaml is not valid AsyncAPI 3.0.0: {e}");
    }
    let mut broken = doc.clone();
    broken["operations"]["publishMessage"]["action"] = json!("publish");
    assert!(
        official.check("asyncapi-3.0.0", &broken).is_err(),
        "the official schema catches a 2.x-style action"
    );
    assert_eq!(doc["asyncapi"], "3.0.0");

    // Every reference resolves: inside the document, or to a schema file that exists.
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    let mut files = BTreeSet::new();
    for (at, target) in &found {
        if let Some(pointer) = target.strip_prefix('#') {
            assert!(
                doc.pointer(pointer).is_some(),
                "{at}: $ref {target} resolves to nothing"
            );
        } else {
            let path = docs(target);
            assert!(
                path.is_file(),
                "{at}: $ref {target}: no file {}",
                path.display()
            );
            files.insert(target.trim_start_matches("./").to_owned());
        }
    }
    let expected: BTreeSet<String> = Kind::ALL
        .iter()
        .flat_map(|k| {
            [
                format!("schemas/{k}.json"),
                format!("schemas/cloudevents/{k}.json"),
            ]
        })
        .collect();
    assert_eq!(
        files, expected,
        "a payload schema per kind, raw and CloudEvents"
    );

    // Names are the relay's defaults, computed as the relay computes them.
    let amqp = Settings::default().amqp;
    let channels = doc["channels"].as_object().expect("channels");
    let operations = doc["operations"].as_object().expect("operations");
    for kind in Kind::ALL {
        let events = &channels[&format!("{kind}Events")];
        assert_eq!(
            events["address"],
            format!("{kind}.{{companyId}}.{{connection}}.{{change}}")
        );
        // The change words of the kind, as the relay names them.
        let param = events["parameters"]["change"]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|r| doc.pointer(r))
            .unwrap_or_else(|| panic!("{kind}: no change parameter"));
        let words: Vec<&str> = Change::of_kind(kind).iter().map(|c| c.as_str()).collect();
        assert_eq!(param["enum"], json!(words), "{kind}");
        assert!(topology::binding_key(kind).starts_with(&format!("{kind}.")));
        assert_eq!(events["bindings"]["amqp"]["is"], "routingKey");
        assert_eq!(
            events["bindings"]["amqp"]["exchange"]["name"],
            amqp.exchange.as_str()
        );
        assert_eq!(events["bindings"]["amqp"]["exchange"]["type"], "topic");

        let queue = &channels[&format!("{kind}Queue")];
        let name = topology::queue_name(&amqp, kind);
        assert_eq!(queue["address"], name.as_str());
        assert_eq!(queue["bindings"]["amqp"]["queue"]["name"], name.as_str());

        let message = &doc["components"]["messages"][kind.as_str()];
        assert_eq!(
            message["payload"]["schema"]["$ref"],
            format!("./schemas/{kind}.json")
        );
        assert_eq!(message["bindings"]["amqp"]["messageType"], kind.as_str());
        let cloud = &doc["components"]["messages"][format!("{kind}CloudEvent")];
        assert_eq!(
            cloud["payload"]["schema"]["$ref"],
            format!("./schemas/cloudevents/{kind}.json")
        );
        assert_eq!(cloud["bindings"]["amqp"]["messageType"], kind.as_str());
        for channel in [events, queue] {
            let names: BTreeSet<&str> = channel["messages"]
                .as_object()
                .expect("messages")
                .keys()
                .map(String::as_str)
                .collect();
            let cloud_name = format!("{kind}CloudEvent");
            assert_eq!(names, BTreeSet::from([kind.as_str(), cloud_name.as_str()]));
        }

        let publish = operations
            .values()
            .find(|op| op["channel"]["$ref"] == format!("#/channels/{kind}Events"))
            .unwrap_or_else(|| panic!("no operation publishes {kind} events"));
        assert_eq!(publish["action"], "send");
        assert_eq!(publish["bindings"]["amqp"]["deliveryMode"], 2);
    }
    let dead = &channels["deadQueue"];
    assert_eq!(dead["address"], topology::dead_queue_name(&amqp).as_str());
    assert_eq!(
        dead["messages"].as_object().map(|m| m.len()),
        Some(2 * Kind::ALL.len()),
        "every kind, raw and CloudEvents"
    );
    assert_eq!(
        doc["components"]["messageTraits"]["cloudevents"]["contentType"],
        event::BodyMode::CloudEvents.content_type()
    );
    assert_eq!(
        doc["components"]["messageTraits"]["relayed"]["contentType"],
        event::BodyMode::Raw.content_type()
    );
    assert_eq!(channels.len(), 2 * Kind::ALL.len() + 1);
}

fn header_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Boolean(b) => Value::from(*b),
        other => panic!("header of an undocumented AMQP type: {other:?}"),
    }
}

#[tokio::test]
async fn what_the_relay_publishes_matches_the_contract() {
    let doc = asyncapi();
    let validators = Validators::kinds();
    let mut headers = Validators::new();
    headers.add("headers", doc["components"]["schemas"]["headers"].clone());
    let trait_ = &doc["components"]["messageTraits"]["relayed"];
    let documented: BTreeSet<&str> = trait_["x-amqp-properties"]
        .as_object()
        .expect("x-amqp-properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        documented,
        BTreeSet::from([
            "app_id",
            "content_type",
            "delivery_mode",
            "message_id",
            "timestamp",
            "type"
        ])
    );

    let app = spawn_app().await;
    app.wait_ready().await;
    let mut bodies = fixtures();
    bodies.push((
        "other".to_owned(),
        br#"{"acao":"inventory-sync","companyId":3,"items":[1,2]}"#.to_vec(),
    ));
    // Accepted ids per kind; some fixtures are the same message in two formats (a duplicate).
    let mut accepted: BTreeMap<&str, (Kind, BTreeSet<String>)> = BTreeMap::new();
    for (name, body) in bodies {
        let response = app.post_hook(body).await;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("JSON answer");
        assert!(status == 202 || status == 200, "{name}: {status} {answer}");
        if status == 202 {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| answer["kind"] == k.as_str())
                .expect("known kind");
            accepted
                .entry(kind.as_str())
                .or_insert_with(|| (kind, BTreeSet::new()))
                .1
                .insert(answer["id"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(
        accepted.len(),
        Kind::ALL.len(),
        "every kind was published: {accepted:?}"
    );

    for (kind, ids) in accepted.into_values() {
        for delivery in app.take_n(&app.queue(kind), ids.len()).await {
            let props = &delivery.properties;
            let id = props
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .expect("message_id");
            assert!(ids.contains(&id), "{kind}: unexpected message_id {id}");
            assert_eq!(
                props.kind().as_ref().map(|s| s.as_str()),
                Some(kind.as_str())
            );
            assert_eq!(
                props.content_type().as_ref().map(|s| s.as_str()),
                trait_["contentType"].as_str()
            );
            assert_eq!(
                props.app_id().as_ref().map(|s| s.as_str()),
                Some("whaticket-relay")
            );
            assert_eq!(*props.delivery_mode(), Some(2));
            assert!(props.timestamp().is_some());

            let body: Value = serde_json::from_slice(&delivery.data).expect("body is JSON");
            if let Err(e) = validators.check(kind.as_str(), &body) {
                panic!("published {kind} body breaks docs/schemas/{kind}.json: {e}");
            }

            let table = props.headers().as_ref().expect("headers").inner();
            let header_value: serde_json::Map<String, Value> = table
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), header_json(v)))
                .collect();
            let header_value = Value::Object(header_value);
            if let Err(e) = headers.check("headers", &header_value) {
                panic!("{kind} headers {header_value} break the documented headers: {e}");
            }
            assert!(
                header_value["format"].is_string(),
                "{kind}: every new event names its sender's format"
            );

            // The routing key fills the kind's channel address, its change one of the kind's.
            let company = header_value["company_id"].as_i64().unwrap_or(0);
            let change = header_value["change"].as_str().expect("a change");
            let channel = &doc["channels"][format!("{kind}Events")];
            let address = channel["address"].as_str().expect("address");
            let expected = address
                .replace("{companyId}", &company.to_string())
                .replace("{connection}", CONNECTION)
                .replace("{change}", change);
            assert_eq!(delivery.routing_key.as_str(), expected);
            let words = Change::of_kind(kind);
            assert!(
                words.iter().any(|w| w.as_str() == change),
                "{kind}: {change} is not one of {words:?}"
            );
        }
    }
}
