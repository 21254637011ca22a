//! The interface between the one-pass walk and the records it fills: what a record is told
//! about a value, and how it says what to do with the value's members and items.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Number;

use super::offsets::Key;

/// One JSON value as a record sees it: scalars in full (strings borrowed from the body unless
/// they had escapes), containers by shape only, since their content arrives member by member.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Scalar<'de> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'de, str>),
    Array,
    Object,
}

/// What the walker does with a member's or item's value.
pub(crate) enum Visit<'n, 'de> {
    /// Validated and searched for values to redact; nothing recorded.
    Skip,
    /// Walked into this record.
    Into(&'n mut dyn Node<'de>),
    /// Walked into this record with a span list of its own, and the parent hears of its byte
    /// range and those spans through [`Node::apart`] (the n8n inner body).
    Apart(&'n mut dyn Node<'de>),
}

/// A record of the fields under one path. Every method has a do-nothing default, so a record
/// only states what it keeps.
pub(crate) trait Node<'de> {
    /// The value itself: a scalar, or the shape of a container before its content.
    fn value(&mut self, value: Scalar<'de>);

    fn member(&mut self, _key: &Key<'de>) -> Visit<'_, 'de> {
        Visit::Skip
    }

    /// [`Node::member`] when the walk records a CloudEvents body's facts too (`record!`'s
    /// `facts` members): a method of its own, so raw mode's walk is untouched by them.
    fn member_with_facts(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
        self.member(key)
    }

    fn item(&mut self, _index: usize) -> Visit<'_, 'de> {
        Visit::Skip
    }

    /// Item `index` has been walked.
    fn item_done(&mut self, _index: usize) {}

    /// Whether [`Node::start`] should be called with the value's offset in the body.
    fn wants_start(&self) -> bool {
        false
    }

    fn start(&mut self, _at: usize) {}

    /// A member taken apart: its byte range and the spans to redact inside it (which the
    /// enclosing body's spans include too, unless the member's own key is redacted whole).
    fn apart(&mut self, _range: Range<usize>, _spans: Vec<Range<usize>>) {}
}

/// How key parts read a scalar, as they read a `serde_json::Value` before.
impl<'de> Scalar<'de> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Ids arrive as numbers or as numeric strings ("357").
    pub fn as_id(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => n.as_i64().or_else(|| {
                let f = n.as_f64()?;
                // Range-checked so the cast cannot saturate into a wrong id.
                (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64)
                    .then_some(f as i64)
            }),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_flag(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// A string or number as text, for key parts that are compared, never interpreted.
    pub fn text(&self) -> Option<Cow<'de, str>> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s.clone()),
            Scalar::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }
}
