//! Dedup keys: SHA-256 over length-prefixed parts per kind, the body digest when a kind's
//! identifying fields are missing. Stored keys of running installations depend on every byte.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fields::Root;
use super::node::Scalar;
use super::EventId;

/// The parts every dedup key shares, so two connections or two companies never collide.
pub(crate) struct Ids<'a> {
    pub connection: &'a str,
    pub company: String,
    /// The unwrapped, unredacted body.
    pub body: &'a Bytes,
}

impl Ids<'_> {
    fn key(&self, tag: &str, rest: &[&str]) -> EventId {
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

/// Hashes length-prefixed parts: no separator can be forged by a value that contains it.
pub(crate) fn digest_key(parts: &[&str]) -> EventId {
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
/// and the message content tell events apart. `text` is the whole received body, which
/// `mensagem`'s recorded offset points into.
pub(crate) fn message_key(
    ids: &Ids<'_>,
    root: &Root<'_>,
    text: &str,
    ticket_id: Option<i64>,
    from_me: Option<bool>,
) -> Option<EventId> {
    let mensagem = root.mensagem.get();
    if let Some(wid) = mensagem.and_then(|m| match m.shape() {
        Scalar::Object => m.wid.scalar().and_then(Scalar::text),
        Scalar::Array => m.key_id.clone(),
        _ => None,
    }) {
        return Some(ids.key("msg-wid", &[&wid]));
    }
    let ticket = ticket_id?.to_string();
    let updated = ticket_updated_at(root)?;
    let content = match mensagem {
        None => "none".to_owned(),
        Some(m) => canonical_digest(text, m.start?)?,
    };
    let from_me = from_me.map_or("", |f| if f { "true" } else { "false" });
    Some(ids.key("msg", &[&ticket, &updated, from_me, &content]))
}

pub(crate) fn status_key(
    ids: &Ids<'_>,
    root: &Root<'_>,
    ticket_id: Option<i64>,
    word: Option<&str>,
) -> Option<EventId> {
    let ticket = ticket_id?.to_string();
    let updated = ticket_updated_at(root)?;
    Some(ids.key("status", &[&ticket, word.unwrap_or_default(), &updated]))
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

fn ticket_updated_at<'r>(root: &'r Root<'_>) -> Option<Cow<'r, str>> {
    root.ticket_data.get()?.updated_at.scalar()?.text()
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
