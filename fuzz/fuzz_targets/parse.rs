//! Fuzzes the hot path: parse → classify → dedup key → redaction, on arbitrary bytes, and holds
//! the one-pass parser to the `Value`-tree parser it replaced (same event, bytes and error).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use whaticket_relay::event::{self, RedactKeys};

#[path = "../../tests/api/oracle.rs"]
mod oracle;

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
    let parsed = event::parse("fuzz", Bytes::copy_from_slice(data), &keys, 1);
    let reference = oracle::parse("fuzz", Bytes::copy_from_slice(data), &keys, 1);
    assert_eq!(parsed, reference, "one pass and Value tree disagree");
    let Ok(first) = parsed else {
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
