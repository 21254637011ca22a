//! Where things lie in the body: object keys with their position, and the start and end of a
//! value found from the bytes around it, which the parser has already accepted.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// An object key after escapes are resolved, and where its closing quote is when the body spells
/// it without escapes (then it is borrowed, and the value's position follows from it).
pub(crate) struct Key<'de> {
    pub text: Cow<'de, str>,
    end: Option<usize>,
}

impl Key<'_> {
    /// The offset of the key's opening quote, when it is borrowed.
    pub fn quote(&self) -> Option<usize> {
        self.end?.checked_sub(self.text.len() + 1)
    }

    /// The offset of the key's value: past the closing quote, blanks, `:`, blanks.
    pub fn value_start(&self, text: &str) -> Option<usize> {
        let bytes = text.as_bytes();
        let blank = |at: &usize| bytes.get(*at).is_some_and(u8::is_ascii_whitespace);
        let mut at = self.end? + 1;
        while blank(&at) {
            at += 1;
        }
        (bytes.get(at) == Some(&b':')).then_some(())?;
        at += 1;
        while blank(&at) {
            at += 1;
        }
        Some(at)
    }
}

/// Where `inner` lies inside `outer`, if it is a sub-slice of it (pointer arithmetic, no search).
pub(crate) fn subslice_range(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// The end of the member value followed by the key whose opening quote is at `quote`: before
/// blanks, `,`, blanks.
pub(crate) fn end_before_key(text: &str, quote: usize) -> Option<usize> {
    after_blanks_back(text.as_bytes(), quote, b',')
}

/// The end of the last member value of the top-level object: before blanks, `}`, blanks.
pub(crate) fn end_before_close(text: &str) -> Option<usize> {
    after_blanks_back(text.as_bytes(), text.len(), b'}')
}

/// The end of the value at `start`, by skimming it: for when no neighbouring key says.
pub(crate) fn end_by_skimming(text: &str, start: usize) -> Option<usize> {
    let mut de = serde_json::Deserializer::from_str(text.get(start..)?);
    let raw = <&RawValue>::deserialize(&mut de).ok()?;
    subslice_range(text.as_bytes(), raw.get().as_bytes()).map(|r| r.end)
}

/// Going back from `at`: blanks, then `mark`, then blanks; where that stops.
fn after_blanks_back(bytes: &[u8], at: usize, mark: u8) -> Option<usize> {
    let back = |mut at: usize| {
        while at > 0 && bytes.get(at - 1).is_some_and(u8::is_ascii_whitespace) {
            at -= 1;
        }
        at
    };
    let at = back(at);
    (at > 0 && bytes.get(at - 1) == Some(&mark)).then(|| back(at - 1))
}

/// Reads an object key; `base` is the body's address, to place a borrowed key in it.
pub(crate) struct KeySeed {
    pub base: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        let end = (v.as_ptr() as usize)
            .checked_sub(self.base)
            .map(|start| start + v.len());
        Ok(Key {
            text: Cow::Borrowed(v),
            end,
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key {
            text: Cow::Owned(v.to_owned()),
            end: None,
        })
    }
}
