//! The event parser as it was before the one pass (a `serde_json::Value` tree, then a second
//! walk to redact), kept as the reference the property tests hold the one-pass parser to. A
//! frozen copy on purpose: sharing code with the parser under test would let a bug hide in both.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use whaticket_relay::event::{Event, EventId, EventMeta, Kind, ParseError, RedactKeys};

const REDACTED: &[u8] = b"\"[redacted]\"";
const UNPARSEABLE: &[u8] = br#"{"redacted":"unparseable"}"#;
const MAX_DEPTH: usize = 128;

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
        // Kinds the old parser never produced.
        Kind::Other | Kind::Receipt | Kind::Connection => None,
    };
    let id = key.unwrap_or_else(|| ids.body_key());

    let meta = EventMeta {
        id,
        kind,
        connection: connection.to_owned(),
        action: word.map(str::to_owned),
        // The old parser told no formats apart.
        format: None,
        company_id,
        ticket_id,
        from_me,
        received_at_ms,
        // The old parser named no changes.
        change: None,
        body: Default::default(),
    };
    Ok(Event {
        meta,
        body: redact_body(&body, redact),
        earlier_id: None,
        wa_id: None,
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
    let range = subslice_range(raw, inner.get().as_bytes())?;
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

/// Returns `body` with the values under redacted keys replaced; the same buffer when none is present.
///
/// `body` must be valid JSON: [`crate::event::parse`] only calls this after a successful parse.
/// Should a body nonetheless fail to parse here, the [`UNPARSEABLE`] placeholder is returned
/// rather than bytes that may still carry a secret.
fn redact_body(body: &Bytes, keys: &RedactKeys) -> Bytes {
    let hits = match find_values(body, keys) {
        Ok(hits) => hits,
        Err(_) => return Bytes::from_static(UNPARSEABLE),
    };
    if hits.is_empty() {
        return body.clone();
    }
    let mut ranges = Vec::with_capacity(hits.len());
    for raw in hits {
        match subslice_range(body, raw.get().as_bytes()) {
            Some(range) => ranges.push(range),
            // Only reachable if serde_json stopped borrowing from the input.
            None => return Bytes::from_static(UNPARSEABLE),
        }
    }
    splice(body, &ranges).unwrap_or_else(|| Bytes::from_static(UNPARSEABLE))
}

/// Where `inner` lies inside `outer`, if it is a sub-slice of it (pointer arithmetic, no search).
fn subslice_range(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// `ranges` come in document order and never overlap, since a matched value is not descended
/// into; `None` would mean that invariant broke, and the caller then refuses to emit the body.
fn splice(body: &[u8], ranges: &[Range<usize>]) -> Option<Bytes> {
    let removed: usize = ranges.iter().map(|r| r.len()).sum();
    let mut out =
        Vec::with_capacity(body.len().saturating_sub(removed) + ranges.len() * REDACTED.len());
    let mut at = 0;
    for range in ranges {
        out.extend_from_slice(body.get(at..range.start)?);
        out.extend_from_slice(REDACTED);
        at = range.end;
    }
    out.extend_from_slice(body.get(at..)?);
    Some(Bytes::from(out))
}

/// One pass over the body with a single deserializer, so serde_json's recursion limit applies to
/// the whole walk; each matched value is taken as a `&RawValue` borrowed from `body`.
fn find_values<'de>(
    body: &'de [u8],
    keys: &RedactKeys,
) -> Result<Vec<&'de RawValue>, serde_json::Error> {
    let mut hits = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Walker {
        keys,
        hits: &mut hits,
        depth: 0,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(hits)
}

struct Walker<'s, 'de> {
    keys: &'s RedactKeys,
    hits: &'s mut Vec<&'de RawValue>,
    depth: usize,
}

impl<'de> Walker<'_, 'de> {
    fn child(&mut self) -> Walker<'_, 'de> {
        Walker {
            keys: self.keys,
            hits: self.hits,
            depth: self.depth + 1,
        }
    }

    fn descend<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.descend()?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.descend()?;
        while let Some(hit) = map.next_key_seed(KeyMatch(self.keys))? {
            if hit {
                let raw: &'de RawValue = map.next_value()?;
                self.hits.push(raw);
            } else {
                map.next_value_seed(self.child())?;
            }
        }
        Ok(())
    }
}

/// Compares an object key, after serde_json has resolved its escapes, against the configured keys.
struct KeyMatch<'s>(&'s RedactKeys);

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(self.0.matches(key))
    }
}
