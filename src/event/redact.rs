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
    keys: Names,
    header_lists: Names,
    /// For each byte, which of the two lists have a name that can start with it ([`KEY`],
    /// [`LIST`]): each name's first letter in both cases, and the separators. Every object key of
    /// a body is checked, and its first and last bytes reject nearly all before any comparison.
    first: [u8; 256],
    /// The same for the last byte.
    last: [u8; 256],
}

/// Bits of [`RedactKeys::first`] and [`RedactKeys::last`].
const KEY: u8 = 1;
const LIST: u8 = 2;

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
        let mut this = Self {
            keys: Names::new(keys),
            header_lists: Names::new(HEADER_LISTS),
            first: [0; 256],
            last: [0; 256],
        };
        for (names, bit) in [(&this.keys, KEY), (&this.header_lists, LIST)] {
            for form in &names.forms {
                let ends = [
                    (&mut this.first, form[0]),
                    (&mut this.last, form[form.len() - 1]),
                ];
                for (table, byte) in ends {
                    table[usize::from(byte)] |= bit;
                    table[usize::from(byte.to_ascii_uppercase())] |= bit;
                    table[usize::from(b'-')] |= bit;
                    table[usize::from(b'_')] |= bit;
                }
            }
        }
        this
    }

    pub fn is_empty(&self) -> bool {
        self.keys.forms.is_empty()
    }

    /// Whether `name` (an unescaped object key, or a header name in a name/value list) is one of
    /// the configured keys. Allocates nothing.
    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        self.hint(name.as_bytes()) & KEY != 0 && self.keys.compare(name.as_bytes())
    }

    /// What `name`, a member's name, says about its value; one look-up for nearly every name.
    #[inline]
    pub(crate) fn member(&self, name: &str) -> Member {
        let name = name.as_bytes();
        let hint = self.hint(name);
        if hint == 0 {
            Member::Other
        } else if hint & KEY != 0 && self.keys.compare(name) {
            Member::Redacted
        } else if hint & LIST != 0 && self.header_lists.compare(name) {
            Member::HeaderList
        } else {
            Member::Other
        }
    }

    /// Which lists may hold `name`, by its first and last bytes.
    #[inline]
    fn hint(&self, name: &[u8]) -> u8 {
        let Some(&a) = name.first() else {
            return 0;
        };
        match self.first[usize::from(a)] {
            0 => 0,
            hint => hint & self.last[usize::from(name[name.len() - 1])],
        }
    }

    /// The keys of `defaults` this set does not match, as `defaults` spells them: what an
    /// operator's own list dropped.
    pub fn missing<'d>(&self, defaults: &'d [String]) -> Vec<&'d str> {
        defaults
            .iter()
            .filter(|d| {
                let form = matching_form(d);
                !form.is_empty() && self.keys.forms.binary_search(&form).is_err()
            })
            .map(String::as_str)
            .collect()
    }
}

/// Names in their matching form: ASCII lowercase, without `-` and `_`; sorted, deduplicated.
#[derive(Clone, Debug, Default)]
struct Names {
    forms: Vec<Box<[u8]>>,
    /// Bit `n` set when some form is `n` bytes long (bit 63: 63 or more).
    lengths: u64,
}

impl Names {
    fn new<I, S>(names: I) -> Self
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
        let lengths = forms.iter().fold(0, |bits, k| bits | length_bit(k.len()));
        Self { forms, lengths }
    }

    /// Whether `name` is one of the names: its `-`/`_` counted for the length test, and only
    /// names of a form's length compared.
    fn compare(&self, name: &[u8]) -> bool {
        let len = name.len() - name.iter().filter(|&&b| is_separator(b)).count();
        self.lengths & length_bit(len) != 0
            && self
                .forms
                .iter()
                .any(|f| f.len() == len && same_name(f, name))
    }
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

/// Whether `name` is `form` (a matching form of the same length as `name`'s) once its ASCII
/// case is folded and its `-`/`_` left out.
fn same_name(form: &[u8], name: &[u8]) -> bool {
    let mut letters = name
        .iter()
        .filter(|&&b| !is_separator(b))
        .map(u8::to_ascii_lowercase);
    form.iter().all(|&f| letters.next() == Some(f)) && letters.next().is_none()
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
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
