//! A verified Standard Webhooks `webhook-id` keys the event: whatever the body, per connection.

use bytes::Bytes;

use super::{ok, ALL, CLOSED, FIXTURES, OPEN, START};
use crate::event::key::{digest_key, sender_key};
use crate::event::{parse_with, BodyMode, CustomRules, Event, RedactKeys, RuleSpec};

const ID: &[u8] = b"msg_p5jXN8AQM9LWM0D4loKWxJek";

fn signed(connection: &str, body: &[u8], sender_id: &[u8]) -> Event {
    signed_with(connection, body, sender_id, &CustomRules::default())
}

fn signed_with(connection: &str, body: &[u8], sender_id: &[u8], rules: &CustomRules) -> Event {
    match parse_with(
        connection,
        Bytes::copy_from_slice(body),
        &RedactKeys::default(),
        rules,
        7,
        Some(sender_id),
        BodyMode::Raw,
    ) {
        Ok(event) => event,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn one_sender_id_is_one_event_whatever_the_body() {
    let first = signed("c", START, ID);
    for body in ALL {
        assert_eq!(signed("c", body, ID).meta.id, first.meta.id);
    }
    // A retry re-serialised: other whitespace and key order, the same event.
    let reserialised = serde_json::to_vec_pretty(
        &serde_json::from_slice::<serde_json::Value>(START).expect("fixture is JSON"),
    )
    .expect("serialises");
    assert_ne!(reserialised, START);
    assert_eq!(signed("c", &reserialised, ID).meta.id, first.meta.id);
}

#[test]
fn another_sender_id_is_another_event_even_for_the_same_bytes() {
    let a = signed("c", OPEN, b"msg_1");
    let b = signed("c", OPEN, b"msg_2");
    assert_ne!(a.meta.id, b.meta.id);
    // Ids differing in case or in a byte that is not UTF-8 are different ids.
    let upper = signed("c", OPEN, b"MSG_1");
    let latin = signed("c", OPEN, b"msg_\xe91");
    assert_ne!(upper.meta.id, a.meta.id);
    assert_ne!(latin.meta.id, a.meta.id);
    assert_ne!(latin.meta.id, upper.meta.id);
}

#[test]
fn the_connection_is_part_of_the_key() {
    assert_ne!(signed("a", OPEN, ID).meta.id, signed("b", OPEN, ID).meta.id);
}

#[test]
fn everything_but_the_id_still_comes_from_the_body() {
    for (name, body) in FIXTURES {
        let plain = ok("c", body);
        let with_id = signed("c", body, ID);
        assert_ne!(with_id.meta.id, plain.meta.id, "{name}");
        let mut meta = with_id.meta.clone();
        meta.id = plain.meta.id;
        assert_eq!(meta, plain.meta, "{name}");
        assert_eq!(with_id.body, plain.body, "{name}");
    }
}

#[test]
fn the_sender_id_outranks_a_connection_rule_key() {
    let rules = CustomRules::new([RuleSpec {
        pointer: "/evento",
        equals: None,
        kind: "status",
        id: Some("/id"),
        ticket: None,
        time: None,
    }])
    .expect("valid rule");
    let one = signed_with("c", br#"{"evento":"x","id":"1"}"#, ID, &rules);
    let two = signed_with("c", br#"{"evento":"x","id":"2"}"#, ID, &rules);
    assert_eq!(one.meta.id, two.meta.id);
    assert_eq!(
        one.meta.kind,
        crate::event::Kind::Status,
        "the rule still classifies"
    );
}

#[test]
fn the_key_is_pinned_and_apart_from_every_other_kind() {
    // Stored dedup keys depend on every byte: this value (the first 16 bytes of SHA-256 over the
    // length-prefixed parts, worked out apart from this code) must never change.
    assert_eq!(
        sender_key("suporte-x", ID).to_string(),
        "794d832a8b88566888f28babc0ae9a43"
    );
    assert_eq!(
        sender_key("suporte-x", ID),
        digest_key(&["webhook-id", "suporte-x", "msg_p5jXN8AQM9LWM0D4loKWxJek"])
    );
    // The same text as a message's WhatsApp id, or under another kind's tag, is another key.
    let id = std::str::from_utf8(ID).expect("ASCII");
    for tag in ["msg-wid", "other", "rule", "receipt"] {
        assert_ne!(
            sender_key("suporte-x", ID),
            digest_key(&[tag, "suporte-x", "", id])
        );
        assert_ne!(
            sender_key("suporte-x", ID),
            digest_key(&[tag, "suporte-x", id])
        );
    }
    // A status fixture parsed unsigned keeps its earlier key: the unsigned path is unchanged.
    assert_ne!(ok("c", CLOSED).meta.id, signed("c", CLOSED, ID).meta.id);
}
