//! Which kind an event is, and the ids it carries, read from the recorded fields.

use super::fields::Root;
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

fn text<'r>(value: Option<&'r Scalar<'_>>) -> Option<&'r str> {
    value.and_then(Scalar::as_str)
}

pub(crate) fn classify(root: &Root<'_>, word: Option<&str>) -> Kind {
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

pub(crate) fn company_id(root: &Root<'_>) -> Option<i64> {
    id(root.company_id.scalar())
        .or_else(|| id(root.ticket_data.get()?.company_id.scalar()))
        .or_else(|| id(root.mensagem.get()?.company_id.scalar()))
        .or_else(|| {
            let list = root.tags.get()?.tags.get()?;
            (*list.shape() == Scalar::Array).then_some(list.company_id)?
        })
}

pub(crate) fn ticket_id(root: &Root<'_>) -> Option<i64> {
    id(root.chamado_id.scalar())
        .or_else(|| id(root.ticket_data.get()?.id.scalar()))
        .or_else(|| id(root.tags.get()?.ticket_id.scalar()))
        .or_else(|| id(root.mensagem.get()?.ticket_id.scalar()))
}

pub(crate) fn from_me(root: &Root<'_>) -> Option<bool> {
    let flag = |value: Option<&Scalar<'_>>| value.and_then(Scalar::as_flag);
    flag(root.from_me.scalar())
        .or_else(|| flag(root.mensagem.get()?.from_me.scalar()))
        .or_else(|| root.mensagem.get()?.first_from_me)
}
