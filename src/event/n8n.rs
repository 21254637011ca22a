//! n8n's "respond to webhook" envelope, `{headers, params, query, body, webhookUrl,
//! executionMode}`: recognised during the one pass, and the inner body relayed exactly as received.

use std::ops::Range;

use super::fields::Root;
use super::node::{Node, Scalar, Visit};
use super::offsets::Key;

/// The top-level value: the fields of the body as it is, and those of its `body` member in case
/// the whole turns out to be an envelope (which only its other members, before or after, tell).
#[derive(Default)]
pub(crate) struct Envelope<'de> {
    shape: Scalar<'de>,
    pub outer: Root<'de>,
    headers: bool,
    marker: bool,
    /// The record the current `body` member is walked into (boxed, as is the inner body's: most
    /// bodies have neither, and a record is large).
    next: Option<Box<Root<'de>>>,
    /// The last `body` member: the one a map keeps, so bytes and fields always agree.
    inner: Option<Inner<'de>>,
}

pub(crate) struct Inner<'de> {
    pub root: Box<Root<'de>>,
    pub range: Range<usize>,
    /// Spans to redact inside `range`, in the body's offsets.
    pub spans: Vec<Range<usize>>,
}

impl<'de> Envelope<'de> {
    pub fn is_object(&self) -> bool {
        self.shape == Scalar::Object
    }

    /// The inner body, when this is an envelope: an object `body`, `headers`, and one of n8n's
    /// own members, all spelled exactly.
    pub fn inner(&self) -> Option<&Inner<'de>> {
        let inner = self.inner.as_ref()?;
        (self.headers && self.marker && *inner.root.shape() == Scalar::Object).then_some(inner)
    }

    /// The last `body` member's value, when the body is no envelope: then the member is the
    /// event's own (whatsapp-web.js puts a message's text there).
    pub fn own_body(&self) -> Option<&Scalar<'de>> {
        match self.inner() {
            Some(_) => None,
            None => self.inner.as_ref().map(|inner| inner.root.shape()),
        }
    }
}

impl<'de> Node<'de> for Envelope<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.shape = value;
    }

    fn member(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
        self.member_of(key, false)
    }

    fn member_with_facts(&mut self, key: &Key<'de>) -> Visit<'_, 'de> {
        self.member_of(key, true)
    }

    fn apart(&mut self, range: Range<usize>, spans: Vec<Range<usize>>) {
        if let Some(root) = self.next.take() {
            self.inner = Some(Inner { root, range, spans });
        }
    }
}

impl<'de> Envelope<'de> {
    /// A top-level member: `body` walked apart, the rest into the outer record.
    fn member_of(&mut self, key: &Key<'de>, facts: bool) -> Visit<'_, 'de> {
        match &*key.text {
            "body" => {
                return Visit::Apart(&mut **self.next.insert(Box::default()));
            }
            "headers" => self.headers = true,
            "webhookUrl" | "executionMode" => self.marker = true,
            _ => {}
        }
        if facts {
            self.outer.member_with_facts(key)
        } else {
            self.outer.member(key)
        }
    }
}
