//! The delivery index's settled records, packed: about 7 bytes a record instead of 32.
//!
//! A settled record only waits for retention (up to `keep_delivered`, 72 h by default) and for a
//! rare `replay`, but as a 32-byte entry in a vector grown by doubling it cost 80 MB and more at
//! 10 events/s over 72 h, and a 64 MiB segment of small events (~140 B a record) kept a 16 MiB
//! vector while it took appends. Packed, a record is a handful of varint deltas (seq, file gap,
//! frame length, state, settle time), read in order; a sparse checkpoint every [`STRIDE`] records
//! lets a read start near a given seq. Records are appended as they settle (the settled prefix of
//! the active segment, see `table`); a segment is unpacked again for the rare change (a replay
//! marks records `Replayed`) and packed after it.

use super::entry::Entry;
use crate::store::layout::marks::State;

/// Records between two checkpoints.
const STRIDE: usize = 256;

/// Where decoding may start: the record at `pos` in the bytes and what it is relative to.
#[derive(Clone, Copy, Debug, Default)]
struct Checkpoint {
    /// Seq of the record before it (its delta base).
    prev_seq: u64,
    /// Where the record before it ended in the file.
    prev_end: u64,
    /// Settle time of the record before it.
    prev_at: u64,
    pos: usize,
}

/// Packed entries, in seq order.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    bytes: Vec<u8>,
    checkpoints: Vec<Checkpoint>,
    /// Records packed (the capacity to unpack them into).
    len: usize,
    /// The delta base of the next record: the last one's seq, end in the file and settle time.
    base: Checkpoint,
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

impl Packed {
    /// Packs `entries` (in seq order, as the index keeps them), holding no spare capacity.
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn pack<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Packed {
        let mut packed = Packed::default();
        for entry in entries {
            packed.push(entry);
        }
        packed.shrink_to_fit();
        packed
    }

    /// Appends `entry`, which follows every record packed so far in seq order.
    pub(crate) fn push(&mut self, entry: &Entry) {
        let base = self.base;
        if self.len.is_multiple_of(STRIDE) {
            self.checkpoints.push(Checkpoint {
                pos: self.bytes.len(),
                ..base
            });
        }
        // Seqs rise and records follow each other in the file; the deltas are mostly 1 and 0,
        // but anything else still packs (wrapping, so nothing can overflow).
        let bytes = &mut self.bytes;
        put_varint(bytes, entry.seq.wrapping_sub(base.prev_seq));
        put_varint(bytes, entry.offset.wrapping_sub(base.prev_end));
        put_varint(bytes, u64::from(entry.len));
        bytes.push(entry.state.code());
        put_varint(bytes, zigzag(entry.at_ms.wrapping_sub(base.prev_at) as i64));
        self.base = Checkpoint {
            prev_seq: entry.seq,
            prev_end: entry.offset.wrapping_add(u64::from(entry.len)),
            prev_at: entry.at_ms,
            pos: 0,
        };
        self.len += 1;
    }

    /// Gives back the room kept for appends (the segment was closed).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.checkpoints.shrink_to_fit();
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn last_seq(&self) -> Option<u64> {
        (self.len > 0).then_some(self.base.prev_seq)
    }

    /// Bytes held, for tests and the memory figures.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.checkpoints.capacity() * std::mem::size_of::<Checkpoint>()
    }

    /// The entries with `seq >= from`, in order.
    pub(crate) fn iter_from(&self, from: u64) -> Iter<'_> {
        // The last checkpoint whose first record is at or before `from` (its base seq is the
        // record before it, so `prev_seq < from` holds for it and every earlier one).
        let at = self
            .checkpoints
            .partition_point(|c| c.pos == 0 || c.prev_seq < from)
            .saturating_sub(1);
        let start = self.checkpoints.get(at).copied().unwrap_or(Checkpoint {
            prev_seq: 0,
            prev_end: 0,
            prev_at: 0,
            pos: self.bytes.len(),
        });
        Iter {
            bytes: &self.bytes,
            pos: start.pos,
            prev_seq: start.prev_seq,
            prev_end: start.prev_end,
            prev_at: start.prev_at,
            from,
        }
    }

    /// Every entry, in order.
    pub(crate) fn unpack(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len);
        out.extend(self.iter_from(0));
        out
    }
}

pub(crate) struct Iter<'a> {
    bytes: &'a [u8],
    pos: usize,
    prev_seq: u64,
    prev_end: u64,
    prev_at: u64,
    from: u64,
}

impl Iter<'_> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn decode(&mut self) -> Option<Entry> {
        let seq = self.prev_seq.wrapping_add(self.varint()?);
        let offset = self.prev_end.wrapping_add(self.varint()?);
        let len = u32::try_from(self.varint()?).ok()?;
        let code = *self.bytes.get(self.pos)?;
        self.pos += 1;
        let at_ms = self.prev_at.wrapping_add(unzigzag(self.varint()?) as u64);
        self.prev_seq = seq;
        self.prev_end = offset.wrapping_add(u64::from(len));
        self.prev_at = at_ms;
        Some(Entry {
            seq,
            offset,
            len,
            state: match code {
                0 => State::Pending,
                code => State::from_code(code)?,
            },
            at_ms,
        })
    }
}

impl Iterator for Iter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let entry = self.decode()?;
            if entry.seq >= self.from {
                return Some(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, offset: u64, len: u32, state: State, at_ms: u64) -> Entry {
        Entry {
            seq,
            offset,
            len,
            state,
            at_ms,
        }
    }

    /// A settled segment as the index holds it: consecutive records, settle times mostly rising,
    /// with the odd gap (a damaged stretch), a replayed and a dead record.
    fn settled(n: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut offset = 0;
        for i in 0..n {
            let seq = 1_000 + i + u64::from(i >= n / 2) * 7;
            let len = 200 + (i % 17) as u32 * 97;
            let state = match i % 50 {
                3 => State::Dead,
                4 => State::Replayed,
                _ => State::Delivered,
            };
            // Confirms come back in batches, a few out of order.
            let at = 1_764_000_000_000 + i / 8 * 3 - (i % 13 == 0) as u64 * 2;
            out.push(entry(seq, offset, len, state, at));
            offset += u64::from(len) + if i == n / 3 { 4096 } else { 0 };
        }
        out
    }

    fn eq(a: &Entry, b: &Entry) -> bool {
        (a.seq, a.offset, a.len, a.state, a.at_ms) == (b.seq, b.offset, b.len, b.state, b.at_ms)
    }

    #[test]
    fn packs_and_unpacks_every_field_exactly() {
        for n in [0, 1, 2, STRIDE as u64 - 1, STRIDE as u64, 5_000] {
            let entries = settled(n);
            let packed = Packed::pack(&entries);
            let back = packed.unpack();
            assert_eq!(back.len(), entries.len(), "{n} records");
            assert!(
                entries.iter().zip(&back).all(|(a, b)| eq(a, b)),
                "{n} records"
            );
            assert_eq!(packed.last_seq(), entries.last().map(|e| e.seq));
        }
    }

    #[test]
    fn records_appended_one_by_one_read_as_packed_at_once() {
        let entries = settled(3 * STRIDE as u64 + 10);
        let mut appended = Packed::default();
        for (i, entry) in entries.iter().enumerate() {
            appended.push(entry);
            assert_eq!(appended.len(), i + 1);
            assert_eq!(appended.last_seq(), Some(entry.seq));
        }
        let from = entries[STRIDE + 3].seq;
        let want: Vec<Entry> = Packed::pack(&entries).iter_from(from).collect();
        let got: Vec<Entry> = appended.iter_from(from).collect();
        assert_eq!(got.len(), want.len());
        assert!(want.iter().zip(&got).all(|(a, b)| eq(a, b)));
        assert_eq!(appended.unpack().len(), entries.len());
    }

    #[test]
    fn extreme_values_survive() {
        let entries = [
            entry(0, 0, 0, State::Pending, 0),
            entry(
                u64::MAX - 1,
                u64::MAX - 10,
                u32::MAX,
                State::Delivered,
                u64::MAX,
            ),
            entry(u64::MAX, 3, 1, State::Replayed, 0),
        ];
        let back = Packed::pack(&entries).unpack();
        assert!(entries.iter().zip(&back).all(|(a, b)| eq(a, b)));
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn reads_from_any_seq_as_a_full_scan_would() {
        let entries = settled(3 * STRIDE as u64 + 10);
        let packed = Packed::pack(&entries);
        let first = entries[0].seq;
        let last = entries.last().map_or(0, |e| e.seq);
        for from in (0..first)
            .chain(first..=last + 2)
            .step_by(7)
            .chain([first, last, last + 1])
        {
            let want: Vec<&Entry> = entries.iter().filter(|e| e.seq >= from).collect();
            let got: Vec<Entry> = packed.iter_from(from).collect();
            assert_eq!(got.len(), want.len(), "from {from}");
            assert!(want.iter().zip(&got).all(|(a, b)| eq(a, b)), "from {from}");
        }
    }

    #[test]
    fn a_typical_record_takes_under_a_quarter_of_an_entry() {
        let entries = settled(100_000);
        let packed = Packed::pack(&entries);
        let per_record = packed.heap_bytes() as f64 / entries.len() as f64;
        assert!(
            per_record < std::mem::size_of::<Entry>() as f64 / 4.0,
            "{per_record:.2} bytes a record"
        );
    }
}
