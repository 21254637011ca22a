//! The index of every live segment (`Segment`) and the outbox totals over them (`Table`).

use std::collections::{vec_deque, BTreeMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::entry::{Changed, Entry};
use super::packed::{self, Packed};
use crate::store::layout::marks::State;
use crate::store::types::Room;

/// Settled records at the head of a segment's entries that are packed together: small enough
/// that the entries stay a few window's worth, large enough that packing is rare.
const PACK_AFTER: usize = 1024;

pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    /// Shared read handle: readers `pread` it outside the table's lock.
    pub(crate) file: Arc<File>,
    pub(crate) marks: sled::Tree,
    pub(crate) len: u64,
    /// In seq order: settled records packed, then the rest as entries.
    packed: Packed,
    entries: VecDeque<Entry>,
    pub(crate) pending: u64,
    /// Kept delivered records (state `Delivered`) and their bytes.
    pub(crate) delivered: u64,
    pub(crate) delivered_bytes: u64,
    /// Latest settle time: retention counts a fully settled segment's age from it.
    pub(crate) last_settled_ms: u64,
    /// Number of the last marks batch that changed this segment (see `ledger`).
    pub(crate) marks_batch: u64,
    /// No pending entry before this index in `entries` (states only ever leave `Pending`).
    first_pending: usize,
}

impl Segment {
    pub(crate) fn new(path: PathBuf, file: Arc<File>, marks: sled::Tree) -> Segment {
        Segment {
            path,
            file,
            marks,
            len: 0,
            packed: Packed::default(),
            entries: VecDeque::new(),
            pending: 0,
            delivered: 0,
            delivered_bytes: 0,
            last_settled_ms: 0,
            marks_batch: 0,
            first_pending: 0,
        }
    }

    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.entries
            .back()
            .map(|e| e.seq)
            .or_else(|| self.packed.last_seq())
    }

    /// Every record as an entry again (for a change to a packed one; packed after it).
    fn unpack(&mut self) {
        if self.packed.len() > 0 {
            let mut entries = VecDeque::from(std::mem::take(&mut self.packed).unpack());
            entries.append(&mut self.entries);
            self.entries = entries;
            self.first_pending = 0;
        }
    }

    /// The records with `seq >= from`, in order.
    fn entries_from(&self, from: u64) -> EntriesFrom<'_> {
        let skip = self.entries.partition_point(|e| e.seq < from);
        EntriesFrom {
            packed: self
                .packed
                .last_seq()
                .is_some_and(|last| last >= from)
                .then(|| self.packed.iter_from(from)),
            entries: self.entries.range(skip..),
        }
    }

    /// Packs the settled entries before the first pending one once there are enough of them,
    /// or all of them once the segment is closed and settled (`closed`).
    fn pack(&mut self, closed: bool) {
        self.advance_first_pending();
        let settled = if closed && self.is_settled() {
            self.entries.len()
        } else {
            self.first_pending
        };
        if settled == 0 || (!closed && settled < PACK_AFTER) {
            return;
        }
        for entry in self.entries.drain(..settled) {
            self.packed.push(&entry);
        }
        self.first_pending -= settled.min(self.first_pending);
        if closed && self.entries.is_empty() {
            self.packed.shrink_to_fit();
            self.entries = VecDeque::new();
        }
    }

    #[cfg(test)]
    pub(crate) fn is_packed(&self) -> bool {
        self.entries.is_empty() && self.packed.len() > 0
    }

    /// Counts a record added, by state.
    fn count(&mut self, entry: &Entry) {
        match entry.state {
            State::Pending => self.pending += 1,
            State::Delivered => {
                self.delivered += 1;
                self.delivered_bytes += u64::from(entry.len);
            }
            State::Dead | State::Replayed => {}
        }
    }

    /// Adds a record found or written; counts it by state.
    pub(crate) fn push(&mut self, entry: Entry) {
        self.count(&entry);
        if entry.state != State::Pending {
            self.last_settled_ms = self.last_settled_ms.max(entry.at_ms);
            if self.entries.is_empty() && self.packed.last_seq().is_none_or(|l| l < entry.seq) {
                // Recovery finds mostly settled records: they need never be entries.
                self.packed.push(&entry);
                return;
            }
        }
        self.entries.push_back(entry);
    }

    /// Adds a record amid those found (a pending one made out in damage, found after the
    /// records around it); counts it by state as [`Segment::push`] does. False when its seq
    /// is there already.
    pub(crate) fn insert(&mut self, entry: Entry) -> bool {
        self.unpack();
        let at = self.entries.partition_point(|e| e.seq < entry.seq);
        if self.entries.get(at).is_some_and(|e| e.seq == entry.seq) {
            return false;
        }
        self.count(&entry);
        self.entries.insert(at, entry);
        self.first_pending = self.first_pending.min(at);
        true
    }

    /// Where `seq` lies in `entries`, unpacking the segment if it is a packed record.
    fn index_of(&mut self, seq: u64) -> Option<usize> {
        if self.packed.last_seq().is_some_and(|last| last >= seq) {
            self.unpack();
        }
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    fn advance_first_pending(&mut self) {
        let mut first = self.first_pending;
        while self
            .entries
            .get(first)
            .is_some_and(|e| e.state != State::Pending)
        {
            first += 1;
        }
        self.first_pending = first;
    }

    /// Whether no record in it is pending: the one meaning of a settled segment.
    pub(crate) fn is_settled(&self) -> bool {
        self.pending == 0
    }
}

/// The table behind its lock. Updates are plain field writes the writer makes in one go: a
/// panic leaves nothing torn, so a poisoned lock is taken as it is.
pub(crate) fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// Segments by their first seq, oldest first, and the outbox totals over them.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) segments: BTreeMap<u64, Segment>,
    pub(crate) outbox: u64,
    pub(crate) outbox_bytes: u64,
}

impl Table {
    pub(crate) fn added_pending(&mut self, len: u32) {
        self.outbox += 1;
        self.outbox_bytes += u64::from(len);
    }

    fn locate(&mut self, seq: u64) -> Option<(u64, &mut Segment, usize)> {
        let (&first, segment) = self.segments.range_mut(..=seq).next_back()?;
        let index = segment.index_of(seq)?;
        Some((first, segment, index))
    }

    /// Read where the entries lie: a packed segment is not unpacked for it (a replay asks this
    /// of every record it may take, and most are then marked in the same group, or not at all).
    pub(crate) fn state_of(&self, seq: u64) -> Option<State> {
        let (_, segment) = self.segments.range(..=seq).next_back()?;
        let entry = segment.entries_from(seq).next()?;
        (entry.seq == seq).then_some(entry.state)
    }

    /// The record `seq` with its segment's read handle (packed or not), for the event index.
    pub(crate) fn entry_at(&self, seq: u64) -> Option<(Arc<File>, Entry)> {
        let (_, segment) = self.segments.range(..=seq).next_back()?;
        let entry = segment.entries_from(seq).next()?;
        (entry.seq == seq).then(|| (Arc::clone(&segment.file), entry))
    }

    /// Every record of the segment starting at `first`, in seq order (the event index's rebuild).
    pub(crate) fn entries_of(&self, first: u64) -> Vec<Entry> {
        self.segments
            .get(&first)
            .map(|segment| segment.entries_from(0).collect())
            .unwrap_or_default()
    }

    /// Packs every settled segment but the active one that is not packed yet: once when it is
    /// settled, and again after a replay unpacked it to mark records (`transition`).
    pub(crate) fn pack_settled(&mut self, active_first: u64) {
        for (&first, segment) in &mut self.segments {
            segment.pack(first != active_first);
        }
    }

    /// Moves `seq` from `from` to `to`; `None` when it is not in that state (already settled,
    /// or in a segment retention dropped).
    pub(crate) fn transition(
        &mut self,
        seq: u64,
        from: State,
        to: State,
        at_ms: u64,
    ) -> Option<Changed> {
        let (first, segment, index) = self.locate(seq)?;
        let entry = &mut segment.entries[index];
        if entry.state != from {
            return None;
        }
        let left_at_ms = entry.at_ms;
        entry.state = to;
        entry.at_ms = at_ms;
        let entry = *entry;
        let bytes = u64::from(entry.len);
        match from {
            State::Pending => segment.pending = segment.pending.saturating_sub(1),
            State::Delivered => {
                segment.delivered = segment.delivered.saturating_sub(1);
                segment.delivered_bytes = segment.delivered_bytes.saturating_sub(bytes);
            }
            State::Dead | State::Replayed => {}
        }
        if to == State::Delivered {
            segment.delivered += 1;
            segment.delivered_bytes += bytes;
        }
        segment.last_settled_ms = segment.last_settled_ms.max(at_ms);
        segment.pack(false);
        if from == State::Pending {
            self.outbox = self.outbox.saturating_sub(1);
            self.outbox_bytes = self.outbox_bytes.saturating_sub(bytes);
        }
        Some(Changed {
            segment: first,
            entry,
            left_at_ms,
        })
    }

    /// Pending records with `after < seq <= until` that fit in `room`, in seq order.
    pub(crate) fn pending_between(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Vec<(Arc<File>, Entry)> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        if after == Some(u64::MAX) || start > until {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        // The segment holding `start` may begin before it.
        let from = self
            .segments
            .range(..=start)
            .next_back()
            .map_or(0, |(first, _)| *first);
        for segment in self.segments.range(from..).map(|(_, s)| s) {
            if segment.is_settled() {
                continue;
            }
            let entries = &segment.entries;
            let skip = entries.partition_point(|e| e.seq < start);
            for entry in entries.range(skip.max(segment.first_pending)..) {
                if entry.seq > until {
                    return out;
                }
                if entry.state == State::Pending {
                    if !room.admits(out.len(), bytes, u64::from(entry.len)) {
                        return out;
                    }
                    bytes += u64::from(entry.len);
                    out.push((Arc::clone(&segment.file), *entry));
                }
            }
        }
        out
    }

    /// The records of `seqs` (in seq order) that are pending.
    pub(crate) fn pending_at(&self, seqs: &[u64]) -> Vec<(Arc<File>, Entry)> {
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let Some((_, segment)) = self.segments.range(..=seq).next_back() else {
                continue;
            };
            // A record's turn comes while it is pending, so it is an entry, never packed.
            let at = segment.entries.partition_point(|e| e.seq < seq);
            if let Some(entry) = segment.entries.get(at) {
                if entry.seq == seq && entry.state == State::Pending {
                    out.push((Arc::clone(&segment.file), *entry));
                }
            }
        }
        out
    }

    pub(crate) fn oldest_pending_ms(&self) -> Option<u64> {
        let segment = self.segments.values().find(|s| !s.is_settled())?;
        segment
            .entries
            .range(segment.first_pending..)
            .find(|e| e.state == State::Pending)
            .map(|e| e.at_ms)
    }

    /// Kept delivered records and their bytes over all segments.
    pub(crate) fn delivered(&self) -> (u64, u64) {
        self.segments
            .values()
            .fold((0, 0), |(n, b), s| (n + s.delivered, b + s.delivered_bytes))
    }

    pub(crate) fn segment_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Delivered records settled in `[since, until)`, in segment then seq order, after `after`.
    pub(crate) fn delivered_between(
        &self,
        since_ms: u64,
        until_ms: Option<u64>,
        after: Option<u64>,
        limit: usize,
    ) -> Vec<(Arc<File>, Entry)> {
        let mut out = Vec::new();
        let start = after.map_or(0, |a| a.saturating_add(1));
        for segment in self.segments.values() {
            if segment.delivered == 0 || segment.last_settled_ms < since_ms {
                continue;
            }
            for entry in segment.entries_from(start) {
                if entry.state == State::Delivered
                    && entry.at_ms >= since_ms
                    && until_ms.is_none_or(|until| entry.at_ms < until)
                {
                    if out.len() >= limit {
                        return out;
                    }
                    out.push((Arc::clone(&segment.file), entry));
                }
            }
        }
        out
    }
}

struct EntriesFrom<'a> {
    packed: Option<packed::Iter<'a>>,
    entries: vec_deque::Iter<'a, Entry>,
}

impl Iterator for EntriesFrom<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if let Some(packed) = &mut self.packed {
            match packed.next() {
                Some(entry) => return Some(entry),
                None => self.packed = None,
            }
        }
        self.entries.next().copied()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    fn segment(dir: &std::path::Path, db: &sled::Db, first: u64) -> Segment {
        let path = dir.join(format!("{first}.seg"));
        let file = Arc::new(File::create(&path).unwrap());
        Segment::new(path, file, db.open_tree(first.to_be_bytes()).unwrap())
    }

    fn push(table: &mut Table, first: u64, seq: u64, model: &mut BTreeMap<u64, Entry>) {
        let entry = Entry {
            seq,
            offset: (seq - first) * 100,
            len: 100,
            state: State::Pending,
            at_ms: seq,
        };
        table.segments.get_mut(&first).unwrap().push(entry);
        table.added_pending(entry.len);
        model.insert(seq, entry);
    }

    /// Every read the store makes of the table answers as a plain list of the records would.
    fn check(table: &Table, model: &BTreeMap<u64, Entry>) {
        for (seq, want) in model {
            assert_eq!(table.state_of(*seq), Some(want.state), "seq {seq}");
        }
        let pending: Vec<u64> = model
            .values()
            .filter(|e| e.state == State::Pending)
            .map(|e| e.seq)
            .collect();
        let got: Vec<u64> = table
            .pending_between(None, u64::MAX, Room::events(usize::MAX))
            .iter()
            .map(|(_, e)| e.seq)
            .collect();
        assert_eq!(got, pending);
        if let Some(&after) = pending.get(pending.len() / 2) {
            let got: Vec<u64> = table
                .pending_between(Some(after), u64::MAX, Room::events(3))
                .iter()
                .map(|(_, e)| e.seq)
                .collect();
            let want: Vec<u64> = pending
                .iter()
                .copied()
                .filter(|s| *s > after)
                .take(3)
                .collect();
            assert_eq!(got, want, "pending after {after}");
        }
        assert_eq!(
            table.oldest_pending_ms(),
            model
                .values()
                .find(|e| e.state == State::Pending)
                .map(|e| e.at_ms)
        );
        assert_eq!(table.outbox, pending.len() as u64);
        let delivered: Vec<(u64, u64)> = model
            .values()
            .filter(|e| e.state == State::Delivered)
            .map(|e| (e.seq, e.at_ms))
            .collect();
        assert_eq!(table.delivered().0, delivered.len() as u64);
        let got: Vec<(u64, u64)> = table
            .delivered_between(0, None, None, usize::MAX)
            .iter()
            .map(|(_, e)| (e.seq, e.at_ms))
            .collect();
        assert_eq!(got, delivered);
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// The publisher settles one of the first pending records (confirms come back a little
        /// out of order): delivered, or dead.
        Settle { pick: Index, dead: bool },
        /// A replay marks a delivered record, wherever it lies.
        Replay(Index),
        /// Pack what is settled, as the writer does, and read everything back.
        Check,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            180 => (any::<Index>(), proptest::bool::weighted(0.1))
                .prop_map(|(pick, dead)| Step::Settle { pick, dead }),
            2 => any::<Index>().prop_map(Step::Replay),
            1 => Just(Step::Check),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 12,
            max_shrink_iters: 100,
            ..ProptestConfig::default()
        })]

        /// Records of a closed segment and of the active one (which takes appends, one every
        /// other step, and packs its settled head as it goes) settle in random order; every read
        /// the store makes answers as a plain list of the records would.
        #[test]
        fn settled_records_are_packed_as_they_settle_and_read_as_before(
            closed_records in 0u64..3_000,
            steps in proptest::collection::vec(step(), 0..5_000),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::Config::new().temporary(true).open().unwrap();
            let mut table = Table::default();
            let mut model = BTreeMap::new();
            let (closed, active) = (1, 1 + closed_records);
            table
                .segments
                .insert(closed, segment(dir.path(), &db, closed));
            table
                .segments
                .insert(active, segment(dir.path(), &db, active));
            for seq in closed..active {
                push(&mut table, closed, seq, &mut model);
            }
            let mut next = active;
            for (n, step) in steps.into_iter().enumerate() {
                let at = 1_000_000 + n as u64;
                if n % 2 == 0 {
                    push(&mut table, active, next, &mut model);
                    next += 1;
                }
                match step {
                    Step::Settle { pick, dead } => {
                        let pending: Vec<u64> = model
                            .values()
                            .filter(|e| e.state == State::Pending)
                            .take(300)
                            .map(|e| e.seq)
                            .collect();
                        if pending.is_empty() {
                            continue;
                        }
                        let seq = pending[pick.index(pending.len())];
                        let to = if dead { State::Dead } else { State::Delivered };
                        let changed = table.transition(seq, State::Pending, to, at);
                        prop_assert!(changed.is_some(), "seq {}", seq);
                        let entry = model.get_mut(&seq).unwrap();
                        (entry.state, entry.at_ms) = (to, at);
                    }
                    Step::Replay(pick) => {
                        let delivered: Vec<u64> = model
                            .values()
                            .filter(|e| e.state == State::Delivered)
                            .map(|e| e.seq)
                            .collect();
                        if delivered.is_empty() {
                            continue;
                        }
                        let seq = delivered[pick.index(delivered.len())];
                        let changed = table.transition(seq, State::Delivered, State::Replayed, at);
                        prop_assert!(changed.is_some(), "replay {}", seq);
                        let entry = model.get_mut(&seq).unwrap();
                        (entry.state, entry.at_ms) = (State::Replayed, at);
                    }
                    Step::Check => {
                        table.pack_settled(active);
                        check(&table, &model);
                    }
                }
                prop_assert!(
                    table
                        .transition(next + 5, State::Pending, State::Delivered, 0)
                        .is_none(),
                    "an unknown seq"
                );
            }
            table.pack_settled(active);
            check(&table, &model);
            if closed_records > 0 && table.segments[&closed].is_settled() {
                prop_assert!(table.segments[&closed].is_packed());
            }
            // The active segment keeps few entries before its first pending record, however
            // many records settled in it.
            let segment = &table.segments[&active];
            let from_pending = model
                .range(active..)
                .skip_while(|(_, e)| e.state != State::Pending)
                .count();
            prop_assert!(
                segment.entries.len() < PACK_AFTER + from_pending,
                "{} entries kept, {} from the first pending one",
                segment.entries.len(),
                from_pending
            );
        }
    }
}
