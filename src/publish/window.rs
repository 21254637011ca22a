//! The in-flight window: what may be published next, so that at most `max_in_flight` events are
//! unconfirmed, a ticket never has two events out, and a busy ticket never holds up another.
//!
//! Events are read in seq order. One whose ticket has an event out does not hold the window: it
//! is put in its ticket's line (`lines`; whole within a small byte budget, else as its seq) and
//! the reading goes on past it, so the window fills with what may go now. When a ticket's event
//! is settled, its next one goes, or is due and read back from the store by seq; where a line
//! kept none (a cap bounds them) the store is looked through again for that ticket. Memory
//! stays bounded whatever the backlog: bodies of what may go now, what is in flight and the
//! lines' budget; seqs of the rest up to the cap.

use std::collections::{BTreeMap, HashMap};

use super::lines::{Lines, Ticket, Turn};
use crate::store::{Pending, Room};

/// Body bytes the window holds at most, ready and in flight together (one event at least).
/// At 18 KB a full window of 256 in flight plus as many waiting held 9 MB; this keeps about
/// 200 such events in hand, still far more than the broker needs in flight to stay busy.
pub(crate) const WINDOW_BYTES: u64 = 4 * 1024 * 1024;

/// A ticket whose next events were read past without being kept: look for them in the store
/// after `after`, up to `until`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LookAgain {
    pub(crate) ticket: Ticket,
    pub(crate) after: u64,
    pub(crate) until: u64,
}

/// The publisher's part of the outbox: events that may go now and those awaiting a confirm,
/// and the lines of the tickets that wait behind them.
///
/// Pure bookkeeping, no I/O: it says what to read (`take_due`, `take_look_again`) and what may
/// be published next.
#[derive(Debug)]
pub(crate) struct Window {
    max_in_flight: usize,
    max_bytes: u64,
    /// Body bytes of the ready and in-flight events.
    held_bytes: u64,
    next_after: Option<u64>,
    /// Events that may go now, oldest first: at most one per ticket among these, those in
    /// flight and those due.
    ready: BTreeMap<u64, Pending>,
    in_flight: HashMap<u64, Pending>,
    /// When each event the window holds first went to the broker (unix ms), for the event
    /// index's timeline: kept through a nack or a new session's resend, gone with its confirm.
    published: HashMap<u64, u64>,
    lines: Lines,
    /// Next events of tickets whose turn came, to read from the store by seq.
    due: Vec<(u64, Ticket)>,
    /// Tickets whose next events are to be looked for again.
    look_again: Vec<(Ticket, u64)>,
}

impl Window {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self::with_bytes(max_in_flight, WINDOW_BYTES)
    }

    pub(crate) fn with_bytes(max_in_flight: usize, max_bytes: u64) -> Self {
        Self::with_lines(max_in_flight, max_bytes, Lines::default())
    }

    fn with_lines(max_in_flight: usize, max_bytes: u64, lines: Lines) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            max_bytes,
            held_bytes: 0,
            next_after: None,
            ready: BTreeMap::new(),
            in_flight: HashMap::new(),
            published: HashMap::new(),
            lines,
            due: Vec::new(),
            look_again: Vec::new(),
        }
    }

    /// Highest seq read so far: where a read of the segments continues.
    pub(crate) fn next_after(&self) -> Option<u64> {
        self.next_after
    }

    /// Whether to read more from the store.
    pub(crate) fn wants_more(&self) -> bool {
        self.ready.len() < self.max_in_flight && self.held_bytes < self.max_bytes
    }

    /// What to read so that up to one full window is ready behind the one in flight, within
    /// the byte budget.
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

    /// Events ready to go.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.ready.len()
    }

    /// Tickets with an event out, and the seqs kept of their later events.
    #[cfg(test)]
    pub(crate) fn lines(&self) -> (usize, usize) {
        (self.lines.tickets(), self.lines.kept())
    }

    fn make_ready(&mut self, pending: Pending) {
        self.held_bytes += Self::size(&pending);
        self.ready.insert(pending.seq, pending);
    }

    /// Takes a batch read in seq order (`seq > next_after`; anything already read is ignored):
    /// what may go now is kept ready, the rest put in its ticket's line as a seq.
    pub(crate) fn load(&mut self, batch: Vec<Pending>) {
        for pending in batch {
            if self.next_after.is_some_and(|after| pending.seq <= after) {
                continue;
            }
            self.next_after = Some(pending.seq);
            if let Some(pending) = self.lines.admit(pending) {
                self.make_ready(pending);
            }
        }
    }

    /// Moves the read position to `seq` (records read past without being loaded: unreadable
    /// ones, settled elsewhere). A seq at or below it is not read again.
    pub(crate) fn pass(&mut self, seq: u64) {
        if self.next_after.is_none_or(|after| seq > after) {
            self.next_after = Some(seq);
        }
    }

    /// Takes the oldest event that may go now and marks it in flight.
    pub(crate) fn next_publishable(&mut self) -> Option<Pending> {
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let (_, pending) = self.ready.pop_first()?;
        self.in_flight.insert(pending.seq, pending.clone());
        Some(pending)
    }

    /// The event published as `seq`, while it is in flight.
    pub(crate) fn in_flight_event(&self, seq: u64) -> Option<&Pending> {
        self.in_flight.get(&seq)
    }

    /// The in-flight `seq` went to the broker at `at_ms`; only its first time is kept.
    pub(crate) fn published(&mut self, seq: u64, at_ms: u64) {
        if self.in_flight.contains_key(&seq) {
            self.published.entry(seq).or_insert(at_ms);
        }
    }

    /// When `seq` first went to the broker, while the window holds it.
    pub(crate) fn published_at(&self, seq: u64) -> Option<u64> {
        self.published.get(&seq).copied()
    }

    /// The broker settled `seq` for good (acked, dead-lettered): its ticket's next event is due.
    pub(crate) fn confirmed(&mut self, seq: u64) -> Option<Pending> {
        let pending = self.in_flight.remove(&seq)?;
        self.published.remove(&seq);
        self.held_bytes = self.held_bytes.saturating_sub(Self::size(&pending));
        if let Some(ticket) = Ticket::of(&pending.event.meta) {
            self.next_turn(ticket);
        }
        Some(pending)
    }

    fn next_turn(&mut self, ticket: Ticket) {
        let turn = self.lines.next_turn(&ticket);
        self.take_turn(ticket, turn);
    }

    fn take_turn(&mut self, ticket: Ticket, turn: Turn) {
        match turn {
            Turn::Ready(pending) => self.make_ready(pending),
            Turn::Due(seq) => self.due.push((seq, ticket)),
            Turn::LookAfter(after) => self.look_again.push((ticket, after)),
            Turn::Free => {}
        }
    }

    /// Seqs whose turn came, to read from the store (in seq order) and hand to [`Window::load_due`].
    pub(crate) fn take_due(&mut self) -> Vec<(u64, Ticket)> {
        let mut due = std::mem::take(&mut self.due);
        due.sort_unstable_by_key(|(seq, _)| *seq);
        due
    }

    /// What the store gave for seqs taken with [`Window::take_due`]: each is ready now. One it
    /// did not give (no longer pending, or unreadable and dead-lettered) passes the turn on.
    pub(crate) fn load_due(&mut self, due: Vec<(u64, Ticket)>, read: Vec<Pending>) {
        let mut read: HashMap<u64, Pending> = read.into_iter().map(|p| (p.seq, p)).collect();
        for (seq, ticket) in due {
            match read.remove(&seq) {
                Some(pending) => self.make_ready(pending),
                None => self.next_turn(ticket),
            }
        }
    }

    /// Tickets whose next events must be looked for again in the store (up to what was read).
    pub(crate) fn take_look_again(&mut self) -> Vec<LookAgain> {
        let until = self.next_after.unwrap_or(0);
        std::mem::take(&mut self.look_again)
            .into_iter()
            .map(|(ticket, after)| LookAgain {
                ticket,
                after,
                until,
            })
            .collect()
    }

    /// How many seqs a look again may keep (at least one).
    pub(crate) fn room_to_keep(&self) -> usize {
        self.lines.room_to_keep()
    }

    /// A look again found `seqs` of the ticket in order and, if it stopped early, more after
    /// `more_after`; its first is due now.
    pub(crate) fn found(&mut self, ticket: Ticket, seqs: Vec<u64>, more_after: Option<u64>) {
        let turn = self.lines.found(&ticket, seqs, more_after);
        self.take_turn(ticket, turn);
    }

    /// Whether reads by seq or looks again are owed before more is published.
    pub(crate) fn owes_reads(&self) -> bool {
        !self.due.is_empty() || !self.look_again.is_empty()
    }

    /// A session ended: everything unconfirmed is ready again for the next one (resent with
    /// the same `message_id`: at least once); its tickets stay busy with it.
    pub(crate) fn requeue_in_flight(&mut self) {
        for (seq, pending) in self.in_flight.drain() {
            self.ready.insert(seq, pending);
        }
    }

    /// The broker refused `seq`: it is ready again, still its ticket's one event out.
    pub(crate) fn nacked(&mut self, seq: u64) -> Option<&Pending> {
        let pending = self.in_flight.remove(&seq)?;
        self.ready.insert(seq, pending);
        self.ready.get(&seq)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::event::{Change, Event, EventId, EventMeta, Kind};

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
                wa_id: None,
            }),
        }
    }

    /// The store's side, as the publisher drives it: every pending event by seq, read by seq
    /// when due and looked through again for a ticket.
    struct Outbox(BTreeMap<u64, Pending>);

    impl Outbox {
        fn new(events: &[Pending]) -> Self {
            Self(events.iter().map(|p| (p.seq, p.clone())).collect())
        }

        /// Serves what the window owes: reads by seq and looks again (`limit` per read batch).
        fn serve(&self, window: &mut Window, limit: usize) {
            while window.owes_reads() {
                let due = window.take_due();
                let read = due
                    .iter()
                    .filter_map(|(seq, _)| self.0.get(seq).cloned())
                    .collect();
                window.load_due(due, read);
                for look in window.take_look_again() {
                    let room = window.room_to_keep();
                    let mut found = Vec::new();
                    let mut more_after = None;
                    let range = self.0.range(look.after + 1..=look.until);
                    for (n, (seq, p)) in range.enumerate() {
                        // A look again reads in batches: it may stop at any batch's end.
                        if found.len() == room || (n > 0 && n % limit == 0 && !found.is_empty()) {
                            more_after = Some(found.last().copied().unwrap_or(*seq - 1));
                            break;
                        }
                        if look.ticket.holds(&p.event.meta) {
                            found.push(*seq);
                        }
                    }
                    window.found(look.ticket, found, more_after);
                }
            }
        }

        fn settle(&mut self, window: &mut Window, seq: u64) {
            window.confirmed(seq).expect("in flight");
            self.0.remove(&seq);
        }
    }

    fn publish_all(window: &mut Window) -> Vec<u64> {
        std::iter::from_fn(|| window.next_publishable())
            .map(|p| p.seq)
            .collect()
    }

    #[test]
    fn window_holds_a_ticket_while_its_event_is_in_flight() {
        let events = vec![
            pending(1, meta(1, Kind::Message, Some(5))),
            pending(2, meta(2, Kind::Message, Some(5))),
            pending(3, meta(3, Kind::Message, Some(6))),
            pending(4, meta(4, Kind::Status, None)),
            pending(5, meta(5, Kind::Message, Some(5))),
        ];
        let mut outbox = Outbox::new(&events);
        // No bytes for whole events in line: each is read back when its turn comes.
        let mut window = Window::with_lines(10, WINDOW_BYTES, Lines::with_caps(100, 100, 0));
        window.load(events);
        assert_eq!(window.next_after(), Some(5));
        assert_eq!(
            publish_all(&mut window),
            [1, 3, 4],
            "ticket 5 waits behind seq 1; other tickets and no-ticket events go"
        );
        assert_eq!(window.in_flight(), 3);
        assert_eq!(
            window.lines(),
            (2, 2),
            "tickets 5 and 6 out, seqs 2 and 5 kept"
        );

        outbox.settle(&mut window, 1);
        assert!(window.owes_reads(), "seq 2 is due");
        outbox.serve(&mut window, 100);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        assert!(
            window.next_publishable().is_none(),
            "seq 5 waits behind seq 2"
        );
        outbox.settle(&mut window, 2);
        outbox.serve(&mut window, 100);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(5));
        outbox.settle(&mut window, 5);
        outbox.settle(&mut window, 3);
        assert!(!window.owes_reads());
        assert_eq!(window.lines(), (0, 0), "every ticket free again");
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
        assert_eq!(publish_all(&mut window), [1, 2, 3]);
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
        assert!(!window.wants_more(), "a full window is still ready");
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
        assert_eq!(window.room().bytes, 2, "a nacked event is held still");
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(2));
        window.confirmed(2);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(3));
        window.confirmed(3);
        assert_eq!(window.room().bytes, 20);
        assert!(window.wants_more());
    }

    #[test]
    fn an_events_first_publish_time_is_kept_through_a_nack_and_a_new_session() {
        let mut window = Window::new(4);
        window.load(vec![pending(1, meta(1, Kind::Tags, None))]);
        window.published(1, 10);
        assert_eq!(window.published_at(1), None, "not in flight: not published");
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        window.published(1, 10);
        assert_eq!(window.published_at(1), Some(10));
        window.nacked(1);
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        window.published(1, 20);
        assert_eq!(window.published_at(1), Some(10), "the first time");
        window.requeue_in_flight();
        assert_eq!(window.next_publishable().map(|p| p.seq), Some(1));
        window.published(1, 30);
        assert_eq!(window.published_at(1), Some(10), "through a new session");
        window.confirmed(1).expect("in flight");
        assert_eq!(window.published_at(1), None, "gone with its confirm");
    }

    #[test]
    fn a_busy_tickets_next_events_kept_whole_need_no_read() {
        let events: Vec<Pending> = (1..=3)
            .map(|seq| pending(seq, meta(1, Kind::Message, Some(1))))
            .collect();
        let mut outbox = Outbox::new(&events);
        let mut window = Window::new(8);
        window.load(events);
        assert_eq!(publish_all(&mut window), [1]);
        outbox.settle(&mut window, 1);
        assert!(!window.owes_reads(), "seq 2 was kept whole");
        assert_eq!(publish_all(&mut window), [2]);
    }

    #[test]
    fn a_busy_tickets_events_are_kept_as_seqs_and_never_fill_the_window() {
        // One hot ticket's 500 events, then 20 other tickets' one each: all 20 are ready at
        // once behind the hot ticket's first, none of the hot ticket's others held as a body
        // (past the lines' byte budget, 30 bytes here: three bodies).
        let mut events: Vec<Pending> = (1..=500)
            .map(|seq| pending(seq, meta(1, Kind::Message, Some(1))))
            .collect();
        events
            .extend((501..=520).map(|seq| pending(seq, meta(2, Kind::Message, Some(seq as i64)))));
        let mut outbox = Outbox::new(&events);
        let mut window = Window::with_lines(32, WINDOW_BYTES, Lines::with_caps(1000, 1000, 30));
        window.load(events);
        assert!(window.wants_more(), "21 ready of 32");
        assert_eq!(window.waiting(), 21);
        let first = publish_all(&mut window);
        assert_eq!(first.len(), 21);
        assert_eq!(first[0], 1);
        assert_eq!(first[1..], (501..=520).collect::<Vec<_>>()[..]);
        assert_eq!(window.lines(), (21, 499));
        for seq in first {
            outbox.settle(&mut window, seq);
        }
        outbox.serve(&mut window, 100);
        assert_eq!(
            publish_all(&mut window),
            [2],
            "the hot ticket goes on, one at a time"
        );
        assert_eq!(window.lines(), (1, 498));
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
        assert_eq!(
            publish_all(&mut window),
            [1, 2],
            "seq 3 still waits behind seq 1 of its ticket"
        );
    }

    #[test]
    fn window_ignores_entries_already_loaded() {
        let mut window = Window::with_bytes(10, 1000);
        window.load(vec![
            pending(1, meta(1, Kind::Message, None)),
            pending(2, meta(2, Kind::Message, Some(5))),
        ]);
        window.load(vec![
            pending(2, meta(2, Kind::Message, Some(5))),
            pending(3, meta(3, Kind::Message, None)),
        ]);
        assert_eq!(window.waiting(), 3);
        assert_eq!(window.next_after(), Some(3));
        assert_eq!(
            window.lines(),
            (1, 0),
            "seq 2 is not put in line behind itself"
        );
        assert_eq!(
            window.room().bytes,
            1000 - 27,
            "three bodies of 9 bytes held"
        );
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// The store hands over what the window has room for.
        Read,
        /// The broker settles one event in flight: acked, or nacked (sent again later).
        Settle { pick: usize, nack: bool },
        /// The session ends.
        Requeue,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Read),
            12 => (any::<usize>(), prop::bool::weighted(0.1))
                .prop_map(|(pick, nack)| Step::Settle { pick, nack }),
            1 => Just(Step::Requeue),
        ]
    }

    /// The publisher and the broker around a window, checking what it publishes.
    struct Sim {
        window: Window,
        outbox: Outbox,
        unread: std::collections::VecDeque<Pending>,
        batch: usize,
        in_flight: Vec<u64>,
        delivered: std::collections::BTreeSet<u64>,
        last_of: HashMap<i64, u64>,
    }

    impl Sim {
        fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
            match step {
                Step::Read => {
                    if self.window.wants_more() {
                        let n = self
                            .window
                            .room()
                            .events
                            .min(self.batch)
                            .min(self.unread.len());
                        self.window.load(self.unread.drain(..n).collect());
                    }
                }
                Step::Settle { pick, nack } => {
                    if self.in_flight.is_empty() {
                        return Ok(());
                    }
                    let seq = self.in_flight.remove(pick % self.in_flight.len());
                    if nack {
                        self.window.nacked(seq);
                    } else {
                        let ticket = self.outbox.0[&seq].event.meta.ticket_id;
                        self.outbox.settle(&mut self.window, seq);
                        prop_assert!(self.delivered.insert(seq), "seq {} twice", seq);
                        if let Some(ticket) = ticket {
                            let last = self.last_of.insert(ticket, seq);
                            prop_assert!(
                                last.is_none_or(|l| l < seq),
                                "ticket {}: {} after {:?}",
                                ticket,
                                seq,
                                last
                            );
                        }
                    }
                }
                Step::Requeue => {
                    self.window.requeue_in_flight();
                    self.in_flight.clear();
                }
            }
            self.outbox.serve(&mut self.window, self.batch);
            while let Some(p) = self.window.next_publishable() {
                if let Some(ticket) = p.event.meta.ticket_id {
                    let outbox = &self.outbox.0;
                    prop_assert!(
                        !self
                            .in_flight
                            .iter()
                            .any(|s| outbox[s].event.meta.ticket_id == Some(ticket)),
                        "ticket {} has two in flight",
                        ticket
                    );
                }
                self.in_flight.push(p.seq);
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the tickets, caps and order of confirms: every event is published and
        /// confirmed once; a ticket never has two in flight and its events go in seq order;
        /// the seqs kept stay within the cap (one more per look again); and bodies are held
        /// only of what is in flight (a window) and ready behind it (a window, plus a read's overshoot).
        #[test]
        fn every_event_goes_once_in_ticket_order_within_the_caps(
            tickets in proptest::collection::vec(prop::option::weighted(0.8, 0i64..6), 1..300),
            max_in_flight in 1usize..8,
            max_kept in 0usize..12,
            per_ticket in 1usize..5,
            line_bytes in prop::sample::select(vec![0u64, 30, u64::MAX]),
            batch in 1usize..5,
            steps in proptest::collection::vec(step(), 1..400),
        ) {
            let events: Vec<Pending> = tickets
                .iter()
                .enumerate()
                .map(|(n, ticket)| pending(n as u64 + 1, meta(n as u8, Kind::Message, *ticket)))
                .collect();
            let mut sim = Sim {
                window: Window::with_lines(max_in_flight, u64::MAX, Lines::with_caps(max_kept, per_ticket, line_bytes)),
                outbox: Outbox::new(&events),
                unread: events.iter().cloned().collect(),
                batch,
                in_flight: Vec::new(),
                delivered: Default::default(),
                last_of: HashMap::new(),
            };
            let check = |sim: &Sim| -> Result<(), TestCaseError> {
                let (tickets, kept) = sim.window.lines();
                prop_assert!(kept <= max_kept + tickets, "{} seqs kept by {} tickets", kept, tickets);
                // Bodies: one window in flight and, behind it, reads while fewer than a window
                // are ready (a read may bring a batch past that). Whatever the tickets: events
                // without one fill the window like any other.
                let (ready, in_flight) = (sim.window.ready.len(), sim.window.in_flight.len());
                prop_assert!(in_flight <= max_in_flight, "{} bodies in flight", in_flight);
                prop_assert!(ready < max_in_flight + batch, "{} bodies ready", ready);
                Ok(())
            };
            for step in steps {
                sim.run(step)?;
                check(&sim)?;
            }
            // Then everything is read and acked, oldest first.
            let mut guard = 0;
            while sim.delivered.len() < events.len() {
                guard += 1;
                prop_assert!(guard < 10_000, "stuck with {} of {} delivered", sim.delivered.len(), events.len());
                sim.run(Step::Read)?;
                sim.run(Step::Settle { pick: 0, nack: false })?;
                check(&sim)?;
            }
            prop_assert_eq!(sim.window.lines(), (0, 0));
            prop_assert!(!sim.window.owes_reads());
        }
    }
}
