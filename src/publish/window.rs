//! The in-flight window: what may be published next, so that at most `max_in_flight` events are
//! unconfirmed and a ticket never has two events in flight.

use std::collections::{HashMap, VecDeque};

use crate::event::EventMeta;
use crate::store::{Pending, Room};

/// Body bytes the window holds at most, waiting and in flight together (one event at least).
/// At 18 KB a full window of 256 in flight plus as many waiting held 9 MB; this keeps about
/// 200 such events in hand, still far more than the broker needs in flight to stay busy.
pub(crate) const WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// Events of one ticket must reach the broker in order; this identifies the ticket.
fn ticket_of(meta: &EventMeta) -> Option<(&str, Option<i64>, i64)> {
    meta.ticket_id
        .map(|ticket| (meta.connection.as_str(), meta.company_id, ticket))
}

/// The publisher's part of the outbox: waiting events in seq order and those awaiting a confirm.
///
/// Pure bookkeeping, no I/O: it decides what may be published next so that at most
/// `max_in_flight` events are unconfirmed and a ticket never has two events in flight.
#[derive(Debug)]
pub(crate) struct Window {
    max_in_flight: usize,
    max_bytes: u64,
    /// Body bytes of the waiting and in-flight events.
    held_bytes: u64,
    next_after: Option<u64>,
    waiting: VecDeque<Pending>,
    in_flight: HashMap<u64, Pending>,
    /// Tickets with an event in flight, keyed by ticket id then `(connection, company)`, so a
    /// lookup needs no allocation.
    busy: HashMap<i64, Vec<(String, Option<i64>)>>,
}

impl Window {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self::with_bytes(max_in_flight, WINDOW_BYTES)
    }

    pub(crate) fn with_bytes(max_in_flight: usize, max_bytes: u64) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            max_bytes,
            held_bytes: 0,
            next_after: None,
            waiting: VecDeque::new(),
            in_flight: HashMap::new(),
            busy: HashMap::new(),
        }
    }

    /// Highest seq loaded so far: where a read of the segments continues.
    pub(crate) fn next_after(&self) -> Option<u64> {
        self.next_after
    }

    /// Whether to take more from the store.
    pub(crate) fn wants_more(&self) -> bool {
        self.waiting.len() < self.max_in_flight && self.held_bytes < self.max_bytes
    }

    /// What to take so that up to one full window waits behind the one in flight, within the
    /// byte budget.
    pub(crate) fn room(&self) -> Room {
        Room {
            events: self.max_in_flight,
            bytes: self.max_bytes.saturating_sub(self.held_bytes),
        }
    }

    fn size(pending: &Pending) -> u64 {
        pending.event.body.len() as u64
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Appends a batch with `seq > next_after`; anything already seen is ignored.
    pub(crate) fn load(&mut self, batch: Vec<Pending>) {
        for pending in batch {
            if self.next_after.is_some_and(|after| pending.seq <= after) {
                continue;
            }
            self.next_after = Some(pending.seq);
            self.held_bytes += Self::size(&pending);
            self.waiting.push_back(pending);
        }
    }

    fn is_busy(&self, meta: &EventMeta) -> bool {
        match ticket_of(meta) {
            Some((connection, company, ticket)) => self
                .busy
                .get(&ticket)
                .is_some_and(|held| held.iter().any(|(c, co)| c == connection && *co == company)),
            None => false,
        }
    }

    fn hold(&mut self, meta: &EventMeta) {
        if let Some((connection, company, ticket)) = ticket_of(meta) {
            self.busy
                .entry(ticket)
                .or_default()
                .push((connection.to_owned(), company));
        }
    }

    fn release(&mut self, meta: &EventMeta) {
        if let Some((connection, company, ticket)) = ticket_of(meta) {
            if let Some(held) = self.busy.get_mut(&ticket) {
                held.retain(|(c, co)| !(c == connection && *co == company));
                if held.is_empty() {
                    self.busy.remove(&ticket);
                }
            }
        }
    }

    /// Takes the oldest waiting event that may go now and marks it in flight.
    ///
    /// A waiting event whose ticket is not busy is necessarily that ticket's oldest waiting
    /// event (an older one would have been taken first and made the ticket busy), so checking
    /// the busy set alone keeps each ticket in seq order; events without a ticket never wait.
    pub(crate) fn next_publishable(&mut self) -> Option<Pending> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let index = self
            .waiting
            .iter()
            .position(|p| !self.is_busy(&p.event.meta))?;
        let pending = self.waiting.remove(index)?;
        self.hold(&pending.event.meta);
        self.in_flight.insert(pending.seq, pending.clone());
        Some(pending)
    }

    /// The event published as `seq`, while it is in flight.
    pub(crate) fn in_flight_event(&self, seq: u64) -> Option<&Pending> {
        self.in_flight.get(&seq)
    }

    /// The broker settled `seq` for good (acked or returned): its ticket may move on.
    pub(crate) fn confirmed(&mut self, seq: u64) -> Option<Pending> {
        let pending = self.in_flight.remove(&seq)?;
        self.release(&pending.event.meta);
        self.held_bytes = self.held_bytes.saturating_sub(Self::size(&pending));
        Some(pending)
    }

    /// A session ended: everything unconfirmed waits again, in seq order, for the next one
    /// (resent with the same `message_id`: at least once).
    pub(crate) fn requeue_in_flight(&mut self) {
        let mut seqs: Vec<u64> = self.in_flight.keys().copied().collect();
        seqs.sort_unstable();
        for seq in seqs {
            self.nacked(seq);
        }
    }

    /// The broker refused `seq`: it goes back among the waiting, in seq order, so it is the
    /// next of its ticket to go.
    pub(crate) fn nacked(&mut self, seq: u64) -> Option<&Pending> {
        let pending = self.confirmed(seq)?;
        self.held_bytes += Self::size(&pending);
        let index = self.waiting.partition_point(|p| p.seq < pending.seq);
        self.waiting.insert(index, pending);
        self.waiting.get(index)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::event::{Change, Event, EventId, Kind};

    /// Meta of a test event (also used by the publisher's other unit tests).
    pub(crate) fn meta(id: u8, kind: Kind, ticket: Option<i64>) -> EventMeta {
        EventMeta {
            id: EventId([id; 16]),
            kind,
            connection: "main".to_owned(),
            action: Some("update".to_owned()),
            format: None,
            company_id: Some(7),
            ticket_id: ticket,
            from_me: Some(false),
            received_at_ms: 1_700_000_000_123,
            change: Some(Change::Other),
            body: Default::default(),
        }
    }

    fn pending(seq: u64, meta: EventMeta) -> Pending {
        Pending {
            seq,
            event: Arc::new(Event {
                meta,
                body: Bytes::from(format!("{{\"seq\":{seq}}}")),
                earlier_id: None,
            }),
        }
    }

    #[test]
    fn window_holds_a_ticket_while_its_event_is_in_flight() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, meta(2, Kind::Message, Some(5))),
            pending(3, meta(3, Kind::Message, Some(6))),
            pending(4, meta(4, Kind::Status, None)),
            pending(5, meta(5, Kind::Message, Some(5))),
        ]);
        assert_eq!(window.next_after(), Some(5));

        let taken: Vec<u64> = std::iter::from_fn(|| window.next_publishable())
            .map(|p| p.seq)
            .collect();
        assert_eq!(
            taken,
            [1, 3, 4],
            "ticket 5 waits behind seq 1; other tickets and no-ticket events go"
        );
        assert_eq!(window.in_flight(), 3);

        assert_eq!(window.confirmed(1).map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert!(
            window.next_publishable().is_none(),
            "seq 5 waits behind seq 2"
        );
        window.confirmed(2);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(5));
        assert_eq!(window.waiting(), 0);
    }

    #[test]
    fn window_tells_tickets_of_other_connections_and_companies_apart() {
        let mut window = Window::new(10);
        let mut other_connection = meta(2, Kind::Message, Some(5));
        other_connection.connection = "second".to_owned();
        let mut other_company = meta(3, Kind::Message, Some(5));
        other_company.company_id = Some(8);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, other_connection),
            pending(3, other_company),
        ]);
        let taken: Vec<u64> = std::iter::from_fn(|| window.next_publishable())
            .map(|p| p.seq)
            .collect();
        assert_eq!(taken, [1, 2, 3]);
    }

    #[test]
    fn window_caps_what_is_in_flight() {
        let mut window = Window::new(2);
        window.load(
            (1..=4)
                .map(|seq| pending(seq, meta(seq as u8, Kind::Tags, None)))
                .collect(),
        );
        assert!(!window.wants_more());
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert!(window.next_publishable().is_none());
        assert!(!window.wants_more(), "a full window is still waiting");
        window.confirmed(2);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(3));
        assert!(window.wants_more());
    }

    #[test]
    fn window_holds_no_more_bodies_than_its_byte_budget() {
        // Bodies of `{"seq":N}`: 9 bytes for one-digit seqs.
        let mut window = Window::with_bytes(10, 20);
        assert_eq!(
            window.room(),
            Room {
                events: 10,
                bytes: 20
            }
        );
        window.load(vec![pending(1, meta(1, Kind::Tags, None))]);
        assert!(window.wants_more());
        assert_eq!(window.room().bytes, 11);
        window.load(vec![
            pending(2, meta(2, Kind::Tags, None)),
            pending(3, meta(3, Kind::Tags, None)),
        ]);
        assert!(!window.wants_more(), "27 of 20 bytes held");
        assert_eq!(window.room().bytes, 0);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        assert!(!window.wants_more(), "in flight still counts");
        window.confirmed(1);
        assert!(window.wants_more(), "18 of 20 bytes: room for more");
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        window.nacked(2);
        assert_eq!(window.room().bytes, 2, "a nacked event is held again");
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        window.confirmed(2);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(3));
        window.confirmed(3);
        assert_eq!(window.room().bytes, 20);
        assert!(window.wants_more());
    }

    #[test]
    fn window_puts_a_nacked_event_back_in_seq_order_first() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, meta(2, Kind::Message, None)),
            pending(3, meta(3, Kind::Message, Some(5))),
        ]);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert_eq!(window.nacked(1).map(|p| p.seq), Some(1));
        assert_eq!(window.waiting(), 2);
        assert_eq!(
            window.next_publishable().map(|p| p.seq),
            Some(1),
            "the refused event goes again first"
        );
        assert!(
            window.next_publishable().is_none(),
            "seq 3 still waits behind it"
        );
    }

    #[test]
    fn window_ignores_entries_already_loaded() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, None)),
            pending(2, meta(2, Kind::Message, None)),
        ]);
        window.load(vec![
            pending(2, meta(2, Kind::Message, None)),
            pending(3, meta(3, Kind::Message, None)),
        ]);
        assert_eq!(window.waiting(), 3);
        assert_eq!(window.next_after(), Some(3));
    }

    #[test]
    fn a_session_end_puts_what_was_in_flight_back_in_order() {
        let mut window = Window::new(10);
        window.load(vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, meta(2, Kind::Message, None)),
            pending(3, meta(3, Kind::Message, Some(5))),
        ]);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        window.requeue_in_flight();
        assert_eq!(window.in_flight(), 0);
        let taken: Vec<u64> = std::iter::from_fn(|| window.next_publishable())
            .map(|p| p.seq)
            .collect();
        assert_eq!(
            taken,
            [1, 2],
            "seq 3 still waits behind seq 1 of its ticket"
        );
    }
}
