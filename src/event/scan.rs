//! The one pass over a body: a serde walker that validates every byte as serde_json's `Value`
//! parser would, hands the values at known paths to the field records, and notes the byte spans
//! of values to redact, without building a tree.

use std::borrow::Cow;
use std::fmt;
use std::mem;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Number;

use super::custom::Trie;
use super::error::syntax_error;
use super::node::{Node, Scalar, Visit};
use super::offsets::{
    end_before_close, end_before_key, end_by_skimming, subslice_range, Key, KeySeed,
};
use super::redact::{Member, RedactKeys};
use super::ParseError;

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

/// A member taken apart but walked where it stands, whose end the next key (or the object's end)
/// tells: the n8n body, which is most of an envelope, is then read once.
struct Open {
    start: usize,
    spans: Vec<Range<usize>>,
    redacted: bool,
}

/// Where a value stands, for the HTTP headers senders copy into bodies as lists rather than as
/// objects (whose members the key match covers): `[["Authorization", "Bearer …"], …]` pairs and
/// Node's flat `rawHeaders`, `["Authorization", "Bearer …", …]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A top-level value or a member's value.
    Plain,
    /// The value of a `headers`/`rawHeaders` member: an array there may be a flat header list.
    Headers,
    /// An item of an array: an array there may be a `[name, value]` pair.
    Item,
}

struct Walk<'s, 'n, 'de, 'k> {
    scan: &'s mut Scan<'de, 'k>,
    node: Option<&'n mut (dyn Node<'de> + 'n)>,
    /// Nesting level of the enclosing container (0 for the top-level value).
    depth: usize,
    /// Whether keys are matched against the redaction list (not inside a redacted value).
    redact: bool,
    /// Where this value stands in the connection's rule paths.
    at: At<'k>,
    place: Place,
}

impl<'de, 'k> Walk<'_, '_, 'de, 'k> {
    /// Whether this value is on some rule's path (never, for a connection without rules).
    fn on_path(&self) -> bool {
        self.at[0].is_some() || self.at[1].is_some()
    }

    fn scalar<E>(mut self, value: impl FnOnce() -> Scalar<'de>) -> Result<(), E> {
        let wanted = self.on_path() && self.at.iter().flatten().any(|t| !t.targets().is_empty());
        if self.node.is_none() && !wanted {
            return Ok(());
        }
        let value = value();
        if wanted {
            self.scan.capture(self.at, &value);
        }
        if let Some(node) = self.node.as_deref_mut() {
            node.value(value);
        }
        Ok(())
    }

    fn enter<E: de::Error>(&mut self, shape: Scalar<'de>) -> Result<(), E> {
        if self.depth + 1 >= MAX_LEVEL {
            return Err(E::custom("recursion limit exceeded"));
        }
        if self.on_path() {
            self.scan.capture(self.at, &shape);
        }
        if let Some(node) = self.node.as_deref_mut() {
            node.value(shape);
        }
        Ok(())
    }

    /// The rule paths' positions at a member of this object.
    fn at_member(&self, name: &str) -> At<'k> {
        if !self.on_path() {
            return [None, None];
        }
        self.at.map(|t| t.and_then(|t| t.member(name)))
    }

    /// One object member: matched against the redaction list, then walked as its record says.
    fn member<A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        key: Key<'de>,
    ) -> Result<Option<Open>, A::Error> {
        let (depth, redact) = (self.depth + 1, self.redact);
        let name = if redact {
            self.scan.keys.member(&key.text)
        } else {
            Member::Other
        };
        let redacted = name == Member::Redacted;
        let place = match name {
            Member::HeaderList => Place::Headers,
            _ => Place::Plain,
        };
        let mut at = self.at_member(&key.text);
        let mut parent = self.node.as_deref_mut();
        let facts = self.scan.facts;
        let visit = parent.as_deref_mut().map_or(Visit::Skip, |n| {
            if facts {
                n.member_with_facts(&key)
            } else {
                n.member(&key)
            }
        });
        if matches!(visit, Visit::Apart(_)) {
            // The member taken apart may be the event itself: its paths start again at its top.
            at[1] = self.scan.rules;
            self.scan.captured[1].fill(Scalar::Null);
        }
        let scan = &mut *self.scan;
        let start = match visit {
            Visit::Apart(_) => key.value_start(scan.text),
            _ => None,
        };
        let child = match (visit, start) {
            (Visit::Apart(child), Some(start)) => {
                let inner = scan.own_spans(redacted, |scan| {
                    map.next_value_seed(Walk::child(scan, Some(child), depth, redact, at, place))
                })?;
                return Ok(Some(Open {
                    start,
                    spans: inner,
                    redacted,
                }));
            }
            // An escaped key gives no position: the value is skimmed for its bytes first.
            (Visit::Apart(child), None) => {
                let raw: &'de RawValue = map.next_value()?;
                let range = scan.range_of(raw)?;
                if redacted {
                    scan.spans.push(range.clone());
                }
                let inner = scan.own_spans(redacted, |scan| {
                    scan.walk_apart(raw, Some(child), depth, redact, at, place)
                })?;
                if let Some(parent) = parent {
                    parent.apart(range, inner);
                }
                return Ok(None);
            }
            (Visit::Into(child), _) => Some(child),
            (Visit::Skip, _) => None,
        };
        if redacted {
            // Replaced whole; still walked, without redaction, so the body is refused or accepted
            // exactly as a full parse would, and recorded if its record asks.
            let raw: &'de RawValue = map.next_value()?;
            let range = scan.range_of(raw)?;
            let mut child = child;
            if let Some(child) = child.as_deref_mut() {
                child.start(range.start);
            }
            scan.spans.push(range);
            return scan
                .walk_apart(raw, child, depth, false, at, Place::Plain)
                .map(|()| None);
        }
        let walked = match child {
            Some(child) if child.wants_start() => {
                match key.value_start(scan.text) {
                    Some(start) => {
                        child.start(start);
                        map.next_value_seed(Walk::child(
                            scan,
                            Some(child),
                            depth,
                            redact,
                            at,
                            place,
                        ))
                    }
                    // An escaped key gives no position: the value's own bytes say where it is.
                    None => {
                        let raw: &'de RawValue = map.next_value()?;
                        child.start(scan.range_of(raw)?.start);
                        scan.walk_apart(raw, Some(child), depth, redact, at, place)
                    }
                }
            }
            child => map.next_value_seed(Walk::child(scan, child, depth, redact, at, place)),
        };
        walked.map(|()| None)
    }

    /// Ends a member walked in place, now that what follows it is known: the key whose opening
    /// quote is at `next`, or (`next` is `None`) the end of this object.
    fn close<E: de::Error>(&mut self, open: Open, next: Option<Option<usize>>) -> Result<(), E> {
        let text = self.scan.text;
        let end = match next {
            Some(Some(quote)) => end_before_key(text, quote),
            // Only the top-level object's end is known without skimming: it ends the body.
            None if self.depth == 0 => end_before_close(text),
            _ => None,
        }
        .or_else(|| end_by_skimming(text, open.start))
        .ok_or_else(|| E::custom("end of a member not found"))?;
        let range = open.start..end;
        if open.redacted {
            self.scan.spans.push(range.clone());
        }
        if let Some(node) = self.node.as_deref_mut() {
            node.apart(range, open.spans);
        }
        Ok(())
    }

    fn child<'c, 'm>(
        scan: &'c mut Scan<'de, 'k>,
        node: Option<&'m mut (dyn Node<'de> + 'm)>,
        depth: usize,
        redact: bool,
        at: At<'k>,
        place: Place,
    ) -> Walk<'c, 'm, 'de, 'k> {
        Walk {
            scan,
            node,
            depth,
            redact,
            at,
            place,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, 'de, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(|| Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(|| Scalar::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(|| Scalar::Number(v.into()))
    }

    // As `serde_json::Value` does: a float that is not finite would be `null`.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(|| Number::from_f64(v).map_or(Scalar::Null, Scalar::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.scalar(|| Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(|| Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(|| Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter(Scalar::Array)?;
        let depth = self.depth + 1;
        // A `[name, value]` pair (an array in an array) or a flat header list: names stand at
        // even indexes, each followed by its value. Such lists are rare: their names are taken
        // as raw bytes and read a second time, and no other item pays for it.
        let names = self.redact && self.place != Place::Plain;
        let mut hide = false;
        for index in 0.. {
            let visit = self
                .node
                .as_deref_mut()
                .map_or(Visit::Skip, |n| n.item(index));
            let child = match visit {
                Visit::Into(child) | Visit::Apart(child) => Some(child),
                Visit::Skip => None,
            };
            let at = match self.at {
                [None, None] => [None, None],
                at => at.map(|t| t.and_then(|t| t.item(index))),
            };
            if names && (hide || index % 2 == 0) {
                let Some(raw) = seq.next_element::<&'de RawValue>()? else {
                    break;
                };
                if mem::take(&mut hide) {
                    // The value of a credential header: replaced whole, and walked as a
                    // redacted member's value is.
                    let range = self.scan.range_of(raw)?;
                    self.scan.spans.push(range);
                    self.scan
                        .walk_apart(raw, child, depth, false, at, Place::Plain)?;
                } else {
                    hide = names_credential(self.scan.keys, raw);
                    self.scan
                        .walk_apart(raw, child, depth, true, at, Place::Item)?;
                }
            } else {
                let seed = Walk::child(self.scan, child, depth, self.redact, at, Place::Item);
                if seq.next_element_seed(seed)?.is_none() {
                    break;
                }
            }
            if let Some(node) = self.node.as_deref_mut() {
                node.item_done(index);
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter(Scalar::Object)?;
        let base = self.scan.text.as_ptr() as usize;
        let mut open = None;
        while let Some(key) = map.next_key_seed(KeySeed { base })? {
            if let Some(open) = open.take() {
                self.close(open, Some(key.quote()))?;
            }
            open = self.member(&mut map, key)?;
        }
        match open {
            Some(open) => self.close(open, None),
            None => Ok(()),
        }
    }
}
