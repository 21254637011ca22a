//! The one pass over a body: a serde walker that validates every byte as serde_json's `Value`
//! parser would, hands the values at known paths to the field records, and notes the byte spans
//! of values to redact, without building a tree.

use std::fmt;
use std::mem;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::custom::Trie;
use super::error::syntax_error;
use super::node::{Node, Scalar};
use super::offsets::subslice_range;
use super::redact::RedactKeys;
use super::ParseError;

mod walk;
use walk::{Place, Walk};

/// Nesting level at which serde_json's parser stops (its recursion limit of 128). The walker
/// enforces it itself too: values it takes apart are walked by a second deserializer whose own
/// count starts again at zero, and a body must not pass for being split that way.
const MAX_LEVEL: usize = 128;

/// Where the walk stands in a connection's rule paths: from the body's top (set 0) and from the
/// top of the member taken apart, the n8n inner body (set 1), which is the event if the body
/// turns out to be an envelope.
type At<'k> = [Option<&'k Trie>; 2];

/// The walk's shared state.
pub(crate) struct Scan<'de, 'k> {
    /// The whole received body; every offset is into it.
    text: &'de str,
    keys: &'k RedactKeys,
    /// Byte ranges to replace, in document order, never overlapping (a redacted value is not
    /// searched further).
    pub spans: Vec<Range<usize>>,
    rules: Option<&'k Trie>,
    /// The values at the rules' pointers, per set of [`At`].
    pub captured: [Vec<Scalar<'de>>; 2],
    /// Whether the records' `facts` members are filled too (a CloudEvents body is built).
    facts: bool,
}

impl<'de, 'k> Scan<'de, 'k> {
    pub fn new(text: &'de str, keys: &'k RedactKeys) -> Self {
        Self {
            text,
            keys,
            spans: Vec::new(),
            rules: None,
            captured: [Vec::new(), Vec::new()],
            facts: false,
        }
    }

    /// Records the facts a CloudEvents body carries, in the same pass.
    pub fn with_facts(mut self, facts: bool) -> Self {
        self.facts = facts;
        self
    }

    /// Follows a connection's rule paths too, keeping `slots` values.
    pub fn with_rules(mut self, rules: Option<&'k Trie>, slots: usize) -> Self {
        if rules.is_some() {
            self.rules = rules;
            self.captured = [vec![Scalar::Null; slots], vec![Scalar::Null; slots]];
        }
        self
    }

    fn capture(&mut self, at: At<'k>, value: &Scalar<'de>) {
        for (set, trie) in at.iter().enumerate() {
            for &slot in trie.map_or(&[][..], |t| t.targets()) {
                if let Some(out) = self.captured[set].get_mut(slot) {
                    *out = value.clone();
                }
            }
        }
    }

    /// Walks the whole body into `root`, which sees the top-level value.
    pub fn run(&mut self, root: &mut dyn Node<'de>) -> Result<(), ParseError> {
        let text = self.text;
        let mut de = serde_json::Deserializer::from_str(text);
        let at = [self.rules, None];
        let walk = Walk {
            scan: self,
            node: Some(root),
            depth: 0,
            redact: true,
            at,
            place: Place::Plain,
        };
        match walk.deserialize(&mut de).and_then(|()| de.end()) {
            Ok(()) => Ok(()),
            Err(err) => Err(syntax_error(self.recheck(text).err().unwrap_or(err))),
        }
    }

    /// The error a full parse reports, found again by walking `text` without taking any value
    /// apart: skimming a value first (to take its bytes) reports some errors a column off, and a
    /// value walked apart reports them in its own coordinates. Only runs for refused bodies.
    fn recheck(&mut self, text: &'de str) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let walk = Walk {
            scan: self,
            node: None,
            depth: 0,
            redact: false,
            at: [None, None],
            place: Place::Plain,
        };
        walk.deserialize(&mut de).and_then(|()| de.end())
    }

    /// Unfailing while serde_json borrows raw values from the input, which it does for `&str`.
    fn range_of<E: de::Error>(&self, raw: &RawValue) -> Result<Range<usize>, E> {
        subslice_range(self.text.as_bytes(), raw.get().as_bytes())
            .ok_or_else(|| E::custom("raw value not borrowed from the body"))
    }

    /// Walks a value already captured as `raw` with a deserializer of its own; an error in it
    /// aborts the caller's walk (and [`Scan::recheck`] then says where the body broke).
    fn walk_apart<'n, E: de::Error>(
        &mut self,
        raw: &'de RawValue,
        node: Option<&'n mut (dyn Node<'de> + 'n)>,
        depth: usize,
        redact: bool,
        at: At<'k>,
        place: Place,
    ) -> Result<(), E> {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let walk = Walk {
            scan: self,
            node,
            depth,
            redact,
            at,
            place,
        };
        walk.deserialize(&mut de)
            .map_err(|_| E::custom("a value taken apart does not parse"))
    }
}

impl<'de> Scan<'de, '_> {
    /// Runs `walk` with a span list of its own and returns it; the enclosing list gets the spans
    /// too, unless the value is `redacted` whole (then it is one span of that list).
    fn own_spans<E>(
        &mut self,
        redacted: bool,
        walk: impl FnOnce(&mut Self) -> Result<(), E>,
    ) -> Result<Vec<Range<usize>>, E> {
        let outer = mem::take(&mut self.spans);
        let walked = walk(self);
        let inner = mem::replace(&mut self.spans, outer);
        walked?;
        if !redacted {
            self.spans.extend_from_slice(&inner);
        }
        Ok(inner)
    }
}

/// Whether `raw`, an item at a name's place in a list of names and values, is a string naming
/// a credential.
fn names_credential(keys: &RedactKeys, raw: &RawValue) -> bool {
    struct Name<'k>(&'k RedactKeys);

    impl Visitor<'_> for Name<'_> {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a header name")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(self.0.matches(v))
        }
    }

    // Only a string is read: any other value would be an error, which allocates.
    raw.get().starts_with('"')
        && serde_json::Deserializer::from_str(raw.get())
            .deserialize_str(Name(keys))
            .unwrap_or(false)
}
