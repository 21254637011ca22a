//! Fuzzes the hot path: parse → classify → dedup key → redaction, on arbitrary bytes, and holds
//! the one-pass parser to the `Value`-tree parser it replaced on the SaaS shapes that parser knew
//! (same event, bytes and error); on the other senders' shapes (issue #11) it holds the relayed
//! bytes and errors to it and checks properties; a connection's rules (followed in the same
//! pass) never change the bytes relayed or whether a body is accepted.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use whaticket_relay::event::{self, CustomRules, Format, Kind, RedactKeys, RuleSpec};

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

/// Whether `new` is `old` but for items redacted after a listed name in an array: copied
/// headers as lists of names and values (issue #29), which the Value-tree parser did not know.
fn same_but_lists(old: &Value, new: &Value, keys: &RedactKeys) -> bool {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && same_but_lists(va, vb, keys))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).enumerate().all(|(i, (x, y))| {
                    same_but_lists(x, y, keys)
                        || (i % 2 == 1
                            && *y == Value::String("[redacted]".into())
                            && a[i - 1].as_str().is_some_and(|s| keys.matches(s)))
                })
        }
        _ => old == new,
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = RedactKeys::new(KEYS);
    let parsed = event::parse("fuzz", Bytes::copy_from_slice(data), &keys, 1);
    let reference = oracle::parse("fuzz", Bytes::copy_from_slice(data), &keys, 1);
    let (first, old) = match (parsed, reference) {
        (Ok(new), Ok(old)) => (new, old),
        (new, old) => {
            assert_eq!(new, old, "one pass and Value tree disagree on an error");
            return;
        }
    };
    if first.body != old.body {
        let parsed = |body: &[u8]| serde_json::from_slice::<Value>(body).expect("relayed JSON");
        assert!(
            same_but_lists(&parsed(&old.body), &parsed(&first.body), &keys),
            "one pass and Value tree relay other bytes"
        );
    }
    let format = first.meta.format;
    assert!(format.is_some(), "a new event always has a format");
    let lower = String::from_utf8_lossy(data).to_ascii_lowercase();
    // Deliberate SaaS changes of issue #11: a WhatsApp id in `mensagem.id`, `chamado`, acao n8n.
    let n8n_word = old.meta.action.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("n8n"));
    let deliberate = lower.contains("mensagem") && lower.contains("\"id\"")
        || lower.contains("chamado\"")
        || n8n_word;
    let newly_classified = old.meta.kind == Kind::Other && first.meta.kind != Kind::Other;
    if format == Some(Format::WhaticketSaas) && !deliberate && !newly_classified {
        let mut new = first.meta.clone();
        // Neither the format nor the change existed in the Value tree's time.
        new.format = None;
        new.change = None;
        assert_eq!(new, old.meta, "one pass and Value tree disagree on a SaaS shape");
    } else if format == Some(Format::WhaticketSaas) && old.meta.kind != Kind::Other {
        assert_eq!(first.meta.kind, old.meta.kind, "a SaaS kind changed");
    }
    let elsewhere = event::parse("elsewhere", Bytes::copy_from_slice(data), &keys, 1)
        .expect("parses on another connection");
    assert_ne!(elsewhere.meta.id, first.meta.id, "two connections share an id");
    let rules = CustomRules::new([
        RuleSpec { pointer: "/type", equals: None, kind: "receipt", id: Some("/id"), ticket: Some("/ticket/id"), time: Some("/timestamp") },
        RuleSpec { pointer: "/body/0/x~1y", equals: Some("a"), kind: "connection", id: None, ticket: None, time: None },
    ])
    .expect("valid rules");
    let ruled = event::parse_with("fuzz", Bytes::copy_from_slice(data), &keys, &rules, 1, None, event::BodyMode::Raw)
        .expect("rules never refuse a body");
    assert_eq!(ruled.body, first.body, "rules never change the relayed bytes");
    let relayed: Value = serde_json::from_slice(&first.body).expect("a relayed body is valid JSON");
    assert!(relayed.is_object(), "a relayed body is an object");
    assert_redacted(&relayed, &keys);
    // Same bytes, same event id: dedup keys are deterministic.
    let again = event::parse("fuzz", Bytes::copy_from_slice(data), &keys, 2).expect("parses twice");
    assert_eq!(first.meta.id, again.meta.id);
    assert_eq!(first.meta.kind, again.meta.kind);
});
