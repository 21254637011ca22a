//! CloudEvents mode: the same event as raw mode (id, kind, change, key), its envelope's
//! attributes, the facts each fork's body gives, and `data.raw` equal to the raw body.

use bytes::Bytes;
use serde_json::{json, Value};

use super::FIXTURES;
use crate::event::{parse_with, BodyMode, CustomRules, Event, RedactKeys};

macro_rules! fixture {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!("../../../tests/fixtures/", $path)) as &[u8],
        )
    };
}

/// The other senders' fixtures and their changes.
const OTHERS: [(&str, &[u8]); 23] = [
    fixture!("forks/baileys-raw.json"),
    fixture!("forks/chamado-start.json"),
    fixture!("forks/envelope-ticket.json"),
    fixture!("forks/izing-ack.json"),
    fixture!("forks/izing-message.json"),
    fixture!("forks/izing-session.json"),
    fixture!("forks/n8n-action.json"),
    fixture!("forks/saas-connection.json"),
    fixture!("forks/saas-pair-list.json"),
    fixture!("forks/saas-pair-row.json"),
    fixture!("forks/whazing-closed.json"),
    fixture!("forks/whazing-message.json"),
    fixture!("forks/wwebjs-raw.json"),
    fixture!("changes/envelope-message-created.json"),
    fixture!("changes/envelope-message-deleted.json"),
    fixture!("changes/envelope-message-updated.json"),
    fixture!("changes/izing-message-with-authtoken.json"),
    fixture!("changes/whazing-deleted.json"),
    fixture!("changes/whazing-edited.json"),
    fixture!("changes/whazing-message.json"),
    fixture!("changes/whazing-reaction.json"),
    fixture!("changes/whazing-ticket-with-apiconfig.json"),
    fixture!("credentials/n8n-envelope-with-headers.json"),
];

fn parse_as(body: &[u8], mode: BodyMode) -> Event {
    parse_redacting(body, mode, &RedactKeys::default())
}

fn parse_redacting(body: &[u8], mode: BodyMode, keys: &RedactKeys) -> Event {
    match parse_with(
        "suporte-x",
        Bytes::copy_from_slice(body),
        keys,
        &CustomRules::default(),
        1_733_570_000_123,
        None,
        mode,
    ) {
        Ok(event) => event,
        Err(e) => panic!("{e}"),
    }
}

/// The envelope of `body`, after checking it against raw mode.
fn envelope(name: &str, body: &[u8]) -> Value {
    let raw = parse_as(body, BodyMode::Raw);
    let ce = parse_as(body, BodyMode::CloudEvents);
    assert_eq!(raw.meta.body, BodyMode::Raw);
    assert_eq!(ce.meta.body, BodyMode::CloudEvents, "{name}");
    // One event whatever the mode: same id (dedup), same metadata.
    let mut meta = ce.meta.clone();
    meta.body = BodyMode::Raw;
    assert_eq!(meta, raw.meta, "{name}");
    assert_eq!(ce.earlier_id, raw.earlier_id, "{name}");

    let value: Value = serde_json::from_slice(&ce.body)
        .unwrap_or_else(|e| panic!("{name}: the envelope is not JSON: {e}"));
    let raw_value: Value = serde_json::from_slice(&raw.body).expect("raw body is JSON");
    assert_eq!(value["data"]["raw"], raw_value, "{name}: data.raw");
    // Spliced in as it is: the raw mode's very bytes.
    let raw_text = std::str::from_utf8(&raw.body).expect("UTF-8");
    let ce_text = std::str::from_utf8(&ce.body).expect("UTF-8");
    assert!(
        ce_text.ends_with(&format!(",\"raw\":{raw_text}}}}}")),
        "{name}"
    );

    assert_eq!(value["specversion"], "1.0");
    assert_eq!(value["id"], raw.meta.id.to_string());
    assert_eq!(value["source"], "/whaticket-relay/suporte-x");
    assert_eq!(
        value["type"],
        format!("whaticket.{}.{}", raw.meta.kind, raw.meta.change())
    );
    assert_eq!(value["time"], "2024-12-07T11:13:20.123Z");
    assert_eq!(value["datacontenttype"], "application/json");
    match raw.meta.ticket_id {
        Some(ticket) => assert_eq!(value["subject"], ticket.to_string(), "{name}"),
        None => assert!(value.get("subject").is_none(), "{name}"),
    }
    let data = &value["data"];
    assert_eq!(data["kind"], raw.meta.kind.as_str());
    assert_eq!(data["change"], raw.meta.change().as_str());
    assert_eq!(data["connection"], "suporte-x");
    assert_eq!(data["company"], json!(raw.meta.company_id));
    value
}

#[test]
fn every_fixture_is_one_event_in_both_modes_with_the_raw_body_in_data() {
    for (name, body) in FIXTURES.iter().chain(OTHERS.iter()) {
        envelope(name, body);
    }
}

fn data(path: &str) -> Value {
    let (name, body) = FIXTURES
        .iter()
        .chain(OTHERS.iter())
        .find(|(name, _)| name.trim_end_matches(".json") == path)
        .unwrap_or_else(|| panic!("no fixture {path}"));
    let mut value = envelope(name, body);
    let data = value["data"].take();
    let mut data = data;
    data.as_object_mut().expect("data").remove("raw");
    data
}

#[test]
fn saas_facts() {
    assert_eq!(
        data("message-start"),
        json!({
            "kind": "message", "change": "created", "format": "whaticket-saas",
            "connection": "suporte-x", "company": 1,
            "ticket": {"id": 357, "status": "pending", "queue": {"id": 1, "name": "Geral"}},
            "contact": {"number": "5511989091838", "name": "Rafael Ribeiro"},
            "message": {"id": null, "text": "wr43r34", "from_me": false, "media": null,
                        "quoted_id": null},
            "ack": null,
        })
    );
    let row = data("message-from-internal");
    assert_eq!(row["message"]["id"], "3EB0C431C26A1916E4A5");
    assert_eq!(row["message"]["text"], "Quero saber o status do meu pedido");
    assert_eq!(
        row["message"]["media"],
        json!({"type": "conversation", "url": null})
    );
    let list = data("message-queue-webhook");
    assert_eq!(list["message"]["id"], "3EB0C431C26A1916E4A5");
    assert_eq!(
        list["message"]["text"],
        "Quero saber o status do meu pedido"
    );
    let media = data("media-fila-data");
    assert_eq!(
        media["message"]["media"]["url"],
        "https://beta-api.whaticket-saas.com/public/company1/1697118750977.ogg"
    );
    assert_eq!(
        media["ticket"]["queue"],
        json!({"id": 29, "name": "Grupo 1"})
    );
    let closed = data("status-closed");
    assert_eq!(closed["ticket"]["status"], "closed");
    assert_eq!(closed["message"], Value::Null);
    let tags = data("tag-sync");
    assert_eq!(tags["ticket"]["id"], 383);
    assert_eq!(
        tags["contact"],
        json!({"number": "5511989091838", "name": "Nome do cliente"})
    );
}

#[test]
fn fork_facts() {
    let baileys = data("forks/baileys-raw");
    assert_eq!(
        baileys["contact"],
        json!({"number": "5511900001111", "name": "Cliente Teste"})
    );
    assert_eq!(baileys["message"]["id"], "3EB0FEED00000001");
    assert_eq!(baileys["message"]["text"], "oi, tudo bem?");
    let wwebjs = data("forks/wwebjs-raw");
    assert_eq!(wwebjs["contact"]["number"], "5511900001111");
    assert_eq!(wwebjs["message"]["text"], "preciso de ajuda");
    assert_eq!(
        wwebjs["message"]["media"],
        json!({"type": "chat", "url": null})
    );
    let chamado = data("forks/chamado-start");
    assert_eq!(
        chamado["contact"],
        json!({"number": "5511900001111", "name": "Cliente Teste"})
    );
    assert_eq!(chamado["ticket"]["status"], "pending");
    // A session's name is no contact's.
    assert_eq!(data("forks/izing-session")["contact"], Value::Null);
    let izing = data("forks/izing-ack");
    assert_eq!(izing["ack"], "read");
    assert_eq!(izing["message"]["id"], "3EB0BEEF00000001");
    let edited = data("changes/whazing-edited");
    assert_eq!(edited["change"], "edited");
    assert_eq!(
        edited["contact"],
        json!({"number": "5519900001111", "name": "Cliente Exemplo"})
    );
    assert_eq!(
        edited["ticket"],
        json!({"id": 1201, "status": "open", "queue": {"id": 2, "name": null}})
    );
    assert_eq!(
        edited["message"]["media"],
        json!({"type": "chat", "url": null})
    );
    let envelope = data("changes/envelope-message-updated");
    assert_eq!(envelope["change"], "edited");
    assert_eq!(envelope["contact"]["number"], "5511900002222");
    assert_eq!(envelope["message"]["text"], "Qual o prazo de entrega?");
}

#[test]
fn credentials_stay_out_of_the_envelope() {
    let keys = crate::config::Settings::default().redact.matcher();
    let with_credentials = OTHERS
        .iter()
        .filter(|(n, _)| n.contains("authtoken") || n.contains("apiconfig"));
    for (name, body) in with_credentials {
        let ce = parse_redacting(body, BodyMode::CloudEvents, &keys);
        assert_eq!(ce.meta.body, BodyMode::CloudEvents);
        let text = String::from_utf8_lossy(&ce.body);
        for secret in [
            "izing-integration-token-EXAMPLE",
            "whazing-api-token-EXAMPLE",
        ] {
            assert!(!text.contains(secret), "{name}");
        }
    }
}
