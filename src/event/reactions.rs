//! A message's reactions, as the one pass reads them: a record that folds each item into who
//! reacted with what (Whazing's `{type, contactId}`, Baileys' `{text, key}`), for `state.rs`.

use std::borrow::Cow;

use super::node::{Node, Scalar, Visit};
use super::offsets::Key;
use super::slot::{plain_record, record, sketch, Leaf, Nullable, Slot};

plain_record!(
    /// One reaction: Whazing's `{type, contactId}`, Baileys' `{text, key}`, or alike.
    ReactionItem {
        kind: Leaf = "type",
        text: Leaf = "text",
        emoji: Leaf = "emoji",
        contact_id: Leaf = "contactId",
        user_id: Leaf = "userId",
        key: ReactionKey = "key",
    }
);

plain_record!(
    /// Baileys' key of the reaction message: who reacted.
    ReactionKey {
        from_me: Leaf = "fromMe",
        remote_jid: Leaf = "remoteJid",
        participant: Leaf = "participant",
    }
);

record!(
    /// A message's reactions, folded item by item into `who` + emoji (an emptied one, which
    /// Baileys sends when a reaction is taken back, is none).
    Reactions {}
    extra {
        found: Vec<(String, String)>,
        /// Made at the first item: most messages have no reactions, and a record is large.
        item: Option<Box<ReactionItem<'de>>>,
    }
);

impl<'de> Node<'de> for Reactions<'de> {
    fn value(&mut self, value: Scalar<'de>) {
        self.shape = value;
    }

    fn item(&mut self, _index: usize) -> Visit<'_, 'de> {
        let item = self.item.get_or_insert_with(Box::default);
        **item = ReactionItem::default();
        Visit::Into(&mut **item)
    }

    fn item_done(&mut self, _index: usize) {
        let Some(item) = self.item.as_deref() else {
            return;
        };
        let text = |leaf: &Slot<'de, Leaf<'de>>| leaf.scalar().and_then(Scalar::text);
        let Some(emoji) = text(&item.kind)
            .or_else(|| text(&item.text))
            .or_else(|| text(&item.emoji))
        else {
            return;
        };
        let key = item.key.get();
        let who = text(&item.contact_id)
            .or_else(|| text(&item.user_id))
            .or_else(|| key.and_then(|k| text(&k.participant)))
            .or_else(|| {
                let key = key?;
                let me = key.from_me.scalar().and_then(Scalar::as_flag) == Some(true);
                if me {
                    return Some(Cow::Borrowed("me"));
                }
                text(&key.remote_jid)
            })
            .unwrap_or_default();
        self.found.push((who.into_owned(), emoji.into_owned()));
    }
}
