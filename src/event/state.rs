//! A message's state: what its sender re-posts it for under the same WhatsApp id (an edit, a
//! deletion, reactions, a later ack), read from the values the one pass recorded, so a repeat
//! is the same state however it is serialised (member order, spacing, a timestamp re-encoded)
//! and a change is another. Which member says what, per sender, is in docs/senders.md.
//!
//! Only the markers of a change make one: a re-post that differs in anything else (its text
//! without an edit marker, its media URL once downloaded, the time of the post, the ticket's
//! `updatedAt`) is the state the message was created in.

use std::borrow::Cow;

use super::change::{self, Change};
use super::fields::{Message, Root};
use super::format::Format;
use super::node::Scalar;

/// Stands for reactions a sender flags without saying which (whatsapp-web.js' `hasReaction`,
/// an envelope's `message.reaction` without a list).
const SOME_REACTION: &str = "*";

#[derive(Debug, Default, PartialEq)]
pub(crate) struct State<'de> {
    deleted: bool,
    /// The edit: its new text or time where the sender gives one, else empty.
    edited: Option<Cow<'de, str>>,
    /// Who reacted with what, sorted.
    reactions: Vec<(String, String)>,
    ack: Option<Change>,
    text: Option<Cow<'de, str>>,
    media: Option<Cow<'de, str>>,
}

impl<'de> State<'de> {
    /// The word for the state, the most telling first: a deleted message's edits and
    /// reactions no longer matter; an ack only counts past `sent`, where every message starts.
    pub fn change(&self) -> Change {
        if self.deleted {
            return Change::Deleted;
        }
        if self.edited.is_some() {
            return Change::Edited;
        }
        if !self.reactions.is_empty() {
            return Change::Reaction;
        }
        match self.ack {
            Some(ack) if ack.is_later_ack() => ack,
            _ => Change::Created,
        }
    }

    /// The message's text or caption, as its sender gave it.
    pub fn text(&self) -> Option<&Cow<'de, str>> {
        self.text.as_ref()
    }

    /// The media URL the sender gave.
    pub fn media(&self) -> Option<&Cow<'de, str>> {
        self.media.as_ref()
    }

    /// The ack the message was re-posted with, if any.
    pub fn ack(&self) -> Option<Change> {
        self.ack
    }

    /// Whether this is the state a message is created in: its key is then the WhatsApp id
    /// alone, as it was before states were told apart (key.rs).
    pub fn is_created(&self) -> bool {
        self.change() == Change::Created
    }

    /// The state as key parts: one per value, each a complete string, so no value can run into
    /// the next (the key hashes them length-prefixed).
    pub fn parts(&self) -> [String; 6] {
        let mut reactions = String::new();
        for (who, emoji) in &self.reactions {
            for part in [who, emoji] {
                reactions.push_str(&part.len().to_string());
                reactions.push(':');
                reactions.push_str(part);
            }
        }
        [
            if self.deleted { "deleted" } else { "" }.to_owned(),
            self.edited
                .as_ref()
                .map_or_else(String::new, |e| format!("edited:{e}")),
            reactions,
            self.ack.map_or("", Change::as_str).to_owned(),
            self.text.as_deref().unwrap_or_default().to_owned(),
            self.media.as_deref().unwrap_or_default().to_owned(),
        ]
    }
}

fn flag(value: Option<&Scalar<'_>>) -> bool {
    value.and_then(Scalar::as_flag) == Some(true)
}

fn text<'de>(value: Option<&Scalar<'de>>) -> Option<Cow<'de, str>> {
    value.and_then(Scalar::text)
}

fn is(value: Option<&Scalar<'_>>, word: &str) -> bool {
    value
        .and_then(Scalar::as_str)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(word))
}

/// whatsapp-web.js' time of a message's last edit (0: never edited).
fn edit_time<'a, 'de>(m: &'a Message<'de>) -> Option<&'a Scalar<'de>> {
    m.latest_edit.scalar().filter(|v| v.as_id() != Some(0))
}

/// Baileys' `messageStubType` REVOKE: a message deleted for everyone.
fn revoked_stub(value: Option<&Scalar<'_>>) -> bool {
    value.and_then(Scalar::as_id) == Some(1) || is(value, "revoke")
}

/// The state of the message `root` carries; `own_body` is a top-level `body` member (the n8n
/// envelope takes it: n8n.rs), `word` the type word (an envelope's `message.<verb>`).
pub(crate) fn read<'de>(
    root: &Root<'de>,
    format: Format,
    word: Option<&str>,
    own_body: Option<&Scalar<'de>>,
) -> State<'de> {
    if format == Format::WhaticketSaas {
        return saas(root);
    }
    let mut state = State::default();
    let wrapped = || root.wrapped();
    let payload = root.payload.get();
    let update = root.update.get();
    let verb = match format {
        Format::Envelope => word.and_then(|w| w.split_once('.')).map(|(_, verb)| verb),
        _ => None,
    }
    .map(str::to_ascii_lowercase);
    let verb_is = |words: &[&str]| verb.as_deref().is_some_and(|v| words.contains(&v));

    state.deleted = flag(root.is_deleted.scalar())
        || flag(payload.and_then(|p| p.is_deleted.scalar()))
        || is(root.kind.scalar(), "revoked")
        || revoked_stub(root.stub_type.scalar())
        || revoked_stub(update.and_then(|u| u.stub_type.scalar()))
        || wrapped().any(|m| {
            flag(m.is_deleted.scalar())
                || is(m.kind.scalar(), "revoked")
                || revoked_stub(m.stub_type.scalar())
        })
        || verb_is(&["deleted", "delete", "revoked", "revoke"]);

    let present = |value: Option<&Scalar<'_>>| value.is_some_and(|v| *v != Scalar::Null);
    // Whazing: the new text, or `true`.
    let whazing = root.edited.scalar();
    state.edited = match (whazing, whazing.and_then(Scalar::as_flag)) {
        (_, Some(true)) => Some(Cow::Borrowed("")),
        (_, Some(false)) => None,
        (Some(Scalar::Str(s)), None) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
    .or_else(|| {
        let time = root
            .latest_edit
            .scalar()
            .filter(|v| v.as_id() != Some(0))
            .or_else(|| wrapped().find_map(edit_time))?;
        Some(time.text().unwrap_or_default())
    })
    .or_else(|| {
        let marked = present(update.and_then(|u| u.message.scalar()))
            || verb_is(&["updated", "edited", "edit", "changed"]);
        marked.then_some(Cow::Borrowed(""))
    });

    let lists = [root.reactions.get()]
        .into_iter()
        .chain(wrapped().map(|m| m.reactions.get()))
        .flatten();
    for list in lists {
        state.reactions.extend(list.found.iter().cloned());
    }
    let flagged = flag(root.has_reaction.scalar())
        || wrapped().any(|m| flag(m.has_reaction.scalar()))
        || verb_is(&["reaction", "reacted", "react"]);
    if state.reactions.is_empty() && flagged {
        state
            .reactions
            .push((String::new(), SOME_REACTION.to_owned()));
    }
    state.reactions.sort_unstable();
    state.reactions.dedup();

    // Izing posts a message once, when it arrives, whatever its ack then; the envelope sends
    // acks as receipts (`message.ack`). The others re-post the message as its ack moves.
    if !matches!(format, Format::Izing | Format::Envelope) {
        let baileys = format == Format::Baileys;
        let acks = [
            (root.ack.scalar(), false),
            (root.status.scalar(), baileys),
            (update.and_then(|u| u.status.scalar()), true),
        ];
        let wrapped_acks =
            wrapped().flat_map(|m| [(m.ack.scalar(), false), (m.status.scalar(), baileys)]);
        state.ack = acks
            .into_iter()
            .chain(wrapped_acks)
            .find_map(|(value, baileys)| change::ack(value?, baileys));
    }

    state.text = text(root.message_body.scalar())
        .or_else(|| text(payload.and_then(|p| p.body.scalar())))
        .or_else(|| text(own_body))
        .or_else(|| text(root.body.scalar()))
        .or_else(|| wrapped().find_map(|m| text(m.body.scalar())));
    state.media =
        text(root.media_url.scalar()).or_else(|| text(payload.and_then(|p| p.media_url.scalar())));
    state
}

/// A saved SaaS message row (`from_internal`) can come back deleted or edited; its list form
/// (`queue_webhook`) and text form carry no state. The row's `ack` is left out: the list form
/// of the same message has none, and the two must stay one event.
fn saas<'de>(root: &Root<'de>) -> State<'de> {
    let Some(row) = root.mensagem.get().filter(|m| *m.shape() == Scalar::Object) else {
        return State::default();
    };
    State {
        deleted: flag(row.is_deleted.scalar()),
        edited: flag(row.is_edited.scalar()).then_some(Cow::Borrowed("")),
        text: text(row.body.scalar()),
        media: text(row.media_url.scalar()),
        ..State::default()
    }
}
