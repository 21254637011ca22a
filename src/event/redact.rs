//! The key names whose values are hidden, and the splice that replaces the spans the one pass
//! found, leaving every other byte as received.

use std::ops::Range;

use bytes::Bytes;

/// What a redacted value becomes: a JSON string, so the body stays valid JSON of the same shape.
pub const REDACTED: &[u8] = b"\"[redacted]\"";

/// Relayed instead of a body whose spans do not fit it (unreachable while the walk is sound):
/// relaying it could leak the very values we were asked to hide, and dropping it silently
/// would lose the event.
pub const UNPARSEABLE: &[u8] = br#"{"redacted":"unparseable"}"#;

/// The key names whose values are replaced by `"[redacted]"`, matched ASCII-case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct RedactKeys {
    keys: Vec<String>,
    /// Bit `n` set when some key is `n` bytes long (bit 63: 63 or more). Every object key of a
    /// body is checked, and almost none has a configured key's length: one test rejects it.
    lengths: u64,
}

impl RedactKeys {
    /// Empty names are dropped: an empty key would redact only the odd `""` key, which is never
    /// what a configuration meant.
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
        let lengths = keys.iter().fold(0, |bits, k| bits | length_bit(k.len()));
        Self { keys, lengths }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `name` (an unescaped object key) is one of the configured keys.
    pub fn matches(&self, name: &str) -> bool {
        self.lengths & length_bit(name.len()) != 0
            && self
                .keys
                .iter()
                .any(|k| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
    }
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
    use super::RedactKeys;

    #[test]
    fn matches_names_of_every_length_case_insensitively_and_nothing_else() {
        let long = "k".repeat(70);
        let keys = RedactKeys::new(["token", "passwordHash", long.as_str(), ""]);
        assert!(keys.matches("TOKEN"));
        assert!(keys.matches("passwordhash"));
        assert!(keys.matches(&"K".repeat(70)));
        // Same length as a key, other letters; and lengths that share the long keys' bit.
        assert!(!keys.matches("tokex"));
        assert!(!keys.matches(&"k".repeat(64)));
        assert!(!keys.matches(&"k".repeat(71)));
        assert!(!keys.matches(""));
        assert!(!keys.matches("password"));
        assert!(!RedactKeys::new([""; 0]).matches("token"));
    }
}
