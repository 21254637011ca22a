//! Which kind an event is, and the ids it carries, read from the recorded fields.

use super::fields::Root;
use super::format::Format;
use super::node::Scalar;
use super::Kind;

/// `acao` values that carry one WhatsApp message.
const MESSAGE_ACTIONS: [&str; 4] = [
    "start",
    "from_internal",
    "queue_webhook",
    "queue_webhook_from_internal",
];

/// Ticket statuses Whaticket sends as `acao` when a ticket changes state.
const STATUS_ACTIONS: [&str; 6] = ["open", "closed", "pending", "group", "lgpd", "nps"];

/// The raw `acao` or, without it, `action` word.
pub(crate) fn word<'r>(root: &'r Root<'_>) -> Option<&'r str> {
    text(root.acao.scalar()).or_else(|| text(root.action.scalar()))
}

/// Other senders' type word: Izing's `type`, Whazing's `Type`, an envelope's `event`.
fn type_word<'r>(root: &'r Root<'_>) -> Option<&'r str> {
    text(root.kind.scalar()).or_else(|| text(root.event.scalar()))
}

/// The word an event is sent with: `acao`/`action`, or another sender's type word. SaaS bodies
/// keep their `acao`/`action` alone: it is part of their status keys.
pub(crate) fn event_word<'r>(
    root: &'r Root<'_>,
    format: Format,
    word: Option<&'r str>,
) -> Option<&'r str> {
    match format {
        Format::WhaticketSaas => word,
        _ => word.or_else(|| type_word(root)),
    }
}

fn text<'r>(value: Option<&'r Scalar<'_>>) -> Option<&'r str> {
    value.and_then(Scalar::as_str)
}

/// The SaaS rules first, unchanged (stored keys depend on them); what they leave as `other` is
/// read by the other senders' rules.
pub(crate) fn classify(root: &Root<'_>, word: Option<&str>) -> Kind {
    classify_as(root, word, Edits::Messages)
}

/// How the envelope fork's `message.updated` is read: an edit, or (the release before changes
/// were named) a receipt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edits {
    Messages,
    Receipts,
}

/// Whether the release before changes were named classified this body otherwise: a receipt,
/// for an envelope's `message.updated`, which is a message now. Its stored keys are a receipt's.
pub(crate) fn was_receipt(root: &Root<'_>, word: Option<&str>, kind: Kind) -> bool {
    const UPDATED: &[u8] = b".updated";
    let updated = text(root.event.scalar()).is_some_and(|e| {
        let e = e.as_bytes();
        e.len() > UPDATED.len() && e[e.len() - UPDATED.len()..].eq_ignore_ascii_case(UPDATED)
    });
    updated && kind == Kind::Message && classify_as(root, word, Edits::Receipts) == Kind::Receipt
}

fn classify_as(root: &Root<'_>, word: Option<&str>, edits: Edits) -> Kind {
    match saas_kind(root, word) {
        Kind::Other => {}
        kind => return kind,
    }
    if word.is_some_and(|w| w.eq_ignore_ascii_case("n8n")) {
        return Kind::Message;
    }
    if let Some(kind) = text(root.kind.scalar()).and_then(type_kind) {
        return kind;
    }
    if let Some(kind) = text(root.event.scalar()).and_then(|e| event_kind(e, edits)) {
        return kind;
    }
    shape_kind(root)
}

/// `type` of Izing (`hookMessage`, `hookMessageStatus`, `hookSessionStatus`), Whazing's `Type`
/// (`NewTicket`, `TransferTicket`, `ClosedTicket`…) and the whatsapp-web.js event names some
/// community forks forward.
fn type_kind(word: &str) -> Option<Kind> {
    let word = word.to_ascii_lowercase();
    let word = word.strip_prefix("hook").unwrap_or(&word);
    let kind = match word {
        "messagestatus" | "messageack" | "message_ack" | "ack" | "receipt" => Kind::Receipt,
        "sessionstatus" | "connectionstatus" | "change_state" | "connection.update" | "qrcode"
        | "session" => Kind::Connection,
        "message" | "message_create" | "messages.upsert" => Kind::Message,
        w if w.ends_with("ticket") => Kind::Status,
        _ => return None,
    };
    Some(kind)
}

/// An envelope's `event`: `ticket.*`, `message.*` (acks and status updates are receipts; the
/// envelope fork's `message.updated` is an edit), `session.*` / `connection.*` / `whatsapp.*`.
fn event_kind(event: &str, edits: Edits) -> Option<Kind> {
    let (subject, verb) = event.split_once('.')?;
    let subject = subject.to_ascii_lowercase();
    let verb = verb.to_ascii_lowercase();
    let kind = match subject.as_str() {
        "ticket" | "tickets" => Kind::Status,
        "message" | "messages" if verb == "updated" && edits == Edits::Messages => Kind::Message,
        "message" | "messages" => {
            let receipt = ["ack", "status", "read", "deliver", "receipt", "update"];
            if receipt.iter().any(|r| verb.contains(r)) {
                Kind::Receipt
            } else {
                Kind::Message
            }
        }
        "session" | "connection" | "whatsapp" => Kind::Connection,
        _ => return None,
    };
    Some(kind)
}

/// Senders without a type word: the SaaS connection webhook `{whatsappId, event, status}`, raw
/// Baileys and whatsapp-web.js messages, Whazing's message, a bare ack.
fn shape_kind(root: &Root<'_>) -> Kind {
    let present = |s: Option<&Scalar<'_>>| s.is_some_and(|s| *s != Scalar::Null);
    if present(root.whatsapp_id.scalar())
        && present(root.status.scalar())
        && present(root.event.scalar())
    {
        return Kind::Connection;
    }
    let has_id = super::wamid::message_id(root, Format::Unknown).is_some();
    let has_content = present(root.message_body.scalar())
        || root.wrapped().next().is_some()
        || root.key.get().is_some()
        || root
            .id
            .get()
            .is_some_and(|id| *id.shape() == Scalar::Object);
    if has_id && present(root.ack.scalar()) && !has_content {
        return Kind::Receipt;
    }
    if has_id {
        return Kind::Message;
    }
    Kind::Other
}

fn saas_kind(root: &Root<'_>, word: Option<&str>) -> Kind {
    let is = |name: &str| word.is_some_and(|w| w.eq_ignore_ascii_case(name));
    if is("tag-sync")
        || text(root.action.scalar()).is_some_and(|a| a.eq_ignore_ascii_case("tag-sync"))
    {
        return Kind::Tags;
    }
    if MESSAGE_ACTIONS.iter().any(|a| is(a)) {
        return Kind::Message;
    }
    if is("fila-data") {
        return Kind::Media;
    }
    let ticket_status = text(root.ticket_data.get().and_then(|t| t.status.scalar()));
    if STATUS_ACTIONS.iter().any(|a| is(a)) || ticket_status.is_some_and(is) {
        return Kind::Status;
    }
    Kind::Other
}

fn id(value: Option<&Scalar<'_>>) -> Option<i64> {
    value.and_then(Scalar::as_id)
}

/// The SaaS places first, in their old order; the other senders' after them (outside the SaaS
/// format: the company is part of every key).
pub(crate) fn company_id(root: &Root<'_>, format: Format) -> Option<i64> {
    let saas = id(root.company_id.scalar())
        .or_else(|| id(root.ticket_data.get()?.company_id.scalar()))
        .or_else(|| id(root.mensagem.get()?.company_id.scalar()))
        .or_else(|| {
            let list = root.tags.get()?.tags.get()?;
            (*list.shape() == Scalar::Array).then_some(list.company_id)?
        })
        .or_else(|| id(root.chamado.get()?.company_id.scalar()));
    saas_first(saas, format, || {
        (root.ticket.get().and_then(|t| id(t.company_id.scalar())))
            .or_else(|| id(root.payload.get()?.company_id.scalar()))
    })
}

/// What the SaaS places gave; the other senders' places only outside the SaaS format, so a SaaS
/// key never starts depending on a member it never read.
fn saas_first<T>(saas: Option<T>, format: Format, others: impl FnOnce() -> Option<T>) -> Option<T> {
    if saas.is_some() || format == Format::WhaticketSaas {
        return saas;
    }
    others()
}

/// Without a SaaS ticket id, the other senders' places count only outside the SaaS format: a
/// SaaS message's key must not start depending on a member it never read.
pub(crate) fn ticket_id(root: &Root<'_>, format: Format, kind: super::Kind) -> Option<i64> {
    let saas = id(root.chamado_id.scalar())
        .or_else(|| id(root.ticket_data.get()?.id.scalar()))
        .or_else(|| id(root.tags.get()?.ticket_id.scalar()))
        .or_else(|| id(root.mensagem.get()?.ticket_id.scalar()));
    if saas.is_some() || format == Format::WhaticketSaas {
        return saas.or_else(|| id(root.chamado.get()?.id.scalar()));
    }
    id(root.ticket_id.scalar())
        .or_else(|| id(root.chamado.get()?.id.scalar()))
        .or_else(|| id(root.ticket.get()?.id.scalar()))
        .or_else(|| {
            let payload = root.payload.get()?;
            id(payload.ticket_id.scalar())
                .or_else(|| (kind == super::Kind::Status).then(|| id(payload.id.scalar()))?)
        })
}

pub(crate) fn from_me(root: &Root<'_>, format: Format) -> Option<bool> {
    let flag = |value: Option<&Scalar<'_>>| value.and_then(Scalar::as_flag);
    let saas = flag(root.from_me.scalar())
        .or_else(|| flag(root.mensagem.get()?.from_me.scalar()))
        .or_else(|| root.mensagem.get()?.first_from_me);
    saas_first(saas, format, || {
        (root.key.get().and_then(|k| flag(k.from_me.scalar())))
            .or_else(|| flag(root.id.get()?.from_me.scalar()))
            .or_else(|| {
                root.wrapped().find_map(|m| {
                    flag(m.from_me.scalar())
                        .or_else(|| flag(m.key.get()?.from_me.scalar()))
                        .or_else(|| flag(m.id.get()?.from_me.scalar()))
                })
            })
            .or_else(|| flag(root.payload.get()?.from_me.scalar()))
    })
}
