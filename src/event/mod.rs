//! The Whaticket event model: one pass over the body unwraps, classifies, extracts ids and a
//! message's state, finds the values to redact; then the change is named, the dedup key
//! computed and the redactions spliced in.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

mod change;
mod classify;
mod cloudevents;
mod custom;
mod error;
mod facts;
mod fields;
mod format;
mod key;
mod n8n;
mod node;
mod offsets;
mod reactions;
mod redact;
mod scan;
mod slot;
mod state;
mod wamid;

pub use change::Change;
pub use cloudevents::{event_type, source, BodyMode};
pub use custom::{pointer_tokens, CustomRules, RuleError, RuleSpec};
pub use format::Format;
pub use redact::{RedactKeys, REDACTED, UNPARSEABLE};

use key::Ids;
use n8n::Envelope;
use scan::Scan;
use state::State;

/// Which queue an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Message,
    Media,
    Status,
    Tags,
    /// Delivery/read acknowledgements of a message.
    Receipt,
    /// The WhatsApp session's state.
    Connection,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Message,
        Kind::Media,
        Kind::Status,
        Kind::Tags,
        Kind::Receipt,
        Kind::Connection,
        Kind::Other,
    ];

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Media => "media",
            Kind::Status => "status",
            Kind::Tags => "tags",
            Kind::Receipt => "receipt",
            Kind::Connection => "connection",
            Kind::Other => "other",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable event id: the first 16 bytes of SHA-256 over the dedup key, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

/// An [`EventId`] as 32 lowercase hex digits, on the stack: it goes into a log line and a
/// `message_id` per event, where a `String` each was an allocation each.
pub struct HexId([u8; 32]);

impl HexId {
    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl EventId {
    pub fn hex(&self) -> HexId {
        let mut out = [0u8; 32];
        // Cannot fail: 32 bytes hold 16 bytes in hex.
        let _ = hex::encode_to_slice(self.0, &mut out);
        HexId(out)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(text.as_bytes(), &mut id).map_err(serde::de::Error::custom)?;
        Ok(EventId(id))
    }
}

/// What the relay knows about an event besides its body: stored in the outbox, sent as AMQP
/// properties and headers. Holds no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    pub id: EventId,
    pub kind: Kind,
    pub connection: String,
    /// The raw `acao` or `action` value; for other senders their type word (`type`, `Type`,
    /// an envelope's `event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The sender's format; `None` in records written before formats were told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_me: Option<bool>,
    /// Unix time in milliseconds when the relay received the request.
    pub received_at_ms: u64,
    /// What happened; `None` only in a record written before changes were named, until the
    /// store reads its body back ([`stored_change`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// What the stored body is: the sender's (raw; every record written before CloudEvents) or a
    /// CloudEvents envelope. Kept with the record, so a backlog is published as it was stored
    /// whatever the connection's mode is by then.
    #[serde(default, skip_serializing_if = "BodyMode::is_raw")]
    pub body: BodyMode,
}

impl EventMeta {
    /// What happened: `other` for what could not say.
    pub fn change(&self) -> Change {
        self.change.unwrap_or(Change::Other)
    }

    /// `{kind}.{companyId or 0}.{connection}.{change}`: the change last, so bindings made for
    /// three words (`message.1.#`) still match.
    pub fn routing_key(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.kind,
            self.company_id.unwrap_or(0),
            self.connection,
            self.change()
        )
    }
}

/// An accepted event: its metadata and the body to relay (n8n-unwrapped, redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub meta: EventMeta,
    pub body: Bytes,
    /// The id the release before changes were named gave this body, where it differs from
    /// `meta.id` (key.rs says why): the store answers a repeat of an event accepted under it
    /// before the upgrade as its duplicate. Never stored.
    pub earlier_id: Option<EventId>,
    /// The WhatsApp message id the body carries (one spelling, `wamid`), for the store's event
    /// index; not a name, number or text. Never stored in the record: read again from the body
    /// ([`stored_wa_id`]) where an index entry must be rebuilt.
    pub wa_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not valid JSON: {message} at line {line} column {column}")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("body is JSON but not an object")]
    NotAnObject,
}

/// Parses a raw webhook body received on `connection` into an [`Event`].
///
/// Never rejects a well-formed JSON object: anything unrecognised becomes [`Kind::Other`].
/// Errors describe only where the body broke, never what it contained.
pub fn parse(
    connection: &str,
    raw: Bytes,
    redact: &RedactKeys,
    received_at_ms: u64,
) -> Result<Event, ParseError> {
    parse_with(
        connection,
        raw,
        redact,
        &CustomRules::default(),
        received_at_ms,
        None,
        BodyMode::Raw,
    )
}

/// [`parse`] with the connection's own classification rules, which decide before the built-in
/// ones (the operator declared them for the sender posting to this connection), and the event's
/// id as its sender signed it (a verified Standard Webhooks `webhook-id`): given, it alone keys
/// the event with the connection, whatever the body; the kind, ticket and company still come
/// from the body. `body_mode` is the connection's: in CloudEvents mode the same pass records the
/// facts too, and the stored body is the envelope (the id is the same in both modes).
#[allow(clippy::too_many_arguments)]
pub fn parse_with(
    connection: &str,
    raw: Bytes,
    redact: &RedactKeys,
    rules: &CustomRules,
    received_at_ms: u64,
    sender_id: Option<&[u8]>,
    body_mode: BodyMode,
) -> Result<Event, ParseError> {
    // Checked up front so the error can say "invalid UTF-8" instead of a misleading token error.
    let text = std::str::from_utf8(&raw).map_err(|err| error::utf8_error(&raw, err))?;
    let mut envelope = Envelope::default();
    let mut scan = Scan::new(text, redact)
        .with_rules(rules.trie(), rules.slots())
        .with_facts(body_mode == BodyMode::CloudEvents);
    scan.run(&mut envelope)?;
    if !envelope.is_object() {
        return Err(ParseError::NotAnObject);
    }
    let own_body = envelope.own_body();
    let (root, body, spans, origin, captured) = match envelope.inner() {
        Some(inner) => {
            let body = raw.slice(inner.range.clone());
            let captured = &scan.captured[1];
            (
                &*inner.root,
                body,
                &inner.spans,
                inner.range.start,
                captured,
            )
        }
        None => (
            &envelope.outer,
            raw.clone(),
            &scan.spans,
            0,
            &scan.captured[0],
        ),
    };

    let word = classify::word(root);
    let format = format::detect(root, word);
    let company_id = classify::company_id(root, format);
    let ids = Ids {
        connection,
        company: company_id.map(|c| c.to_string()).unwrap_or_default(),
        body: &body,
    };
    let hit = rules.decide(captured, &ids);
    let kind = hit
        .as_ref()
        .map_or_else(|| classify::classify(root, word), |hit| hit.kind);
    let ticket_id = hit
        .as_ref()
        .and_then(|hit| hit.ticket_id)
        .or_else(|| classify::ticket_id(root, format, kind));
    let from_me = classify::from_me(root, format);
    let word = classify::event_word(root, format, word);

    let state = (kind == Kind::Message).then(|| state::read(root, format, word, own_body));
    let change = change::name(kind, root, format, word, state.as_ref().map(State::change));

    let keyed = match sender_id {
        Some(sender_id) => Some(key::sender_key(connection, sender_id)).into(),
        None => match (hit, &state) {
            (Some(hit), _) => hit.key.into(),
            (None, Some(state)) => {
                let mut keyed =
                    key::message_key(&ids, root, text, format, ticket_id, from_me, state);
                if classify::was_receipt(root, word, kind) {
                    let receipt = key::receipt_key(&ids, root, format);
                    keyed.earlier = Some(receipt.unwrap_or_else(|| ids.body_key()));
                }
                keyed
            }
            (None, None) => match kind {
                Kind::Status => key::status_key(&ids, root, format, ticket_id, word),
                Kind::Receipt => key::receipt_key(&ids, root, format),
                Kind::Connection => key::connection_key(&ids, root),
                Kind::Media => key::media_key(&ids, root, ticket_id),
                Kind::Tags => key::tags_key(&ids, root, ticket_id),
                Kind::Message | Kind::Other => None,
            }
            .into(),
        },
    };
    let id = keyed.id.unwrap_or_else(|| ids.body_key());
    let earlier_id = keyed.earlier.filter(|earlier| *earlier != id);
    let wa_id = wamid::message_id(root, format).map(std::borrow::Cow::into_owned);

    let mut meta = EventMeta {
        id,
        kind,
        connection: connection.to_owned(),
        action: word.map(str::to_owned),
        format: Some(format),
        company_id,
        ticket_id,
        from_me,
        received_at_ms,
        change: Some(change),
        body: BodyMode::Raw,
    };
    let mut body = redact::splice(&body, spans, origin);
    if body_mode == BodyMode::CloudEvents {
        let known = facts::Known {
            kind,
            change,
            format,
            connection,
            company: company_id,
            ticket_id,
            from_me,
            state: state.as_ref(),
        };
        let facts = facts::read(root, known);
        if let Some(envelope) = cloudevents::envelope(&meta, &facts, &body) {
            meta.body = BodyMode::CloudEvents;
            body = envelope;
        }
    }
    Ok(Event {
        meta,
        body,
        earlier_id,
        wa_id,
    })
}

/// The change of an event stored before changes were named, read again from its stored body
/// (unwrapped and redacted, which leaves every value a change is read from): `other` if it no
/// longer parses. One parse per such record, as the store reads it back.
pub fn stored_change(kind: Kind, body: &[u8]) -> Change {
    let Ok(text) = std::str::from_utf8(body) else {
        return Change::Other;
    };
    let keys = RedactKeys::default();
    let mut envelope = Envelope::default();
    if Scan::new(text, &keys).run(&mut envelope).is_err() || !envelope.is_object() {
        return Change::Other;
    }
    let root = &envelope.outer;
    let word = classify::word(root);
    let format = format::detect(root, word);
    let word = classify::event_word(root, format, word);
    let state =
        (kind == Kind::Message).then(|| state::read(root, format, word, envelope.own_body()));
    change::name(kind, root, format, word, state.as_ref().map(State::change))
}

/// The WhatsApp message id of a stored body (unwrapped and redacted, which leaves it), read
/// again for an index entry the store rebuilds; `None` if it has none or no longer parses.
pub fn stored_wa_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let keys = RedactKeys::default();
    let mut envelope = Envelope::default();
    if Scan::new(text, &keys).run(&mut envelope).is_err() || !envelope.is_object() {
        return None;
    }
    let root = &envelope.outer;
    let format = format::detect(root, classify::word(root));
    wamid::message_id(root, format).map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests;
