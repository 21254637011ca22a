//! Redaction through the one-pass walk: which values are replaced, and every other byte kept.

use bytes::Bytes;

use super::FIXTURES;
use crate::event::node::{Node, Scalar};
use crate::event::offsets::subslice_range;
use crate::event::redact::{splice, RedactKeys, UNPARSEABLE};
use crate::event::scan::Scan;

/// Records nothing: the walk only finds what to redact.
struct Nothing;

impl<'de> Node<'de> for Nothing {
    fn value(&mut self, _: Scalar<'de>) {}
}

/// Redaction alone, as the relay did it before the one pass: any JSON value, the same buffer
/// when nothing matches, the placeholder for a body that does not parse.
fn redact(body: &Bytes, keys: &RedactKeys) -> Bytes {
    let Ok(text) = std::str::from_utf8(body) else {
        return Bytes::from_static(UNPARSEABLE);
    };
    let mut scan = Scan::new(text, keys);
    match scan.run(&mut Nothing) {
        Ok(()) => splice(body, &scan.spans, 0),
        Err(_) => Bytes::from_static(UNPARSEABLE),
    }
}

fn keys(list: &[&str]) -> RedactKeys {
    RedactKeys::new(list.iter().copied())
}

fn run(body: &str, list: &[&str]) -> String {
    let out = redact(&Bytes::copy_from_slice(body.as_bytes()), &keys(list));
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[test]
fn token_origin_is_replaced_and_every_other_byte_kept() {
    let input = include_str!("../../../tests/fixtures/message-from-internal.json");
    let expected = input.replace(r#""c0nn3ct10n-t0k3n""#, r#""[redacted]""#);
    assert_ne!(expected, input);
    assert_eq!(run(input, &["token_origin"]), expected);
}

#[test]
fn nested_keys_inside_arrays_are_replaced() {
    let input =
        r#"{"a":[{"whatsapp": {"token": "abc", "id": 2}}, [{"token":"def"}]], "token" :"ghi" }"#;
    let expected = r#"{"a":[{"whatsapp": {"token": "[redacted]", "id": 2}}, [{"token":"[redacted]"}]], "token" :"[redacted]" }"#;
    assert_eq!(run(input, &["token"]), expected);
}

#[test]
fn key_match_ignores_ascii_case_on_both_sides() {
    assert_eq!(
        run(r#"{"Token":"a","TOKEN":"b"}"#, &["tOkEn"]),
        r#"{"Token":"[redacted]","TOKEN":"[redacted]"}"#
    );
}

#[test]
fn keys_containing_a_listed_key_are_untouched() {
    let input = r#"{"tokenize":"a","my_token":"b","tok":"c"}"#;
    let body = Bytes::copy_from_slice(input.as_bytes());
    let out = redact(&body, &keys(&["token"]));
    assert_eq!(out, body);
    assert_eq!(out.as_ptr(), body.as_ptr());
}

#[test]
fn non_string_values_are_replaced_whole() {
    let input = r#"{"token":{"a":[1,{"b":2}]},"x":1,"Token":[1,2],"TOKEN":12.5e3,"toKen":null,"tokeN":true}"#;
    let expected = r#"{"token":"[redacted]","x":1,"Token":"[redacted]","TOKEN":"[redacted]","toKen":"[redacted]","tokeN":"[redacted]"}"#;
    assert_eq!(run(input, &["token"]), expected);
}

#[test]
fn key_name_as_a_value_triggers_nothing() {
    let input = r#"{"kind": "token", "list": ["token", "TOKEN"]}"#;
    let body = Bytes::copy_from_slice(input.as_bytes());
    let out = redact(&body, &keys(&["token"]));
    assert_eq!(out, body);
    assert_eq!(out.as_ptr(), body.as_ptr());
}

#[test]
fn unicode_escaped_key_is_redacted() {
    let input = r#"{"tok\u0065n":"abc","other":"\u00e9"}"#;
    assert_eq!(
        run(input, &["token"]),
        r#"{"tok\u0065n":"[redacted]","other":"\u00e9"}"#
    );
}

#[test]
fn escape_elsewhere_without_key_keeps_the_same_buffer() {
    let body = Bytes::from_static(br#"{"a":"line\nbreak \u00e9"}"#);
    let out = redact(&body, &keys(&["token"]));
    assert_eq!(out.as_ptr(), body.as_ptr());
    assert_eq!(out.len(), body.len());
}

#[test]
fn no_match_returns_the_same_buffer() {
    let body = Bytes::from_static(include_bytes!("../../../tests/fixtures/status-open.json"));
    let out = redact(&body, &keys(&["token_origin", "password"]));
    assert_eq!(out.as_ptr(), body.as_ptr());
    assert_eq!(out.len(), body.len());
}

#[test]
fn empty_key_set_is_a_no_op() {
    let ks = keys(&["", ""]);
    assert!(ks.is_empty());
    assert!(!keys(&["token"]).is_empty());
    let body = Bytes::from_static(br#"{"":"x","token":"y"}"#);
    assert_eq!(redact(&body, &ks).as_ptr(), body.as_ptr());
}

#[test]
fn fixtures_without_secrets_are_unchanged_byte_for_byte() {
    let ks = keys(&["token_origin", "token", "password"]);
    for (name, bytes) in FIXTURES {
        let body = Bytes::from_static(bytes);
        let out = redact(&body, &ks);
        if name == "message-from-internal" || name == "message-queue-webhook" {
            assert_ne!(out, body, "{name}");
            assert_eq!(
                out.len(),
                body.len() - "c0nn3ct10n-t0k3n".len() + "[redacted]".len(),
                "{name}"
            );
        } else {
            assert_eq!(out, body, "{name}");
        }
    }
}

#[test]
fn duplicate_keys_are_all_redacted() {
    assert_eq!(
        run(r#"{"token":"a","token":"b"}"#, &["token"]),
        r#"{"token":"[redacted]","token":"[redacted]"}"#
    );
}

#[test]
fn unparseable_body_never_leaks() {
    let out = run(r#"{"token":"secret""#, &["token"]);
    assert_eq!(out.as_bytes(), UNPARSEABLE);
    let deep = format!(
        "{}{}{}",
        "[".repeat(10_000),
        r#"{"token":1}"#,
        "]".repeat(10_000)
    );
    assert_eq!(run(&deep, &["token"]).as_bytes(), UNPARSEABLE);
}

#[test]
fn redacted_output_is_valid_json() {
    let out = run(
        include_str!("../../../tests/fixtures/message-queue-webhook.json"),
        &["token_origin"],
    );
    let value: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(value["token_origin"], "[redacted]");
    assert_eq!(value["chamadoId"], 357);
}

#[test]
fn subslice_range_rejects_foreign_slices() {
    let outer = b"abcdef";
    assert_eq!(subslice_range(outer, &outer[2..4]), Some(2..4));
    assert_eq!(subslice_range(&outer[..3], &outer[2..5]), None);
    assert_eq!(subslice_range(&outer[3..], &outer[..2]), None);
}
