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
