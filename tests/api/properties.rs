//! Property tests over parse → classify → dedup key → redaction: no panic on any input, no listed
//! key's value ever relayed, every other byte relayed as received, and the one-pass parser giving
//! what the `Value`-tree parser it replaced gives on the SaaS shapes (same ids, bytes and errors);
//! on the other senders' shapes, which that parser left `other`, properties instead.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use whaticket_relay::event::{self, Change, Event, Format, Kind, ParseError, RedactKeys};

#[path = "oracle.rs"]
mod oracle;

const LISTED: [&str; 6] = [
    "passwordHash",
    "password",
    "token",
    "metaAccessToken",
    "accessToken",
    "token_origin",
];

fn keys() -> RedactKeys {
    RedactKeys::new(LISTED)
}

/// Object keys: Whaticket-like names, the listed ones in odd cases, and arbitrary text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["acao", "action", "chamadoId", "companyId", "mensagem", "ticketData",
            "contact", "number", "name", "body", "fromMe", "tags", "updatedAt", "wid", "id"]).prop_map(str::to_owned),
        2 => prop::sample::select(LISTED.to_vec()).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["TOKEN", "PassWord", "AccessToken", "passwordhash", "Access-Token", "pass_word_hash"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["headers", "rawHeaders", "RAW_HEADERS"]).prop_map(str::to_owned),
        1 => "[a-zA-Z_\u{e0}-\u{ff}\"\\\\ ]{0,8}",
    ]
}

/// Leaf values carry a marker so a leak of a redacted one can be searched for in the output.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Decimals that survive a parse exactly (serde_json is built without float_roundtrip;
        // the relay itself never re-encodes numbers, it keeps the bytes).
        (-10_000_000i64..10_000_000).prop_map(|i| Value::from(i as f64 / 100.0)),
        "[ -~\u{e0}-\u{ff}\n\"\\\\]{0,12}".prop_map(|s| Value::String(format!("v{s}"))),
        // Names in lists of names and values (copied HTTP headers).
        prop::sample::select(vec!["token", "Pass_Word", "ACCESS-TOKEN", "x-kind"])
            .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), value()), 0..8).prop_map(|kv| kv.into_iter().collect())
}

/// What the relay must send: the input with every listed key's value replaced, and in a list of
/// names and values (an array in an array, or under `headers`/`rawHeaders`) the item after a
/// listed name at an even index.
fn expected(value: &Value, keys: &RedactKeys) -> Value {
    expected_in(value, keys, false)
}

fn expected_in(value: &Value, keys: &RedactKeys, list: bool) -> Value {
    let redacted = || Value::String("[redacted]".into());
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if keys.matches(k) {
                        redacted()
                    } else {
                        let form: String = k.chars().filter(|c| !matches!(c, '-' | '_')).collect();
                        let headers =
                            ["headers", "rawheaders"].contains(&&*form.to_ascii_lowercase());
                        expected_in(v, keys, headers)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            let mut hide = false;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if std::mem::take(&mut hide) {
                    out.push(redacted());
                    continue;
                }
                hide = list && i % 2 == 0 && item.as_str().is_some_and(|s| keys.matches(s));
                out.push(expected_in(item, keys, true));
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = event::parse("conn", Bytes::from(raw), &keys(), 1);
    }

    #[test]
    fn mangled_json_never_panics(object in object(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut raw = serde_json::to_vec(&Value::Object(object)).unwrap();
        if !raw.is_empty() {
            let at = cut.index(raw.len());
            raw[at] ^= flip;
            raw.truncate(at + 1 + (flip as usize % 4));
        }
        let _ = event::parse("conn", Bytes::from(raw), &keys(), 1);
    }

    #[test]
    fn relayed_body_is_the_input_with_only_listed_values_redacted(object in object(), pretty in any::<bool>()) {
        // An n8n envelope is unwrapped by design; keep to plain bodies here.
        prop_assume!(!(object.contains_key("body") && object.contains_key("headers")));
        let input = Value::Object(object);
        let raw = if pretty { serde_json::to_vec_pretty(&input) } else { serde_json::to_vec(&input) }.unwrap();
        let keys = keys();
        let event = event::parse("conn", Bytes::from(raw.clone()), &keys, 1).expect("a JSON object is accepted");
        let relayed: Value = serde_json::from_slice(&event.body).expect("relayed body is JSON");
        let expected = expected(&input, &keys);
        prop_assert_eq!(&relayed, &expected);
        if expected == input {
            // Nothing to redact: byte for byte what was received.
            prop_assert_eq!(&event.body[..], &raw[..]);
        }
        // Same body, same id and kind: the dedup key is a function of the body and connection.
        let again = event::parse("conn", Bytes::from(raw), &keys, 99).unwrap();
        prop_assert_eq!(again.meta.id, event.meta.id);
        prop_assert_eq!(again.meta.kind, event.meta.kind);
    }

    #[test]
    fn a_listed_value_never_leaks(object in object(), secret in "[A-Za-z0-9]{16}", key in prop::sample::select(LISTED.to_vec()), depth in 0usize..4) {
        let marker = format!("SECRET{secret}");
        let mut nested = Value::Object(Map::from_iter([(key.to_owned(), Value::String(marker.clone()))]));
        for _ in 0..depth {
            nested = Value::Array(vec![Value::Object(Map::from_iter([("x".to_owned(), nested)]))]);
        }
        let mut object = object;
        object.insert("zz_nested".into(), nested);
        let raw = serde_json::to_vec(&Value::Object(object)).unwrap();
        let event = event::parse("conn", Bytes::from(raw), &keys(), 1).unwrap();
        let relayed = String::from_utf8_lossy(&event.body);
        prop_assert!(!relayed.contains(&marker), "leaked: {}", relayed);
    }

    #[test]
    fn one_pass_equals_the_value_tree_parser(body in json_body(), wrap in 0u8..4) {
        let raw = match wrap {
            0 => n8n(&body),
            _ => body,
        };
        let keys = keys();
        let one_pass = event::parse("conn", Bytes::from(raw.clone()), &keys, 1);
        let reference = oracle::parse("conn", Bytes::from(raw.clone()), &keys, 1);
        against_reference(&raw, one_pass, reference)?;
    }

    #[test]
    fn one_pass_equals_the_value_tree_parser_on_broken_bodies(body in json_body(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut raw = body;
        let at = cut.index(raw.len());
        raw[at] ^= flip;
        let keys = keys();
        let one_pass = event::parse("conn", Bytes::from(raw.clone()), &keys, 1);
        let reference = oracle::parse("conn", Bytes::from(raw.clone()), &keys, 1);
        against_reference(&raw, one_pass, reference)?;
    }
}

/// The old parser is the reference wherever the body is a SaaS shape it knew; the rest (the
/// other senders' shapes and the deliberate SaaS changes of issue #11) must still relay the same
/// bytes and fail the same way, and is held to properties of its own.
fn against_reference(
    raw: &[u8],
    one_pass: Result<Event, ParseError>,
    reference: Result<Event, ParseError>,
) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(raw);
    let (mut new, old) = match (one_pass, reference) {
        (Ok(new), Ok(old)) => (new, old),
        (new, old) => {
            prop_assert_eq!(new, old, "{}", text);
            return Ok(());
        }
    };
    prop_assert_eq!(&new.body, &old.body, "{}", text);
    let format = new.meta.format.take();
    prop_assert!(format.is_some(), "every new event has a format: {}", text);
    let change = new.meta.change.take();
    prop_assert!(
        change.is_some_and(|c| Change::of_kind(new.meta.kind).contains(&c)),
        "every new event names a change of its kind: {:?} {}",
        change,
        text
    );
    // A changed message has a key of its own; the key the old parser gave its body is its
    // earlier id, which the store checks among the keys written before an upgrade.
    if let Some(earlier) = new.earlier_id.take() {
        prop_assert_eq!(new.meta.kind, Kind::Message, "{}", text);
        prop_assert_ne!(change, Some(Change::Created), "{}", text);
        new.meta.id = earlier;
    }
    let lower = text.to_ascii_lowercase();
    // A WhatsApp id in `mensagem.id`, `chamado` for `ticketData`, `acao: "n8n"`: issue #11.
    let n8n_word = old
        .meta
        .action
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case("n8n"));
    let deliberate = lower.contains("3eb0") || lower.contains("\"chamado\"") || n8n_word;
    // A SaaS `other` may be another sender's word (`type`, `event`) next to SaaS members.
    let newly_classified = old.meta.kind == Kind::Other && new.meta.kind != Kind::Other;
    if format == Some(Format::WhaticketSaas) && !deliberate && !newly_classified {
        prop_assert_eq!(&new.meta, &old.meta, "{}", text);
        return Ok(());
    }
    // What the old parser knew keeps its kind; only its `other` may become a new kind.
    if old.meta.kind != Kind::Other && format == Some(Format::WhaticketSaas) {
        prop_assert_eq!(new.meta.kind, old.meta.kind, "{}", text);
        prop_assert_eq!(&new.meta.action, &old.meta.action, "{}", text);
    }
    prop_assert_eq!(&new.meta.connection, &old.meta.connection);
    // Every key holds the connection: another one never shares an id.
    let elsewhere = event::parse("elsewhere", Bytes::copy_from_slice(raw), &keys(), 1)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_ne!(elsewhere.meta.id, new.meta.id, "{}", text);
    prop_assert_eq!(elsewhere.meta.kind, new.meta.kind);
    // The receipt and connection kinds only come from words or members the old parser ignored.
    if matches!(new.meta.kind, Kind::Receipt | Kind::Connection) {
        prop_assert_eq!(old.meta.kind, Kind::Other, "{}", text);
    }
    Ok(())
}

/// Member names the parser reads, in odd casings, escaped, and listed for redaction, so that
/// duplicates and case-insensitive fallbacks come up often.
fn raw_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "acao",
        "Acao",
        "ACAO",
        "action",
        "Action",
        "chamadoId",
        "CHAMADOID",
        "companyId",
        "companyid",
        "mensagem",
        "Mensagem",
        "m\\u0065nsagem",
        "ticketData",
        "TicketData",
        "status",
        "updatedAt",
        "UpdatedAt",
        "id",
        "ID",
        "wid",
        "fromMe",
        "FROMME",
        "ticketId",
        "tags",
        "Tags",
        "mediaName",
        "originalData",
        "key",
        "KEY",
        "body",
        "headers",
        "webhookUrl",
        "executionMode",
        "token",
        "Token",
        "tok\\u0065n",
        "password",
        // The other senders' members (Izing, Whazing, Baileys, whatsapp-web.js, envelope).
        "type",
        "Type",
        "event",
        "ack",
        "messageId",
        "MessageID",
        "whatsappId",
        "messageBody",
        "message",
        "payload",
        "chamado",
        "ticket",
        "whatsapp",
        "_serialized",
        "remoteJid",
        "messageTimestamp",
        "timestamp",
        "low",
        "high",
        // A message's state (Whazing, the SaaS row, Baileys, whatsapp-web.js).
        "isDeleted",
        "isEdited",
        "edited",
        "reactions",
        "hasReaction",
        "mediaUrl",
        "messageStubType",
        "latestEditSenderTimestampMs",
        "update",
        "contactId",
        "x",
        "",
    ])
}

/// JSON text (not a `Value`, so keys repeat and escapes and spacing vary as senders write them).
fn raw_value() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(vec![
        "null",
        "true",
        "false",
        "0",
        "-0",
        "7",
        "357",
        "-4",
        "3.0",
        "1e2",
        "1.5",
        "12.50",
        "-2.5e-3",
        "18446744073709551615",
        "9223372036854775807",
        "-9223372036854775808",
        "\"357\"",
        "\" 42\"",
        "\"\"",
        "\"true\"",
        "\"FALSE\"",
        "\"start\"",
        "\"Start\"",
        "\"from_internal\"",
        "\"queue_webhook\"",
        "\"open\"",
        "\"closed\"",
        "\"fila-data\"",
        "\"tag-sync\"",
        "\"TAG-SYNC\"",
        "\"pending\"",
        "\"arquivado\"",
        "\"2023-10-12T14:07:44.618Z\"",
        "\"2023-11-01T00:00:00.000Z\"",
        "\"st\\u0061rt\"",
        "\"a\\nb \\u00e9\"",
        "\"3EB0C431C26A\"",
        "\"false_5511900001111@c.us_3EB0C431C26A\"",
        "\"n8n\"",
        "\"hookMessage\"",
        "\"hookMessageStatus\"",
        "\"HOOKSESSIONSTATUS\"",
        "\"ClosedTicket\"",
        "\"ticket.created\"",
        "\"message.ack\"",
        "\"session.updated\"",
        "\"CONNECTED\"",
        "1714644000",
        "\"SECRET\"",
    ])
    .prop_map(str::to_owned);
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(","))),
            (
                prop::collection::vec((raw_key(), inner), 0..6),
                any::<bool>()
            )
                .prop_map(|(members, spaced)| {
                    let sep = if spaced { " : " } else { ":" };
                    let members: Vec<String> = members
                        .iter()
                        .map(|(k, v)| format!("\"{k}\"{sep}{v}"))
                        .collect();
                    format!("{{{}}}", members.join(if spaced { ",\n " } else { "," }))
                }),
        ]
    })
}

fn json_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((raw_key(), raw_value()), 0..10).prop_map(|members| {
        let members: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    })
}

fn n8n(inner: &[u8]) -> Vec<u8> {
    let mut out = br#"{"headers":{"host":"n8n"},"body": "#.to_vec();
    out.extend_from_slice(inner);
    out.extend_from_slice(br#" ,"token":"outer","executionMode":"production"}"#);
    out
}
