//! The event index (I16): what became of each stored event, searchable, without its body or any
//! personal data. A segment's summary file (`file`) holds its events' summaries in blocks, and
//! sled's `event-dups` tree the duplicates answered per event id; in memory one 40-byte row per
//! event holds what a search filters on, in one list per segment, newest last, so a search over
//! a million events is a scan of 40 MB at most, with no read but the page's own summaries.
//! Per-segment lists go with their segment whole, and only the newest one has room to grow: a
//! million rows never sit in one doubling buffer (which would hold up to twice the rows, and
//! three times while it moves).
//!
//! Written by the flusher from what the writer hands over (`deferred`: the events it stored
//! and the duplicates it answered), in its batches; a row's state follows the marks the flusher
//! writes. Rows and summary files go with their segment (retention), and are rebuilt at open
//! from the segments and marks where the files lack them (`rebuild`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::event::{EventId, Kind};
use crate::store::layout::marks::{Mark, State};

mod api;
mod file;
mod rebuild;
mod write;

pub use api::{EventFilter, EventState, IndexedEvent};
pub(crate) use file::SummaryFile;
pub(crate) use rebuild::rebuild;
pub(crate) use write::{Note, Stamp, Taken};

const NO_TICKET: i64 = i64::MIN;
/// A connection past the interned ones: its rows are told apart by their summaries.
const OTHER_CONNECTION: u16 = u16::MAX;

/// One event as a search sees it (40 bytes).
#[derive(Clone, Copy, Debug)]
struct Row {
    seq: u64,
    received_ms: u64,
    ticket: i64,
    /// Hash of the WhatsApp message id (0: none); a match is checked on the summary.
    wa: u32,
    /// The event id's first 4 bytes; a match is checked on the summary.
    id: u32,
    connection: u16,
    kind: u8,
    /// A marks state code (0 pending), and [`REPLACED`].
    state: u8,
}

const _: () = assert!(std::mem::size_of::<Row>() == 40);

/// In [`Row::state`]: a replay copied the event into a later record, which a search lists in
/// its stead.
const REPLACED: u8 = 0x80;

impl Row {
    fn code(&self) -> u8 {
        self.state & !REPLACED
    }

    fn replaced(&self) -> bool {
        self.state & REPLACED != 0
    }
}

#[derive(Default)]
struct Rows {
    /// Each segment's rows in seq order, by the segment's first seq.
    parts: BTreeMap<u64, Vec<Row>>,
    connections: Vec<String>,
    connection_ids: HashMap<String, u16>,
    /// Duplicates answered per event id: how many, and when the last came.
    dups: HashMap<EventId, (u32, u64)>,
    /// Each live segment's summary file, by its first seq.
    files: BTreeMap<u64, Arc<SummaryFile>>,
}

/// The index in memory; cheap to share (`Arc`). The flusher adds to it, the writer's retention
/// takes from it, readers search it.
pub(crate) struct Events {
    rows: RwLock<Rows>,
    /// Summaries taken early, waiting for the flusher's next timed take (`write`).
    held: Mutex<write::Held>,
    /// The segments' folder, where the summary files are.
    dir: PathBuf,
}

fn id_prefix(id: &EventId) -> u32 {
    let mut head = [0u8; 4];
    head.copy_from_slice(&id.0[..4]);
    u32::from_be_bytes(head)
}

/// Stable within a process (rows are rebuilt at each open), never 0.
fn wa_hash(wa_id: &str) -> u32 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    wa_id.hash(&mut hasher);
    let hash = hasher.finish();
    ((hash ^ (hash >> 32)) as u32).max(1)
}

fn kind_code(kind: Kind) -> u8 {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

impl Events {
    pub(crate) fn new(dir: PathBuf) -> Events {
        Events {
            rows: RwLock::default(),
            held: Mutex::default(),
            dir,
        }
    }

    // Every change is a few field writes or a push: a panic leaves nothing torn.
    fn read(&self) -> RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.read().parts.values().map(Vec::len).sum()
    }

    /// Bytes the rows take in memory (capacity), for the benchmarks.
    pub(crate) fn heap_bytes(&self) -> usize {
        let rows: usize = self.read().parts.values().map(Vec::capacity).sum();
        rows * std::mem::size_of::<Row>()
    }

    /// Moves rows to the states of marks the flusher writes.
    pub(crate) fn apply_marks(&self, marks: &[Mark]) {
        if marks.is_empty() {
            return;
        }
        let mut rows = self.write();
        for mark in marks {
            if let Some(row) = rows.row_mut(mark.seq) {
                row.state = row.code().max(mark.state.code()) | (row.state & REPLACED);
            }
        }
    }

    /// Drops the rows of seqs in `[from, to)` (a segment retention deleted), the summary file
    /// of the segment `from` starts, and the duplicates of ids no row is left for; returns
    /// those ids, for sled.
    pub(crate) fn drop_range(&self, from: u64, to: u64) -> Vec<EventId> {
        let mut rows = self.write();
        let mut gone = Vec::new();
        // A segment's rows are its part; a part that straddles the range (never, as segments
        // are dropped whole) keeps the rows outside it.
        let keys: Vec<u64> = rows.parts.range(..to).map(|(&k, _)| k).collect();
        for key in keys {
            let Some(part) = rows.parts.get_mut(&key) else {
                continue;
            };
            let lo = part.partition_point(|r| r.seq < from);
            let hi = part.partition_point(|r| r.seq < to);
            gone.extend(part.drain(lo..hi).map(|r| r.id));
            if part.is_empty() {
                rows.parts.remove(&key);
            }
        }
        if rows.files.remove(&from).is_some() {
            let path = file::path(&self.dir, from);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(error = %e, file = %path.display(), "cannot delete a settled segment's summaries");
            }
        }
        if rows.dups.is_empty() {
            return Vec::new();
        }
        let mut orphans: Vec<EventId> = rows
            .dups
            .keys()
            .filter(|id| gone.contains(&id_prefix(id)))
            .copied()
            .collect();
        orphans.retain(|id| !rows.has_id(id));
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
        // The states' codes as bits (a code is below 128): one AND per row, not a slice search.
        let states = filter
            .state
            .map(|s| s.codes().iter().fold(0u128, |bits, &code| bits | 1 << code));
        let since = filter.since_ms.unwrap_or(0);
        let until = filter.until_ms.unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(limit.min(1024));
        // Part by part, each a plain slice: the scan of a million rows stays a tight loop.
        for (_, part) in rows.parts.range(..before).rev() {
            let end = part.partition_point(|r| r.seq < before);
            for row in part[..end].iter().rev() {
                if ticket.is_some_and(|t| t != row.ticket)
                    || wa.is_some_and(|w| w != row.wa)
                    || id.is_some_and(|i| i != row.id)
                    || kind.is_some_and(|k| k != row.kind)
                    || connection.is_some_and(|c| c != row.connection)
                    || row.replaced()
                    || states.is_some_and(|bits| bits & 1 << row.code() == 0)
                    || row.received_ms < since
                    || row.received_ms >= until
                {
                    continue;
                }
                out.push(row.seq);
                if out.len() >= limit {
                    return out;
                }
            }
        }
        out
    }

    /// The summary file holding `seq`'s summary, if its segment is live.
    pub(crate) fn file_of(&self, seq: u64) -> Option<Arc<SummaryFile>> {
        self.segment_of(seq).map(|(_, file)| file)
    }

    /// The first seq and summary file of `seq`'s segment, if it is live.
    fn segment_of(&self, seq: u64) -> Option<(u64, Arc<SummaryFile>)> {
        let rows = self.read();
        rows.files
            .range(..=seq)
            .next_back()
            .map(|(&first, f)| (first, f.clone()))
    }

    /// Every live segment's summary file.
    fn files(&self) -> Vec<Arc<SummaryFile>> {
        self.read().files.values().cloned().collect()
    }

    /// Bytes of the summary files (copies of rewritten blocks included).
    pub(crate) fn file_bytes(&self) -> u64 {
        self.read().files.values().map(|f| f.len()).sum()
    }

    /// Makes the summaries written so far durable (the flusher, before each sled flush).
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.files().iter().try_for_each(|file| file.sync())
    }

    /// Every seq whose row carries `id`'s prefix, oldest first.
    pub(crate) fn seqs_of(&self, id: &EventId) -> Vec<u64> {
        let prefix = id_prefix(id);
        self.read()
            .parts
            .values()
            .flatten()
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

    /// Adds the row of a summary of the segment starting at `segment` (in seq order as a rule;
    /// a late one is put in its place).
    fn add(&mut self, segment: u64, s: &crate::store::layout::summary::Summary, state: State) {
        let row = Row {
            seq: s.seq,
            received_ms: s.received_at_ms,
            ticket: s.ticket_id.unwrap_or(NO_TICKET),
            wa: s.wa_id.as_deref().map_or(0, wa_hash),
            id: id_prefix(&s.id),
            connection: self.connection_id(&s.connection),
            kind: kind_code(s.kind),
            state: state.code(),
        };
        if let Some(source) = s.replay_of.and_then(|source| self.row_mut(source)) {
            source.state |= REPLACED;
        }
        if !self.parts.contains_key(&segment) {
            // A new segment: the one before it is complete, so its list gives back its room.
            if let Some((_, before)) = self.parts.range_mut(..segment).next_back() {
                before.shrink_to_fit();
            }
        }
        let part = self.parts.entry(segment).or_default();
        match part.last() {
            Some(last) if last.seq >= row.seq => {
                let at = part.partition_point(|r| r.seq < row.seq);
                if part.get(at).is_some_and(|r| r.seq == row.seq) {
                    part[at] = row;
                } else {
                    part.insert(at, row);
                }
            }
            _ => part.push(row),
        }
    }

    /// The row of `seq`, if indexed.
    fn row_mut(&mut self, seq: u64) -> Option<&mut Row> {
        let (_, part) = self.parts.range_mut(..=seq).next_back()?;
        let at = part.binary_search_by_key(&seq, |r| r.seq).ok()?;
        part.get_mut(at)
    }

    /// The rows of seqs below `before`, newest first.
    fn newest_first(&self, before: u64) -> impl Iterator<Item = &Row> {
        self.parts.range(..before).rev().flat_map(move |(_, part)| {
            let end = part.partition_point(|r| r.seq < before);
            part[..end].iter().rev()
        })
    }

    fn has_id(&self, id: &EventId) -> bool {
        let prefix = id_prefix(id);
        // A duplicate is mostly of a recent event: newest first.
        self.newest_first(u64::MAX).any(|r| r.id == prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::summary::Summary;

    fn summary(seq: u64, replay_of: Option<u64>) -> Summary {
        // Event ids are digests: their first bytes differ.
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&u32::try_from(seq).unwrap().to_be_bytes());
        Summary {
            seq,
            id: EventId(id),
            received_at_ms: 1_000 + seq,
            stored_at_ms: 1_000 + seq,
            size: 10,
            company_id: None,
            ticket_id: Some(i64::try_from(seq % 3).unwrap()),
            kind: Kind::Message,
            connection: "c".to_owned(),
            change: None,
            format: None,
            wa_id: None,
            replay_of,
            published_at_ms: None,
            confirmed_at_ms: None,
        }
    }

    /// Three segments' rows (first seqs 1, 10, 20), one of them a replay of seq 2.
    fn three_segments() -> Rows {
        let mut rows = Rows::default();
        for (segment, seqs) in [(1, 1..=9), (10, 10..=19), (20, 20..=24)] {
            for seq in seqs {
                rows.add(segment, &summary(seq, None), State::Pending);
            }
        }
        rows.add(20, &summary(25, Some(2)), State::Pending);
        rows
    }

    #[test]
    fn rows_of_several_segments_read_newest_first_across_them() {
        let rows = three_segments();
        let all: Vec<u64> = rows.newest_first(u64::MAX).map(|r| r.seq).collect();
        assert_eq!(all, (1..=25).rev().collect::<Vec<_>>());
        let page: Vec<u64> = rows.newest_first(12).map(|r| r.seq).collect();
        assert_eq!(page, (1..12).rev().collect::<Vec<_>>());
        assert!(rows.newest_first(1).next().is_none());
        let replaced: Vec<u64> = all_rows(&rows)
            .filter(|r| r.replaced())
            .map(|r| r.seq)
            .collect();
        assert_eq!(replaced, [2]);
        // Only the newest segment's list keeps room to grow.
        for (first, part) in &rows.parts {
            if *first < 20 {
                assert_eq!(part.capacity(), part.len(), "segment {first}");
            }
        }
    }

    fn all_rows(rows: &Rows) -> impl Iterator<Item = &Row> {
        rows.parts.values().flatten()
    }

    #[test]
    fn marks_keep_the_replaced_flag_and_a_late_row_takes_its_place() {
        let mut rows = three_segments();
        let row = rows.row_mut(2).unwrap();
        row.state = row.code().max(State::Delivered.code()) | (row.state & REPLACED);
        assert!(rows.row_mut(2).unwrap().replaced());
        assert_eq!(rows.row_mut(2).unwrap().code(), State::Delivered.code());
        assert!(rows.row_mut(26).is_none());
        assert!(rows.row_mut(0).is_none());

        // A summary taken late (its seq below the newest) goes in its place, once.
        let mut late = Rows::default();
        for seq in [1, 2, 4, 5, 3, 4] {
            late.add(1, &summary(seq, None), State::Pending);
        }
        let seqs: Vec<u64> = all_rows(&late).map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_dropped_segment_takes_its_rows_and_no_other() {
        let events = Events::new(PathBuf::new());
        *events.write() = three_segments();
        assert_eq!(events.len(), 25);
        events.drop_range(10, 20);
        assert_eq!(events.len(), 15);
        let rows = events.read();
        assert_eq!(rows.parts.keys().copied().collect::<Vec<_>>(), [1, 20]);
        assert!(rows.has_id(&summary(5, None).id));
        assert!(!rows.has_id(&summary(15, None).id));
        assert!(rows.has_id(&summary(25, None).id));
    }
}
