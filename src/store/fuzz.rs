//! The fuzz targets' entry points (`fuzz/`): each feeds arbitrary bytes to the decoders of one
//! on-disk layout, which read whatever a crash or a bad disk left, and checks what they give
//! back. A decoder may refuse bytes; it must never panic, loop or take a record for what it is
//! not. Built for the store's tests and with the `fuzz` feature only; [`seeds`] makes the
//! starting corpus of each target (`fuzz/seeds/`).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;

use super::events::SummaryFile;
use super::index::packed::Packed;
use super::index::Entry;
use super::layout::block::{self, IdExpiry, ENTRY};
use super::layout::frame::{self, Found};
use super::layout::marks::{self, MarkRun, State};
use super::layout::summary::{self, Summary};
use super::layout::{self, meta, record};
use super::segment;
use crate::event::{Change, Event, EventId, EventMeta, Format, Kind};

/// A target's checks, run on one input.
pub type Target = fn(&[u8]);

/// The targets, by the name of their binary in `fuzz/` and of their seeds in `fuzz/seeds/`.
pub const TARGETS: [(&str, Target); 6] = [
    ("segment_scan", segment_scan),
    ("summary_file", summary_file),
    ("record", record),
    ("marks", marks),
    ("dedup_block", dedup_block),
    ("packed", packed),
];

/// A segment file: the first 8 bytes are the seq its name gives (BE), the rest its content.
/// The scan must find records in sequence (I3) inside the file, read them back as it found
/// them, and find the same again once a torn tail is cut (I4).
pub fn segment_scan(data: &[u8]) {
    let Some((first, content)) = data.split_first_chunk::<8>() else {
        return;
    };
    let first_seq = u64::from_be_bytes(*first);
    let file = scratch_file(content);
    let size = content.len() as u64;
    let mut found: Vec<(Found, Vec<u8>)> = Vec::new();
    let scan = segment::scan(&file, first_seq, |f, rest| found.push((f, rest.to_vec())))
        .expect("a scan of a readable file reads it");
    assert!(scan.valid_end <= size);
    assert_eq!(scan.torn.is_some(), scan.valid_end < size, "{scan:?}");
    let mut floor = first_seq;
    let mut end = 0;
    for (f, rest) in &found {
        assert!(
            f.seq >= floor && f.seq - floor < 1 << 32,
            "seq {} after {floor}",
            f.seq
        );
        assert!(f.offset >= end, "records overlap");
        end = f.offset + u64::from(f.len);
        assert!(end <= scan.valid_end);
        floor = f.seq.saturating_add(1);
        // Read back as the publisher and replay do: the same seq, and the record the scan saw.
        match segment::read(&file, f.offset, f.len) {
            Ok((seq, event)) => {
                assert_eq!(seq, f.seq);
                assert_eq!(record::decode_event(rest).ok(), Some(event));
            }
            Err(_) => assert!(record::decode_event(rest).is_err()),
        }
    }
    for damage in &scan.damaged {
        assert!(
            damage.from < damage.to && damage.to <= scan.valid_end,
            "{damage:?}"
        );
        assert!(
            found
                .iter()
                .any(|(f, _)| f.offset == damage.to && f.seq == damage.resumed_seq),
            "a damaged stretch ends where a record starts: {damage:?}"
        );
    }
    if scan.torn.is_some() {
        let cut = scratch_file(&content[..scan.valid_end as usize]);
        let mut again = Vec::new();
        let rescan = segment::scan(&cut, first_seq, |f, _| again.push(f)).expect("rescan");
        assert_eq!(rescan.torn, None, "a cut tail is gone");
        assert_eq!(rescan.valid_end, scan.valid_end);
        let before: Vec<Found> = found.iter().map(|(f, _)| *f).collect();
        assert_eq!(again, before, "cutting the tail loses no record");
    }
}

/// A segment's summary file (I16): what its open takes is whole, checked blocks; the file is
/// cut after them, and opened again gives the same; each summary is found by its seq.
pub fn summary_file(data: &[u8]) {
    let path = scratch_path(data);
    let (file, summaries) = SummaryFile::open(&path).expect("an open of a readable file reads it");
    let kept = file.len();
    assert!(kept <= data.len() as u64);
    assert_eq!(
        std::fs::metadata(&path).expect("scratch").len(),
        kept,
        "cut after the last block"
    );
    for summary in &summaries {
        let block = file.block_at(summary.seq).expect("a block read back");
        assert!(
            block.is_some_and(|b| b.contains(summary)),
            "seq {} not found",
            summary.seq
        );
    }
    drop(file);
    let (again, read) = SummaryFile::open(&path).expect("reopen");
    assert_eq!(again.len(), kept);
    assert_eq!(read, summaries, "cutting loses no block");
}

/// An event record, a dead record or a frame: what decodes encodes again to the same.
pub fn record(data: &[u8]) {
    if let Ok(event) = record::decode_event(data) {
        // The same metadata, but for a change the record does not hold (written before changes
        // were named): the event reads that one from its body.
        let mut meta = record::decode_meta(data).ok();
        if let Some(meta) = meta.as_mut().filter(|m| m.change.is_none()) {
            meta.change = event.meta.change;
        }
        assert_eq!(meta.as_ref(), Some(&event.meta));
        let shared = record::decode_event_shared(&Bytes::copy_from_slice(data));
        assert_eq!(shared.ok().as_ref(), Some(&event));
        assert_eq!(round_trip(&event), event);
    }
    if let Ok((meta, body)) = meta::decode(data) {
        let mut out = Vec::new();
        meta::encode_into(&mut out, &meta).expect("a decoded meta encodes");
        out.extend_from_slice(body);
        let (again, rest) = meta::decode(&out).expect("what was encoded decodes");
        assert_eq!((again, rest), (meta, body));
    }
    if let Ok((info, event)) = record::decode_dead(data) {
        let mut out = record::dead_prefix(&info.reason, info.dead_at_ms).expect("a prefix");
        record::encode_event_into(&mut out, &event).expect("an event record");
        let (again, back) = record::decode_dead(&out).expect("a dead record decodes");
        assert_eq!(
            (again.reason, again.dead_at_ms, back),
            (info.reason, info.dead_at_ms, event)
        );
    }
    if let Ok((seq, event)) = frame::decode_frame(&Bytes::copy_from_slice(data)) {
        let mut out = Vec::new();
        frame::frame(&mut out, seq, &event).expect("a decoded event frames");
        let again = frame::decode_frame(&Bytes::from(out)).expect("a frame decodes");
        assert_eq!(again, (seq, event));
    }
    if let Ok(seq) = record::decode_seq(data) {
        assert_eq!(record::seq_key(seq)[..], *data);
    }
    if let Some(expiry) = record::decode_expiry(data) {
        assert_eq!(record::expiry_value(expiry)[..], *data);
    }
    if let Some(checkpoint) = layout::decode_checkpoint(data) {
        assert_eq!(checkpoint.to_be_bytes()[..], *data);
    }
}

/// Marks as a segment's tree holds them, in 21-byte pairs (a 12-byte key, a 9-byte value): each
/// that decodes encodes again to the same bytes, and the fold gives every seq the furthest
/// state of the marks that cover it (I9).
pub fn marks(data: &[u8]) {
    let _ = marks::decode_mark(data, data);
    if let Some(first) = std::str::from_utf8(data)
        .ok()
        .and_then(|_| marks::parse_marks_tree_name(data))
    {
        assert_eq!(
            marks::parse_marks_tree_name(marks::marks_tree_name(first).as_bytes()),
            Some(first)
        );
    }
    let mut runs = Vec::new();
    for pair in data.chunks_exact(21) {
        let (key, value) = pair.split_at(12);
        let Some(run) = marks::decode_mark(key, value) else {
            continue;
        };
        assert_eq!(marks::mark_key(&run)[..], *key);
        assert_eq!(marks::mark_value(&run)[..], *value);
        // Real marks cover one batch of confirms; a larger count only costs the fuzzer time.
        runs.push(MarkRun {
            count: run.count.min(64),
            ..run
        });
    }
    let states = marks::furthest(runs.iter().copied());
    for (seq, mark) in &states {
        assert_eq!(*seq, mark.seq);
        let furthest = runs
            .iter()
            .filter(|r| *seq >= r.first && seq - r.first < u64::from(r.count))
            .map(|r| r.state.code())
            .max();
        assert_eq!(Some(mark.state.code()), furthest, "seq {seq}");
    }
    let covered: u64 = runs
        .iter()
        .map(|r| {
            (0..u64::from(r.count))
                .filter(|i| r.first.checked_add(*i).is_some())
                .count() as u64
        })
        .sum();
    assert!(states.len() as u64 <= covered);
}

/// A block of dedup keys, and a block key: whole entries decode and encode again to the same
/// bytes, a sorted block finds each of its ids, and only a 24-byte key is a block key.
pub fn dedup_block(data: &[u8]) {
    match block::decode_block_key(data) {
        Some((run, first)) => assert_eq!(block::block_key(run, &first)[..], *data),
        None => assert_ne!(data.len(), 24),
    }
    let keys: Vec<IdExpiry> = block::entries(data).collect();
    assert_eq!(keys.len(), data.len() / ENTRY);
    let mut again = Vec::with_capacity(data.len());
    for key in &keys {
        block::encode_entry(&mut again, *key);
    }
    assert_eq!(again[..], data[..keys.len() * ENTRY]);
    let sorted = keys.windows(2).all(|pair| pair[0].id < pair[1].id);
    for key in &keys {
        let found = block::search(data, &key.id);
        if sorted {
            assert_eq!(found, Some(key.expiry_ms));
        }
    }
}

/// Records of a settled segment (29 bytes each: seq, offset, frame length, state, settle time),
/// packed in seq order: read back whole and from any seq as they went in.
pub fn packed(data: &[u8]) {
    let mut entries: Vec<Entry> = data
        .chunks_exact(29)
        .map(|c| Entry {
            seq: u64::from_le_bytes(c[0..8].try_into().expect("8 bytes")),
            offset: u64::from_le_bytes(c[8..16].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(c[16..20].try_into().expect("4 bytes")),
            state: [
                State::Pending,
                State::Delivered,
                State::Dead,
                State::Replayed,
            ][usize::from(c[20] % 4)],
            at_ms: u64::from_le_bytes(c[21..29].try_into().expect("8 bytes")),
        })
        .collect();
    entries.sort_by_key(|e| e.seq);
    entries.dedup_by_key(|e| e.seq);
    let packed = Packed::pack(&entries);
    assert_eq!(packed.len(), entries.len());
    assert_eq!(packed.last_seq(), entries.last().map(|e| e.seq));
    let same = |a: &Entry, b: &Entry| {
        (a.seq, a.offset, a.len, a.state, a.at_ms) == (b.seq, b.offset, b.len, b.state, b.at_ms)
    };
    let back = packed.unpack();
    assert_eq!(back.len(), entries.len());
    assert!(entries.iter().zip(&back).all(|(a, b)| same(a, b)));
    // Either side of a few records spread over the segment, and both ends.
    let step = entries.len() / 4 + 1;
    let froms = entries
        .iter()
        .step_by(step)
        .flat_map(|e| [e.seq, e.seq.wrapping_add(1)]);
    for from in froms.chain([0, u64::MAX]) {
        let want: Vec<&Entry> = entries.iter().filter(|e| e.seq >= from).collect();
        let got: Vec<Entry> = packed.iter_from(from).collect();
        assert_eq!(got.len(), want.len(), "from {from}");
        assert!(
            want.iter().zip(&got).all(|(a, b)| same(a, b)),
            "from {from}"
        );
    }
}

/// The starting corpus of each target: valid inputs, so the fuzzer mutates from what the store
/// writes rather than searching for a checksum.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let events = [
        event(1, None, Bytes::from_static(b"{\"a\":1}")),
        event(2, Some(Format::ALL[0]), Bytes::from(vec![0xFF, 0x00, b'{'])),
        event(3, Some(Format::ALL[Format::ALL.len() - 1]), Bytes::new()),
    ];
    match target {
        "segment_scan" => {
            let mut file = 40u64.to_be_bytes().to_vec();
            for (n, event) in (40..).zip(&events) {
                frame::frame(&mut file, n, event).expect("frame");
            }
            let mut migrated = 7u64.to_be_bytes().to_vec();
            let json = record::encode_event_json(&events[0]).expect("json record");
            frame::frame_record(&mut migrated, 9, &json).expect("frame");
            let mut torn = file.clone();
            torn.truncate(torn.len() - 5);
            let mut damaged = file.clone();
            damaged[8 + 30] ^= 0x40;
            vec![file, migrated, torn, damaged]
        }
        "summary_file" => {
            let summaries: Vec<Summary> = (0..3u64)
                .map(|n| summary_seed(40 + n, &events[n as usize]))
                .collect();
            let mut file = Vec::new();
            frame::frame_record(&mut file, 40, &summary::encode_block(&summaries[..2]))
                .expect("frame");
            frame::frame_record(&mut file, 42, &summary::encode_block(&summaries[2..]))
                .expect("frame");
            let mut stamped = summaries.clone();
            stamped[0].published_at_ms = Some(9);
            stamped[0].confirmed_at_ms = Some(10);
            stamped[0].replay_of = Some(3);
            let mut again = file.clone();
            frame::frame_record(&mut again, 40, &summary::encode_block(&stamped[..2]))
                .expect("frame");
            let mut torn = file.clone();
            torn.truncate(torn.len() - 5);
            vec![file, again, torn]
        }
        "record" => {
            let mut out: Vec<Vec<u8>> = Vec::new();
            for event in &events {
                out.push(record::encode_event(event).expect("record"));
                out.push(record::encode_event_json(event).expect("json record"));
                let mut dead = record::dead_prefix("unroutable", 5).expect("prefix");
                record::encode_event_into(&mut dead, event).expect("record");
                out.push(dead);
                let mut framed = Vec::new();
                frame::frame(&mut framed, 12, event).expect("frame");
                out.push(framed);
            }
            out.push(record::seq_key(77).to_vec());
            out
        }
        "marks" => {
            let runs = [
                (10, 3, State::Delivered, 5),
                (11, 1, State::Replayed, 6),
                (20, 2, State::Dead, 7),
            ];
            let mut out = Vec::new();
            for (first, count, state, at_ms) in runs {
                let run = MarkRun {
                    first,
                    count,
                    state,
                    at_ms,
                };
                out.extend_from_slice(&marks::mark_key(&run));
                out.extend_from_slice(&marks::mark_value(&run));
            }
            vec![out, marks::marks_tree_name(42).into_bytes()]
        }
        "dedup_block" => {
            let mut block = Vec::new();
            for n in 0..8u8 {
                let mut id = [0u8; 16];
                id[0] = n * 3;
                block::encode_entry(
                    &mut block,
                    IdExpiry {
                        id,
                        expiry_ms: 1_000 + u64::from(n),
                    },
                );
            }
            vec![block, block::block_key(9, &[7; 16]).to_vec()]
        }
        "packed" => {
            let mut out = Vec::new();
            for (n, state) in (0..40u64).zip(
                [State::Delivered, State::Dead, State::Replayed]
                    .into_iter()
                    .cycle(),
            ) {
                out.extend_from_slice(&(1_000 + n).to_le_bytes());
                out.extend_from_slice(&(n * 200).to_le_bytes());
                out.extend_from_slice(&200u32.to_le_bytes());
                out.push(state.code());
                out.extend_from_slice(&(1_700_000_000_000 + n / 3).to_le_bytes());
            }
            vec![out]
        }
        _ => Vec::new(),
    }
}

/// Writes [`seeds`] of every target into `dir/<target>/<n>` (the seed corpus in `fuzz/seeds/`).
pub fn write_seeds(dir: &std::path::Path) -> std::io::Result<()> {
    for (target, _) in TARGETS {
        let to = dir.join(target);
        std::fs::create_dir_all(&to)?;
        for (n, seed) in seeds(target).iter().enumerate() {
            std::fs::write(to.join(n.to_string()), seed)?;
        }
    }
    Ok(())
}

/// The summary of `event` stored as `seq`, with every optional field its flags can give.
fn summary_seed(seq: u64, event: &Event) -> Summary {
    let mut summary = Summary::of(
        seq,
        event,
        1_700_000_000_000 + seq,
        Some(format!("3EB0{seq}")),
    );
    summary.change = Some(Change::ALL[seq as usize % Change::ALL.len()]);
    summary
}

fn event(n: u8, format: Option<Format>, body: Bytes) -> Event {
    Event {
        meta: EventMeta {
            id: EventId([n; 16]),
            kind: Kind::ALL[usize::from(n) % Kind::ALL.len()],
            connection: format!("conn-{n}"),
            action: (n % 2 == 1).then(|| "update".to_owned()),
            format,
            company_id: Some(i64::from(n) - 2),
            ticket_id: (n > 1).then_some(i64::MAX),
            from_me: [None, Some(true), Some(false)][usize::from(n) % 3],
            received_at_ms: 1_700_000_000_000 + u64::from(n),
            change: Some(Change::ALL[usize::from(n) % Change::ALL.len()]),
            body: Default::default(),
        },
        body,
        earlier_id: None,
        wa_id: None,
    }
}

fn round_trip(event: &Event) -> Event {
    let mut out = Vec::new();
    record::encode_event_into(&mut out, event).expect("a decoded event encodes");
    record::decode_event(&out).expect("what was encoded decodes")
}

thread_local! {
    static SCRATCH: PathBuf = std::env::temp_dir().join(format!(
        "relay-fuzz-segment-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
}

/// A file holding `content`, one per thread (libFuzzer runs a target on one thread).
fn scratch_file(content: &[u8]) -> File {
    File::open(scratch_path(content)).expect("scratch file")
}

/// The path of [`scratch_file`], holding `content`.
fn scratch_path(content: &[u8]) -> PathBuf {
    SCRATCH.with(|path| {
        let mut file = File::create(path).expect("scratch file");
        file.write_all(content).expect("scratch write");
        path.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target passes its own seeds, and damaged or cut copies of them.
    #[test]
    fn every_target_takes_its_seeds_and_damage_to_them() {
        for (name, target) in TARGETS {
            let seeds = seeds(name);
            assert!(!seeds.is_empty(), "{name} has seeds");
            for seed in seeds {
                target(&seed);
                for at in (0..seed.len()).step_by(7) {
                    let mut flipped = seed.clone();
                    flipped[at] ^= 0x5A;
                    target(&flipped);
                    target(&seed[..at]);
                }
            }
        }
        SCRATCH.with(|path| {
            let _ = std::fs::remove_file(path);
        });
    }

    /// The seed corpus in `fuzz/seeds/` is what [`seeds`] makes; after a change to a layout,
    /// `FUZZ_SEEDS_WRITE=1 cargo test --lib store::fuzz` writes it again.
    #[test]
    fn the_seed_corpus_in_the_repo_is_what_the_code_makes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        if std::env::var_os("FUZZ_SEEDS_WRITE").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            write_seeds(&dir).unwrap();
        }
        for (target, _) in TARGETS {
            for (n, seed) in seeds(target).iter().enumerate() {
                let path = dir.join(target).join(n.to_string());
                let stored = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("{}: {e} (FUZZ_SEEDS_WRITE=1 writes it)", path.display())
                });
                assert_eq!(
                    &stored,
                    seed,
                    "{} is stale (FUZZ_SEEDS_WRITE=1 writes it)",
                    path.display()
                );
            }
        }
    }
}
