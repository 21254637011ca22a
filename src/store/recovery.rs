//! Opening the segments: scan each, read past damage, cut a torn tail, rebuild the delivery index from the marks,
//! and write again the dedup keys of the records after the flusher's checkpoint.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::dedup::{self, Slices};
use super::error::StoreError;
use super::index::{Entry, Segment, Table};
use super::layout::frame::{self, Found};
use super::layout::marks::{decode_mark, furthest, marks_tree_name, parse_marks_tree_name, Mark};
use super::layout::record;
use super::segment::{self, Active};
use super::types::Damaged;
use crate::clock::now_ms;

pub(super) struct Recovered {
    pub(super) table: Table,
    pub(super) active: Active,
    /// Highest seq in any segment (0 when there is none).
    pub(super) high: u64,
    pub(super) next_seq: u64,
    pub(super) damaged: Damaged,
}

/// Segment files in `dir` by first seq, oldest first.
pub(super) fn list(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut firsts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(segment::parse_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

pub(super) fn open(
    db: &sled::Db,
    dir: &Path,
    dedup_keys: &Slices,
    window_ms: u64,
    checkpoint: u64,
    seq_floor: u64,
) -> Result<Recovered, StoreError> {
    let firsts = list(dir)?;
    // Marks of segments that are gone (deleted before their drop reached disk) go too (I9).
    for name in db.tree_names() {
        if let Some(first) = parse_marks_tree_name(&name) {
            if firsts.binary_search(&first).is_err() {
                db.drop_tree(&name)?;
            }
        }
    }
    let now = now_ms();
    let mut table = Table::default();
    let mut high = 0u64;
    let mut restored = 0u64;
    let mut damaged = Damaged::default();
    for &first in &firsts {
        let path = dir.join(segment::file_name(first));
        let marks = db.open_tree(marks_tree_name(first))?;
        let mut runs = Vec::new();
        for item in marks.iter() {
            let (key, value) = item?;
            match decode_mark(&key, &value) {
                Some(run) => runs.push(run),
                None => {
                    tracing::warn!(segment = %path.display(), "unreadable delivery mark ignored")
                }
            }
        }
        // Overlapping marks: the furthest state wins (I9).
        let states = furthest(runs);
        let file = File::open(&path)?;
        let mut info = Segment::new(path.clone(), Arc::new(file), marks);
        let mut failure = None;
        let reader = Arc::clone(&info.file);
        let scan = segment::scan(&reader, first, |found, rest| {
            let mark = states.get(&found.seq).copied();
            if mark.is_some() && found.seq <= checkpoint {
                info.push(settled_entry(found, mark));
                return;
            }
            // Pending, or after the checkpoint: its meta is needed.
            match record::decode_meta(rest) {
                Ok(meta) => {
                    // After the checkpoint its key may not be on disk: written again (I6).
                    if found.seq > checkpoint {
                        let expiry = meta.received_at_ms.saturating_add(window_ms);
                        if let Err(e) = dedup::restore(dedup_keys, &meta.id, expiry, now) {
                            failure.get_or_insert(e);
                        }
                        restored += 1;
                    }
                    match mark {
                        Some(_) => info.push(settled_entry(found, mark)),
                        None => {
                            info.push(Entry::pending(found, meta.received_at_ms));
                            table.added_pending(found.len);
                        }
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let last = Some(&first) == firsts.last();
        for damage in &scan.damaged {
            damaged.bytes += damage.to - damage.from;
            let (pending, settled) = made_out(&reader, first, damage, &states)?;
            let mut kept = 0;
            for entry in pending {
                if info.insert(entry) {
                    table.added_pending(entry.len);
                    kept += 1;
                }
            }
            damaged.lost_records += report_damage(&path, first, damage, kept, settled);
        }
        match scan.torn {
            // Only the active segment is written to: a bad frame there that no whole frame
            // follows is a write a crash cut (I4).
            Some(reason) if last => {
                let size = info.file.metadata()?.len();
                tracing::warn!(
                    segment = %path.display(),
                    offset = scan.valid_end,
                    cut_bytes = size - scan.valid_end,
                    reason,
                    "cutting a torn segment tail (writes that were never acknowledged)"
                );
                let writable = OpenOptions::new().write(true).open(&path)?;
                writable.set_len(scan.valid_end)?;
                writable.sync_all()?;
            }
            // In an older one it is damage to acknowledged data: left in place for inspection.
            Some(reason) => tracing::error!(
                segment = %path.display(),
                offset = scan.valid_end,
                reason,
                "a closed segment is damaged to its end; no record after this offset can be read"
            ),
            None => {}
        }
        info.len = scan.valid_end;
        high = high.max(info.last_seq().unwrap_or(0));
        table.segments.insert(first, info);
    }
    if restored > 0 {
        tracing::info!(
            records = restored,
            "dedup keys after the last checkpoint written again"
        );
    }
    let last_first = firsts.last().copied().unwrap_or(0);
    // I5.
    let next_seq = high.saturating_add(1).max(last_first).max(seq_floor).max(1);
    // Appends continue in the newest segment; a fresh store starts its first one.
    let active = match firsts.last() {
        Some(&first) => {
            let path = dir.join(segment::file_name(first));
            let file = OpenOptions::new().append(true).open(&path)?;
            let len = file.metadata()?.len();
            Active {
                first_seq: first,
                file,
                len,
            }
        }
        None => {
            let (active, info) = segment::create(db, dir, next_seq)?;
            table.segments.insert(active.first_seq, info);
            active
        }
    };
    table.pack_settled(active.first_seq);
    Ok(Recovered {
        table,
        active,
        high,
        next_seq,
        damaged,
    })
}

/// The pending records (no mark) of a damaged stretch whose frame can still be made out by its
/// seq: kept in the index as pending, so that the publisher reads them, finds them unreadable
/// and moves them to the dead letters with what can be read of them and why, rather than their
/// being lost in silence (I4). Each runs to where the next one made out begins, or to the
/// stretch's end. `first` is the seq the segment is named for. Also how many were made out
/// that had settled already (delivered, or dead-lettered at an earlier open).
fn made_out(
    file: &File,
    first: u64,
    damage: &segment::Damage,
    states: &HashMap<u64, Mark>,
) -> Result<(Vec<Entry>, u64), StoreError> {
    let lowest = damage.after_seq.map_or(first, |before| before + 1);
    if damage.resumed_seq <= lowest {
        return Ok((Vec::new(), 0));
    }
    let starts = seq_fields(file, damage, lowest)?;
    let now = now_ms();
    let mut out = Vec::new();
    let mut settled = 0;
    for (n, &(at, seq)) in starts.iter().enumerate() {
        if states.contains_key(&seq) {
            settled += 1;
            continue;
        }
        let end = starts.get(n + 1).map_or(damage.to, |(next, _)| *next);
        // Larger than any record: not one, whatever its seq field says.
        let Some(len) = u32::try_from(end - at)
            .ok()
            .filter(|len| *len <= frame::MAX_PAYLOAD + frame::HEADER as u32)
        else {
            continue;
        };
        // The metadata leads the record: a few KiB of it tell the receive time.
        let mut head = vec![0u8; len.min(64 * 1024) as usize];
        file.read_exact_at(&mut head, at)?;
        let received_at_ms = head
            .get(frame::HEADER + frame::SEQ..)
            .and_then(|record| record::decode_meta(record).ok())
            .map_or(now, |meta| meta.received_at_ms);
        let found = Found {
            seq,
            offset: at,
            len,
        };
        out.push(Entry::pending(found, received_at_ms));
    }
    Ok((out, settled))
}

/// Where in a damaged stretch a frame's seq field reads as the next seq missing (from `lowest`
/// up to the seq the scan resumed at), in order: the offsets of those frames and their seqs.
/// Read a MiB at a time, however long the stretch. A stray match would need eight bytes of a
/// seq inside a JSON body (text: no NUL bytes).
fn seq_fields(
    file: &File,
    damage: &segment::Damage,
    lowest: u64,
) -> Result<Vec<(u64, u64)>, StoreError> {
    const PROBE: u64 = (frame::HEADER + frame::SEQ) as u64;
    const CHUNK: u64 = 1 << 20;
    let mut starts = Vec::new();
    let mut want = lowest;
    let mut buf = Vec::new();
    // The next offset that may start a frame (past the seq field of the last one found).
    let mut next = damage.from;
    let mut base = damage.from;
    while base + PROBE <= damage.to && want < damage.resumed_seq {
        let have = (damage.to - base).min(CHUNK + PROBE);
        buf.resize(have as usize, 0);
        file.read_exact_at(&mut buf, base)?;
        let probes = (have - PROBE + 1).min(CHUNK);
        for i in 0..probes {
            let at = base + i;
            if at < next || want >= damage.resumed_seq {
                continue;
            }
            let field = i as usize + frame::HEADER;
            let seq = frame::seq_of(&buf[field..field + frame::SEQ]);
            if (want..damage.resumed_seq).contains(&seq) {
                starts.push((at, seq));
                want = seq + 1;
                next = at + PROBE;
            }
        }
        base += probes;
    }
    Ok(starts)
}

/// Damage with whole records after it is never cut: those records are read, and what the stretch
/// held is named so that an operator can look for it elsewhere (the broker, the sender).
/// `first` is the seq the segment is named for; `kept` of its records were made out and kept
/// as pending, `settled` made out and settled before (`made_out`). Returns how many records
/// are lost with the stretch.
fn report_damage(
    path: &Path,
    first: u64,
    damage: &segment::Damage,
    kept: u64,
    settled: u64,
) -> u64 {
    let lowest = damage.after_seq.map_or(first, |before| before + 1);
    // A frame out of sequence may stand where no seq was missing.
    let lost_count = damage.resumed_seq.saturating_sub(lowest);
    let lost = if lost_count > 0 {
        format!("{lowest}..={}", damage.resumed_seq - 1)
    } else {
        "none".to_owned()
    };
    tracing::error!(
        segment = %path.display(),
        from = damage.from,
        to = damage.to,
        bytes = damage.to - damage.from,
        reason = damage.reason,
        lost_seqs = %lost,
        waiting = kept,
        "a segment is damaged; the records in this stretch are lost (they may have been \
         acknowledged and delivered), except those still waiting whose seq reads (they go to the \
         dead letters with what can be read of them); the records after it are read"
    );
    lost_count.saturating_sub(kept + settled)
}

fn settled_entry(found: Found, mark: Option<Mark>) -> Entry {
    let mut entry = Entry::pending(found, 0);
    if let Some(mark) = mark {
        entry.state = mark.state;
        entry.at_ms = mark.at_ms;
    }
    entry
}
