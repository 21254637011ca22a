//! The delivery index: every live segment, where each of its records lies and what became of it.
//!
//! Held in memory so the publisher's catch-up reads, replay and stats never touch sled: 32 bytes
//! a record while its segment takes appends or has pending records, packed to a few once it is
//! closed and settled (`packed`). Its only writer is the store's writer thread. What it knows
//! is persisted as marks (`marks`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::marks::State;
use super::packed::{self, Packed};
use super::segment::Found;
use super::Room;

/// One record of a live segment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) offset: u64,
    /// Frame length.
    pub(super) len: u32,
    pub(super) state: State,
    /// Receive time while pending (the oldest-pending age), settle time after.
    pub(super) at_ms: u64,
}

impl Entry {
    pub(super) fn pending(found: Found, received_at_ms: u64) -> Entry {
        Entry {
            seq: found.seq,
            offset: found.offset,
            len: found.len,
            state: State::Pending,
            at_ms: received_at_ms,
        }
    }
}

pub(super) struct Segment {
    pub(super) path: PathBuf,
    /// Shared read handle: readers `pread` it outside the table's lock.
    pub(super) file: Arc<File>,
    pub(super) marks: sled::Tree,
    pub(super) len: u64,
    /// In seq order.
    records: Records,
    pub(super) pending: u64,
    /// Kept delivered records (state `Delivered`) and their bytes.
    pub(super) delivered: u64,
    pub(super) delivered_bytes: u64,
    /// Latest settle time: retention counts a fully settled segment's age from it.
    pub(super) last_settled_ms: u64,
    /// The writer's settlement count at this segment's latest change (see `flusher::Progress`).
    pub(super) settled: u64,
    /// No pending entry before this index (states only ever leave `Pending`).
    first_pending: usize,
}

impl Segment {
    pub(super) fn new(path: PathBuf, file: Arc<File>, marks: sled::Tree) -> Segment {
        Segment {
            path,
            file,
            marks,
            len: 0,
            records: Records::Open(Vec::new()),
            pending: 0,
            delivered: 0,
            delivered_bytes: 0,
            last_settled_ms: 0,
            settled: 0,
            first_pending: 0,
        }
    }

    pub(super) fn last_seq(&self) -> Option<u64> {
        match &self.records {
            Records::Open(entries) => entries.last().map(|e| e.seq),
            Records::Packed(packed) => packed.last_seq(),
        }
    }

    /// The entries, unpacked first if they were packed (for a change).
    fn entries_mut(&mut self) -> &mut Vec<Entry> {
        if let Records::Packed(packed) = &self.records {
            self.records = Records::Open(packed.unpack());
        }
        match &mut self.records {
            Records::Open(entries) => entries,
            Records::Packed(_) => unreachable!("unpacked just above"),
        }
    }

    /// The entries of a segment that may hold pending ones (never packed); empty if packed.
    fn open_entries(&self) -> &[Entry] {
        match &self.records {
            Records::Open(entries) => entries,
            Records::Packed(_) => &[],
        }
    }

    /// The entries with `seq >= from`, in order.
    fn entries_from(&self, from: u64) -> EntriesFrom<'_> {
        match &self.records {
            Records::Open(entries) => {
                let skip = entries.partition_point(|e| e.seq < from);
                EntriesFrom::Open(entries[skip..].iter())
            }
            Records::Packed(packed) => EntriesFrom::Packed(packed.iter_from(from)),
        }
    }

    /// Packs the entries of a settled segment (see `packed`).
    fn pack(&mut self) {
        if let Records::Open(entries) = &self.records {
            if self.pending == 0 {
                self.records = Records::Packed(Packed::pack(entries));
            }
        }
    }

    #[cfg(test)]
    pub(super) fn is_packed(&self) -> bool {
        matches!(self.records, Records::Packed(_))
    }

    /// Adds a record found or written; counts it by state.
    pub(super) fn push(&mut self, entry: Entry) {
        match entry.state {
            State::Pending => self.pending += 1,
            State::Delivered => {
                self.delivered += 1;
                self.delivered_bytes += u64::from(entry.len);
            }
            State::Dead | State::Replayed => {}
        }
        if entry.state != State::Pending {
            self.last_settled_ms = self.last_settled_ms.max(entry.at_ms);
        }
        self.entries_mut().push(entry);
    }

    fn index_of(&mut self, seq: u64) -> Option<usize> {
        self.entries_mut()
            .binary_search_by_key(&seq, |e| e.seq)
            .ok()
    }

    fn advance_first_pending(&mut self) {
        let mut first = self.first_pending;
        let entries = self.open_entries();
        while entries
            .get(first)
            .is_some_and(|e| e.state != State::Pending)
        {
            first += 1;
        }
        self.first_pending = first;
    }

    pub(super) fn fully_settled(&self) -> bool {
        self.pending == 0
    }
}

/// Segments by their first seq, oldest first, and the outbox totals over them.
#[derive(Default)]
pub(super) struct Table {
    pub(super) segments: BTreeMap<u64, Segment>,
    pub(super) outbox: u64,
    pub(super) outbox_bytes: u64,
}

/// A state change the writer applied, to be persisted as a mark.
pub(super) struct Changed {
    pub(super) segment: u64,
    pub(super) entry: Entry,
}

impl Table {
    pub(super) fn added_pending(&mut self, len: u32) {
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
    pub(super) fn state_of(&self, seq: u64) -> Option<State> {
        let (_, segment) = self.segments.range(..=seq).next_back()?;
        let entry = segment.entries_from(seq).next()?;
        (entry.seq == seq).then_some(entry.state)
    }

    /// Packs every settled segment but the active one that is not packed yet: once when it is
    /// settled, and again after a replay unpacked it to mark records (`transition`).
    pub(super) fn pack_settled(&mut self, active_first: u64) {
        for (&first, segment) in &mut self.segments {
            if first != active_first {
                segment.pack();
            }
        }
    }

    /// Moves `seq` from `from` to `to`; `None` when it is not in that state (already settled,
    /// or in a segment retention dropped).
    pub(super) fn transition(
        &mut self,
        seq: u64,
        from: State,
        to: State,
        at_ms: u64,
    ) -> Option<Changed> {
        let (first, segment, index) = self.locate(seq)?;
        let entry = &mut segment.entries_mut()[index];
        if entry.state != from {
            return None;
        }
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
        segment.advance_first_pending();
        if from == State::Pending {
            self.outbox = self.outbox.saturating_sub(1);
            self.outbox_bytes = self.outbox_bytes.saturating_sub(bytes);
        }
        Some(Changed {
            segment: first,
            entry,
        })
    }

    /// Pending records with `after < seq <= until` that fit in `room`, in seq order.
    pub(super) fn pending_between(
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
            if segment.pending == 0 {
                continue;
            }
            let entries = segment.open_entries();
            let skip = entries.partition_point(|e| e.seq < start);
            for entry in &entries[skip.max(segment.first_pending)..] {
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

    pub(super) fn oldest_pending_ms(&self) -> Option<u64> {
        let segment = self.segments.values().find(|s| s.pending > 0)?;
        segment.open_entries()[segment.first_pending..]
            .iter()
            .find(|e| e.state == State::Pending)
            .map(|e| e.at_ms)
    }

    /// Kept delivered records and their bytes over all segments.
    pub(super) fn delivered(&self) -> (u64, u64) {
        self.segments
            .values()
            .fold((0, 0), |(n, b), s| (n + s.delivered, b + s.delivered_bytes))
    }

    pub(super) fn segment_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum()
    }

    /// Delivered records settled in `[since, until)`, in segment then seq order, after `after`.
    pub(super) fn delivered_between(
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

/// A segment's entries: a vector while it takes appends or has pending records, packed once
/// it is closed and settled.
enum Records {
    Open(Vec<Entry>),
    Packed(Packed),
}

enum EntriesFrom<'a> {
    Open(std::slice::Iter<'a, Entry>),
    Packed(packed::Iter<'a>),
}

impl Iterator for EntriesFrom<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        match self {
            EntriesFrom::Open(entries) => entries.next().copied(),
            EntriesFrom::Packed(entries) => entries.next(),
        }
    }
}
