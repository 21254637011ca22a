//! Which Whaticket-family sender's format a body is in, told from the members it has: sent to
//! consumers (`format` header) and counted per connection, so an operator sees which forks post.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::fields::Root;
use super::node::Scalar;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    WhaticketSaas,
    Baileys,
    Wwebjs,
    Izing,
    Whazing,
    Envelope,
    Unknown,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::WhaticketSaas,
        Format::Baileys,
        Format::Wwebjs,
        Format::Izing,
        Format::Whazing,
        Format::Envelope,
        Format::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::WhaticketSaas => "whaticket-saas",
            Format::Baileys => "baileys",
            Format::Wwebjs => "wwebjs",
            Format::Izing => "izing",
            Format::Whazing => "whazing",
            Format::Envelope => "envelope",
            Format::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn present(shape: Option<&Scalar<'_>>) -> bool {
    shape.is_some_and(|s| *s != Scalar::Null)
}

fn is_object(shape: Option<&Scalar<'_>>) -> bool {
    shape == Some(&Scalar::Object)
}

/// SaaS members first: a SaaS body that happens to carry `key` or `id` stays SaaS, so the kinds
/// and keys of the shapes stored keys were made from never change.
pub(crate) fn detect(root: &Root<'_>, word: Option<&str>) -> Format {
    let saas = word.is_some()
        || root.mensagem.get().is_some()
        || root.ticket_data.get().is_some()
        || present(root.chamado_id.scalar())
        || root.tags.get().is_some()
        || present(root.media_name.scalar());
    if saas {
        return Format::WhaticketSaas;
    }
    let event = root.event.scalar().and_then(Scalar::as_str);
    if event.is_some_and(|e| e.contains('.')) && is_object(root.payload.get().map(|p| p.shape())) {
        return Format::Envelope;
    }
    let kind = root.kind.scalar().and_then(Scalar::as_str);
    if kind.is_some_and(|t| t.len() > 4 && t[..4].eq_ignore_ascii_case("hook")) {
        return Format::Izing;
    }
    let ticket_or_whatsapp = is_object(root.ticket.get().map(|t| t.shape()))
        || is_object(root.whatsapp.get().map(|w| w.shape()));
    if present(root.message_body.scalar()) || (kind.is_some() && ticket_or_whatsapp) {
        return Format::Whazing;
    }
    let wwebjs_id = |id: Option<&super::fields::WaId<'_>>| {
        id.is_some_and(|id| *id.shape() == Scalar::Object && id.message_id().is_some())
    };
    if wwebjs_id(root.id.get()) || root.wrapped().any(|m| wwebjs_id(m.id.get())) {
        return Format::Wwebjs;
    }
    let baileys_key = |key: Option<&super::fields::BaileysKey<'_>>| {
        key.is_some_and(|k| present(k.id.scalar()) || present(k.remote_jid.scalar()))
    };
    if baileys_key(root.key.get()) || root.wrapped().any(|m| baileys_key(m.key.get())) {
        return Format::Baileys;
    }
    if present(root.whatsapp_id.scalar())
        && (present(root.event.scalar()) || present(root.status.scalar()))
    {
        return Format::WhaticketSaas;
    }
    Format::Unknown
}
