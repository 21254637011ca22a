//! The Whaticket event model: unwrap, classify, extract ids, compute the dedup key.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::redact::{self, RedactKeys};

/// Which queue an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Message,
    Media,
    Status,
    Tags,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Message,
        Kind::Media,
        Kind::Status,
        Kind::Tags,
        Kind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Media => "media",
            Kind::Status => "status",
            Kind::Tags => "tags",
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
        f.write_str(&hex::encode(self.0))
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
    /// The raw `acao` or `action` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_me: Option<bool>,
    /// Unix time in milliseconds when the relay received the request.
    pub received_at_ms: u64,
}

impl EventMeta {
    /// `{kind}.{companyId or 0}.{connection}`
    pub fn routing_key(&self) -> String {
        format!(
            "{}.{}.{}",
            self.kind,
            self.company_id.unwrap_or(0),
            self.connection
        )
    }
}

/// An accepted event: its metadata and the body to relay (n8n-unwrapped, redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub meta: EventMeta,
    pub body: Bytes,
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

/// `acao` values that carry one WhatsApp message.
const MESSAGE_ACTIONS: [&str; 4] = [
    "start",
    "from_internal",
    "queue_webhook",
    "queue_webhook_from_internal",
];

/// Ticket statuses Whaticket sends as `acao` when a ticket changes state.
const STATUS_ACTIONS: [&str; 6] = ["open", "closed", "pending", "group", "lgpd", "nps"];

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
    // Checked up front so the error can say "invalid UTF-8" instead of a misleading token error.
    let text = std::str::from_utf8(&raw).map_err(|err| utf8_error(&raw, err))?;
    // serde_json's default recursion limit (128) stays on: it is what keeps a deeply nested body
    // from overflowing the stack here and in the redaction walk.
    let value: Value = serde_json::from_str(text).map_err(syntax_error)?;
    let Value::Object(root) = value else {
        return Err(ParseError::NotAnObject);
    };
    let (root, body) = unwrap_n8n(&raw, text, root);

    let mensagem = field(&root, "mensagem");
    let word = text_field(&root, "acao").or_else(|| text_field(&root, "action"));
    let kind = classify(&root, word);
    let company_id = company_id(&root, mensagem);
    let ticket_id = ticket_id(&root, mensagem);
    let from_me = from_me(&root, mensagem);

    let ids = Ids {
        connection,
        company: company_id.map(|c| c.to_string()).unwrap_or_default(),
        body: &body,
    };
    let key = match kind {
        Kind::Message => message_key(&ids, &root, mensagem, ticket_id, from_me),
        Kind::Status => status_key(&ids, &root, ticket_id, word),
        Kind::Media => media_key(&ids, &root, ticket_id),
        Kind::Tags => tags_key(&ids, &root, ticket_id),
        Kind::Other => None,
    };
    let id = key.unwrap_or_else(|| ids.body_key());

    let meta = EventMeta {
        id,
        kind,
        connection: connection.to_owned(),
        action: word.map(str::to_owned),
        company_id,
        ticket_id,
        from_me,
        received_at_ms,
    };
    Ok(Event {
        meta,
        body: redact::redact(&body, redact),
    })
}

/// The parts every dedup key shares, so two connections or two companies never collide.
struct Ids<'a> {
    connection: &'a str,
    company: String,
    /// The unwrapped, unredacted body.
    body: &'a Bytes,
}

impl Ids<'_> {
    fn key(&self, tag: &str, rest: &[&str]) -> EventId {
        let mut parts = Vec::with_capacity(3 + rest.len());
        parts.extend([tag, self.connection, self.company.as_str()]);
        parts.extend_from_slice(rest);
        digest_key(&parts)
    }

    /// Used whenever a kind's identifying fields are missing: only byte-identical bodies merge.
    fn body_key(&self) -> EventId {
        let digest = hex::encode(Sha256::digest(self.body));
        self.key("other", &[&digest])
    }
}

/// Hashes length-prefixed parts: no separator can be forged by a value that contains it.
fn digest_key(parts: &[&str]) -> EventId {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    EventId(id)
}

/// The WhatsApp id is the same whichever format Whaticket used to send the message, so it is
/// keyed without `acao`; without it the ticket's `updatedAt`, which moves with every message,
/// and the message content tell events apart.
fn message_key(
    ids: &Ids<'_>,
    root: &Map<String, Value>,
    mensagem: Option<&Value>,
    ticket_id: Option<i64>,
    from_me: Option<bool>,
) -> Option<EventId> {
    if let Some(wid) = message_wid(mensagem) {
        return Some(ids.key("msg-wid", &[&wid]));
    }
    let ticket = ticket_id?.to_string();
    let updated = ticket_updated_at(root)?;
    let content = match mensagem {
        None => "none".to_owned(),
        Some(value) => canonical_digest(value)?,
    };
    let from_me = from_me.map_or("", |f| if f { "true" } else { "false" });
    Some(ids.key("msg", &[&ticket, &updated, from_me, &content]))
}

fn status_key(
    ids: &Ids<'_>,
    root: &Map<String, Value>,
    ticket_id: Option<i64>,
    word: Option<&str>,
) -> Option<EventId> {
    let ticket = ticket_id?.to_string();
    let updated = ticket_updated_at(root)?;
    Some(ids.key("status", &[&ticket, word.unwrap_or_default(), &updated]))
}

/// `mediaName` is a millisecond timestamp per company folder, unique enough on its own.
fn media_key(ids: &Ids<'_>, root: &Map<String, Value>, ticket_id: Option<i64>) -> Option<EventId> {
    let name = field(root, "mediaName").and_then(scalar_text)?;
    let ticket = ticket_id.map(|t| t.to_string()).unwrap_or_default();
    Some(ids.key("media", &[&ticket, &name]))
}

/// A tag sync is the ticket's whole tag set, keyed by content rather than body bytes because the
/// contact data around it changes between otherwise identical syncs.
fn tags_key(ids: &Ids<'_>, root: &Map<String, Value>, ticket_id: Option<i64>) -> Option<EventId> {
    let ticket = ticket_id?.to_string();
    let tags = path(field(root, "tags"), &["tags"])?.as_array()?;
    let mut tag_ids = Vec::with_capacity(tags.len());
    let mut latest: Option<String> = None;
    for tag in tags {
        // A tag without an id cannot be told apart from another one: use the body digest.
        tag_ids.push(get(tag, "id").and_then(as_id)?);
        if let Some(updated) = get(tag, "updatedAt").and_then(scalar_text) {
            // ISO-8601 timestamps in one format order as strings.
            if latest.as_ref().is_none_or(|l| updated > *l) {
                latest = Some(updated);
            }
        }
    }
    tag_ids.sort_unstable();
    tag_ids.dedup();
    let tag_ids = tag_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Some(ids.key("tags", &[&ticket, &tag_ids, &latest.unwrap_or_default()]))
}

/// SHA-256 over a key-sorted serialization. serde_json's `Map` is a `BTreeMap` unless some crate
/// in the build enables `preserve_order`; `sort_all_objects` makes the order independent of that
/// feature (and is free when it is off).
fn canonical_digest(value: &Value) -> Option<String> {
    let mut sorted = value.clone();
    sorted.sort_all_objects();
    let bytes = serde_json::to_vec(&sorted).ok()?;
    Some(hex::encode(Sha256::digest(bytes)))
}

/// `mensagem.wid` for a saved message row, or the Baileys key id of the first message in a list.
fn message_wid(mensagem: Option<&Value>) -> Option<String> {
    match mensagem? {
        Value::Object(_) => get(mensagem?, "wid").and_then(scalar_text),
        Value::Array(items) => items.iter().find_map(|item| {
            path(Some(item), &["originalData", "key", "id"]).and_then(scalar_text)
        }),
        _ => None,
    }
}

fn classify(root: &Map<String, Value>, word: Option<&str>) -> Kind {
    let is = |name: &str| word.is_some_and(|w| w.eq_ignore_ascii_case(name));
    if is("tag-sync")
        || text_field(root, "action").is_some_and(|a| a.eq_ignore_ascii_case("tag-sync"))
    {
        return Kind::Tags;
    }
    if MESSAGE_ACTIONS.iter().any(|a| is(a)) {
        return Kind::Message;
    }
    if is("fila-data") {
        return Kind::Media;
    }
    let ticket_status = path(field(root, "ticketData"), &["status"]).and_then(Value::as_str);
    if STATUS_ACTIONS.iter().any(|a| is(a)) || ticket_status.is_some_and(is) {
        return Kind::Status;
    }
    Kind::Other
}

fn company_id(root: &Map<String, Value>, mensagem: Option<&Value>) -> Option<i64> {
    field(root, "companyId")
        .and_then(as_id)
        .or_else(|| path(field(root, "ticketData"), &["companyId"]).and_then(as_id))
        .or_else(|| path(mensagem, &["companyId"]).and_then(as_id))
        .or_else(|| {
            path(field(root, "tags"), &["tags"])?
                .as_array()?
                .iter()
                .find_map(|tag| get(tag, "companyId").and_then(as_id))
        })
}

fn ticket_id(root: &Map<String, Value>, mensagem: Option<&Value>) -> Option<i64> {
    field(root, "chamadoId")
        .and_then(as_id)
        .or_else(|| path(field(root, "ticketData"), &["id"]).and_then(as_id))
        .or_else(|| path(field(root, "tags"), &["ticketId"]).and_then(as_id))
        .or_else(|| path(mensagem, &["ticketId"]).and_then(as_id))
}

fn from_me(root: &Map<String, Value>, mensagem: Option<&Value>) -> Option<bool> {
    field(root, "fromMe")
        .and_then(as_flag)
        .or_else(|| path(mensagem, &["fromMe"]).and_then(as_flag))
        .or_else(|| {
            let first = mensagem?.as_array()?.first();
            path(first, &["originalData", "key", "fromMe"]).and_then(as_flag)
        })
}

fn ticket_updated_at(root: &Map<String, Value>) -> Option<String> {
    path(field(root, "ticketData"), &["updatedAt"]).and_then(scalar_text)
}

/// A key's value, `null` counting as absent. Exact spelling first; Whaticket's casing drifts
/// between versions, so an ASCII-case-insensitive match is the fallback.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn get<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    field(value.as_object()?, name)
}

fn path<'a>(start: Option<&'a Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .try_fold(start?, |value, name| get(value, name))
}

fn text_field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    field(map, name).and_then(Value::as_str)
}

/// Ids arrive as numbers or as numeric strings ("357").
fn as_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            // Range-checked so the cast cannot saturate into a wrong id.
            (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A string or number as text, for key parts that are compared, never interpreted.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// n8n's "respond to webhook" wrapper: `{headers, params, query, body, webhookUrl, executionMode}`.
/// The relayed bytes become the inner object exactly as received.
fn unwrap_n8n(
    raw: &Bytes,
    text: &str,
    mut root: Map<String, Value>,
) -> (Map<String, Value>, Bytes) {
    let wrapped = root.get("body").is_some_and(Value::is_object)
        && root.contains_key("headers")
        && (root.contains_key("webhookUrl") || root.contains_key("executionMode"));
    if !wrapped {
        return (root, raw.clone());
    }
    let inner = match root.remove("body") {
        Some(Value::Object(inner)) => inner,
        _ => return (root, raw.clone()),
    };
    let bytes = match inner_body_bytes(raw, text) {
        Some(bytes) => bytes,
        // Unreachable while serde_json borrows raw values from the input; re-serializing loses
        // the original formatting but keeps the event.
        None => match serde_json::to_vec(&inner) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => raw.clone(),
        },
    };
    (inner, bytes)
}

/// The raw text of the top-level `body` value, borrowed from `raw`. The last occurrence wins,
/// as it does in `serde_json::Map`, so the bytes and the parsed fields always agree.
fn inner_body_bytes(raw: &Bytes, text: &str) -> Option<Bytes> {
    let mut de = serde_json::Deserializer::from_str(text);
    let inner = de.deserialize_map(LastBody).ok()??;
    let range = redact::subslice_range(raw, inner.get().as_bytes())?;
    Some(raw.slice(range))
}

struct LastBody;

impl<'de> Visitor<'de> for LastBody {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_body) = map.next_key_seed(KeyIs("body"))? {
            if is_body {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// serde_json's fixed messages, which never quote input. Anything else (a custom message could
/// carry body content) is reported by category only.
const KNOWN_MESSAGES: [&str; 22] = [
    "EOF while parsing a list",
    "EOF while parsing an object",
    "EOF while parsing a string",
    "EOF while parsing a value",
    "expected `:`",
    "expected `,` or `]`",
    "expected `,` or `}`",
    "expected ident",
    "expected value",
    "expected `\"`",
    "invalid escape",
    "invalid number",
    "number out of range",
    "invalid unicode code point",
    "control character (\\u0000-\\u001F) found while parsing a string",
    "key must be a string",
    "float key must be finite (got NaN or +/-inf)",
    "lone leading surrogate in hex escape",
    "trailing comma",
    "trailing characters",
    "unexpected end of hex escape",
    "recursion limit exceeded",
];

fn syntax_error(err: serde_json::Error) -> ParseError {
    use serde_json::error::Category;
    let fallback = match err.classify() {
        Category::Eof => "EOF while parsing",
        Category::Syntax => "syntax error",
        Category::Data => "invalid data",
        Category::Io => "I/O error",
    };
    let message = if err.classify() == Category::Data {
        fallback
    } else {
        let text = err.to_string();
        KNOWN_MESSAGES
            .iter()
            .copied()
            .find(|m| text.starts_with(m))
            .unwrap_or(fallback)
    };
    ParseError::Syntax {
        message: message.to_owned(),
        line: err.line(),
        column: err.column(),
    }
}

/// Line and column (1-based, in bytes, like serde_json's) of the first invalid byte.
fn utf8_error(raw: &[u8], err: std::str::Utf8Error) -> ParseError {
    let before = raw.get(..err.valid_up_to()).unwrap_or(raw);
    let line = 1 + memchr::memchr_iter(b'\n', before).count();
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
    ParseError::Syntax {
        message: "invalid UTF-8".to_owned(),
        line,
        column: before.len() - line_start + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIA: &[u8] = include_bytes!("../tests/fixtures/media-fila-data.json");
    const FROM_INTERNAL: &[u8] = include_bytes!("../tests/fixtures/message-from-internal.json");
    const FROM_ME: &[u8] = include_bytes!("../tests/fixtures/message-from-me.json");
    const GROUP: &[u8] = include_bytes!("../tests/fixtures/message-group.json");
    const NO_CAPTION: &[u8] = include_bytes!("../tests/fixtures/message-no-caption.json");
    const NO_QUEUE: &[u8] = include_bytes!("../tests/fixtures/message-no-queue.json");
    const QUEUE_WEBHOOK: &[u8] = include_bytes!("../tests/fixtures/message-queue-webhook.json");
    const START: &[u8] = include_bytes!("../tests/fixtures/message-start.json");
    const CLOSED: &[u8] = include_bytes!("../tests/fixtures/status-closed.json");
    const OPEN: &[u8] = include_bytes!("../tests/fixtures/status-open.json");
    const TAG_SYNC: &[u8] = include_bytes!("../tests/fixtures/tag-sync.json");

    const ALL: [&[u8]; 11] = [
        MEDIA,
        FROM_INTERNAL,
        FROM_ME,
        GROUP,
        NO_CAPTION,
        NO_QUEUE,
        QUEUE_WEBHOOK,
        START,
        CLOSED,
        OPEN,
        TAG_SYNC,
    ];

    fn no_keys() -> RedactKeys {
        RedactKeys::default()
    }

    fn ok(connection: &str, body: &[u8]) -> Event {
        match parse(connection, Bytes::copy_from_slice(body), &no_keys(), 7) {
            Ok(event) => event,
            Err(err) => panic!("{err}"),
        }
    }

    fn ev(body: &[u8]) -> Event {
        ok("suporte-x", body)
    }

    fn id(body: &str) -> EventId {
        ev(body.as_bytes()).meta.id
    }

    fn err(body: &[u8]) -> ParseError {
        match parse("c", Bytes::copy_from_slice(body), &no_keys(), 0) {
            Ok(event) => panic!("accepted as {:?}", event.meta.kind),
            Err(err) => err,
        }
    }

    fn replace(body: &[u8], from: &str, to: &str) -> Vec<u8> {
        let text = String::from_utf8_lossy(body);
        assert!(text.contains(from), "fixture lacks {from}");
        text.replacen(from, to, 1).into_bytes()
    }

    /// Body, kind, action, company id, ticket id, from_me.
    type Expected = (
        &'static [u8],
        Kind,
        &'static str,
        Option<i64>,
        Option<i64>,
        Option<bool>,
    );

    #[test]
    fn fixtures_are_classified_and_their_ids_extracted() {
        let cases: [Expected; 11] = [
            (
                MEDIA,
                Kind::Media,
                "fila-data",
                Some(1),
                Some(357),
                Some(false),
            ),
            (
                FROM_INTERNAL,
                Kind::Message,
                "from_internal",
                Some(1),
                Some(357),
                Some(false),
            ),
            (
                FROM_ME,
                Kind::Message,
                "start",
                Some(1),
                Some(357),
                Some(true),
            ),
            (
                GROUP,
                Kind::Message,
                "start",
                Some(1),
                Some(402),
                Some(false),
            ),
            (
                NO_CAPTION,
                Kind::Message,
                "start",
                Some(1),
                Some(357),
                Some(false),
            ),
            (
                NO_QUEUE,
                Kind::Message,
                "start",
                Some(1),
                Some(357),
                Some(false),
            ),
            (
                QUEUE_WEBHOOK,
                Kind::Message,
                "queue_webhook",
                Some(1),
                Some(357),
                Some(false),
            ),
            (
                START,
                Kind::Message,
                "start",
                Some(1),
                Some(357),
                Some(false),
            ),
            (CLOSED, Kind::Status, "closed", Some(1), Some(357), None),
            (OPEN, Kind::Status, "open", Some(1), Some(357), None),
            (TAG_SYNC, Kind::Tags, "tag-sync", Some(1), Some(383), None),
        ];
        for (body, kind, action, company, ticket, from_me) in cases {
            let meta = ev(body).meta;
            assert_eq!(meta.kind, kind, "{action}");
            assert_eq!(meta.action.as_deref(), Some(action));
            assert_eq!(meta.company_id, company, "{action}");
            assert_eq!(meta.ticket_id, ticket, "{action}");
            assert_eq!(meta.from_me, from_me, "{action}");
            assert_eq!(meta.connection, "suporte-x");
            assert_eq!(meta.received_at_ms, 7);
        }
    }

    #[test]
    fn unknown_actions_are_other_and_kept_raw() {
        for action in ["queue_webhook_update", "end", "brand-new"] {
            let body = replace(
                START,
                r#""acao": "start""#,
                &format!(r#""acao": "{action}""#),
            );
            let meta = ev(&body).meta;
            assert_eq!(meta.kind, Kind::Other, "{action}");
            assert_eq!(meta.action.as_deref(), Some(action));
            assert_eq!(meta.ticket_id, Some(357));
        }
        let meta = ev(br#"{"hello":"world"}"#).meta;
        assert_eq!((meta.kind, meta.action), (Kind::Other, None));
    }

    #[test]
    fn action_words_are_matched_case_insensitively() {
        assert_eq!(
            ev(&replace(START, r#""start""#, r#""Start""#)).meta.kind,
            Kind::Message
        );
        assert_eq!(
            ev(&replace(
                CLOSED,
                r#""acao": "closed""#,
                r#""acao": "CLOSED""#
            ))
            .meta
            .kind,
            Kind::Status
        );
        assert_eq!(
            ev(&replace(MEDIA, r#""fila-data""#, r#""Fila-Data""#))
                .meta
                .kind,
            Kind::Media
        );
    }

    #[test]
    fn ticket_status_word_is_a_status_even_when_unlisted() {
        let body = br#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"arquivado","updatedAt":"t"}}"#;
        assert_eq!(ev(body).meta.kind, Kind::Status);
        let body =
            br#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"open","updatedAt":"t"}}"#;
        assert_eq!(ev(body).meta.kind, Kind::Other);
    }

    #[test]
    fn one_whatsapp_message_in_two_formats_has_one_id() {
        let a = ev(FROM_INTERNAL).meta;
        let b = ev(QUEUE_WEBHOOK).meta;
        assert_ne!(a.action, b.action);
        assert_eq!(a.id, b.id);
        let other_wid = replace(
            QUEUE_WEBHOOK,
            "3EB0C431C26A1916E4A5",
            "3EB0C431C26A1916E4A6",
        );
        assert_ne!(ev(&other_wid).meta.id, a.id);
    }

    #[test]
    fn distinct_messages_have_distinct_ids() {
        let ids: Vec<EventId> = [START, FROM_ME, GROUP, NO_CAPTION, NO_QUEUE, FROM_INTERNAL]
            .iter()
            .map(|b| ev(b).meta.id)
            .collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let other_text = replace(START, r#""wr43r34""#, r#""wr43r35""#);
        assert_ne!(ev(&other_text).meta.id, ev(START).meta.id);
    }

    #[test]
    fn connections_and_companies_never_share_ids() {
        for body in ALL {
            assert_ne!(ok("a", body).meta.id, ok("b", body).meta.id);
        }
        let mut value: Value = serde_json::from_slice(FROM_INTERNAL).unwrap_or_default();
        value["companyId"] = Value::from(2);
        let other_company = serde_json::to_vec(&value).unwrap_or_default();
        assert_eq!(ev(&other_company).meta.company_id, Some(2));
        assert_ne!(ev(&other_company).meta.id, ev(FROM_INTERNAL).meta.id);
    }

    #[test]
    fn ids_are_pinned() {
        // Changing any key definition changes these; that would re-deliver every stored event.
        assert_eq!(
            ev(START).meta.id.to_string(),
            "e7a3b328ac6393d2257dab7bb579e0dd"
        );
        assert_eq!(
            ev(FROM_INTERNAL).meta.id.to_string(),
            "e0bcecc12b520e69cb775cd402c1444f"
        );
        assert_eq!(
            ev(OPEN).meta.id.to_string(),
            "ac9b43781a5c86c93a465919c4e9292b"
        );
    }

    #[test]
    fn status_ids_follow_action_and_time() {
        let open = ev(OPEN).meta.id;
        assert_ne!(open, ev(CLOSED).meta.id);
        assert_eq!(open, ev(OPEN).meta.id);
        let same_time_closed = replace(OPEN, r#""acao": "open""#, r#""acao": "closed""#);
        assert_ne!(ev(&same_time_closed).meta.id, open);
        // Contact details are not part of a status event's identity.
        let renamed = replace(OPEN, "Rafael Ribeiro", "Rafael R.");
        assert_eq!(ev(&renamed).meta.id, open);
    }

    #[test]
    fn numeric_strings_are_ids() {
        let body =
            br#"{"acao":"open","chamadoId":"357","companyId":" 1","ticketData":{"updatedAt":"t"}}"#;
        let meta = ev(body).meta;
        assert_eq!((meta.company_id, meta.ticket_id), (Some(1), Some(357)));
        let numbers =
            br#"{"acao":"open","chamadoId":357,"companyId":1,"ticketData":{"updatedAt":"t"}}"#;
        assert_eq!(ev(numbers).meta.id, meta.id);
        assert_eq!(ev(br#"{"chamadoId":"abc"}"#).meta.ticket_id, None);
    }

    #[test]
    fn fallbacks_find_company_ticket_and_sender() {
        let body = br#"{"acao":"from_internal","mensagem":{"wid":"W","companyId":"4","ticketId":9,"fromMe":true}}"#;
        let meta = ev(body).meta;
        assert_eq!(
            (meta.company_id, meta.ticket_id, meta.from_me),
            (Some(4), Some(9), Some(true))
        );
        let body = br#"{"acao":"queue_webhook","ticketData":{"id":8,"companyId":3},"mensagem":[{"originalData":{"key":{"fromMe":true,"id":"K"}}}]}"#;
        let meta = ev(body).meta;
        assert_eq!(
            (meta.company_id, meta.ticket_id, meta.from_me),
            (Some(3), Some(8), Some(true))
        );
        let body = br#"{"acao":"start","fromMe":false,"mensagem":{"fromMe":true}}"#;
        assert_eq!(ev(body).meta.from_me, Some(false));
    }

    #[test]
    fn missing_keys_still_produce_ids() {
        let bodies: [&str; 7] = [
            r#"{"acao":"start"}"#,
            r#"{"acao":"start","mensagem":null}"#,
            r#"{"acao":"start","mensagem":[]}"#,
            r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
            r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[]}"#,
            r#"{"acao":"open"}"#,
            r#"{"action":"tag-sync"}"#,
        ];
        let ids: Vec<EventId> = bodies.iter().map(|b| id(b)).collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(ev(br#"{"acao":"start"}"#).meta.company_id, None);
    }

    #[test]
    fn null_mensagem_counts_as_absent() {
        let base = r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"}"#;
        assert_eq!(
            id(&format!("{base}}}")),
            id(&format!(r#"{base},"mensagem":null}}"#))
        );
        assert_ne!(
            id(&format!("{base}}}")),
            id(&format!(r#"{base},"mensagem":""}}"#))
        );
    }

    #[test]
    fn missing_identity_falls_back_to_the_body_digest() {
        let pairs = [
            (
                r#"{"acao":"open","chamadoId":1,"x":1}"#,
                r#"{"acao":"open","chamadoId":1,"x":2}"#,
            ),
            (
                r#"{"acao":"start","mensagem":"oi","x":1}"#,
                r#"{"acao":"start","mensagem":"oi","x":2}"#,
            ),
            (
                r#"{"acao":"fila-data","chamadoId":1,"x":1}"#,
                r#"{"acao":"fila-data","chamadoId":1,"x":2}"#,
            ),
            (
                r#"{"action":"tag-sync","tags":{"tags":[]},"x":1}"#,
                r#"{"action":"tag-sync","tags":{"tags":[]},"x":2}"#,
            ),
            (
                r#"{"action":"tag-sync","tags":{"ticketId":1,"tags":[{"name":"a"}]},"x":1}"#,
                r#"{"action":"tag-sync","tags":{"ticketId":1,"tags":[{"name":"a"}]},"x":2}"#,
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(id(a), id(b), "{a}");
            let ids = Ids {
                connection: "suporte-x",
                company: String::new(),
                body: &Bytes::from(a),
            };
            assert_eq!(id(a), ids.body_key(), "{a}");
        }
    }

    #[test]
    fn message_content_digest_ignores_key_order_only() {
        let base = r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":"#;
        let a = id(&format!(r#"{base}{{"b":1,"a":{{"y":2,"x":3}}}}}}"#));
        let b = id(&format!(r#"{base}{{"a":{{"x":3,"y":2}}, "b":1}}}}"#));
        let c = id(&format!(r#"{base}{{"a":{{"x":3,"y":2}},"b":2}}}}"#));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn media_is_keyed_by_file_name() {
        let a = ev(MEDIA).meta.id;
        let renamed_contact = replace(MEDIA, "Rafael Ribeiro", "R.");
        assert_eq!(ev(&renamed_contact).meta.id, a);
        let other_file = replace(MEDIA, "1697118750977.ogg", "1697118750978.ogg");
        assert_ne!(ev(&other_file).meta.id, a);
    }

    #[test]
    fn tags_are_keyed_by_ticket_tag_set_and_latest_update() {
        let tags = |list: &str| {
            id(&format!(
                r#"{{"action":"tag-sync","tags":{{"ticketId":5,"tags":[{list}]}},"contact":{{"name":"x"}}}}"#
            ))
        };
        let ab = tags(
            r#"{"id":1,"updatedAt":"2023-01-01T00:00:00.000Z"},{"id":"2","updatedAt":"2023-02-01T00:00:00.000Z"}"#,
        );
        let ba = tags(
            r#"{"id":2,"updatedAt":"2023-02-01T00:00:00.000Z"},{"id":1,"updatedAt":"2023-01-01T00:00:00.000Z"}"#,
        );
        let newer = tags(
            r#"{"id":1,"updatedAt":"2023-03-01T00:00:00.000Z"},{"id":2,"updatedAt":"2023-02-01T00:00:00.000Z"}"#,
        );
        let only_a = tags(r#"{"id":1,"updatedAt":"2023-02-01T00:00:00.000Z"}"#);
        assert_eq!(ab, ba);
        assert_ne!(ab, newer);
        assert_ne!(ab, only_a);
        assert_ne!(tags(""), ab);
        let renamed = replace(TAG_SYNC, "Nome do cliente", "Outro");
        assert_eq!(ev(&renamed).meta.id, ev(TAG_SYNC).meta.id);
    }

    #[test]
    fn key_parts_cannot_run_into_each_other() {
        assert_ne!(digest_key(&["ab", "c"]), digest_key(&["a", "bc"]));
        assert_ne!(digest_key(&["a", ""]), digest_key(&["a"]));
    }

    fn n8n(inner: &[u8]) -> Vec<u8> {
        let mut out =
            br#"{"headers":{"host":"n8n","content-type":"application/json"},"params":{},"query":{},"body": "#.to_vec();
        out.extend_from_slice(inner);
        out.extend_from_slice(
            br#" ,"webhookUrl":"https://n8n.example.com/webhook/x","executionMode":"production"}"#,
        );
        out
    }

    #[test]
    fn n8n_wrapper_is_removed_byte_exact() {
        for body in ALL {
            let plain = ev(body);
            let wrapped = ev(&n8n(body));
            assert_eq!(wrapped.meta, plain.meta);
            assert_eq!(wrapped.body.as_ref(), body);
        }
        let other = br#"{"a":  [1, 2.50, "\u00e9"]}"#;
        assert_eq!(ev(&n8n(other)).body.as_ref(), other);
        assert_eq!(ev(&n8n(other)).meta.id, ev(other).meta.id);
    }

    #[test]
    fn n8n_needs_headers_and_a_marker() {
        let lookalikes: [&[u8]; 3] = [
            br#"{"body":{"acao":"open"},"webhookUrl":"u"}"#,
            br#"{"body":{"acao":"open"},"headers":{}}"#,
            br#"{"body":"{}","headers":{},"executionMode":"x"}"#,
        ];
        for body in lookalikes {
            let event = ev(body);
            assert_eq!(event.body.as_ref(), body);
            assert_eq!(event.meta.kind, Kind::Other);
        }
        let marker_only = br#"{"headers":{},"executionMode":"test","body":{"acao":"open"}}"#;
        assert_eq!(ev(marker_only).body.as_ref(), br#"{"acao":"open"}"#);
    }

    #[test]
    fn n8n_duplicate_body_uses_the_last_like_the_parsed_fields() {
        let body =
            br#"{"body":{"acao":"open"},"headers":{},"webhookUrl":"u","body":{"acao":"fila-data","mediaName":"m"}}"#;
        let event = ev(body);
        assert_eq!(event.meta.kind, Kind::Media);
        assert_eq!(
            event.body.as_ref(),
            br#"{"acao":"fila-data","mediaName":"m"}"#
        );
    }

    #[test]
    fn body_is_redacted_but_id_is_not_affected() {
        let keys = RedactKeys::new(["TOKEN_ORIGIN"]);
        let event = match parse("suporte-x", Bytes::from_static(FROM_INTERNAL), &keys, 0) {
            Ok(event) => event,
            Err(err) => panic!("{err}"),
        };
        let text = String::from_utf8_lossy(&event.body);
        assert!(!text.contains("c0nn3ct10n-t0k3n"));
        assert!(text.contains(r#""token_origin": "[redacted]""#));
        assert_eq!(event.meta.id, ev(FROM_INTERNAL).meta.id);
        let wrapped = match parse("suporte-x", Bytes::from(n8n(FROM_INTERNAL)), &keys, 0) {
            Ok(event) => event,
            Err(err) => panic!("{err}"),
        };
        assert_eq!(wrapped.body, event.body);
    }

    #[test]
    fn body_without_secrets_is_the_received_buffer() {
        let raw = Bytes::from_static(START);
        let event = match parse("c", raw.clone(), &RedactKeys::new(["token_origin"]), 0) {
            Ok(event) => event,
            Err(err) => panic!("{err}"),
        };
        assert_eq!(event.body.as_ptr(), raw.as_ptr());
        assert_eq!(event.body.len(), raw.len());
    }

    #[test]
    fn truncated_json_reports_position_without_content() {
        let body = &START[..START.len() / 2];
        match err(body) {
            ParseError::Syntax {
                message,
                line,
                column,
            } => {
                assert!(message.starts_with("EOF while parsing"), "{message}");
                assert!(line > 10 && column > 0, "{line}:{column}");
            }
            other => panic!("{other:?}"),
        }
        match err(br#"{"segredo": tru}"#) {
            ParseError::Syntax {
                message,
                line,
                column,
            } => {
                assert_eq!((message.as_str(), line, column), ("expected ident", 1, 16));
                assert!(!message.contains("segredo"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_objects_are_rejected() {
        for body in [&b"[1,2]"[..], b"\"acao\"", b"42", b"null", b"true"] {
            assert_eq!(err(body), ParseError::NotAnObject);
        }
    }

    #[test]
    fn invalid_utf8_is_a_syntax_error() {
        let err = err(b"{\"a\":\n \"\xff\"}");
        assert_eq!(
            err,
            ParseError::Syntax {
                message: "invalid UTF-8".into(),
                line: 2,
                column: 3
            }
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(10_000);
        assert!(matches!(err(deep.as_bytes()), ParseError::Syntax { .. }));
        let closed = format!(r#"{{"a":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        match err(closed.as_bytes()) {
            ParseError::Syntax { message, .. } => assert_eq!(message, "recursion limit exceeded"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_and_blank_bodies_are_syntax_errors() {
        for body in [&b""[..], b"   \n"] {
            assert!(
                matches!(err(body), ParseError::Syntax { ref message, .. } if message == "EOF while parsing a value")
            );
        }
        assert!(
            matches!(err(b"{} x"), ParseError::Syntax { ref message, .. } if message == "trailing characters")
        );
    }

    #[test]
    fn event_id_round_trips_through_serde() {
        let meta = ev(START).meta;
        let text = serde_json::to_string(&meta).unwrap_or_default();
        let back: Option<EventMeta> = serde_json::from_str(&text).ok();
        assert_eq!(back, Some(meta.clone()));
        assert_eq!(meta.routing_key(), "message.1.suporte-x");
    }
}

/// Today's behaviour, recorded before the one-pass rewrite: the exact meta and relayed bytes of
/// every fixture and of hand-made edge cases. Event ids must never change: running installations
/// hold dedup keys made from them.
#[cfg(test)]
mod pinned {
    use super::*;

    const FIXTURES: [(&str, &[u8]); 11] = [
        (
            "media-fila-data",
            include_bytes!("../tests/fixtures/media-fila-data.json"),
        ),
        (
            "message-from-internal",
            include_bytes!("../tests/fixtures/message-from-internal.json"),
        ),
        (
            "message-from-me",
            include_bytes!("../tests/fixtures/message-from-me.json"),
        ),
        (
            "message-group",
            include_bytes!("../tests/fixtures/message-group.json"),
        ),
        (
            "message-no-caption",
            include_bytes!("../tests/fixtures/message-no-caption.json"),
        ),
        (
            "message-no-queue",
            include_bytes!("../tests/fixtures/message-no-queue.json"),
        ),
        (
            "message-queue-webhook",
            include_bytes!("../tests/fixtures/message-queue-webhook.json"),
        ),
        (
            "message-start",
            include_bytes!("../tests/fixtures/message-start.json"),
        ),
        (
            "status-closed",
            include_bytes!("../tests/fixtures/status-closed.json"),
        ),
        (
            "status-open",
            include_bytes!("../tests/fixtures/status-open.json"),
        ),
        (
            "tag-sync",
            include_bytes!("../tests/fixtures/tag-sync.json"),
        ),
    ];

    /// Hand-made bodies: casing, string and float ids, duplicates, nulls, redaction at depth,
    /// n8n envelopes, mensagem of every shape, and bodies the parser must refuse.
    const VARIANTS: [&str; 64] = [
        r#"{}"#,
        r#"{"x":1,"y":[1,2,{"z":null}]}"#,
        r#"{"ACAO":"start","ChamadoId":5,"COMPANYID":"2","TicketData":{"UpdatedAt":"t","ID":5},"Mensagem":{"WID":"x"}}"#,
        r#"{"Acao":"open","ACAO":"closed","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"aCAO":"open","Acao":"closed","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"Acao":"closed","acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"acao":null,"Acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"Acao":null,"ACAO":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"acao":"open","chamadoId":"357","companyId":" 1","ticketData":{"updatedAt":"t"}}"#,
        r#"{"acao":"open","chamadoId":3.0,"companyId":1e2,"ticketData":{"updatedAt":5}}"#,
        r#"{"acao":"open","chamadoId":-0,"companyId":1.5,"ticketData":{"updatedAt":-2.50}}"#,
        r#"{"acao":"open","chamadoId":18446744073709551615,"companyId":9223372036854775807,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"acao":"open","chamadoId":-9223372036854775808,"companyId":"-4","ticketData":{"updatedAt":"t"}}"#,
        r#"{"acao":"open","chamadoId":"x","companyId":true,"ticketData":{"updatedAt":""}}"#,
        r#"{"acao":"open","acao":"closed","chamadoId":1,"chamadoId":2,"ticketData":{"updatedAt":"a"},"ticketData":{"updatedAt":"b"}}"#,
        r#"{"acao":"open","ticketData":{"updatedAt":"a","id":4},"ticketData":null}"#,
        r#"{"acao":"open","ticketData":{"id":4,"updatedAt":"a"},"TicketData":{"id":5,"updatedAt":"b"}}"#,
        r#"{"acao":"start","fromMe":null,"mensagem":{"fromMe":true,"wid":null},"chamadoId":null,"ticketData":{"id":3,"updatedAt":"u"}}"#,
        r#"{"acao":"start","fromMe":"TRUE","mensagem":{"fromMe":false},"ticketData":{"id":3,"updatedAt":"u"}}"#,
        r#"{"acao":"start","fromMe":1,"mensagem":{"FromMe":"false","wid":""},"ticketData":{"id":3,"updatedAt":"u"}}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[{"originalData":{"key":{"id":"K","fromMe":"TRUE"}}}]}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[{"x":1},{"originalData":{"key":{"id":7,"fromMe":true}}},{"originalData":{"key":{"id":"L"}}}]}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[{"OriginalData":{"KEY":{"ID":"K"}},"originalData":{"key":{"fromMe":true}}}]}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":["a",{"b":1},null,[2]]}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":"texto \u00e9 \n"}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":{"b":2,"a":{"y":[1.10,-0,1e5],"x":"\u0041"},"a":{"z":1}}}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":12.50}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":[]}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem":true}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"Mensagem":{"a":1},"MENSAGEM":{"a":2}}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"m\u0065nsagem":{"a":1, "b" : [ 1 ,2 ] }}"#,
        r#"{"acao":"start","chamadoId":1,"ticketData":{"updatedAt":"t"},"mensagem" :	{"token":"s","b":1}}"#,
        r#"{"acao":"queue_webhook","mensagem":{"wid":"W","companyId":"4","ticketId":9}}"#,
        r#"{"acao":"queue_webhook","mensagem":{"wid":12,"companyId":4.0,"ticketId":"9"},"companyId":null}"#,
        r#"{"acao":"st\u0061rt","mensagem":{"wid":"W\"x"}}"#,
        r#"{"acao":"fila-data","mediaName":"1697118750977.ogg","chamadoId":2}"#,
        r#"{"acao":"fila-data","mediaName":1697118750977,"Companyid":3}"#,
        r#"{"acao":"fila-data","mediaName":""}"#,
        r#"{"acao":"arquivado","chamadoId":1,"ticketData":{"status":"ARQUIVADO","updatedAt":"t"}}"#,
        r#"{"acao":"open","action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":1}]}}"#,
        r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":2,"updatedAt":"b","companyId":"7"},{"id":"1","updatedAt":"c"},{"id":2}]}}"#,
        r#"{"action":"Tag-Sync","Tags":{"TicketId":"5","Tags":[{"ID":1,"UpdatedAt":"a"},{"id":1,"ID":3}]}}"#,
        r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":1},{"name":"x"}]}}"#,
        r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":[{"id":1},"x"]}}"#,
        r#"{"action":"tag-sync","tags":{"ticketId":5,"tags":{"id":1}}}"#,
        r#"{"action":"tag-sync","tags":{"tags":[{"id":1,"companyId":null},{"id":2,"companyId":8}]}}"#,
        r#"{"a":[{"b":{"token":{"x":[1,2]}}}],"Password":"p","acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}"#,
        r#"{"tok\u0065n":"x","list":[{"TOKEN_ORIGIN":[{"token":1}]}],"token":null}"#,
        r#"{"token":"a","token":"b","passwordHash":{"deep":{"token":"c"}}}"#,
        r#"{"headers":{"host":"n8n"},"params":{},"body":{"acao":"open","token":"s","chamadoId":1,"ticketData":{"updatedAt":"t"}},"webhookUrl":"u"}"#,
        r#"{"body":{"acao":"open","chamadoId":1},"headers":{},"executionMode":"test","token":"outer"}"#,
        r#"{"body":{"acao":"open"},"headers":{},"webhookUrl":"u","body":{"acao":"fila-data","mediaName":"m"}}"#,
        r#"{"body":{"acao":"fila-data","mediaName":"m"},"headers":{},"webhookUrl":"u","body":"not an object"}"#,
        r#"{"headers":{},"webhookUrl":"u","b\u006fdy":{"acao":"open","chamadoId":1,"ticketData":{"updatedAt":"t"}}}"#,
        r#"{"headers":{},"webhookUrl":"u","body":{"acao":"open"},"\u0062ody2":1}"#,
        r#"{"Headers":{},"webhookUrl":"u","body":{"acao":"open"}}"#,
        r#"{"headers":null,"executionMode":null,"body":{"acao":"start","mensagem":"oi","chamadoId":1,"ticketData":{"updatedAt":"t"}}}"#,
        r#"{"headers":{},"webhookUrl":"u","body":{"headers":{},"webhookUrl":"v","body":{"acao":"open"}}}"#,
        r#"{"body":{"token":"inner"},"token":"outer","list":[{"body":{"token":"x"}}]}"#,
        "{\"token\":\"\\ud800\"}",
        "{\"token\":1e400,\"acao\":\"open\"}",
        "{\"a\":1,\n \"token\": [\"\\uDC00\"]}",
        "{\"b\":{\"c\":\"\\ud83d\"}}",
        "[1,2]",
    ];

    fn keys() -> RedactKeys {
        RedactKeys::new([
            "token_origin",
            "token",
            "password",
            "passwordHash",
            "accessToken",
        ])
    }

    fn describe(raw: &[u8]) -> String {
        match parse("pin", Bytes::copy_from_slice(raw), &keys(), 5) {
            Ok(Event { meta, body }) => {
                let digest = hex::encode(&Sha256::digest(&body)[..8]);
                format!(
                    "{} {} {:?} {:?} {:?} {:?} {} {}",
                    meta.id,
                    meta.kind,
                    meta.action,
                    meta.company_id,
                    meta.ticket_id,
                    meta.from_me,
                    body.len(),
                    digest
                )
            }
            Err(err) => format!("error: {err}"),
        }
    }

    fn n8n(inner: &[u8]) -> Vec<u8> {
        let mut out = br#"{"headers":{"host":"n8n"},"body":"#.to_vec();
        out.extend_from_slice(inner);
        out.extend_from_slice(br#","executionMode":"production"}"#);
        out
    }

    fn deep(prefix: &str, levels: usize) -> String {
        format!("{prefix}{}{}}}", "[".repeat(levels), "]".repeat(levels))
    }

    fn cases() -> Vec<(String, Vec<u8>)> {
        let mut cases = Vec::new();
        for (name, body) in FIXTURES {
            cases.push((name.to_owned(), body.to_vec()));
            cases.push((format!("n8n {name}"), n8n(body)));
        }
        for (i, body) in VARIANTS.iter().enumerate() {
            cases.push((format!("variant {i}"), body.as_bytes().to_vec()));
        }
        for (i, levels) in [125, 126, 127].into_iter().enumerate() {
            cases.push((format!("deep {i}"), deep(r#"{"a":"#, levels).into_bytes()));
            cases.push((
                format!("deep token {i}"),
                deep(r#"{"token":"#, levels).into_bytes(),
            ));
            let body = deep(r#"{"body":{"x":"#, levels - 1);
            let body = format!(r#"{body},"headers":{{}},"webhookUrl":"u"}}"#);
            cases.push((format!("deep n8n {i}"), body.into_bytes()));
        }
        cases
    }

    const EXPECTED: &[&str] = &[
        "media-fila-data: 75bc1b6b4b6f3e40b9d1da83224e94ef media Some(\"fila-data\") Some(1) Some(357) Some(false) 1871 733e56b86915cecb",
        "n8n media-fila-data: 75bc1b6b4b6f3e40b9d1da83224e94ef media Some(\"fila-data\") Some(1) Some(357) Some(false) 1871 733e56b86915cecb",
        "message-from-internal: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"from_internal\") Some(1) Some(357) Some(false) 2292 e3fa99db13e14db2",
        "n8n message-from-internal: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"from_internal\") Some(1) Some(357) Some(false) 2292 e3fa99db13e14db2",
        "message-from-me: 00f478291d16a0e07c4245d377386249 message Some(\"start\") Some(1) Some(357) Some(true) 1906 a1b9482691ca3b7c",
        "n8n message-from-me: 00f478291d16a0e07c4245d377386249 message Some(\"start\") Some(1) Some(357) Some(true) 1906 a1b9482691ca3b7c",
        "message-group: df3c60bf3c0c519da52b71d5085e3f64 message Some(\"start\") Some(1) Some(402) Some(false) 1852 d279ef3ea00e9830",
        "n8n message-group: df3c60bf3c0c519da52b71d5085e3f64 message Some(\"start\") Some(1) Some(402) Some(false) 1852 d279ef3ea00e9830",
        "message-no-caption: 124862604ef3cfe9b27921028cbe8e01 message Some(\"start\") Some(1) Some(357) Some(false) 1775 8550bc4c044f2979",
        "n8n message-no-caption: 124862604ef3cfe9b27921028cbe8e01 message Some(\"start\") Some(1) Some(357) Some(false) 1775 8550bc4c044f2979",
        "message-no-queue: 86b5ff71ce3dc961a494ba794a67d88f message Some(\"start\") Some(1) Some(357) Some(false) 1696 28f369342569d212",
        "n8n message-no-queue: 86b5ff71ce3dc961a494ba794a67d88f message Some(\"start\") Some(1) Some(357) Some(false) 1696 28f369342569d212",
        "message-queue-webhook: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"queue_webhook\") Some(1) Some(357) Some(false) 2178 e8023151590651d7",
        "n8n message-queue-webhook: 9e19ca8c9221a54e7d54c54cbfd8bfb9 message Some(\"queue_webhook\") Some(1) Some(357) Some(false) 2178 e8023151590651d7",
        "message-start: 63905cda5c449699a087dda3ae7051c8 message Some(\"start\") Some(1) Some(357) Some(false) 1836 8a32abc4ff92e67a",
        "n8n message-start: 63905cda5c449699a087dda3ae7051c8 message Some(\"start\") Some(1) Some(357) Some(false) 1836 8a32abc4ff92e67a",
        "status-closed: 9cf1da9dfa417207f70f657af1a01ea1 status Some(\"closed\") Some(1) Some(357) None 1671 69e7da5c82e1fe19",
        "n8n status-closed: 9cf1da9dfa417207f70f657af1a01ea1 status Some(\"closed\") Some(1) Some(357) None 1671 69e7da5c82e1fe19",
        "status-open: 57d69f458232453cd71d600e749b6a9e status Some(\"open\") Some(1) Some(357) None 1670 66533298adb426bd",
        "n8n status-open: 57d69f458232453cd71d600e749b6a9e status Some(\"open\") Some(1) Some(357) None 1670 66533298adb426bd",
        "tag-sync: 4e70afd91a25ed5700b41db0c61d6fa4 tags Some(\"tag-sync\") Some(1) Some(383) None 611 205f617855f2720a",
        "n8n tag-sync: 4e70afd91a25ed5700b41db0c61d6fa4 tags Some(\"tag-sync\") Some(1) Some(383) None 611 205f617855f2720a",
        "variant 0: f5bd0599f1f070add29ea4c40a18cbf8 other None None None None 2 44136fa355b3678a",
        "variant 1: 54cb0dd7addec743fbcf52f2b0264022 other None None None None 28 d5b4f6e92051acce",
        "variant 2: 1d871981b68f1a66c2ba1d627fc4d894 message Some(\"start\") Some(2) Some(5) None 107 b7ed20e60b3b277f",
        "variant 3: e153c01556dce2d955534befa49e59ef status Some(\"closed\") None Some(1) None 76 7891bc52aa85e607",
        "variant 4: e153c01556dce2d955534befa49e59ef status Some(\"closed\") None Some(1) None 76 72f7892c29f339ff",
        "variant 5: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 76 51d2393ac5e2b8f7",
        "variant 6: 7fe626923c382c8f3be44866ed83dd52 other None None Some(1) None 72 21dc90937ade2792",
        "variant 7: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 72 0f7552e5b2226fbb",
        "variant 8: e3e8832ac445d3d121f275ecb6dd56ee status Some(\"open\") Some(1) Some(357) None 81 63fb9770684e2274",
        "variant 9: 5b1325fc8992a2f303cbf837e316912a status Some(\"open\") Some(100) Some(3) None 76 77dbea3e6d544083",
        "variant 10: f29dfaa51ad51bbcb3d003c44cd4f3db status Some(\"open\") None Some(0) None 79 9a685518b7c08446",
        "variant 11: 78adcd631cea59e5c649f21389f5e127 status Some(\"open\") Some(9223372036854775807) None None 111 c20f8a207b94ce59",
        "variant 12: 8fc95c473bcb90ae9da97cfd38c3ade6 status Some(\"open\") Some(-4) Some(-9223372036854775808) None 96 6edf90b5f6cb0508",
        "variant 13: c2750b8b96a893ae81de83e234d50587 status Some(\"open\") None None None 78 03d62f4d2d1aac61",
        "variant 14: 2ea55cc550491f644e7f9cea32d3f6b8 status Some(\"closed\") None Some(2) None 121 19eefe3e3a002bb9",
        "variant 15: d40b86a9365dcf984e8f028bc637d0a9 status Some(\"open\") None None None 71 0159f9efe5d8d5ec",
        "variant 16: 419560df09a9c85696ae79dedae53885 status Some(\"open\") None Some(4) None 91 3436421187d3764f",
        "variant 17: d381b52c47d42b71b2508c80ef93790e message Some(\"start\") None Some(3) Some(true) 123 01a646a645385290",
        "variant 18: f8a0a7771de385d5baab6ecb9ccdef36 message Some(\"start\") None Some(3) Some(true) 98 950345a28bdd2b3f",
        "variant 19: 6c8161d545dbb560ea17539f61eeb993 message Some(\"start\") None Some(3) Some(false) 104 1f07632be71e61f6",
        "variant 20: a597d596d83b44f7868b17f1a84169c0 message Some(\"start\") None Some(1) Some(true) 126 ce38dce08b8efbe6",
        "variant 21: 0190a5f87dae8630262bbf3a1c4eb5cf message Some(\"start\") None Some(1) None 166 0330f89eab837f5e",
        "variant 22: 301d5ef0c7e69316b59da368a5b38d6c message Some(\"start\") None Some(1) Some(true) 149 eebbd8ceb8b796e2",
        "variant 23: 02c6f8c460639059b16ae2eed8d8a5ee message Some(\"start\") None Some(1) None 95 b5ea343b08e011df",
        "variant 24: 0e1bf874db958eb20441b389f58c836e message Some(\"start\") None Some(1) None 90 564527b2039cdae4",
        "variant 25: a6065897ac92cbca9dc5aa5a60832132 message Some(\"start\") None Some(1) None 129 2070ee8db98405f8",
        "variant 26: 33710988ea7233caf668e7324b5971d3 message Some(\"start\") None Some(1) None 78 86ca1a66c8c30a39",
        "variant 27: 7c1a4b6f2748d2b6d6318283dedcab36 message Some(\"start\") None Some(1) None 75 09693d1e587dd7fa",
        "variant 28: 7326dd979762a654b55ca30ba58fe836 message Some(\"start\") None Some(1) None 77 3c47487ea40073aa",
        "variant 29: 011fa990fce421ed2e236bb2001e69ca message Some(\"start\") None Some(1) None 99 4841d9aa4f2867c3",
        "variant 30: 1541a69afe47669f3487729f2f019dfc message Some(\"start\") None Some(1) None 102 47be307ef199c7cb",
        "variant 31: 2c06e1b96be7295a3d85ccf49289a55c message Some(\"start\") None Some(1) None 103 8f9c56a6300bb731",
        "variant 32: 826568f1ddb844f01fe6a9c2bc3b3d26 message Some(\"queue_webhook\") Some(4) Some(9) None 76 7eff333db5c1c182",
        "variant 33: 70cb9ef8f1151d5eafaf422d899e4fa3 message Some(\"queue_webhook\") Some(4) Some(9) None 94 e3790ea8a4d062ac",
        "variant 34: dbc261ac75d77d3dc7101c8a9d0c772b message Some(\"start\") None None None 47 43d3c96352c5e86d",
        "variant 35: 7800f87a3f2fc7f4646e6c04f2bed17b media Some(\"fila-data\") None Some(2) None 66 e8b811c737ab6f5f",
        "variant 36: 6f609ec6e9b30e422458bc44fee0e467 media Some(\"fila-data\") Some(3) None None 60 9a96351bf4d3a690",
        "variant 37: 045295bfc6144d018a14efab9feb4c4a media Some(\"fila-data\") None None None 35 df5088a96013c057",
        "variant 38: 42534efeff34d0e88786a66e1bf982c5 status Some(\"arquivado\") None Some(1) None 86 cb58e4b2e6e5530d",
        "variant 39: c2e8682c62b2325f9e6e1e54066d4581 tags Some(\"open\") None Some(5) None 75 24403ddffde2c175",
        "variant 40: 8227be3131de330c4a9c403b7274065e tags Some(\"tag-sync\") Some(7) Some(5) None 129 1f6eda1163ae4c63",
        "variant 41: 209c8768955a513768a73890e9e32fcb tags Some(\"Tag-Sync\") None Some(5) None 95 e5a282dcda8a407e",
        "variant 42: b37d396fa1efb2123a66147d0bcdfde5 tags Some(\"tag-sync\") None Some(5) None 74 e61abcd8e290c2d5",
        "variant 43: fa09a3519f472c7dec4daf6a8cbaa53c tags Some(\"tag-sync\") None Some(5) None 65 c01d0b2411eddfa2",
        "variant 44: 9dbcc6ec688ecb993df917a863c61a62 tags Some(\"tag-sync\") None Some(5) None 59 fe8c0d6db863c3e5",
        "variant 45: 1102fa8a42a6c80b6c07bedca919db23 tags Some(\"tag-sync\") Some(8) None None 88 f3f602a7cdd79d0d",
        "variant 46: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 119 f9751357fc39b4a6",
        "variant 47: 7e22fd58ce6761f3fe3df018bf45200d other None None None None 87 ca49da18c9be3ff3",
        "variant 48: 642860e5a100e94b3a662dc980dbffc9 other None None None None 71 4e462b0c282d8be9",
        "variant 49: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 81 208cbf74321a1d06",
        "variant 50: 4310f17350af332dbeb64e87df1804cd status Some(\"open\") None Some(1) None 29 36fdb02610b408fa",
        "variant 51: fcd134e84bd2f03197c8a07d27b96191 media Some(\"fila-data\") None None None 36 874b5484ecf5fb21",
        "variant 52: 05f7d3998b7619c1f69fa1604d75ac72 other None None None None 98 8365248b5e6eb8aa",
        "variant 53: 224f24579ab0f5833e3865f380ea219d status Some(\"open\") None Some(1) None 60 28de51eb2d6b104c",
        "variant 54: d1ba8a7e15be2c8aa30a7eab6f499fa1 status Some(\"open\") None None None 15 f1629f77367ea746",
        "variant 55: b45aee2f0c14c49dc4b0b760c587bddb other None None None None 54 a9f369a5ec409f81",
        "variant 56: 1eee508fac3342fc4c6313295876a17f message Some(\"start\") None Some(1) None 77 3d4316394f4d1674",
        "variant 57: ffdb7fa8bda0a62e3a43d85fb0864e0c other None None None None 54 6b30ac170b4e989d",
        "variant 58: b63e844c7cb9359021b1b3abcbde1dd9 other None None None None 93 80f22cda759efa72",
        "variant 59: error: body is not valid JSON: unexpected end of hex escape at line 1 column 17",
        "variant 60: error: body is not valid JSON: number out of range at line 1 column 14",
        "variant 61: error: body is not valid JSON: lone leading surrogate in hex escape at line 2 column 18",
        "variant 62: error: body is not valid JSON: unexpected end of hex escape at line 1 column 18",
        "variant 63: error: body is JSON but not an object",
        "deep 0: c8cc0931853d9bea3ece3d3ea537a16b other None None None None 256 a6e74d53a79d4be0",
        "deep token 0: 96bfbdda3ba9fd866186e7ddcbdcce04 other None None None None 22 395e1eef4ac715ed",
        "deep n8n 0: 504521f54376962491f66800496021f4 other None None None None 254 94d57740d988aa59",
        "deep 1: c3da38c978bfa7b7f461e8eda7191ff1 other None None None None 258 4c70705e0b74bd7e",
        "deep token 1: 4ec3fc2372d2ab37897f711890e0cfc3 other None None None None 22 395e1eef4ac715ed",
        "deep n8n 1: ac9b3a56257bf4a1409a1d3d759b41b7 other None None None None 256 b1a3daf7100f31b4",
        "deep 2: error: body is not valid JSON: recursion limit exceeded at line 1 column 132",
        "deep token 2: error: body is not valid JSON: recursion limit exceeded at line 1 column 136",
        "deep n8n 2: error: body is not valid JSON: recursion limit exceeded at line 1 column 139",
    ];

    #[test]
    fn every_case_keeps_its_meta_and_relayed_bytes() {
        let actual: Vec<String> = cases()
            .iter()
            .map(|(name, body)| format!("{name}: {}", describe(body)))
            .collect();
        if actual != EXPECTED {
            for line in &actual {
                println!("        {line:?},");
            }
        }
        assert_eq!(actual.len(), EXPECTED.len());
        for (actual, expected) in actual.iter().zip(EXPECTED) {
            assert_eq!(actual, expected);
        }
    }
}
