//! Classification rules a connection declares in its config, for the next fork without a release:
//! the value at a JSON pointer picks a kind, and named pointers give the event id, ticket and time
//! of its dedup key. Served in the one pass: the walker follows the pointers' paths (a trie) and
//! keeps the scalars found at their ends, so a rule costs nothing where its path is absent.

use std::borrow::Cow;

use super::key::Ids;
use super::node::Scalar;
use super::{wamid, EventId, Kind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("a JSON pointer is empty (the whole body) or starts with `/` (RFC 6901)")]
    PointerStart,
    #[error("`~` in a JSON pointer must be followed by 0 or 1 (RFC 6901)")]
    PointerEscape,
    #[error("unknown kind `{0}` (message, media, status, tags, receipt, connection or other)")]
    UnknownKind(String),
}

/// One rule as the config states it.
#[derive(Clone, Copy, Debug)]
pub struct RuleSpec<'a> {
    /// Where the deciding value is.
    pub pointer: &'a str,
    /// The value it must have (ASCII case aside); without it, any value but `null` matches.
    pub equals: Option<&'a str>,
    pub kind: &'a str,
    pub id: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub time: Option<&'a str>,
}

/// The member names of an RFC 6901 pointer, unescaped. The empty pointer is the whole body.
pub fn pointer_tokens(pointer: &str) -> Result<Vec<String>, RuleError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or(RuleError::PointerStart)?;
    rest.split('/')
        .map(|token| {
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(RuleError::PointerEscape),
                    },
                    (c, false) => out.push(c),
                }
            }
            Ok(out)
        })
        .collect()
}

/// The paths the walker follows: members by exact name, array items by decimal index.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    members: Vec<(String, Trie)>,
    /// Capture slots filled with the value found here.
    targets: Vec<usize>,
}

impl Trie {
    fn insert(&mut self, tokens: &[String], slot: usize) {
        match tokens.split_first() {
            None => self.targets.push(slot),
            Some((first, rest)) => {
                let at = match self.members.iter().position(|(name, _)| name == first) {
                    Some(at) => at,
                    None => {
                        self.members.push((first.clone(), Trie::default()));
                        self.members.len() - 1
                    }
                };
                self.members[at].1.insert(rest, slot);
            }
        }
    }

    pub fn member(&self, name: &str) -> Option<&Trie> {
        self.members
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, t)| t)
    }

    /// RFC 6901 indexes are decimal without leading zeros.
    pub fn item(&self, index: usize) -> Option<&Trie> {
        self.members
            .iter()
            .find(|(key, _)| {
                key.parse::<usize>() == Ok(index) && (key == "0" || !key.starts_with('0'))
            })
            .map(|(_, t)| t)
    }

    pub fn targets(&self) -> &[usize] {
        &self.targets
    }
}

#[derive(Debug)]
struct Rule {
    when: usize,
    equals: Option<String>,
    kind: Kind,
    id: Option<usize>,
    ticket: Option<usize>,
    time: Option<usize>,
}

/// A connection's compiled rules; the default has none and costs the walk nothing.
#[derive(Debug, Default)]
pub struct CustomRules {
    trie: Trie,
    rules: Vec<Rule>,
    slots: usize,
}

/// What the first matching rule decided.
pub(crate) struct Hit {
    pub kind: Kind,
    pub ticket_id: Option<i64>,
    pub key: Option<EventId>,
}

impl CustomRules {
    pub fn new<'a>(specs: impl IntoIterator<Item = RuleSpec<'a>>) -> Result<Self, RuleError> {
        let mut compiled = CustomRules::default();
        for spec in specs {
            let kind = Kind::from_name(spec.kind)
                .ok_or_else(|| RuleError::UnknownKind(spec.kind.to_owned()))?;
            let when = compiled.slot(spec.pointer)?;
            let mut optional = |p: Option<&str>| p.map(|p| compiled.slot(p)).transpose();
            let (id, ticket, time) = (
                optional(spec.id)?,
                optional(spec.ticket)?,
                optional(spec.time)?,
            );
            compiled.rules.push(Rule {
                when,
                equals: spec.equals.map(str::to_owned),
                kind,
                id,
                ticket,
                time,
            });
        }
        Ok(compiled)
    }

    fn slot(&mut self, pointer: &str) -> Result<usize, RuleError> {
        let tokens = pointer_tokens(pointer)?;
        let slot = self.slots;
        self.trie.insert(&tokens, slot);
        self.slots += 1;
        Ok(slot)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn trie(&self) -> Option<&Trie> {
        (!self.is_empty()).then_some(&self.trie)
    }

    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// The first rule whose value matches, with its key: a message id is keyed as every other
    /// sender's message id is (so the same message in a built-in format is the same event);
    /// otherwise the named values together, or the body digest when none is there.
    pub(crate) fn decide(&self, captured: &[Scalar<'_>], ids: &Ids<'_>) -> Option<Hit> {
        let text = |slot: Option<usize>| -> Option<Cow<'_, str>> {
            captured.get(slot?).and_then(Scalar::text)
        };
        let rule = self.rules.iter().find(|rule| {
            let value = captured.get(rule.when).unwrap_or(&Scalar::Null);
            match &rule.equals {
                None => *value != Scalar::Null,
                Some(wanted) => match value {
                    Scalar::Str(s) => s.eq_ignore_ascii_case(wanted),
                    Scalar::Number(n) => n.to_string() == *wanted,
                    Scalar::Bool(b) => {
                        wanted.eq_ignore_ascii_case(if *b { "true" } else { "false" })
                    }
                    _ => false,
                },
            }
        })?;
        let id = text(rule.id);
        let ticket = text(rule.ticket);
        let time = text(rule.time);
        let key = match (&id, rule.kind) {
            (Some(id), Kind::Message) => Some(ids.key("msg-wid", &[wamid::normalise(id)])),
            _ if id.is_none() && ticket.is_none() && time.is_none() => None,
            _ => Some(ids.key(
                "rule",
                &[
                    rule.kind.as_str(),
                    id.as_deref().unwrap_or_default(),
                    ticket.as_deref().unwrap_or_default(),
                    time.as_deref().unwrap_or_default(),
                ],
            )),
        };
        let ticket_id = rule
            .ticket
            .and_then(|slot| captured.get(slot))
            .and_then(Scalar::as_id);
        Some(Hit {
            kind: rule.kind,
            ticket_id,
            key,
        })
    }
}
