//! The event index (I16): what became of each stored event, searchable, without its body or any
//! personal data. In sled a segment's `events@` tree holds its events' summaries in blocks, and
//! `event-dups` the duplicates answered per event id; in memory one 48-byte row per event holds
//! what a search filters on, newest last, so a search over a million events is a scan of 48 MB
//! at most, with no sled read but the page's own summaries.
//!
//! Written by the flusher from what the writer hands over (`deferred`: the events it stored
//! and the duplicates it answered), in its batches; a row's state follows the marks the flusher
//! writes. Rows and trees go with their segment (retention), and are rebuilt at open from the
//! segments and marks where sled lacks them (`rebuild`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::event::{EventId, Kind};
use crate::store::layout::marks::{Mark, State};

mod api;
mod rebuild;
mod write;

pub use api::{EventFilter, EventState, IndexedEvent};
pub(crate) use rebuild::rebuild;
pub(crate) use write::{Note, Stamp, Taken};

const NO_TICKET: i64 = i64::MIN;
/// A connection past the interned ones: its rows are told apart by their summaries.
const OTHER_CONNECTION: u16 = u16::MAX;

/// One event as a search sees it (48 bytes).
#[derive(Clone, Copy, Debug)]
struct Row {
    seq: u64,
    received_ms: u64,
    ticket: i64,
    /// Hash of the WhatsApp message id (0: none); a match is checked on the summary.
    wa: u64,
    /// The event id's first 8 bytes; a match is checked on the summary.
    id: u64,
    connection: u16,
    kind: u8,
    /// A marks state code (0 pending).
    state: u8,
    /// A replay copied it into a later record, which a search lists in its stead.
    replaced: bool,
}

#[derive(Default)]
struct Rows {
    /// In seq order.
    rows: Vec<Row>,
    connections: Vec<String>,
    connection_ids: HashMap<String, u16>,
    /// Duplicates answered per event id: how many, and when the last came.
    dups: HashMap<EventId, (u32, u64)>,
    /// Each live segment's `events@` tree, by its first seq.
    trees: std::collections::BTreeMap<u64, sled::Tree>,
}

/// The index in memory; cheap to share (`Arc`). The flusher adds to it, the writer's retention
/// takes from it, readers search it.
#[derive(Default)]
pub(crate) struct Events {
    rows: RwLock<Rows>,
    /// Summaries taken early, waiting for the flusher's next timed take (`write`).
    held: Mutex<write::Held>,
}

fn id_prefix(id: &EventId) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(head)
}

/// Stable within a process (rows are rebuilt at each open), never 0.
fn wa_hash(wa_id: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    wa_id.hash(&mut hasher);
    hasher.finish().max(1)
}

fn kind_code(kind: Kind) -> u8 {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

impl Events {
    // Every change is a few field writes or a push: a panic leaves nothing torn.
    fn read(&self) -> RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.read().rows.len()
    }

    /// Bytes the rows take in memory (capacity), for the benchmarks.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.read().rows.capacity() * std::mem::size_of::<Row>()
    }

    /// Moves rows to the states of marks the flusher writes.
    pub(crate) fn apply_marks(&self, marks: &[Mark]) {
        if marks.is_empty() {
            return;
        }
        let mut rows = self.write();
        for mark in marks {
            if let Ok(at) = rows.rows.binary_search_by_key(&mark.seq, |r| r.seq) {
                let row = &mut rows.rows[at];
                row.state = row.state.max(mark.state.code());
            }
        }
    }

    /// Drops the rows of seqs in `[from, to)` (a segment retention deleted) and the
    /// duplicates of ids no row is left for; returns those ids, for sled.
    pub(crate) fn drop_range(&self, from: u64, to: u64) -> Vec<EventId> {
        let mut rows = self.write();
        let lo = rows.rows.partition_point(|r| r.seq < from);
        let hi = rows.rows.partition_point(|r| r.seq < to);
        let gone: Vec<u64> = rows.rows.drain(lo..hi).map(|r| r.id).collect();
        rows.trees.remove(&from);
        if rows.dups.is_empty() {
            return Vec::new();
        }
        let mut orphans: Vec<EventId> = rows
            .dups
            .keys()
            .filter(|id| gone.contains(&id_prefix(id)))
            .copied()
            .collect();
        orphans.retain(|id| !rows.rows.iter().any(|r| r.id == id_prefix(id)));
        for id in &orphans {
            rows.dups.remove(id);
        }
        orphans
    }

    /// The duplicates answered for `id`: how many, and when the last came.
    pub(crate) fn dups_of(&self, id: &EventId) -> Option<(u32, u64)> {
        self.read().dups.get(id).copied()
    }

    /// Seqs of rows that may match `filter`, newest first, below `before`, at most `limit`
    /// (the caller checks each on its summary and asks again from the last if some fail).
    pub(crate) fn candidates(&self, filter: &EventFilter, before: u64, limit: usize) -> Vec<u64> {
        let rows = self.read();
        let connection = match &filter.connection {
            None => None,
            Some(name) => match rows.connection_ids.get(name) {
                Some(&id) => Some(id),
                None if rows.connections.len() >= usize::from(OTHER_CONNECTION) => {
                    Some(OTHER_CONNECTION)
                }
                None => return Vec::new(),
            },
        };
        let ticket = filter.ticket;
        let wa = filter.wa_id.as_deref().map(wa_hash);
        let id = filter.id.as_ref().map(id_prefix);
        let kind = filter.kind.map(kind_code);
        let states = filter.state.map(EventState::codes);
        let since = filter.since_ms.unwrap_or(0);
        let until = filter.until_ms.unwrap_or(u64::MAX);
        let end = rows.rows.partition_point(|r| r.seq < before);
        let mut out = Vec::with_capacity(limit.min(1024));
        for row in rows.rows[..end].iter().rev() {
            if ticket.is_some_and(|t| t != row.ticket)
                || wa.is_some_and(|w| w != row.wa)
                || id.is_some_and(|i| i != row.id)
                || kind.is_some_and(|k| k != row.kind)
                || connection.is_some_and(|c| c != row.connection)
                || row.replaced
                || states.is_some_and(|s| !s.contains(&row.state))
                || row.received_ms < since
                || row.received_ms >= until
            {
                continue;
            }
            out.push(row.seq);
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    /// The `events@` tree holding `seq`'s summary, if its segment is live.
    pub(crate) fn tree_of(&self, seq: u64) -> Option<sled::Tree> {
        self.segment_of(seq).map(|(_, tree)| tree)
    }

    /// The first seq and `events@` tree of `seq`'s segment, if it is live.
    fn segment_of(&self, seq: u64) -> Option<(u64, sled::Tree)> {
        let rows = self.read();
        rows.trees
            .range(..=seq)
            .next_back()
            .map(|(&first, t)| (first, t.clone()))
    }

    /// Every live segment's `events@` tree.
    pub(crate) fn trees(&self) -> Vec<sled::Tree> {
        self.read().trees.values().cloned().collect()
    }

    /// Every seq whose row carries `id`'s prefix, oldest first.
    pub(crate) fn seqs_of(&self, id: &EventId) -> Vec<u64> {
        let prefix = id_prefix(id);
        self.read()
            .rows
            .iter()
            .filter(|r| r.id == prefix)
            .map(|r| r.seq)
            .collect()
    }
}

impl Rows {
    fn connection_id(&mut self, name: &str) -> u16 {
        if let Some(&id) = self.connection_ids.get(name) {
            return id;
        }
        if self.connections.len() >= usize::from(OTHER_CONNECTION) {
            return OTHER_CONNECTION;
        }
        let id = self.connections.len() as u16;
        self.connections.push(name.to_owned());
        self.connection_ids.insert(name.to_owned(), id);
        id
    }

    /// Adds the row of a summary (in seq order as a rule; a late one is put in its place).
    fn add(&mut self, s: &crate::store::layout::summary::Summary, state: State) {
        let row = Row {
            seq: s.seq,
            received_ms: s.received_at_ms,
            ticket: s.ticket_id.unwrap_or(NO_TICKET),
            wa: s.wa_id.as_deref().map_or(0, wa_hash),
            id: id_prefix(&s.id),
            connection: self.connection_id(&s.connection),
            kind: kind_code(s.kind),
            state: state.code(),
            replaced: false,
        };
        if let Some(source) = s.replay_of {
            if let Ok(at) = self.rows.binary_search_by_key(&source, |r| r.seq) {
                self.rows[at].replaced = true;
            }
        }
        match self.rows.last() {
            Some(last) if last.seq >= row.seq => {
                let at = self.rows.partition_point(|r| r.seq < row.seq);
                if self.rows.get(at).is_some_and(|r| r.seq == row.seq) {
                    self.rows[at] = row;
                } else {
                    self.rows.insert(at, row);
                }
            }
            _ => self.rows.push(row),
        }
    }

    fn has_id(&self, id: &EventId) -> bool {
        let prefix = id_prefix(id);
        // A duplicate is mostly of a recent event: newest first.
        self.rows.iter().rev().any(|r| r.id == prefix)
    }
}
