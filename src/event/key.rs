//! Dedup keys: SHA-256 over length-prefixed parts per kind, the body digest when a kind's
//! identifying fields are missing. Stored keys of running installations depend on every byte.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fields::Root;
use super::format::Format;
use super::node::Scalar;
use super::{wamid, EventId};

/// The parts every dedup key shares, so two connections or two companies never collide.
pub(crate) struct Ids<'a> {
    pub connection: &'a str,
    pub company: String,
    /// The unwrapped, unredacted body.
    pub body: &'a Bytes,
}

impl Ids<'_> {
    pub(crate) fn key(&self, tag: &str, rest: &[&str]) -> EventId {
        let mut parts = Vec::with_capacity(3 + rest.len());
        parts.extend([tag, self.connection, self.company.as_str()]);
        parts.extend_from_slice(rest);
        digest_key(&parts)
    }

    /// Used whenever a kind's identifying fields are missing: only byte-identical bodies merge.
    pub fn body_key(&self) -> EventId {
        let digest = hex::encode(Sha256::digest(self.body));
        self.key("other", &[&digest])
    }
}

/// The id a Standard Webhooks sender signed (`webhook-id`): the spec's idempotency key, so the
/// event's key whatever its body says. A retry re-serialised is one event, and a new id with a
/// body byte-equal to an earlier one another. Connection and id only: the sender names its
/// events per endpoint, and a body's company must not split one id in two.
///
/// No key of another kind can equal it: every key hashes length-prefixed parts whose first is
/// its tag, and no other kind's tag is `webhook-id` (theirs: `msg-wid`, `msg`, `status`,
/// `receipt`, `connection`, `media`, `tags`, `other`, `rule`), so the hashed bytes differ for
/// any id, and an equal id would take a SHA-256 collision in its first 16 bytes. Stored keys of
/// the other kinds are untouched: their parts, and so their bytes, are those of earlier versions.
pub(crate) fn sender_key(connection: &str, sender_id: &[u8]) -> EventId {
    digest_key(&[b"webhook-id".as_slice(), connection.as_bytes(), sender_id])
}

/// Hashes length-prefixed parts: no separator can be forged by a value that contains it. Parts
/// are bytes (a header value need not be UTF-8); a `str` part hashes as its UTF-8 bytes.
pub(crate) fn digest_key<P: AsRef<[u8]>>(parts: &[P]) -> EventId {
    let mut hasher = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    EventId(id)
}

/// The WhatsApp id is the same whichever format Whaticket used to send the message, so it is
/// keyed without `acao`; without it the ticket's `updatedAt`, which moves with every message,
/// and the message content tell events apart. `text` is the whole received body, which
/// `mensagem`'s recorded offset points into.
pub(crate) fn message_key(
    ids: &Ids<'_>,
    root: &Root<'_>,
    text: &str,
    format: Format,
    ticket_id: Option<i64>,
    from_me: Option<bool>,
) -> Option<EventId> {
    if let Some(wid) = wamid::message_id(root, format) {
        return Some(ids.key("msg-wid", &[&wid]));
    }
    let mensagem = root.mensagem.get();
    let ticket = ticket_id?.to_string();
    let updated = ticket_updated_at(root, format)?;
    let content = match mensagem {
        None => "none".to_owned(),
        Some(m) => canonical_digest(text, m.start?)?,
    };
    let from_me = from_me.map_or("", |f| if f { "true" } else { "false" });
    Some(ids.key("msg", &[&ticket, &updated, from_me, &content]))
}

/// Ticket + lifecycle word + time: the same change sent twice is one event, the next change of
/// the same ticket another.
pub(crate) fn status_key(
    ids: &Ids<'_>,
    root: &Root<'_>,
    format: Format,
    ticket_id: Option<i64>,
    word: Option<&str>,
) -> Option<EventId> {
    let ticket = ticket_id?.to_string();
    let updated = ticket_updated_at(root, format)?;
    Some(ids.key("status", &[&ticket, word.unwrap_or_default(), &updated]))
}

/// A receipt is one ack of one message: the same ack twice is one event, the next ack another.
pub(crate) fn receipt_key(ids: &Ids<'_>, root: &Root<'_>, format: Format) -> Option<EventId> {
    let message = wamid::message_id(root, format)?;
    let ack = root
        .ack
        .scalar()
        .or_else(|| root.message.get()?.ack.scalar())
        .or_else(|| root.payload.get()?.ack.scalar())
        .or_else(|| root.payload.get()?.status.scalar())
        .or_else(|| root.status.scalar())
        .and_then(Scalar::text)?;
    Some(ids.key("receipt", &[&message, &ack.to_ascii_lowercase()]))
}

/// The WhatsApp session's state at a time: which session (the sender's connection id), which
/// state, when. Without a time only byte-identical bodies merge.
pub(crate) fn connection_key(ids: &Ids<'_>, root: &Root<'_>) -> Option<EventId> {
    let payload = root.payload.get();
    let session = root
        .whatsapp_id
        .scalar()
        .or_else(|| root.whatsapp.get()?.id.scalar())
        .or_else(|| payload?.whatsapp_id.scalar())
        .or_else(|| payload?.id.scalar())
        .or_else(|| root.id.get().map(|id| id.shape()))
        .and_then(Scalar::text)
        .unwrap_or_default();
    let state = root
        .status
        .scalar()
        .or_else(|| payload?.status.scalar())
        .or_else(|| root.event.scalar())
        .and_then(Scalar::text)?;
    let time = root
        .timestamp
        .get()
        .and_then(|t| t.text())
        .or_else(|| payload?.updated_at.scalar()?.text().map(Cow::into_owned))?;
    Some(ids.key(
        "connection",
        &[&session, &state.to_ascii_lowercase(), &time],
    ))
}

/// `mediaName` is a millisecond timestamp per company folder, unique enough on its own.
pub(crate) fn media_key(ids: &Ids<'_>, root: &Root<'_>, ticket_id: Option<i64>) -> Option<EventId> {
    let name = root.media_name.scalar().and_then(Scalar::text)?;
    let ticket = ticket_id.map(|t| t.to_string()).unwrap_or_default();
    Some(ids.key("media", &[&ticket, &name]))
}

/// A tag sync is the ticket's whole tag set, keyed by content rather than body bytes because the
/// contact data around it changes between otherwise identical syncs.
pub(crate) fn tags_key(ids: &Ids<'_>, root: &Root<'_>, ticket_id: Option<i64>) -> Option<EventId> {
    let ticket = ticket_id?.to_string();
    let list = root.tags.get()?.tags.get()?;
    // A tag without an id cannot be told apart from another one: use the body digest.
    if *list.shape() != Scalar::Array || list.missing_id {
        return None;
    }
    let mut tag_ids = list.ids.clone();
    tag_ids.sort_unstable();
    tag_ids.dedup();
    let tag_ids = tag_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let latest = list.latest.as_deref().unwrap_or_default();
    Some(ids.key("tags", &[&ticket, &tag_ids, latest]))
}

/// `ticketData.updatedAt`, or `chamado.updatedAt` where a fork sends `chamado`; outside the SaaS
/// format also the Whazing ticket's, the envelope payload's, or the event's own time.
fn ticket_updated_at<'r>(root: &'r Root<'_>, format: Format) -> Option<Cow<'r, str>> {
    let of = |t: Option<&'r super::fields::TicketData<'_>>| t?.updated_at.scalar()?.text();
    of(root.ticket_data.get())
        .or_else(|| of(root.chamado.get()))
        .or_else(|| {
            if format == Format::WhaticketSaas {
                return None;
            }
            of(root.ticket.get())
                .or_else(|| root.payload.get()?.updated_at.scalar()?.text())
                .or_else(|| root.timestamp.get()?.text().map(Cow::Owned))
        })
}

/// SHA-256 over a key-sorted serialization of the value starting at byte `start` of `text`.
/// The one place a value is built: its serialization must stay the one stored keys were made
/// from. serde_json's `Map` is a `BTreeMap` unless some crate in the build enables
/// `preserve_order`; `sort_all_objects` makes the order independent of that feature.
fn canonical_digest(text: &str, start: usize) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(text.get(start..)?);
    let mut value = Value::deserialize(&mut de).ok()?;
    value.sort_all_objects();
    let bytes = serde_json::to_vec(&value).ok()?;
    Some(hex::encode(Sha256::digest(bytes)))
}
