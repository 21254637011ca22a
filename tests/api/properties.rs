//! Property tests over parse → classify → dedup key → redaction: no panic on any input, no listed
//! key's value ever relayed, and every other byte relayed as received.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use whaticket_relay::event;
use whaticket_relay::redact::RedactKeys;

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
        1 => prop::sample::select(vec!["TOKEN", "PassWord", "AccessToken", "passwordhash"]).prop_map(str::to_owned),
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

/// What the relay must send: the input with every listed key's value replaced.
fn expected(value: &Value, keys: &RedactKeys) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if keys.matches(k) {
                        Value::String("[redacted]".into())
                    } else {
                        expected(v, keys)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| expected(v, keys)).collect()),
        other => other.clone(),
    }
}

fn has_listed_key(value: &Value, keys: &RedactKeys) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| keys.matches(k) || has_listed_key(v, keys)),
        Value::Array(items) => items.iter().any(|v| has_listed_key(v, keys)),
        _ => false,
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
        prop_assert_eq!(&relayed, &expected(&input, &keys));
        if !has_listed_key(&input, &keys) {
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
}
