//! The key names whose values are hidden, how a name is matched (ASCII case, `-` and `_` aside),
//! and the splice that replaces the spans the one pass found, leaving every other byte as received.

use std::ops::Range;

use bytes::Bytes;

/// What a redacted value becomes: a JSON string, so the body stays valid JSON of the same shape.
pub const REDACTED: &[u8] = b"\"[redacted]\"";

/// Relayed instead of a body whose spans do not fit it (unreachable while the walk is sound):
/// relaying it could leak the very values we were asked to hide, and dropping it silently
/// would lose the event.
pub const UNPARSEABLE: &[u8] = br#"{"redacted":"unparseable"}"#;

/// Names of members whose array value may be a flat list of HTTP headers, name then value
/// (Node's `rawHeaders`).
const HEADER_LISTS: [&str; 2] = ["headers", "rawHeaders"];

/// The key names whose values are replaced by `"[redacted]"`. A name matches one of them when
/// both are equal once ASCII case is folded and every `-` and `_` is left out: `apiKey`,
/// `api_key`, `API-KEY` and `X-N8N-API-KEY`'s `xn8napikey` are matched as senders spell them,
/// while `tokenCount` or `secretary` are other names.
#[derive(Clone, Debug)]
pub struct RedactKeys {
    /// The configured names in their matching form, sorted; name `i` is bit `i % 62` of the
    /// tables below.
    keys: Vec<Box<[u8]>>,
    /// [`HEADER_LISTS`] in their matching form: bits 62 and 63.
    header_lists: Vec<Box<[u8]>>,
    /// For each byte, the names that may start with it: their first letter in both cases, and
    /// every name for `-` and `_`. Every object key of a body comes here: two look-ups, by its
    /// first and last bytes, and an AND leave the names with both ends (nearly always none)
    /// before any letter is compared.
    first: Box<[u64; 256]>,
    /// The same for the last byte.
    last: Box<[u64; 256]>,
}

/// Bits of the names of [`RedactKeys::keys`] in the end tables.
const KEY_BITS: u32 = 62;

/// What a member's name says about its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    /// Named by a configured key: replaced whole.
    Redacted,
    /// `headers` or `rawHeaders`: an array there may be a flat name/value list.
    HeaderList,
    Other,
}

impl Default for RedactKeys {
    fn default() -> Self {
        Self::new([""; 0])
    }
}

impl RedactKeys {
    /// Names that are empty in their matching form (`""`, `"-"`) are dropped: they would redact
    /// only odd keys such as `""` or `"_"`, which is never what a configuration meant.
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (keys, header_lists) = (forms(keys), forms(HEADER_LISTS));
        let (mut first, mut last) = (Box::new([0; 256]), Box::new([0; 256]));
        let named = keys.iter().enumerate().map(|(i, f)| (key_bit(i), f));
        let listed = header_lists
            .iter()
            .enumerate()
            .map(|(i, f)| (list_bit(i), f));
        for (bit, form) in named.chain(listed) {
            for (table, byte) in [(&mut first, form[0]), (&mut last, form[form.len() - 1])] {
                table[usize::from(byte)] |= bit;
                table[usize::from(byte.to_ascii_uppercase())] |= bit;
            }
        }
        for separator in [b'-', b'_'] {
            first[usize::from(separator)] = u64::MAX;
            last[usize::from(separator)] = u64::MAX;
        }
        Self {
            keys,
            header_lists,
            first,
            last,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `name` (an unescaped object key, or a header name in a name/value list) is one of
    /// the configured keys. Allocates nothing.
    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        self.member(name) == Member::Redacted
    }

    /// What `name`, a member's name, says about its value.
    #[inline]
    pub(crate) fn member(&self, name: &str) -> Member {
        let name = name.as_bytes();
        let (Some(&first), Some(&last)) = (name.first(), name.last()) else {
            return Member::Other;
        };
        let both = self.first[usize::from(first)] & self.last[usize::from(last)];
        if both == 0 {
            Member::Other
        } else if any_named(&self.keys, key_bit, both, name) {
            Member::Redacted
        } else if any_named(&self.header_lists, list_bit, both, name) {
            Member::HeaderList
        } else {
            Member::Other
        }
    }

    /// The keys of `defaults` this set does not match, as `defaults` spells them: what an
    /// operator's own list dropped.
    pub fn missing<'d>(&self, defaults: &'d [String]) -> Vec<&'d str> {
        defaults
            .iter()
            .filter(|d| {
                let form = matching_form(d);
                !form.is_empty() && self.keys.binary_search(&form).is_err()
            })
            .map(String::as_str)
            .collect()
    }
}

fn key_bit(i: usize) -> u64 {
    1 << (i as u32 % KEY_BITS)
}

fn list_bit(i: usize) -> u64 {
    1 << (KEY_BITS + i as u32 % (64 - KEY_BITS))
}

/// Names in their matching form: ASCII lowercase, without `-` and `_`; sorted, deduplicated.
fn forms<I, S>(names: I) -> Vec<Box<[u8]>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut forms: Vec<Box<[u8]>> = names
        .into_iter()
        .map(|k| matching_form(k.as_ref()))
        .filter(|k| !k.is_empty())
        .collect();
    forms.sort();
    forms.dedup();
    forms
}

/// Whether `name` is one of `forms` whose bit (`bit(index)`) is in `both`.
fn any_named(forms: &[Box<[u8]>], bit: fn(usize) -> u64, both: u64, name: &[u8]) -> bool {
    forms
        .iter()
        .enumerate()
        .any(|(i, form)| both & bit(i) != 0 && same_name(form, name))
}

/// `-` and `_` join words in header and field names; they are not part of a name's identity.
fn is_separator(b: u8) -> bool {
    b == b'-' || b == b'_'
}

/// `name` ASCII-lowercased without its `-` and `_`.
fn matching_form(name: &str) -> Box<[u8]> {
    name.bytes()
        .filter(|&b| !is_separator(b))
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

/// Whether `name` is `form` once its ASCII case is folded and its `-`/`_` left out.
fn same_name(form: &[u8], name: &[u8]) -> bool {
    let mut letters = name
        .iter()
        .filter(|&&b| !is_separator(b))
        .map(u8::to_ascii_lowercase);
    form.iter().all(|&f| letters.next() == Some(f)) && letters.next().is_none()
}

/// `body` with each span replaced by [`REDACTED`]; the same buffer when there is none. Spans are
/// offsets into the received buffer, of which `body` starts at `origin`; they come in document
/// order and never overlap; should that ever break, [`UNPARSEABLE`] is returned instead.
pub(crate) fn splice(body: &Bytes, spans: &[Range<usize>], origin: usize) -> Bytes {
    if spans.is_empty() {
        return body.clone();
    }
    spliced(body, spans, origin).unwrap_or_else(|| Bytes::from_static(UNPARSEABLE))
}

fn spliced(body: &Bytes, spans: &[Range<usize>], origin: usize) -> Option<Bytes> {
    let removed: usize = spans.iter().map(|r| r.len()).sum();
    let mut out =
        Vec::with_capacity(body.len().saturating_sub(removed) + spans.len() * REDACTED.len());
    let mut at = 0;
    for span in spans {
        let start = span.start.checked_sub(origin)?;
        out.extend_from_slice(body.get(at..start)?);
        out.extend_from_slice(REDACTED);
        at = span.end.checked_sub(origin)?;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::{Member, RedactKeys};

    #[test]
    fn matches_names_of_every_length_case_insensitively_and_nothing_else() {
        let long = "k".repeat(70);
        let keys = RedactKeys::new(["token", "passwordHash", long.as_str(), "", "-_"]);
        assert!(keys.matches("TOKEN"));
        assert!(keys.matches("passwordhash"));
        assert!(keys.matches(&"K".repeat(70)));
        // Same length as a key, other letters; and lengths that share the long keys' bit.
        assert!(!keys.matches("tokex"));
        assert!(!keys.matches(&"k".repeat(64)));
        assert!(!keys.matches(&"k".repeat(71)));
        assert!(!keys.matches(""));
        assert!(!keys.matches("-"));
        assert!(!keys.matches("password"));
        assert!(!RedactKeys::new([""; 0]).matches("token"));
    }

    #[test]
    fn dashes_and_underscores_are_no_part_of_a_name_on_either_side() {
        let keys = RedactKeys::new(["x-n8n-api-key", "apiKey", "client_secret", "access_token"]);
        for name in [
            "X-N8N-API-KEY",
            "x_n8n_api_key",
            "xN8nApiKey",
            "XN8NAPIKEY",
            "api_key",
            "API-KEY",
            "Api_Key",
            "apikey",
            "clientSecret",
            "CLIENT-SECRET",
            "Access-Token",
            "accessToken",
            // Leading, trailing and doubled separators are separators too.
            "_access_token_",
            "access__token",
            "--apikey",
        ] {
            assert!(keys.matches(name), "{name}");
        }
        // The configured spelling does not matter either.
        assert!(RedactKeys::new(["X_N8N-Api_Key"]).matches("x-n8n-api-key"));
    }

    #[test]
    fn near_misses_and_tampered_names_are_other_names() {
        let keys = RedactKeys::new(["token", "secret", "apiKey", "authorization", "password"]);
        for name in [
            // Longer or shorter words that contain or start like a key.
            "tokenCount",
            "tokens",
            "toke",
            "token2",
            "myToken",
            "secretary",
            "secrets",
            "apiKeys",
            "api_key_id",
            "authorizationMode",
            "authorisation",
            "password1",
            "passwordChangedAt",
            // One letter changed, in each position of the compared part.
            "tokan",
            "poken",
            "apiKez",
            // Other separators are letters of the name.
            "api.key",
            "api key",
            "api:key",
            "tok\u{0}en",
            // Non-ASCII look-alikes: the Kelvin sign is no `k`, `ſ` no `s`, fullwidth no ASCII.
            "to\u{212A}en",
            "ſecret",
            "ｔｏｋｅｎ",
            "tökén",
        ] {
            assert!(!keys.matches(name), "{name}");
        }
    }

    proptest::proptest! {
        /// The look-up by ends and length only ever skips comparisons: whatever the name, the
        /// answer is the plain rule's (equal once case is folded and `-`/`_` left out).
        #[test]
        fn the_ends_and_lengths_look_up_answers_as_the_plain_rule(
            key in 0usize..6,
            edits in proptest::collection::vec((0usize..24, proptest::sample::select(vec!['-', '_', 'x', 'T', 'n', 'd', 'e'])), 0..3),
            upper in proptest::bool::ANY,
        ) {
            let list = ["authToken", "client_secret", "x-n8n-api-key", "password", "token", "headers"];
            let keys = RedactKeys::new(&list[..5]);
            let mut name: Vec<char> = list[key].chars().collect();
            for (at, c) in edits {
                name.insert(at.min(name.len()), c);
            }
            let mut name: String = name.into_iter().collect();
            if upper {
                name = name.to_ascii_uppercase();
            }
            let plain = list[..5].iter().any(|k| super::matching_form(k) == super::matching_form(&name));
            proptest::prop_assert_eq!(keys.matches(&name), plain, "{}", name);
            let list_name = super::matching_form(&name) == super::matching_form("headers");
            proptest::prop_assert_eq!(keys.member(&name) == Member::HeaderList, list_name, "{}", name);
        }
    }

    #[test]
    fn missing_names_the_defaults_a_list_does_not_match() {
        let defaults = ["authToken", "x-n8n-api-key", "password", "-"].map(String::from);
        let keys = RedactKeys::new(["AUTH_TOKEN", "cpf"]);
        assert_eq!(keys.missing(&defaults), ["x-n8n-api-key", "password"]);
        let all = RedactKeys::new(["authtoken", "XN8NApiKey", "Password"]);
        assert!(all.missing(&defaults).is_empty());
    }

    #[test]
    fn header_lists_are_the_headers_and_raw_headers_members() {
        let keys = RedactKeys::new(["token"]);
        let is_header_list = |name| keys.member(name) == Member::HeaderList;
        for name in [
            "headers",
            "Headers",
            "HEADERS",
            "rawHeaders",
            "raw_headers",
            "RAW-HEADERS",
        ] {
            assert!(is_header_list(name), "{name}");
        }
        for name in [
            "header",
            "headersX",
            "myHeaders",
            "rawHeader",
            "heads",
            "",
            "s",
        ] {
            assert!(!is_header_list(name), "{name}");
        }
    }
}
