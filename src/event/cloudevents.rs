//! The body a connection's consumers read: the sender's own (raw), or one CloudEvents 1.0
//! structured JSON shape for every fork, built once at ingest from the one pass's facts with
//! the redacted original under `data.raw`, and stored as it is published.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::facts::Facts;
use super::EventMeta;

/// `amqp.body` and `connections[].body`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyMode {
    /// The sender's body, unwrapped and redacted (`application/json`).
    #[default]
    Raw,
    /// A CloudEvents 1.0 structured JSON envelope (`application/cloudevents+json`).
    #[serde(rename = "cloudevents")]
    CloudEvents,
}

impl BodyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyMode::Raw => "raw",
            BodyMode::CloudEvents => "cloudevents",
        }
    }

    /// The AMQP `content_type` of a body in this mode.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyMode::Raw => "application/json",
            BodyMode::CloudEvents => "application/cloudevents+json",
        }
    }

    pub fn is_raw(&self) -> bool {
        *self == BodyMode::Raw
    }
}

/// The CloudEvents attributes; `data` last, so `raw` can be appended to it (see [`envelope`]).
#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    /// The ticket, where the event has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    datacontenttype: &'static str,
    data: &'a Facts<'a>,
}

/// What a consumer of CloudEvents reads in `source`: the relay and the connection.
pub fn source(connection: &str) -> String {
    format!("/whaticket-relay/{connection}")
}

/// The CloudEvents `type`: `whaticket.{kind}.{change}`.
pub fn event_type(meta: &EventMeta) -> String {
    format!("whaticket.{}.{}", meta.kind, meta.change())
}

/// The envelope's bytes: the attributes and facts serialised, then `"raw":` and the redacted
/// body spliced in as they are (valid JSON already: not parsed again, not re-encoded). `None`
/// if the head did not serialise as expected (the event is then relayed raw).
pub(crate) fn envelope(meta: &EventMeta, facts: &Facts<'_>, raw: &[u8]) -> Option<Bytes> {
    let id = meta.id.hex();
    let head = Envelope {
        specversion: "1.0",
        id: id.as_str(),
        source: source(&meta.connection),
        kind: event_type(meta),
        subject: meta.ticket_id.map(|t| t.to_string()),
        time: crate::clock::rfc3339_millis(meta.received_at_ms),
        datacontenttype: "application/json",
        data: facts,
    };
    let head = serde_json::to_vec(&head).ok()?;
    // `…"data":{…}}`: the two closing braces dropped, `raw` added, both closed again; the
    // envelope's buffer is allocated once, at its size.
    let open = head.strip_suffix(b"}}")?;
    const RAW: &[u8] = b",\"raw\":";
    let mut out = Vec::with_capacity(open.len() + RAW.len() + raw.len() + 2);
    out.extend_from_slice(open);
    out.extend_from_slice(RAW);
    out.extend_from_slice(raw);
    out.extend_from_slice(b"}}");
    Some(Bytes::from(out))
}
