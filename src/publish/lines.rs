//! Per-ticket lines of the publisher's window: which tickets have an event out (ready or in
//! flight), and their later events that were read past: whole while a small byte budget lasts
//! (a ticket busy for a round trip or two, the common case, costs no read back), then as seqs
//! only (their bodies stay in the segments until their turn), up to a cap; past it, only where
//! to look again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::event::{Event, EventMeta};
use crate::store::Pending;

/// Body bytes of the events kept whole in lines, over all of them: at 1.5 KB about 700
/// events, at 18 KB about 56.
pub(crate) const LINE_BYTES: u64 = 1024 * 1024;

/// Seqs kept over all lines: 8 bytes each, so half a megabyte at most, whatever the backlog.
pub(crate) const MAX_KEPT: usize = 65_536;
/// Seqs one line keeps at most, so that one busy ticket leaves room for the others' (and a
/// look again finds at most this many at once).
pub(crate) const MAX_KEPT_PER_TICKET: usize = 8_192;

/// Events of one ticket must reach the broker in order; this identifies the ticket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ticket {
    connection: String,
    company: Option<i64>,
    id: i64,
}

impl Ticket {
    pub(crate) fn of(meta: &EventMeta) -> Option<Ticket> {
        meta.ticket_id.map(|id| Ticket {
            connection: meta.connection.clone(),
            company: meta.company_id,
            id,
        })
    }

    /// Whether `meta` is an event of this ticket.
    pub(crate) fn holds(&self, meta: &EventMeta) -> bool {
        meta.ticket_id == Some(self.id)
            && meta.company_id == self.company
            && meta.connection == self.connection
    }
}

/// A later event of a busy ticket, kept in its line.
#[derive(Debug)]
enum Waiting {
    /// Whole, within the byte budget.
    Event(Pending),
    /// Its seq: read back when its turn comes.
    Seq(u64),
}

/// One ticket with an event out.
#[derive(Debug, Default)]
struct Line {
    /// Its later events read past, in order.
    kept: VecDeque<Waiting>,
    /// Its events after `kept`'s that were read past without being kept lie after this seq (and
    /// no further than the window has read).
    unkept_after: Option<u64>,
}

/// What comes after a ticket's event out was settled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Its next event, kept whole: it may go now.
    Ready(Pending),
    /// Its next event: read it and put it out.
    Due(u64),
    /// Its next events were not kept: look for them after this seq.
    LookAfter(u64),
    /// Nothing waits: the ticket is free.
    Free,
}

/// Tickets with an event out, keyed by ticket id then `(connection, company)`, so a lookup by an
/// event's meta needs no allocation.
#[derive(Debug)]
pub(crate) struct Lines {
    by_id: HashMap<i64, Vec<(String, Option<i64>, Line)>>,
    /// Events kept over all lines, whole or as seqs.
    kept: usize,
    /// Body bytes of those kept whole.
    body_bytes: u64,
    max_kept: usize,
    max_per_ticket: usize,
    max_body_bytes: u64,
}

impl Default for Lines {
    fn default() -> Self {
        Self::with_caps(MAX_KEPT, MAX_KEPT_PER_TICKET, LINE_BYTES)
    }
}

fn size(pending: &Pending) -> u64 {
    pending.event.body.len() as u64
}

/// The event with a body of its own. A body read back from the segments is a slice of the one
/// buffer its read filled (up to the window's 4 MiB), and a slice keeps all of it alive: kept
/// as is, a busy ticket's events, admitted one by one as the budget frees and each from a later
/// read, held a buffer each (22 MB of reads alive for the 1 MiB budget in a skewed backlog's
/// drain at 1.5 KB, heaptrack). A copy of at most the budget costs less than that.
fn own_body(pending: Pending) -> Pending {
    let Pending { seq, event } = pending;
    let mut event = Arc::try_unwrap(event).unwrap_or_else(|shared| Event::clone(&shared));
    event.body = bytes::Bytes::copy_from_slice(&event.body);
    Pending {
        seq,
        event: Arc::new(event),
    }
}

impl Lines {
    /// Lines keeping at most `max_kept` events in all, `max_per_ticket` for one ticket, whole
    /// while their bodies take at most `max_body_bytes`.
    pub(crate) fn with_caps(max_kept: usize, max_per_ticket: usize, max_body_bytes: u64) -> Self {
        Self {
            by_id: HashMap::new(),
            kept: 0,
            body_bytes: 0,
            max_kept,
            max_per_ticket: max_per_ticket.max(1),
            max_body_bytes,
        }
    }

    fn line(&mut self, meta: &EventMeta) -> Option<&mut Line> {
        let id = meta.ticket_id?;
        self.by_id
            .get_mut(&id)?
            .iter_mut()
            .find(|(c, co, _)| *c == meta.connection && *co == meta.company_id)
            .map(|(_, _, line)| line)
    }

    fn line_of(&mut self, ticket: &Ticket) -> Option<&mut Line> {
        self.by_id
            .get_mut(&ticket.id)?
            .iter_mut()
            .find(|(c, co, _)| *c == ticket.connection && *co == ticket.company)
            .map(|(_, _, line)| line)
    }

    /// An event read in seq order: back when it may go out now (it has no ticket, or its
    /// ticket had none out, and now has), `None` when its ticket is busy and it was put in line
    /// behind (whole, as a seq, or only as where to look again).
    pub(crate) fn admit(&mut self, pending: Pending) -> Option<Pending> {
        let meta = &pending.event.meta;
        let Some(id) = meta.ticket_id else {
            return Some(pending);
        };
        let full = self.kept >= self.max_kept;
        let whole = self.body_bytes + size(&pending) <= self.max_body_bytes;
        let per_ticket = self.max_per_ticket;
        let Some(line) = self.line(meta) else {
            let key = (meta.connection.clone(), meta.company_id, Line::default());
            self.by_id.entry(id).or_default().push(key);
            return Some(pending);
        };
        if line.unkept_after.is_some() || full || line.kept.len() >= per_ticket {
            // Once one is not kept, none after it is: they are looked for again in order.
            line.unkept_after
                .get_or_insert(pending.seq.saturating_sub(1));
            return None;
        }
        if whole {
            let bytes = size(&pending);
            line.kept.push_back(Waiting::Event(own_body(pending)));
            self.body_bytes += bytes;
        } else {
            line.kept.push_back(Waiting::Seq(pending.seq));
        }
        self.kept += 1;
        None
    }

    /// The ticket's event out was settled (or could not be read): what it does next.
    pub(crate) fn next_turn(&mut self, ticket: &Ticket) -> Turn {
        let Some(line) = self.line_of(ticket) else {
            return Turn::Free;
        };
        match line.kept.pop_front() {
            Some(Waiting::Seq(seq)) => {
                self.kept -= 1;
                return Turn::Due(seq);
            }
            Some(Waiting::Event(pending)) => {
                self.kept -= 1;
                self.body_bytes -= size(&pending);
                return Turn::Ready(pending);
            }
            None => {}
        }
        if let Some(after) = line.unkept_after {
            return Turn::LookAfter(after);
        }
        self.free(ticket);
        Turn::Free
    }

    fn free(&mut self, ticket: &Ticket) {
        if let Some(held) = self.by_id.get_mut(&ticket.id) {
            held.retain(|(c, co, _)| !(*c == ticket.connection && *co == ticket.company));
            if held.is_empty() {
                self.by_id.remove(&ticket.id);
            }
        }
    }

    /// How many seqs a look again may keep for one ticket (always one, so it moves on).
    pub(crate) fn room_to_keep(&self) -> usize {
        self.max_kept
            .saturating_sub(self.kept)
            .clamp(1, self.max_per_ticket)
    }

    /// A look again after a [`Turn::LookAfter`] found `seqs` of the ticket, in order, and
    /// stopped after `more_after` (`None`: it read up to where the window had read). Returns
    /// the ticket's next turn.
    pub(crate) fn found(
        &mut self,
        ticket: &Ticket,
        seqs: Vec<u64>,
        more_after: Option<u64>,
    ) -> Turn {
        let Some(line) = self.line_of(ticket) else {
            return Turn::Free;
        };
        let added = seqs.len();
        line.kept.extend(seqs.into_iter().map(Waiting::Seq));
        line.unkept_after = more_after;
        self.kept += added;
        self.next_turn(ticket)
    }

    /// Seqs kept over all lines.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }

    /// Tickets with an event out.
    #[cfg(test)]
    pub(crate) fn tickets(&self) -> usize {
        self.by_id.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::event::Kind;
    use crate::publish::window::tests::meta;

    fn pending(seq: u64, body: Bytes) -> Pending {
        Pending {
            seq,
            event: Arc::new(Event {
                meta: meta(seq as u8, Kind::Message, Some(1)),
                body,
                earlier_id: None,
                wa_id: None,
            }),
        }
    }

    /// An event kept whole holds its own body, not the read buffer it was sliced from.
    #[test]
    fn a_kept_event_does_not_hold_its_read_buffer() {
        let read = Bytes::from(vec![b'x'; 1 << 20]);
        let range = read.as_ptr() as usize..read.as_ptr() as usize + read.len();
        let mut lines = Lines::default();
        assert!(lines.admit(pending(1, read.slice(..100))).is_some());
        assert!(lines.admit(pending(2, read.slice(100..300))).is_none());
        let ticket = Ticket::of(&meta(0, Kind::Message, Some(1))).unwrap();
        let Turn::Ready(kept) = lines.next_turn(&ticket) else {
            panic!("the kept event should be ready");
        };
        assert_eq!(kept.seq, 2);
        assert_eq!(kept.event.body, read.slice(100..300));
        assert!(
            !range.contains(&(kept.event.body.as_ptr() as usize)),
            "the kept body still points into the read buffer"
        );
    }
}
