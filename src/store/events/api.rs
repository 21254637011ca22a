//! The event index as the store's API: search newest first, the records of one event id, an
//! event's stored record, and the replay of one event (I16).

use crate::event::{Change, Event, EventId, Format, Kind};
use crate::store::error::StoreError;
use crate::store::index;
use crate::store::layout::marks::State;
use crate::store::layout::summary::Summary;
use crate::store::segment;
use crate::store::Store;

/// What became of an event, as a search filters it and shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventState {
    /// Stored, not yet confirmed by the broker: waiting, or handed to it and awaiting the confirm.
    /// Being in flight is not a state of its own (the confirm follows within milliseconds, and
    /// the publish time comes with it: `published_at_ms`), so no filter offers it.
    Pending,
    /// Confirmed by the broker (including one replayed since).
    Confirmed,
    /// Refused for good: a dead letter.
    Dead,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Confirmed => "confirmed",
            EventState::Dead => "dead",
        }
    }

    pub fn from_name(name: &str) -> Option<EventState> {
        [EventState::Pending, EventState::Confirmed, EventState::Dead]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// The marks state codes this state covers.
    pub(super) fn codes(self) -> &'static [u8] {
        match self {
            EventState::Pending => &[0],
            EventState::Confirmed => &[1, 3],
            EventState::Dead => &[2],
        }
    }

    fn of(state: State) -> EventState {
        match state {
            State::Pending => EventState::Pending,
            State::Delivered | State::Replayed => EventState::Confirmed,
            State::Dead => EventState::Dead,
        }
    }
}

/// Which indexed events a search returns; every field narrows it.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub ticket: Option<i64>,
    /// WhatsApp message id.
    pub wa_id: Option<String>,
    pub id: Option<EventId>,
    pub kind: Option<Kind>,
    pub connection: Option<String>,
    pub state: Option<EventState>,
    /// Received at or after (unix ms).
    pub since_ms: Option<u64>,
    /// Received before (unix ms).
    pub until_ms: Option<u64>,
}

/// One stored event as the index knows it: no body, no personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedEvent {
    pub seq: u64,
    pub id: EventId,
    pub received_at_ms: u64,
    pub stored_at_ms: u64,
    pub connection: String,
    pub company_id: Option<i64>,
    pub kind: Kind,
    pub change: Option<Change>,
    pub ticket_id: Option<i64>,
    pub wa_id: Option<String>,
    pub format: Option<Format>,
    /// Bytes of the stored (redacted) body.
    pub size: u32,
    pub state: EventState,
    /// When the publisher first handed it to the broker; known once it is settled (it comes
    /// with the confirm), unknown for records settled by an earlier version.
    pub published_at_ms: Option<u64>,
    /// When it was confirmed or dead-lettered, where known: for a replayed record, its first
    /// confirm (unknown if replayed by an earlier version).
    pub settled_at_ms: Option<u64>,
    /// When this record was put back by a replay (its copy is a later record).
    pub replayed_at_ms: Option<u64>,
    pub duplicates: u32,
    pub last_duplicate_ms: Option<u64>,
}

/// Candidates taken per round of a search (more if some fail their check on the summary).
const ROUND: usize = 512;

impl Store {
    /// Events matching `filter` with a seq below `before_seq`, newest first, at most `limit`;
    /// and whether more follow (the next page starts below the last one's seq).
    pub fn events_search(
        &self,
        filter: &EventFilter,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<IndexedEvent>, bool), StoreError> {
        let events = &self.inner.events;
        let mut before = before_seq.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        while out.len() <= limit {
            let want = (limit + 1 - out.len()).min(ROUND);
            let seqs = events.candidates(filter, before, want);
            let Some(&last) = seqs.last() else { break };
            before = last;
            for seq in seqs {
                if let Some(event) = self.indexed(seq)? {
                    if matches(filter, &event) {
                        out.push(event);
                    }
                }
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }

    /// Every indexed record of `id`, oldest first: the event, then any copies replays made.
    pub fn events_of(&self, id: &EventId) -> Result<Vec<IndexedEvent>, StoreError> {
        let mut out = Vec::new();
        for seq in self.inner.events.seqs_of(id) {
            if let Some(event) = self.indexed(seq)? {
                if event.id == *id {
                    out.push(event);
                }
            }
        }
        Ok(out)
    }

    /// How many events the index holds.
    pub fn events_indexed(&self) -> usize {
        self.inner.events.len()
    }

    /// Bytes of the index's rows in memory.
    pub fn events_index_heap_bytes(&self) -> usize {
        self.inner.events.heap_bytes()
    }

    /// Bytes of the event index's summary files (copies of rewritten blocks included), for
    /// the benchmarks.
    pub fn events_index_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.inner.events.file_bytes())
    }

    /// The stored record of `seq` (its body redacted, as relayed): from its segment, or from
    /// its dead letter once the segment is gone.
    pub fn event_record(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        let at = index::lock(&self.inner.table).entry_at(seq);
        if let Some((file, entry)) = at {
            match segment::read(&file, entry.offset, entry.len) {
                Ok((_, event)) => return Ok(Some(event)),
                Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.dead_get(seq)?.map(|letter| letter.event))
    }

    /// The indexed event `seq`: its summary, state and duplicates; `None` if not indexed.
    fn indexed(&self, seq: u64) -> Result<Option<IndexedEvent>, StoreError> {
        let Some(summary) = self.summary(seq)? else {
            return Ok(None);
        };
        let entry = index::lock(&self.inner.table)
            .entry_at(seq)
            .map(|(_, entry)| entry);
        let (state, settled_at_ms, replayed_at_ms) = match entry {
            Some(e) => match e.state {
                State::Pending => (EventState::Pending, None, None),
                State::Delivered | State::Dead => (EventState::of(e.state), Some(e.at_ms), None),
                // The replay's mark took the confirm's time: the summary kept it.
                State::Replayed => (
                    EventState::Confirmed,
                    summary.confirmed_at_ms,
                    Some(e.at_ms),
                ),
            },
            // Its segment went between the summary's read and now.
            None => return Ok(None),
        };
        let dups = self.inner.events.dups_of(&summary.id);
        Ok(Some(IndexedEvent {
            seq,
            id: summary.id,
            received_at_ms: summary.received_at_ms,
            stored_at_ms: summary.stored_at_ms,
            connection: summary.connection,
            company_id: summary.company_id,
            kind: summary.kind,
            change: summary.change,
            ticket_id: summary.ticket_id,
            wa_id: summary.wa_id,
            format: summary.format,
            size: summary.size,
            state,
            published_at_ms: summary.published_at_ms,
            settled_at_ms,
            replayed_at_ms,
            duplicates: dups.map_or(0, |d| d.0),
            last_duplicate_ms: dups.map(|d| d.1),
        }))
    }

    fn summary(&self, seq: u64) -> Result<Option<Summary>, StoreError> {
        let Some(file) = self.inner.events.file_of(seq) else {
            return Ok(None);
        };
        let block = file.block_at(seq)?.unwrap_or_default();
        Ok(block.into_iter().find(|s| s.seq == seq))
    }
}

/// The exact check of what rows only hash or cut short, and of the state now.
fn matches(filter: &EventFilter, event: &IndexedEvent) -> bool {
    filter
        .wa_id
        .as_deref()
        .is_none_or(|w| event.wa_id.as_deref() == Some(w))
        && filter.id.is_none_or(|id| id == event.id)
        && filter
            .connection
            .as_deref()
            .is_none_or(|c| c == event.connection)
        && filter.ticket.is_none_or(|t| event.ticket_id == Some(t))
        && filter.kind.is_none_or(|k| k == event.kind)
        && filter.state.is_none_or(|s| s == event.state)
}
