//! What a broker return (NO_ROUTE) means for an event: sent again once the topology is declared
//! anew, and dead-lettered only when it comes back after that.
//!
//! The relay declares the exchange, a queue per kind and bindings that match every routing key
//! it produces, so a return always means somebody changed that topology under it: a queue or a
//! binding deleted, or the exchange deleted while a publish was being routed (RabbitMQ 3.10 looks
//! the exchange up, then its bindings, and a deletion in between routes the message nowhere).
//! Declaring again repairs all of these; an event that is returned even after that is kept in
//! the dead store, so a topology that keeps breaking cannot make the relay loop. With
//! `amqp.declare_topology` off the topology is someone else's, and a return is dead at once.

use std::collections::HashMap;

use lapin::Confirmation;

use crate::event::EventId;

/// How a returned event's dead-letter reason begins (then the broker's reply code and text).
pub const UNROUTABLE: &str = "unroutable: ";

/// What to do with an event whose confirm came with a return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Back to the window; the topology is declared before anything is published again.
    Resend,
    /// Returned again after a declaration: to the dead store, with this reason.
    Dead(String),
}

/// A session's returns: those waiting for their own confirm, and those already resent once.
#[derive(Debug)]
pub(super) struct Returns {
    /// Whether the relay declares the topology (`amqp.declare_topology`): if not, nothing it
    /// can do repairs a route, and a returned event is dead at once.
    repairable: bool,
    /// Reason of each return, by the returned message's id, until its own confirm arrives.
    waiting: HashMap<EventId, String>,
    /// Events returned once, with the declaration count at that return.
    resent: HashMap<EventId, u64>,
    /// Declarations made by this session after its first one.
    declarations: u64,
    /// A return arrived since the last declaration.
    declare: bool,
}

impl Returns {
    pub(super) fn new(repairable: bool) -> Self {
        Self {
            repairable,
            waiting: HashMap::new(),
            resent: HashMap::new(),
            declarations: 0,
            declare: false,
        }
    }

    /// Records the returns that arrived with a batch of confirms, by the returned message's id.
    ///
    /// A return is matched to its event by `message_id`, never by the confirm lapin attached it
    /// to: for a `multiple` ack, lapin completes the covered tags in hash-map order and hands the
    /// waiting return to whichever comes first, so it can ride on another event's confirm.
    pub(super) fn note<'a>(&mut self, confirmations: impl IntoIterator<Item = &'a Confirmation>) {
        for confirmation in confirmations {
            let (Confirmation::Ack(Some(message)) | Confirmation::Nack(Some(message))) =
                confirmation
            else {
                continue;
            };
            let reason = format!("{UNROUTABLE}{} {}", message.reply_code, message.reply_text);
            let id = message.properties.message_id().as_ref().map(|s| s.as_str());
            self.record(id, reason);
        }
    }

    /// Records one return, by the `message_id` it carried.
    fn record(&mut self, message_id: Option<&str>, reason: String) {
        let mut id = [0u8; 16];
        match message_id {
            Some(text) if hex::decode_to_slice(text, &mut id).is_ok() => {
                self.waiting.insert(EventId(id), reason);
            }
            _ => tracing::error!("RabbitMQ returned a message without an event id as message_id"),
        }
    }

    /// The broker acked `id`: `None` when it was routed, else what to do with it.
    pub(super) fn on_ack(&mut self, id: &EventId) -> Option<Verdict> {
        let Some(reason) = self.waiting.remove(id) else {
            if !self.resent.is_empty() {
                self.resent.remove(id);
            }
            return None;
        };
        if !self.repairable {
            return Some(Verdict::Dead(reason));
        }
        match self.resent.get(id) {
            Some(&at) if at < self.declarations => {
                self.resent.remove(id);
                Some(Verdict::Dead(reason))
            }
            _ => {
                self.resent.insert(*id, self.declarations);
                self.declare = true;
                Some(Verdict::Resend)
            }
        }
    }

    /// Whether the topology must be declared before the next publish.
    pub(super) fn must_declare(&self) -> bool {
        self.declare
    }

    /// The topology was declared again.
    pub(super) fn declared(&mut self) {
        self.declarations += 1;
        self.declare = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASON: &str = "unroutable: 312 NO_ROUTE";

    fn returned(returns: &mut Returns, id: EventId) {
        returns.record(Some(id.hex().as_str()), REASON.to_owned());
    }

    #[test]
    fn a_return_is_resent_once_after_a_declaration_then_dead_lettered() {
        let (a, b) = (EventId([1; 16]), EventId([2; 16]));
        let mut returns = Returns::new(true);
        returns.note([&Confirmation::Ack(None), &Confirmation::Nack(None)]);
        assert_eq!(returns.on_ack(&a), None, "routed: nothing to do");
        assert!(!returns.must_declare());

        // b's return may ride on a's confirm: it is b that is resent, and a counts as routed.
        returned(&mut returns, b);
        assert_eq!(returns.on_ack(&a), None);
        assert_eq!(returns.on_ack(&b), Some(Verdict::Resend));
        assert!(returns.must_declare());
        returns.declared();
        assert!(!returns.must_declare());

        returned(&mut returns, b);
        assert_eq!(
            returns.on_ack(&b),
            Some(Verdict::Dead(REASON.to_owned())),
            "returned again after the declaration"
        );
        assert!(returns.resent.is_empty());
    }

    #[test]
    fn a_return_before_the_declaration_it_asked_for_is_resent_again() {
        // Returned twice before the declaration happened: the second does not condemn it.
        let a = EventId([3; 16]);
        let mut returns = Returns::new(true);
        returned(&mut returns, a);
        assert_eq!(returns.on_ack(&a), Some(Verdict::Resend));
        returned(&mut returns, a);
        assert_eq!(returns.on_ack(&a), Some(Verdict::Resend));
        returns.declared();
        // Routed after the repair: forgotten, so a later return starts over.
        assert_eq!(returns.on_ack(&a), None);
        assert!(returns.resent.is_empty());
        returned(&mut returns, a);
        assert_eq!(returns.on_ack(&a), Some(Verdict::Resend));
    }

    #[test]
    fn a_return_without_an_event_id_is_not_matched() {
        let mut returns = Returns::new(true);
        returns.record(Some("not-hex"), REASON.to_owned());
        returns.record(None, REASON.to_owned());
        assert!(returns.waiting.is_empty());
    }

    #[test]
    fn without_declarations_a_return_is_dead_at_once() {
        let a = EventId([4; 16]);
        let mut returns = Returns::new(false);
        returned(&mut returns, a);
        assert_eq!(returns.on_ack(&a), Some(Verdict::Dead(REASON.to_owned())));
        assert!(!returns.must_declare());
    }
}
