//! Finding any event: search over the store's event index, one event's timeline, its stored body
//! and the replay of it alone, with their wire types. One implementation serves the admin API,
//! the status page and the `events` command (offline on a data dir, or through the admin API).
//! No name, phone number or text is in any answer but the body, which is asked for on its own.

use serde::{Deserialize, Serialize};

use super::{rfc3339_ms, OpsError};
use crate::event::EventId;
use crate::publish::UNROUTABLE;
use crate::store::{EventState, IndexedEvent, Replays, Store};

mod query;
use query::{cursor_of, cursor_seq};
pub use query::{parse_event_id, EventQuery, EVENTS_LIMIT, EVENTS_LIMIT_MAX};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicates {
    pub count: u32,
    pub last_at: Option<String>,
}

/// One event as listed: no body, no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    pub event_id: String,
    pub received_at: String,
    pub connection: String,
    pub company: Option<i64>,
    pub kind: String,
    pub change: Option<String>,
    /// A string, so that no reader rounds a large id.
    pub ticket: Option<String>,
    pub wa_id: Option<String>,
    pub format: Option<String>,
    pub size: u64,
    pub state: String,
    pub duplicates: Duplicates,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventSummary>,
    pub next_cursor: Option<String>,
}

/// One step of an event's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// received, stored, published, confirmed, returned, dead, replayed or duplicate.
    pub step: String,
    pub at: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    /// When the publisher first handed the event to the broker; null while unknown (not yet
    /// confirmed, or confirmed by an earlier version).
    pub published_at: Option<String>,
    /// When the broker first confirmed it (a replay keeps this time); null while unknown.
    pub confirmed_at: Option<String>,
    pub timeline: Vec<Step>,
}

/// An event's body as stored (redacted), as relayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventBody {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

fn summary_of(e: &IndexedEvent, state: EventState) -> EventSummary {
    EventSummary {
        event_id: e.id.to_string(),
        received_at: rfc3339_ms(e.received_at_ms),
        connection: e.connection.clone(),
        company: e.company_id,
        kind: e.kind.as_str().to_owned(),
        change: e.change.map(|c| c.as_str().to_owned()),
        ticket: e.ticket_id.map(|t| t.to_string()),
        wa_id: e.wa_id.clone(),
        format: e.format.map(|f| f.as_str().to_owned()),
        size: u64::from(e.size),
        state: state.as_str().to_owned(),
        duplicates: Duplicates {
            count: e.duplicates,
            last_at: e.last_duplicate_ms.map(rfc3339_ms),
        },
    }
}

pub fn events_search(store: &Store, q: &EventQuery) -> Result<EventPage, OpsError> {
    let before = q.cursor.as_deref().map(cursor_seq).transpose()?;
    let limit = q.limit.clamp(1, EVENTS_LIMIT_MAX);
    let (events, more) = store.events_search(&q.filter(), before, limit)?;
    let next_cursor = more
        .then(|| events.last().map(|e| cursor_of(e.seq)))
        .flatten();
    Ok(EventPage {
        events: events.iter().map(|e| summary_of(e, e.state)).collect(),
        next_cursor,
    })
}

/// The records of an event id, oldest first; unknown if none is indexed.
fn records(store: &Store, event_id: &str) -> Result<(EventId, Vec<IndexedEvent>), OpsError> {
    let id = parse_event_id(event_id)?;
    Ok((id, store.events_of(&id)?))
}

fn step(step: &str, at_ms: u64, detail: Option<String>) -> (u64, Step) {
    (
        at_ms,
        Step {
            step: step.to_owned(),
            at: rfc3339_ms(at_ms),
            detail,
        },
    )
}

/// The event (its first record) with the state of its latest copy, and its timeline: received,
/// stored, published, confirmed or dead, each replay and what became of its copy (published and
/// confirmed again), the duplicates answered.
pub fn event_show(store: &Store, event_id: &str) -> Result<EventDetail, OpsError> {
    let (id, records) = records(store, event_id)?;
    let (Some(first), Some(latest)) = (records.first(), records.last()) else {
        return dead_only(store, &id, event_id);
    };
    let mut steps = vec![
        step("received", first.received_at_ms, None),
        step("stored", first.stored_at_ms, None),
    ];
    for (n, record) in records.iter().enumerate() {
        // A copy's own steps say which copy they are of.
        let copy = (n > 0).then(|| format!("copy {n}"));
        if n > 0 {
            steps.push(step("replayed", record.stored_at_ms, copy.clone()));
        }
        if let Some(at) = record.published_at_ms {
            steps.push(step("published", at, copy.clone()));
        }
        if let Some(at) = record
            .settled_at_ms
            .filter(|_| record.state == EventState::Confirmed)
        {
            steps.push(step("confirmed", at, copy.clone()));
        }
        if record.state == EventState::Dead {
            let reason = store.dead_get(record.seq)?.map(|letter| letter.reason);
            let at = record.settled_at_ms.unwrap_or(record.stored_at_ms);
            steps.extend(dead_steps(at, reason));
        }
        // A replay whose copy is no longer indexed still shows.
        if let Some(at) = record.replayed_at_ms.filter(|_| n + 1 == records.len()) {
            steps.push(step("replayed", at, None));
        }
    }
    if let Some(last) = first.last_duplicate_ms {
        let n = first.duplicates;
        let detail = if n == 1 {
            "1 duplicate".to_owned()
        } else {
            format!("{n} duplicates")
        };
        steps.push(step("duplicate", last, Some(detail)));
    }
    // Stable: steps of one moment keep their order of life.
    steps.sort_by_key(|(at, _)| *at);
    let confirmed_at = first
        .settled_at_ms
        .filter(|_| first.state == EventState::Confirmed);
    Ok(EventDetail {
        summary: summary_of(first, latest.state),
        published_at: first.published_at_ms.map(rfc3339_ms),
        confirmed_at: confirmed_at.map(rfc3339_ms),
        timeline: steps.into_iter().map(|(_, s)| s).collect(),
    })
}

/// An event whose records are no longer indexed but whose dead letter is kept.
fn dead_only(store: &Store, id: &EventId, event_id: &str) -> Result<EventDetail, OpsError> {
    let letter = store
        .dead_find(id)?
        .pop()
        .ok_or_else(|| OpsError::UnknownEvent(event_id.to_owned()))?;
    let meta = &letter.event.meta;
    let indexed = IndexedEvent {
        seq: letter.seq,
        id: *id,
        received_at_ms: meta.received_at_ms,
        stored_at_ms: meta.received_at_ms,
        connection: meta.connection.clone(),
        company_id: meta.company_id,
        kind: meta.kind,
        change: meta.change,
        ticket_id: meta.ticket_id,
        wa_id: crate::event::stored_wa_id(&letter.event.body),
        format: meta.format,
        size: u32::try_from(letter.event.body.len()).unwrap_or(u32::MAX),
        state: EventState::Dead,
        published_at_ms: None,
        settled_at_ms: Some(letter.dead_at_ms),
        replayed_at_ms: None,
        duplicates: 0,
        last_duplicate_ms: None,
    };
    let mut steps = vec![step("received", meta.received_at_ms, None)];
    steps.extend(dead_steps(letter.dead_at_ms, Some(letter.reason.clone())));
    Ok(EventDetail {
        summary: summary_of(&indexed, EventState::Dead),
        published_at: None,
        confirmed_at: None,
        timeline: steps.into_iter().map(|(_, s)| s).collect(),
    })
}

/// How an event ended as a dead letter: one the broker returned (no queue bound to its routing
/// key, `unroutable: …` from the publisher) was returned first, then dead-lettered.
fn dead_steps(at_ms: u64, reason: Option<String>) -> Vec<(u64, Step)> {
    let returned = reason.as_deref().is_some_and(|r| r.starts_with(UNROUTABLE));
    let mut steps = Vec::with_capacity(2);
    if returned {
        steps.push(step("returned", at_ms, None));
    }
    steps.push(step("dead", at_ms, reason));
    steps
}

/// The body as stored (already redacted), as it was relayed.
pub fn event_body(store: &Store, event_id: &str) -> Result<EventBody, OpsError> {
    let (id, records) = records(store, event_id)?;
    for record in records.iter().rev() {
        if let Some(event) = store.event_record(record.seq)? {
            return Ok(body_of(&event));
        }
    }
    match store.dead_find(&id)?.pop() {
        Some(letter) => Ok(body_of(&letter.event)),
        None => Err(OpsError::UnknownEvent(event_id.to_owned())),
    }
}

fn body_of(event: &crate::event::Event) -> EventBody {
    EventBody {
        content_type: event.meta.body.content_type().to_owned(),
        bytes: event.body.to_vec(),
    }
}

/// What puts this one event back into the outbox with its `message_id` (blocking: sled and
/// segment reads): its latest confirmed record (kept delivered events), or its dead letter.
/// Put back with [`crate::ops::put_back`]; durable when that returns.
pub fn event_replay_read(store: &Store, event_id: &str) -> Result<Replays, OpsError> {
    let (id, records) = records(store, event_id)?;
    for record in records.iter().rev() {
        let replayable = match record.state {
            EventState::Confirmed => record.replayed_at_ms.is_none(),
            EventState::Dead => true,
            EventState::Pending => false,
        };
        if replayable {
            let replays = store.read_replay_event(record.seq)?;
            if !replays.is_empty() {
                return Ok(replays);
            }
        }
    }
    if let Some(letter) = store.dead_find(&id)?.pop() {
        return Ok(store.read_requeue_dead(Some(&[letter.seq]))?);
    }
    if records.is_empty() {
        return Err(OpsError::UnknownEvent(event_id.to_owned()));
    }
    Err(OpsError::NotReplayable(event_id.to_owned()))
}
