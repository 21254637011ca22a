//! Redaction of credential values in a JSON body, leaving every other byte as received.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// What a redacted value becomes: a JSON string, so the body stays valid JSON of the same shape.
pub const REDACTED: &[u8] = b"\"[redacted]\"";

/// Returned instead of a body that cannot be walked: relaying it could leak the very values we
/// were asked to hide, and dropping it silently would lose the event.
pub const UNPARSEABLE: &[u8] = br#"{"redacted":"unparseable"}"#;

/// Our own nesting bound. serde_json already refuses more than 128 levels, but the redaction walk
/// must not depend on the caller having used a deserializer with that limit switched on.
const MAX_DEPTH: usize = 128;

/// The key names whose values are replaced by `"[redacted]"`, matched ASCII-case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct RedactKeys {
    keys: Vec<String>,
}

impl RedactKeys {
    /// Empty names are dropped: an empty key would force the slow path on every body and redact
    /// only the odd `""` key, which is never what a configuration meant.
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(|k| k.as_ref().to_ascii_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys.dedup();
        Self { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `name` (an unescaped object key) is one of the configured keys.
    pub fn matches(&self, name: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Whether a redaction could possibly be needed: some key appears literally (any ASCII case)
    /// or the body has a backslash, behind which a key could hide as `\u` escapes.
    fn may_occur_in(&self, body: &[u8]) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        memchr::memchr(b'\\', body).is_some()
            || self
                .keys
                .iter()
                .any(|k| contains_ignore_ascii_case(body, k.as_bytes()))
    }
}

/// `needle` must already be ASCII-lowercase.
fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), haystack).any(|at| {
        haystack
            .get(at..at + needle.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(needle))
    })
}

/// Returns `body` with the values under redacted keys replaced; the same buffer when none is present.
///
/// `body` must be valid JSON: [`crate::event::parse`] only calls this after a successful parse.
/// Should a body nonetheless fail to parse here, the [`UNPARSEABLE`] placeholder is returned
/// rather than bytes that may still carry a secret.
pub fn redact(body: &Bytes, keys: &RedactKeys) -> Bytes {
    if !keys.may_occur_in(body) {
        return body.clone();
    }
    let hits = match find_values(body, keys) {
        Ok(hits) => hits,
        Err(_) => return Bytes::from_static(UNPARSEABLE),
    };
    if hits.is_empty() {
        return body.clone();
    }
    let mut ranges = Vec::with_capacity(hits.len());
    for raw in hits {
        match subslice_range(body, raw.get().as_bytes()) {
            Some(range) => ranges.push(range),
            // Only reachable if serde_json stopped borrowing from the input.
            None => return Bytes::from_static(UNPARSEABLE),
        }
    }
    splice(body, &ranges).unwrap_or_else(|| Bytes::from_static(UNPARSEABLE))
}

/// Where `inner` lies inside `outer`, if it is a sub-slice of it (pointer arithmetic, no search).
pub(crate) fn subslice_range(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// `ranges` come in document order and never overlap, since a matched value is not descended
/// into; `None` would mean that invariant broke, and the caller then refuses to emit the body.
fn splice(body: &[u8], ranges: &[Range<usize>]) -> Option<Bytes> {
    let removed: usize = ranges.iter().map(|r| r.len()).sum();
    let mut out =
        Vec::with_capacity(body.len().saturating_sub(removed) + ranges.len() * REDACTED.len());
    let mut at = 0;
    for range in ranges {
        out.extend_from_slice(body.get(at..range.start)?);
        out.extend_from_slice(REDACTED);
        at = range.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(Bytes::from(out))
}

/// One pass over the body with a single deserializer, so serde_json's recursion limit applies to
/// the whole walk; each matched value is taken as a `&RawValue` borrowed from `body`.
fn find_values<'de>(
    body: &'de [u8],
    keys: &RedactKeys,
) -> Result<Vec<&'de RawValue>, serde_json::Error> {
    let mut hits = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Walker {
        keys,
        hits: &mut hits,
        depth: 0,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(hits)
}

struct Walker<'s, 'de> {
    keys: &'s RedactKeys,
    hits: &'s mut Vec<&'de RawValue>,
    depth: usize,
}

impl<'de> Walker<'_, 'de> {
    fn child(&mut self) -> Walker<'_, 'de> {
        Walker {
            keys: self.keys,
            hits: self.hits,
            depth: self.depth + 1,
        }
    }

    fn descend<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.descend()?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.descend()?;
        while let Some(hit) = map.next_key_seed(KeyMatch(self.keys))? {
            if hit {
                let raw: &'de RawValue = map.next_value()?;
                self.hits.push(raw);
            } else {
                map.next_value_seed(self.child())?;
            }
        }
        Ok(())
    }
}

/// Compares an object key, after serde_json has resolved its escapes, against the configured keys.
struct KeyMatch<'s>(&'s RedactKeys);

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(self.0.matches(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> RedactKeys {
        RedactKeys::new(list.iter().copied())
    }

    fn run(body: &str, list: &[&str]) -> String {
        let out = redact(&Bytes::copy_from_slice(body.as_bytes()), &keys(list));
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }

    const FIXTURES: [(&str, &[u8]); 11] = [
        (
            "media-fila-data",
            include_bytes!("../tests/fixtures/media-fila-data.json"),
        ),
        (
            "message-from-internal",
            include_bytes!("../tests/fixtures/message-from-internal.json"),
        ),
        (
            "message-from-me",
            include_bytes!("../tests/fixtures/message-from-me.json"),
        ),
        (
            "message-group",
            include_bytes!("../tests/fixtures/message-group.json"),
        ),
        (
            "message-no-caption",
            include_bytes!("../tests/fixtures/message-no-caption.json"),
        ),
        (
            "message-no-queue",
            include_bytes!("../tests/fixtures/message-no-queue.json"),
        ),
        (
            "message-queue-webhook",
            include_bytes!("../tests/fixtures/message-queue-webhook.json"),
        ),
        (
            "message-start",
            include_bytes!("../tests/fixtures/message-start.json"),
        ),
        (
            "status-closed",
            include_bytes!("../tests/fixtures/status-closed.json"),
        ),
        (
            "status-open",
            include_bytes!("../tests/fixtures/status-open.json"),
        ),
        (
            "tag-sync",
            include_bytes!("../tests/fixtures/tag-sync.json"),
        ),
    ];

    #[test]
    fn token_origin_is_replaced_and_every_other_byte_kept() {
        let input = include_str!("../tests/fixtures/message-from-internal.json");
        let expected = input.replace(r#""c0nn3ct10n-t0k3n""#, r#""[redacted]""#);
        assert_ne!(expected, input);
        assert_eq!(run(input, &["token_origin"]), expected);
    }

    #[test]
    fn nested_keys_inside_arrays_are_replaced() {
        let input = r#"{"a":[{"whatsapp": {"token": "abc", "id": 2}}, [{"token":"def"}]], "token" :"ghi" }"#;
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
        let body = Bytes::from_static(include_bytes!("../tests/fixtures/status-open.json"));
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
            include_str!("../tests/fixtures/message-queue-webhook.json"),
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
}
