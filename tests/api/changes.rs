//! A change is an event, a repeat is not, through the real endpoint: for every fork that
//! re-posts a message when it changes, each edit, deletion, reaction and ack is `202` with a new
//! id and reaches its queue once, its change named in the routing key and the `change` header;
//! a byte-identical repeat, a repeat with its members reordered and one with its timestamps
//! re-encoded are `200` with the first id and are never relayed; the SaaS pair stays one event.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};
use whaticket_relay::event::Kind;

use crate::helpers::*;

/// How each sender authenticates (`{token}`, `{hmac_hex}` as in `fixtures/forks/expected.json`).
const WHAZING: &[(&str, &str)] = &[("X-N8N-API-KEY", "{token}")];
const ENVELOPE: &[(&str, &str)] = &[("X-Webhook-Signature", "{hmac_hex}")];
const IZING: &[(&str, &str)] = &[("Authorization", "{token}")];
/// The SaaS, Baileys and whatsapp-web.js forks: the token in the URL.
const URL_TOKEN: &[(&str, &str)] = &[];

enum Expect {
    /// A new event of this kind with this change.
    New(Kind, &'static str),
    /// The event of this earlier step again.
    Repeat(&'static str),
}

struct Step {
    label: &'static str,
    sender: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    expect: Expect,
}

/// Every number that reads as a time in seconds or milliseconds (2020 to 2030) re-encoded: as
/// a string, then as protobuf's Long `{low, high, unsigned}`.
fn re_encoded(body: &[u8], long: bool) -> Vec<u8> {
    fn walk(value: &mut Value, long: bool, found: &mut usize) {
        match value {
            Value::Number(n) => {
                let Some(t) = n.as_i64() else { return };
                let seconds = (1_577_836_800..1_893_456_000).contains(&t);
                let millis = (1_577_836_800_000..1_893_456_000_000).contains(&t);
                if seconds || millis {
                    *found += 1;
                    *value = if long {
                        let (low, high) = (t as i32, t >> 32);
                        json!({"low": low, "high": high, "unsigned": false})
                    } else {
                        Value::from(t.to_string())
                    };
                }
            }
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, long, found)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, long, found)),
            _ => {}
        }
    }
    let mut value = json_of(body);
    let mut found = 0;
    walk(&mut value, long, &mut found);
    assert!(found > 0, "a timestamp to re-encode");
    serde_json::to_vec(&value).expect("serialises")
}

/// `body` with `change` applied to its JSON.
fn with(body: &[u8], change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = json_of(body);
    change(&mut value);
    serde_json::to_vec_pretty(&value).expect("serialises")
}

fn step(
    label: &'static str,
    sender: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    expect: Expect,
) -> Step {
    Step {
        label,
        sender,
        body,
        expect,
    }
}

fn whazing() -> Vec<Step> {
    use Expect::*;
    let created = fixture("changes/whazing-message.json");
    let edited = fixture("changes/whazing-edited.json");
    let deleted = fixture("changes/whazing-deleted.json");
    let reaction = fixture("changes/whazing-reaction.json");
    let read = with(&created, |v| v["status"] = json!("read"));
    let second_edit = with(&edited, |v| v["edited"] = json!("Entregam em Sumaré?"));
    let more_reactions = with(&reaction, |v| {
        v["reactions"] = json!([{"type": "👍", "contactId": 56}, {"contactId": 55, "type": "❤️"}]);
    });
    let reactions_swapped = with(&reaction, |v| {
        v["reactions"] = json!([{"type": "❤️", "contactId": 55}, {"contactId": 56, "type": "👍"}]);
    });
    // The time of the post and a retry counter say nothing about the message.
    let retried = with(&deleted, |v| {
        v["retry"] = json!(2);
        v["ticket"]["updatedAt"] = json!("2024-12-07T12:09:00.000Z");
    });
    vec![
        step(
            "whazing created",
            WHAZING,
            created.clone(),
            New(Kind::Message, "created"),
        ),
        step(
            "whazing edited",
            WHAZING,
            edited.clone(),
            New(Kind::Message, "edited"),
        ),
        step(
            "whazing deleted",
            WHAZING,
            deleted.clone(),
            New(Kind::Message, "deleted"),
        ),
        step(
            "whazing reaction",
            WHAZING,
            reaction.clone(),
            New(Kind::Message, "reaction"),
        ),
        step("whazing read", WHAZING, read, New(Kind::Message, "read")),
        step(
            "whazing second edit",
            WHAZING,
            second_edit,
            New(Kind::Message, "edited"),
        ),
        step(
            "whazing two reactions",
            WHAZING,
            more_reactions,
            New(Kind::Message, "reaction"),
        ),
        step("", WHAZING, created.clone(), Repeat("whazing created")),
        step("", WHAZING, edited.clone(), Repeat("whazing edited")),
        step("", WHAZING, reordered(&edited), Repeat("whazing edited")),
        step(
            "",
            WHAZING,
            re_encoded(&deleted, false),
            Repeat("whazing deleted"),
        ),
        step(
            "",
            WHAZING,
            re_encoded(&reaction, true),
            Repeat("whazing reaction"),
        ),
        step("", WHAZING, reordered(&created), Repeat("whazing created")),
        step("", WHAZING, retried, Repeat("whazing deleted")),
        step(
            "",
            WHAZING,
            reactions_swapped,
            Repeat("whazing two reactions"),
        ),
    ]
}

fn envelope() -> Vec<Step> {
    use Expect::*;
    let created = fixture("changes/envelope-message-created.json");
    let updated = fixture("changes/envelope-message-updated.json");
    let deleted = fixture("changes/envelope-message-deleted.json");
    let second_edit = with(&updated, |v| {
        v["payload"]["body"] = json!("E para Campinas?")
    });
    let posted_later = with(&deleted, |v| {
        v["timestamp"] = json!("2024-12-07T12:07:00.000Z")
    });
    let ack = with(&created, |v| {
        v["event"] = json!("message.ack");
        v["payload"]["ack"] = json!(2);
    });
    vec![
        step(
            "envelope created",
            ENVELOPE,
            created.clone(),
            New(Kind::Message, "created"),
        ),
        step(
            "envelope updated",
            ENVELOPE,
            updated.clone(),
            New(Kind::Message, "edited"),
        ),
        step(
            "envelope deleted",
            ENVELOPE,
            deleted.clone(),
            New(Kind::Message, "deleted"),
        ),
        step(
            "envelope second edit",
            ENVELOPE,
            second_edit,
            New(Kind::Message, "edited"),
        ),
        step(
            "envelope ack",
            ENVELOPE,
            ack.clone(),
            New(Kind::Receipt, "delivered"),
        ),
        step("", ENVELOPE, updated.clone(), Repeat("envelope updated")),
        step(
            "",
            ENVELOPE,
            reordered(&updated),
            Repeat("envelope updated"),
        ),
        step(
            "",
            ENVELOPE,
            reordered(&deleted),
            Repeat("envelope deleted"),
        ),
        step("", ENVELOPE, posted_later, Repeat("envelope deleted")),
        step("", ENVELOPE, reordered(&ack), Repeat("envelope ack")),
    ]
}

fn saas() -> Vec<Step> {
    use Expect::*;
    let list = fixture("forks/saas-pair-list.json");
    let row = fixture("forks/saas-pair-row.json");
    let deleted = with(&row, |v| v["mensagem"]["isDeleted"] = json!(true));
    let edited = with(&row, |v| {
        v["mensagem"]["isEdited"] = json!(true);
        v["mensagem"]["body"] = json!("bom dia, tudo bem?");
    });
    // Each post moves the ticket's updatedAt and may carry the row's ack: not the message's state.
    let deleted_later = with(&deleted, |v| {
        v["ticketData"]["updatedAt"] = json!("2024-05-02T10:09:00.000Z");
        v["mensagem"]["ack"] = json!(3);
    });
    vec![
        step(
            "saas list",
            URL_TOKEN,
            list.clone(),
            New(Kind::Message, "created"),
        ),
        step("", URL_TOKEN, row.clone(), Repeat("saas list")),
        step("", URL_TOKEN, reordered(&row), Repeat("saas list")),
        step("", URL_TOKEN, re_encoded(&list, true), Repeat("saas list")),
        step(
            "saas deleted",
            URL_TOKEN,
            deleted.clone(),
            New(Kind::Message, "deleted"),
        ),
        step(
            "saas edited",
            URL_TOKEN,
            edited.clone(),
            New(Kind::Message, "edited"),
        ),
        step("", URL_TOKEN, reordered(&deleted), Repeat("saas deleted")),
        step("", URL_TOKEN, deleted_later, Repeat("saas deleted")),
        step("", URL_TOKEN, edited, Repeat("saas edited")),
    ]
}

fn izing() -> Vec<Step> {
    use Expect::*;
    let message = fixture("forks/izing-message.json");
    let ack = |n: i64| with(&fixture("forks/izing-ack.json"), |v| v["ack"] = json!(n));
    // Izing's failed sends: -1 has no message id (the number is invalid), -2 a session error.
    let failed = br#"{"ack":-1,"body":"oi","messageId":"","number":"5511900009999","externalKey":"crm-9","error":"number invalid in whatsapp","type":"hookMessageStatus"}"#.to_vec();
    let session = with(&fixture("forks/izing-ack.json"), |v| {
        v["ack"] = json!(-2);
        v["messageId"] = json!("3EB0BEEF00000002");
    });
    vec![
        step(
            "izing message",
            IZING,
            message.clone(),
            New(Kind::Message, "created"),
        ),
        step("izing sent", IZING, ack(1), New(Kind::Receipt, "sent")),
        step(
            "izing delivered",
            IZING,
            ack(2),
            New(Kind::Receipt, "delivered"),
        ),
        step("izing read", IZING, ack(3), New(Kind::Receipt, "read")),
        step(
            "izing failed",
            IZING,
            failed.clone(),
            New(Kind::Receipt, "failed"),
        ),
        step(
            "izing session error",
            IZING,
            session.clone(),
            New(Kind::Receipt, "session_error"),
        ),
        step(
            "",
            IZING,
            re_encoded(&message, false),
            Repeat("izing message"),
        ),
        step("", IZING, ack(3), Repeat("izing read")),
        step("", IZING, reordered(&ack(3)), Repeat("izing read")),
        step(
            "",
            IZING,
            re_encoded(&ack(2), true),
            Repeat("izing delivered"),
        ),
        step("", IZING, failed, Repeat("izing failed")),
        step(
            "",
            IZING,
            reordered(&session),
            Repeat("izing session error"),
        ),
    ]
}

fn wwebjs() -> Vec<Step> {
    use Expect::*;
    let created = fixture("forks/wwebjs-raw.json");
    let read = with(&created, |v| v["ack"] = json!(3));
    let revoked = with(&created, |v| {
        v["type"] = json!("revoked");
        v["body"] = json!("");
    });
    let edited = with(&created, |v| {
        v["body"] = json!("preciso de ajuda urgente");
        v["latestEditSenderTimestampMs"] = json!(1714644060000_i64);
    });
    vec![
        step(
            "wwebjs created",
            URL_TOKEN,
            created.clone(),
            New(Kind::Message, "created"),
        ),
        step(
            "wwebjs read",
            URL_TOKEN,
            read.clone(),
            New(Kind::Message, "read"),
        ),
        step(
            "wwebjs revoked",
            URL_TOKEN,
            revoked.clone(),
            New(Kind::Message, "deleted"),
        ),
        step(
            "wwebjs edited",
            URL_TOKEN,
            edited.clone(),
            New(Kind::Message, "edited"),
        ),
        step(
            "",
            URL_TOKEN,
            re_encoded(&created, true),
            Repeat("wwebjs created"),
        ),
        step("", URL_TOKEN, reordered(&read), Repeat("wwebjs read")),
        step(
            "",
            URL_TOKEN,
            re_encoded(&revoked, false),
            Repeat("wwebjs revoked"),
        ),
        step(
            "",
            URL_TOKEN,
            re_encoded(&edited, false),
            Repeat("wwebjs edited"),
        ),
    ]
}

fn baileys() -> Vec<Step> {
    use Expect::*;
    let created = fixture("forks/baileys-raw.json");
    let reaction = with(&created, |v| {
        v["reactions"] = json!([{"key": {"remoteJid": "5511900001111@s.whatsapp.net", "fromMe": true, "id": "3EB0FEED00000009"}, "text": "👍"}]);
    });
    let revoked = with(&created, |v| {
        v["messageStubType"] = json!(1);
        v.as_object_mut().map(|m| m.remove("message"));
    });
    let read = br#"{"key":{"remoteJid":"5511900001111@s.whatsapp.net","fromMe":false,"id":"3EB0FEED00000001"},"update":{"status":4}}"#.to_vec();
    vec![
        step(
            "baileys created",
            URL_TOKEN,
            created.clone(),
            New(Kind::Message, "created"),
        ),
        step(
            "baileys reaction",
            URL_TOKEN,
            reaction.clone(),
            New(Kind::Message, "reaction"),
        ),
        step(
            "baileys revoked",
            URL_TOKEN,
            revoked.clone(),
            New(Kind::Message, "deleted"),
        ),
        step(
            "baileys read",
            URL_TOKEN,
            read.clone(),
            New(Kind::Message, "read"),
        ),
        step(
            "",
            URL_TOKEN,
            re_encoded(&created, true),
            Repeat("baileys created"),
        ),
        step(
            "",
            URL_TOKEN,
            reordered(&reaction),
            Repeat("baileys reaction"),
        ),
        step(
            "",
            URL_TOKEN,
            re_encoded(&reaction, false),
            Repeat("baileys reaction"),
        ),
        step(
            "",
            URL_TOKEN,
            reordered(&revoked),
            Repeat("baileys revoked"),
        ),
        step("", URL_TOKEN, read, Repeat("baileys read")),
    ]
}

/// Posts every step in order; returns what each new event must be, by id.
async fn run(
    app: &TestApp,
    steps: Vec<Step>,
) -> BTreeMap<String, (&'static str, Kind, &'static str)> {
    let mut by_label: BTreeMap<&str, String> = BTreeMap::new();
    let mut accepted = BTreeMap::new();
    for step in steps {
        let headers: Vec<(String, String)> = step
            .sender
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let response = send(app, &headers, TOKEN, &step.body, step.body.clone()).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON answer");
        let id = answer["id"].as_str().expect("an id").to_owned();
        let text = String::from_utf8_lossy(&step.body);
        match step.expect {
            Expect::New(kind, change) => {
                assert_eq!(
                    status,
                    StatusCode::ACCEPTED,
                    "{}: {answer} {text}",
                    step.label
                );
                assert_eq!(answer["kind"], kind.as_str(), "{}", step.label);
                let clash = accepted.insert(id.clone(), (step.label, kind, change));
                assert!(clash.is_none(), "{} has the id of {clash:?}", step.label);
                by_label.insert(step.label, id);
            }
            Expect::Repeat(of) => {
                assert_eq!(status, StatusCode::OK, "repeat of {of}: {answer} {text}");
                assert_eq!(answer["status"], "duplicate", "repeat of {of}");
                assert_eq!(Some(&id), by_label.get(of), "repeat of {of}: {text}");
            }
        }
    }
    accepted
}

#[tokio::test]
async fn each_change_is_an_event_with_its_change_named_and_each_repeat_is_not() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let mut accepted = BTreeMap::new();
    for steps in [whazing(), envelope(), saas(), izing(), wwebjs(), baileys()] {
        accepted.append(&mut run(&app, steps).await);
    }
    app.wait_outbox_empty().await;

    let kinds: Vec<Kind> = accepted.values().map(|(_, kind, _)| *kind).collect();
    for (kind, id, delivery) in app.take_each(kinds).await {
        let (label, expected_kind, change) = accepted
            .remove(&id)
            .unwrap_or_else(|| panic!("{id} in {kind}: not an accepted event, or twice"));
        assert_eq!(expected_kind, kind, "{label}");
        assert_eq!(
            header_text(&delivery, "change").as_deref(),
            Some(change),
            "{label}"
        );
        let words: Vec<&str> = delivery.routing_key.as_str().split('.').collect();
        assert_eq!(words.len(), 4, "{label}: {}", delivery.routing_key);
        assert_eq!(
            (words[0], words[2], words[3]),
            (kind.as_str(), CONNECTION, change),
            "{label}"
        );
    }
    // No repeat was relayed.
    for kind in Kind::ALL {
        assert_eq!(app.queue_len(&app.queue(kind)).await, 0, "{kind}");
    }
    assert!(accepted.is_empty(), "never delivered: {accepted:?}");
}

/// `fixtures/changes/expected.json`: each capture with its sender's credential is the kind and
/// change it lists, a new event (every file is a state of its own), delivered with that change.
#[tokio::test]
async fn each_captured_change_is_the_event_expected_json_lists() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let index = json_of(&fixture("changes/expected.json"));
    let files = index.as_object().expect("expected.json is an object");
    assert!(files.len() >= 9, "the change captures are all listed");
    let mut accepted: BTreeMap<String, (String, Kind, String)> = BTreeMap::new();
    for (file, spec) in files {
        let headers: Vec<(String, String)> = spec["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(n, v)| (n.clone(), v.as_str().expect("template").to_owned()))
            .collect();
        let body = fixture(&format!("changes/{file}"));
        let response = send(&app, &headers, TOKEN, &body, body.clone()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{file}");
        let answer: Value = response.json().await.expect("JSON answer");
        let kind = Kind::from_name(spec["kind"].as_str().expect("kind")).expect("a known kind");
        assert_eq!(answer["kind"], kind.as_str(), "{file}");
        let change = spec["change"].as_str().expect("change").to_owned();
        let id = answer["id"].as_str().expect("id").to_owned();
        let clash = accepted.insert(id, (file.clone(), kind, change));
        assert!(clash.is_none(), "{file} shares an id with {clash:?}");
        // Sent again, it is the same event.
        let again = send(&app, &headers, TOKEN, &body, body.clone()).await;
        assert_eq!(again.status(), StatusCode::OK, "{file} again");
    }
    let kinds: Vec<Kind> = accepted.values().map(|(_, kind, _)| *kind).collect();
    for (_, id, delivery) in app.take_each(kinds).await {
        let (file, _, change) = &accepted[&id];
        assert_eq!(
            header_text(&delivery, "change").as_ref(),
            Some(change),
            "{file}"
        );
        assert!(
            delivery
                .routing_key
                .as_str()
                .ends_with(&format!(".{change}")),
            "{file}: {}",
            delivery.routing_key
        );
    }
}
