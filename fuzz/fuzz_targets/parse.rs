//! Fuzzes the hot path: parse → classify → dedup key → redaction, on arbitrary bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use whaticket_relay::event::{self, RedactKeys};

const KEYS: [&str; 6] = ["passwordHash", "password", "token", "metaAccessToken", "accessToken", "token_origin"];

/// Every value under a listed key must have become the placeholder.
fn assert_redacted(value: &Value, keys: &RedactKeys) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if keys.matches(k) {
                    assert_eq!(v, &Value::String("[redacted]".into()), "value under {k:?} leaked");
                } else {
                    assert_redacted(v, keys);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_redacted(v, keys)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = RedactKeys::new(KEYS);
    let Ok(first) = event::parse("fuzz", Bytes::copy_from_slice(data), &keys, 1) else {
        return;
    };
    let relayed: Value = serde_json::from_slice(&first.body).expect("a relayed body is valid JSON");
    assert!(relayed.is_object(), "a relayed body is an object");
    assert_redacted(&relayed, &keys);
    // Same bytes, same event id: dedup keys are deterministic.
    let again = event::parse("fuzz", Bytes::copy_from_slice(data), &keys, 2).expect("parses twice");
    assert_eq!(first.meta.id, again.meta.id);
    assert_eq!(first.meta.kind, again.meta.kind);
});
