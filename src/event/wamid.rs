//! The WhatsApp message id, wherever a sender puts it, in one spelling: the same message in two
//! formats (or two forks) must share its dedup key.

use std::borrow::Cow;

use super::fields::{BaileysKey, Root, WaId};
use super::format::Format;
use super::node::Scalar;

/// The SaaS places keep their exact text (stored keys were made from it); every other place is
/// normalised, so whatsapp-web.js's `false_5511…@c.us_3EB0…` and Baileys' bare `3EB0…` agree.
pub(crate) fn message_id<'r>(root: &'r Root<'_>, format: Format) -> Option<Cow<'r, str>> {
    if let Some(mensagem) = root.mensagem.get() {
        let saas = match mensagem.shape() {
            Scalar::Object => mensagem.wid.scalar().and_then(Scalar::text),
            Scalar::Array => mensagem.key_id.clone(),
            _ => None,
        };
        if saas.is_some() {
            return saas;
        }
        // A saved message row whose WhatsApp id is its `id` (not `wid`); a row id is a number.
        if *mensagem.shape() == Scalar::Object {
            if let Some(id) = mensagem.id.scalar().and_then(whatsapp_id) {
                return Some(id);
            }
        }
    }
    // The other senders' places: a SaaS key never starts depending on a member it never read.
    if format == Format::WhaticketSaas {
        return None;
    }
    let key_id = |key: Option<&BaileysKey<'r>>| key?.id.scalar().and_then(Scalar::text);
    let wa_id = |id: Option<&WaId<'r>>| {
        let id = id?;
        (*id.shape() == Scalar::Object).then(|| id.message_id())?
    };
    let found = key_id(root.key.get())
        .or_else(|| wa_id(root.id.get()))
        .or_else(|| root.message_id.scalar().and_then(Scalar::text))
        .or_else(|| {
            root.wrapped().find_map(|m| {
                key_id(m.key.get())
                    .or_else(|| wa_id(m.id.get()))
                    .or_else(|| m.message_id.scalar().and_then(Scalar::text))
            })
        })
        .or_else(|| {
            let payload = root.payload.get()?;
            key_id(payload.key.get())
                .or_else(|| payload.message_id.scalar().and_then(Scalar::text))
                .or_else(|| {
                    // An envelope's message `payload.id`; a ticket's is its row id.
                    (format == Format::Envelope)
                        .then(|| payload.id.scalar().and_then(whatsapp_id))?
                })
        })?;
    Some(Cow::Owned(normalise(&found).to_owned()))
}

/// whatsapp-web.js serialises `{fromMe}_{chat}_{id}` (`_{participant}` after it in groups).
pub(crate) fn normalise(id: &str) -> &str {
    let id = id.trim();
    let mut parts = id.splitn(4, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(me), Some(_chat), Some(bare))
            if (me == "true" || me == "false") && !bare.is_empty() =>
        {
            bare
        }
        _ => id,
    }
}

/// A WhatsApp message id, not a database row id: text of letters and digits (a serialised id
/// included), at least 8 long and not all digits.
fn whatsapp_id<'a>(value: &Scalar<'a>) -> Option<Cow<'a, str>> {
    let text = value.as_str()?;
    let bare = normalise(text);
    let looks = bare.len() >= 8
        && bare.len() <= 128
        && bare.bytes().all(|b| b.is_ascii_alphanumeric())
        && !bare.bytes().all(|b| b.is_ascii_digit());
    looks.then(|| Cow::Owned(bare.to_owned()))
}
