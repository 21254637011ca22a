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

/// The default list, as `config/default.toml` has it.
fn defaults() -> RedactKeys {
    crate::config::Settings::default().redact.matcher()
}

fn run_defaults(body: &str) -> String {
    let out = redact(&Bytes::copy_from_slice(body.as_bytes()), &defaults());
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[test]
fn names_match_without_regard_to_case_dashes_or_underscores_at_any_depth() {
    let input = r#"{"a":{"b":[{"Access-Token":"1","CLIENT_SECRET":"2","x_n8n_api_key":"3","Pass_Word":"4"}]}}"#;
    let expected = r#"{"a":{"b":[{"Access-Token":"[redacted]","CLIENT_SECRET":"[redacted]","x_n8n_api_key":"[redacted]","Pass_Word":"[redacted]"}]}}"#;
    assert_eq!(run_defaults(input), expected);
}

/// `input` relayed as the very buffer received: nothing in it is redacted by the defaults.
fn assert_kept(input: &str) {
    let body = Bytes::copy_from_slice(input.as_bytes());
    let out = redact(&body, &defaults());
    assert_eq!(
        out.as_ptr(),
        body.as_ptr(),
        "{input}: {:?}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn near_miss_names_and_credential_words_as_values_are_kept_byte_for_byte() {
    assert_kept(
        r#"{"tokenCount":42,"secretary":"Maria","apiKeys":3,"authorizationMode":"oauth","tags":["secret","vip"],"kind":"token","list":[["x","token"],["token"]]}"#,
    );
}

#[test]
fn headers_copied_as_an_object_are_redacted_by_their_names() {
    let input = r#"{"headers":{"host":"h","X-N8N-API-KEY":"k1","Authorization":"Bearer k2","content-type":"application/json"}}"#;
    let expected = r#"{"headers":{"host":"h","X-N8N-API-KEY":"[redacted]","Authorization":"[redacted]","content-type":"application/json"}}"#;
    assert_eq!(run_defaults(input), expected);
}

#[test]
fn headers_copied_as_name_value_pairs_hide_each_credential_value() {
    // Under any member: an array in an array is a pair.
    let input = r#"{"req":{"h":[["host","h"],["X-N8N-API-KEY","k1"],[ "authorization" , "Bearer k2" ],["Content-Type","application/json"]]}}"#;
    let expected = r#"{"req":{"h":[["host","h"],["X-N8N-API-KEY","[redacted]"],[ "authorization" , "[redacted]" ],["Content-Type","application/json"]]}}"#;
    assert_eq!(run_defaults(input), expected);
    // Escaped names, other spellings, values of any type.
    let input = r#"[["Authoriz\u0061tion",{"scheme":"Bearer","v":[1,2]}],["x_api_key",7],["PROXY-AUTHORIZATION",null]]"#;
    let expected = r#"[["Authoriz\u0061tion","[redacted]"],["x_api_key","[redacted]"],["PROXY-AUTHORIZATION","[redacted]"]]"#;
    assert_eq!(run_defaults(input), expected);
}

#[test]
fn a_flat_header_list_hides_the_value_after_each_credential_name() {
    let input = r#"{"rawHeaders":["Host","h","X-N8N-API-KEY","k1","Authorization","Basic k2","Accept","*/*"],"headers":["Cookie","c=1"]}"#;
    let expected = r#"{"rawHeaders":["Host","h","X-N8N-API-KEY","[redacted]","Authorization","[redacted]","Accept","*/*"],"headers":["Cookie","[redacted]"]}"#;
    assert_eq!(run_defaults(input), expected);
}

#[test]
fn only_names_hide_values_in_lists() {
    // A credential word at a value's place (odd index) hides nothing; a name as the last item
    // has nothing to hide, in its list or the next.
    for input in [
        r#"{"rawHeaders":["X-Kind","token","Accept","*/*"]}"#,
        r#"{"h":[["Authorization"],["x","y"]]}"#,
        r#"{"rawHeaders":["Authorization"],"other":["a","b"]}"#,
        r#"{"h":[[1,"token","x"]],"n":[["token"],"kept"]}"#,
        // A flat list under another member: a plain list of words.
        r#"{"fields":["password","name"],"tags":["secret","vip"]}"#,
    ] {
        assert_kept(input);
    }
}

#[test]
fn a_list_inside_a_redacted_value_is_one_span() {
    assert_eq!(
        run_defaults(r#"{"token":[["authorization","x"]],"n":1}"#),
        r#"{"token":"[redacted]","n":1}"#
    );
}

#[test]
fn list_redaction_follows_the_configured_keys() {
    let input = r#"{"headers":[["Authorization","k"],["cpf","1"]]}"#;
    assert_eq!(
        run(input, &["cpf"]),
        r#"{"headers":[["Authorization","k"],["cpf","[redacted]"]]}"#
    );
}

/// `tests/fixtures/credentials/`: bodies carrying the credentials senders put in them, and each
/// one's values that must never leave (`secrets.json`).
const CREDENTIALS: [(&str, &str); 7] = [
    (
        "izing-message-with-authtoken.json",
        include_str!("../../../tests/fixtures/credentials/izing-message-with-authtoken.json"),
    ),
    (
        "whazing-ticket-with-apiconfig.json",
        include_str!("../../../tests/fixtures/credentials/whazing-ticket-with-apiconfig.json"),
    ),
    (
        "headers-object.json",
        include_str!("../../../tests/fixtures/credentials/headers-object.json"),
    ),
    (
        "headers-pairs.json",
        include_str!("../../../tests/fixtures/credentials/headers-pairs.json"),
    ),
    (
        "raw-headers.json",
        include_str!("../../../tests/fixtures/credentials/raw-headers.json"),
    ),
    (
        "nested-credentials.json",
        include_str!("../../../tests/fixtures/credentials/nested-credentials.json"),
    ),
    (
        "n8n-envelope-with-headers.json",
        include_str!("../../../tests/fixtures/credentials/n8n-envelope-with-headers.json"),
    ),
];

#[test]
fn credential_fixtures_relay_every_byte_but_their_secrets() {
    let secrets: serde_json::Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/credentials/secrets.json"
    ))
    .unwrap_or_default();
    assert_eq!(
        secrets.as_object().map(|o| o.len()),
        Some(CREDENTIALS.len())
    );
    for (name, input) in CREDENTIALS {
        let values: Vec<&str> = secrets[name]["secret_values"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        assert!(!values.is_empty(), "{name}");
        let event = crate::event::parse("c", Bytes::from_static(input.as_bytes()), &defaults(), 0);
        let relayed = event.map(|e| e.body).unwrap_or_default();
        let relayed = String::from_utf8_lossy(&relayed);
        // What was received, each secret string replaced, nothing else (the envelope's inner
        // body only: n8n's own members are never relayed).
        let mut expected = input.to_owned();
        for value in &values {
            let quoted = format!("\"{value}\"");
            assert!(
                expected.contains(&quoted),
                "{name}: {value} is a string value"
            );
            expected = expected.replace(&quoted, "\"[redacted]\"");
        }
        if name.starts_with("n8n-") {
            let value: serde_json::Value = serde_json::from_str(&expected).unwrap_or_default();
            let inner: serde_json::Value = serde_json::from_str(&relayed).unwrap_or_default();
            assert_eq!(inner, value["body"], "{name}");
        } else {
            assert_eq!(relayed, expected, "{name}");
        }
        for value in values {
            assert!(!relayed.contains(value), "{name} leaked {value}");
        }
    }
}
