//! The walk itself: a serde `Visitor` over one value that hands scalars and members to its
//! node, follows the rule paths, notes credential spans and takes members apart.

use std::borrow::Cow;
use std::fmt;
use std::mem;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Number;

use super::{names_credential, At, Scan, MAX_LEVEL};
use crate::event::node::{Node, Scalar, Visit};
use crate::event::offsets::{end_before_close, end_before_key, end_by_skimming, Key, KeySeed};
use crate::event::redact::Member;

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
pub(super) enum Place {
    /// A top-level value or a member's value.
    Plain,
    /// The value of a `headers`/`rawHeaders` member: an array there may be a flat header list.
    Headers,
    /// An item of an array: an array there may be a `[name, value]` pair.
    Item,
}

pub(super) struct Walk<'s, 'n, 'de, 'k> {
    pub(super) scan: &'s mut Scan<'de, 'k>,
    pub(super) node: Option<&'n mut (dyn Node<'de> + 'n)>,
    /// Nesting level of the enclosing container (0 for the top-level value).
    pub(super) depth: usize,
    /// Whether keys are matched against the redaction list (not inside a redacted value).
    pub(super) redact: bool,
    /// Where this value stands in the connection's rule paths.
    pub(super) at: At<'k>,
    pub(super) place: Place,
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
