//! An upgrade from the release before changes were named: the data dir that release's own binary
//! wrote (`tests/fixtures/upgrade/`, made by its `generate.py` with commit 2124828, against an
//! unreachable broker, so its outbox still holds what it accepted) opened by this one. Repeats of
//! the events it accepted are still duplicates, answered with the ids it answered; its outbox is
//! published with four-word routing keys and the change read from each body; changes of messages
//! first seen after the upgrade are events; its events are found in the event index, which it did
//! not have, rebuilt at open, and take the time this one published them.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use whaticket_relay::event::Kind;
use whaticket_relay::ops::events::parse_event_id;
use whaticket_relay::store::{EventFilter, EventState};

use crate::helpers::*;

/// The dedup window the fixture's keys were written with (generate.py): they outlive it.
const WINDOW: Duration = Duration::from_secs(876_000 * 3600);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("data dir");
    for entry in std::fs::read_dir(from).expect("fixture data dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A relay's options on a copy of the data dir `tests/fixtures/<name>/data`, with the dedup
/// window its keys were written with.
fn options_on(name: &str) -> Options {
    let mut options = Options::new();
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    copy_dir(&fixture_dir.join("data"), &options.settings.storage.path);
    options.settings.storage.dedup_window = WINDOW;
    options
}

/// What the release that wrote `tests/fixtures/<name>` answered to each of the twelve bodies.
fn answers(name: &str) -> Vec<Value> {
    let answers: Vec<Value> =
        serde_json::from_slice(&fixture(&format!("{name}/answers.json"))).expect("answers.json");
    assert_eq!(answers.len(), 12);
    answers
}

/// The credential each sender of the fixture posts with, by the file name's sender part.
fn sender(file: &str) -> Vec<(String, String)> {
    let header = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    match file.split('-').nth(1) {
        Some("whazing") => header("X-N8N-API-KEY", "{token}"),
        Some("izing") => header("Authorization", "{token}"),
        Some("envelope") => header("X-Webhook-Signature", "{hmac_hex}"),
        _ => Vec::new(),
    }
}

async fn post(app: &TestApp, file: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = send(app, &sender(file), TOKEN, &body, body.clone()).await;
    let status = response.status();
    (status, response.json().await.expect("JSON answer"))
}

/// Each body of the fixtures posted again: a duplicate, answered with the id the release that
/// wrote the data dir answered.
async fn repeats_answered_as_before(app: &TestApp, answers: &[Value]) {
    for answer in answers {
        let file = answer["file"].as_str().expect("file");
        let body = fixture(&format!("upgrade/bodies/{file}"));
        let (status, again) = post(app, file, body).await;
        assert_eq!(status, StatusCode::OK, "{file}: {again}");
        assert_eq!(again["id"], answer["id"], "{file}");
    }
}

/// What each event the release before accepted is published as now: its kind as stored then,
/// and the change read from its body.
const OUTBOX: [(&str, Kind, &str); 10] = [
    ("01-whazing-created.json", Kind::Message, "created"),
    ("03-envelope-deleted.json", Kind::Message, "deleted"),
    // A receipt then: stored so, and an edit carries no ack.
    ("04-envelope-updated.json", Kind::Receipt, "other"),
    ("05-saas-list.json", Kind::Message, "created"),
    ("07-izing-ack.json", Kind::Receipt, "read"),
    ("08-wwebjs-read.json", Kind::Message, "read"),
    ("09-whazing-closed.json", Kind::Status, "closed"),
    ("10-izing-session.json", Kind::Connection, "connected"),
    ("11-other.json", Kind::Other, "other"),
    ("12-baileys-reaction.json", Kind::Message, "reaction"),
];

#[tokio::test]
async fn a_data_dir_of_the_release_before_keeps_its_keys_and_publishes_its_outbox() {
    let app = spawn_app_with(options_on("upgrade")).await;
    app.wait_ready().await;

    let answers = answers("upgrade");
    for answer in &answers {
        let file = answer["file"].as_str().expect("file");
        let first = answer["id"].as_str().expect("id");
        let body = fixture(&format!("upgrade/bodies/{file}"));
        // The very bytes again, and (but for the bodies keyed by their bytes then and now)
        // the members in another order: the event that release accepted, under its id.
        let keyed_by_bytes = ["04-", "09-", "11-"].iter().any(|p| file.starts_with(p));
        let mut repeats = vec![body.clone()];
        if !keyed_by_bytes {
            repeats.push(reordered(&body));
        }
        for repeat in repeats {
            let (status, again) = post(&app, file, repeat).await;
            assert_eq!(status, StatusCode::OK, "{file}: {again}");
            assert_eq!(again["id"], first, "{file}");
        }
    }

    // The outbox that release left: published under its ids, with the change named.
    let id_of = |file: &str| {
        answers
            .iter()
            .find(|a| a["file"] == file)
            .and_then(|a| a["id"].as_str())
            .expect("answered")
            .to_owned()
    };
    for (kind, id, delivery) in app.take_each(OUTBOX.iter().map(|(_, kind, _)| *kind)).await {
        let (file, _, change) = OUTBOX
            .iter()
            .find(|(file, k, _)| id_of(file) == id && *k == kind)
            .unwrap_or_else(|| panic!("{kind}: unexpected {id}"));
        assert_eq!(
            header_text(&delivery, "change").as_deref(),
            Some(*change),
            "{file}"
        );
        let words: Vec<&str> = delivery.routing_key.as_str().split('.').collect();
        assert_eq!(
            (words.len(), words[0], words[2], words[3]),
            (4, kind.as_str(), CONNECTION, *change),
            "{file}: {}",
            delivery.routing_key
        );
    }
    app.wait_outbox_empty().await;

    // The event index, which that release did not have: rebuilt at open from its records, with
    // the WhatsApp ids read from the bodies and the repeats above counted as duplicates (#32).
    app.store.flush().await.expect("flush");
    for (file, kind, _) in OUTBOX {
        let id = parse_event_id(&id_of(file)).expect("event id");
        let records = app.store.events_of(&id).expect("index");
        let first = records
            .first()
            .unwrap_or_else(|| panic!("{file}: not indexed"));
        assert_eq!(
            (first.kind, first.state),
            (kind, EventState::Confirmed),
            "{file}"
        );
        assert_eq!(first.connection, CONNECTION, "{file}");
        // Summaries made at open (that release stored no publish time) take the time of the
        // publish this one made: their blocks are written again.
        assert!(first.published_at_ms.is_some(), "{file}: {first:?}");
        assert!(first.published_at_ms >= Some(first.stored_at_ms), "{file}");
    }
    let created = parse_event_id(&id_of("01-whazing-created.json")).expect("event id");
    let created = &app.store.events_of(&created).expect("index")[0];
    assert!(created.wa_id.is_some(), "{created:?}");
    assert!(created.duplicates >= 2, "{created:?}");
    let filter = EventFilter {
        wa_id: created.wa_id.clone(),
        ..Default::default()
    };
    let (found, _) = app.store.events_search(&filter, None, 10).expect("search");
    assert!(found.iter().any(|e| e.id == created.id), "{found:?}");

    // After the upgrade: a message first seen now, and its change, are two events.
    let created = json_of(&fixture("changes/whazing-message.json"));
    let mut created = created;
    created["messageId"] = json!("3EB0A7F00D0000000077");
    let mut edited = created.clone();
    edited["edited"] = json!("Entregam em Valinhos?");
    let (status, first) = post(&app, "00-whazing", created.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, change) = post(&app, "00-whazing", edited.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{change}");
    assert_ne!(first["id"], change["id"]);
    let (status, again) = post(&app, "00-whazing", reordered(edited.to_string().as_bytes())).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &change["id"]));
    // A change of a message accepted before the upgrade, while that release's keys live: the
    // key cannot tell which state was accepted then, so it is that event's duplicate
    // (docs/senders.md, "Upgrading").
    let deleted = fixture("changes/whazing-deleted.json");
    let (status, answer) = post(&app, "00-whazing", deleted).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["id"].as_str(),
        Some(id_of("01-whazing-created.json").as_str())
    );
    let delivered: Vec<String> = app
        .take_each([Kind::Message, Kind::Message])
        .await
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    for event in [&first, &change] {
        assert!(delivered.iter().any(|id| event["id"] == id.as_str()));
    }
    for kind in Kind::ALL {
        assert_eq!(
            app.queue_len(&app.queue(kind)).await,
            0,
            "{kind}: relayed again"
        );
    }
}

/// The same data dir opened by a relay publishing CloudEvents: the keys hold (repeats are the
/// events that release accepted), the outbox it left is published raw, as it was stored, and
/// what is accepted now is published as CloudEvents.
#[tokio::test]
async fn a_data_dir_of_the_release_before_opens_in_cloudevents_mode() {
    let mut options = options_on("upgrade");
    options.settings.amqp.body = whaticket_relay::event::BodyMode::CloudEvents;
    let app = spawn_app_with(options).await;
    app.wait_ready().await;

    repeats_answered_as_before(&app, &answers("upgrade")).await;
    for (kind, id, delivery) in app.take_each(OUTBOX.iter().map(|(_, kind, _)| *kind)).await {
        assert_eq!(
            delivery
                .properties
                .content_type()
                .as_ref()
                .map(|s| s.as_str()),
            Some("application/json"),
            "{kind} {id}: stored raw, published raw"
        );
        let body = json_of(&delivery.data);
        assert!(body.get("specversion").is_none(), "{kind} {id}: {body}");
    }
    app.wait_outbox_empty().await;

    let mut created = json_of(&fixture("changes/whazing-message.json"));
    created["messageId"] = json!("3EB0A7F00D0000000078");
    let (status, first) = post(&app, "00-whazing", created.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let delivery = app.take(&app.queue(Kind::Message)).await;
    assert_eq!(
        delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str()),
        Some("application/cloudevents+json")
    );
    let envelope = json_of(&delivery.data);
    assert_eq!(envelope["id"], first["id"]);
    assert_eq!(envelope["type"], "whaticket.message.created");
    assert_eq!(envelope["data"]["raw"], created);
}

/// An upgrade from the release whose event index kept its summaries in sled (b1eb241): the data
/// dir its own binary wrote (`tests/fixtures/upgrade-index/`, made by its `generate.py`: five
/// events published, confirmed and kept, six left in the outbox, one repeat) opened by this
/// one. Before any relay runs on it, `events --show` gives each event as that release gave it,
/// timeline and publish times (which only its summaries held) included; then the relay answers
/// the repeats with that release's ids and publishes its outbox, each event once.
#[tokio::test]
async fn a_data_dir_whose_index_is_in_sled_keeps_its_events_times_keys_and_outbox() {
    let options = options_on("upgrade-index");
    let data = options.settings.storage.path.clone();

    let expected: Vec<Value> =
        serde_json::from_slice(&fixture("upgrade-index/events.json")).expect("events.json");
    assert_eq!(expected.len(), 11);
    let config = data.with_file_name("offline.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\ndedup_window = \"876000h\"\n\n[[connections]]\nname = \"x\"\ntokens = [\"some-connection-token\"]\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    for event in &expected {
        let id = event["event_id"].as_str().expect("event_id");
        let shown =
            crate::ops::relay_cli(config.clone(), &["events", "--show", id, "--json"]).await;
        assert_eq!(&shown, event, "{id}");
    }
    let published = expected
        .iter()
        .filter(|e| e["published_at"].is_string())
        .count();
    assert_eq!(
        published, 5,
        "the release's kept events, with their publish times"
    );

    let app = spawn_app_with(options).await;
    app.wait_ready().await;
    repeats_answered_as_before(&app, &answers("upgrade-index")).await;
    let pending: Vec<(Kind, &str)> = expected
        .iter()
        .filter(|e| e["state"] == "pending")
        .map(|e| {
            let kind = Kind::from_name(e["kind"].as_str().expect("kind")).expect("a kind");
            (kind, e["event_id"].as_str().expect("event_id"))
        })
        .collect();
    assert_eq!(pending.len(), 6);
    let mut delivered: Vec<String> = app
        .take_each(pending.iter().map(|(kind, _)| *kind))
        .await
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    let mut outbox: Vec<String> = pending.iter().map(|(_, id)| id.to_string()).collect();
    delivered.sort();
    outbox.sort();
    assert_eq!(delivered, outbox);
    app.wait_outbox_empty().await;
    for kind in Kind::ALL {
        assert_eq!(
            app.queue_len(&app.queue(kind)).await,
            0,
            "{kind}: relayed again"
        );
    }
}
