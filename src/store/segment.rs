//! Segment files: append-only logs of framed event records, and the scan that finds (and cuts) a torn tail.
//!
//! Frame: `[u32 LE payload_len][u32 LE crc32 of payload][payload]`, payload =
//! `[u64 BE seq][outbox record]` (the record module's layout: meta JSON and raw body). The CRC
//! covers the seq too, so a torn or flipped frame is never taken for another event. A file is
//! named by the first seq it was opened for, zero-padded so names sort in seq order.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record;
use super::StoreError;
use crate::event::Event;

pub(super) const HEADER: usize = 8;
const SEQ: usize = 8;
/// Larger than any body the HTTP side accepts; a length beyond it is damage, not a record.
pub(super) const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;
pub(super) const DIR: &str = "segments";
const SUFFIX: &str = ".log";

pub(super) fn dir(storage: &Path) -> PathBuf {
    storage.join(DIR)
}

pub(super) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SUFFIX}")
}

/// The first seq a segment file name stands for; `None` for anything else in the directory.
pub(super) fn parse_name(name: &str) -> Option<u64> {
    name.strip_suffix(SUFFIX)?.parse().ok()
}

/// Appends one framed record to `buf`; returns the frame's length.
pub(super) fn frame(buf: &mut Vec<u8>, seq: u64, event: &Event) -> Result<u32, StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    buf.extend_from_slice(&seq.to_be_bytes());
    record::encode_event_into(buf, event)?;
    seal(buf, start)
}

/// As [`frame`], for a record already in the outbox layout (migration).
pub(super) fn frame_record(buf: &mut Vec<u8>, seq: u64, stored: &[u8]) -> Result<u32, StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(stored);
    seal(buf, start)
}

fn seal(buf: &mut [u8], start: usize) -> Result<u32, StoreError> {
    let payload = &buf[start + HEADER..];
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD)
        .ok_or_else(|| record::corrupt("record larger than a segment frame holds"))?;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(len + HEADER as u32)
}

/// One record found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) seq: u64,
    pub(super) offset: u64,
    /// Frame length, header included.
    pub(super) len: u32,
}

/// What a scan found: where the last whole record ends, and why it stopped early.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) valid_end: u64,
    pub(super) torn: Option<&'static str>,
}

/// Reads a segment from the start, checking each frame; stops at the first one that is
/// incomplete or fails its CRC (everything after a torn frame is unacknowledged).
pub(super) fn scan(file: &File, mut visit: impl FnMut(Found, &[u8])) -> io::Result<Scan> {
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    let torn = loop {
        if offset == size {
            break None;
        }
        let mut header = [0u8; HEADER];
        if size - offset < HEADER as u64 {
            break Some("cut inside a frame header");
        }
        reader.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_PAYLOAD || (len as usize) < SEQ {
            break Some("impossible frame length");
        }
        if size - offset - (HEADER as u64) < u64::from(len) {
            break Some("cut inside a record");
        }
        payload.resize(len as usize, 0);
        reader.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            break Some("checksum mismatch");
        }
        let (seq, rest) = payload.split_at(SEQ);
        let found = Found {
            seq: u64::from_be_bytes(seq.try_into().unwrap_or([0; SEQ])),
            offset,
            len: len + HEADER as u32,
        };
        visit(found, rest);
        offset += u64::from(found.len);
    };
    Ok(Scan {
        valid_end: offset,
        torn,
    })
}

/// Reads the record of a frame found earlier (or written by this process).
pub(super) fn read(file: &File, offset: u64, len: u32) -> Result<(u64, Event), StoreError> {
    let mut frame = vec![0u8; len as usize];
    file.read_exact_at(&mut frame, offset)?;
    decode_frame(&Bytes::from(frame))
}

/// Reads frames that follow each other in `file` from `offset`, of these lengths, with one read;
/// their bodies share the buffer read (no copy each).
pub(super) fn read_run(
    file: &File,
    offset: u64,
    lens: &[u32],
) -> Result<Vec<(u64, Event)>, StoreError> {
    let total: usize = lens.iter().map(|len| *len as usize).sum();
    let mut buf = vec![0u8; total];
    file.read_exact_at(&mut buf, offset)?;
    let buf = Bytes::from(buf);
    let mut start = 0;
    let mut out = Vec::with_capacity(lens.len());
    for len in lens {
        let end = start + *len as usize;
        out.push(decode_frame(&buf.slice(start..end))?);
        start = end;
    }
    Ok(out)
}

/// A whole frame: checksum, seq and event (the body a slice of `frame`).
fn decode_frame(frame: &Bytes) -> Result<(u64, Event), StoreError> {
    let payload = frame
        .get(HEADER..)
        .filter(|p| p.len() >= SEQ)
        .ok_or_else(|| record::corrupt("segment frame shorter than its header"))?;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if crc32fast::hash(payload) != crc {
        return Err(record::corrupt("segment record fails its checksum"));
    }
    let seq = u64::from_be_bytes(payload[..SEQ].try_into().unwrap_or([0; SEQ]));
    let rest = frame.slice(HEADER + SEQ..);
    Ok((seq, record::decode_event_shared(&rest)?))
}

/// Makes a new or removed directory entry durable (an fdatasync of the file does not).
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;

    use super::*;

    fn event(n: u8) -> Event {
        let mut e = crate::store::tests::event(n, 1);
        e.body = Bytes::from(vec![n; 100]);
        e
    }

    /// A file holding three framed records; returns it and the frames' offsets.
    fn three(dir: &tempfile::TempDir) -> (PathBuf, Vec<u64>) {
        let path = dir.path().join(file_name(1));
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for n in 1..=3 {
            offsets.push(buf.len() as u64);
            frame(&mut buf, u64::from(n), &event(n)).unwrap();
        }
        File::create(&path).unwrap().write_all(&buf).unwrap();
        (path, offsets)
    }

    /// The scan and the records it visited.
    fn scan_path(path: &Path) -> (Scan, Vec<Found>) {
        let mut records = Vec::new();
        let scan = scan(&File::open(path).unwrap(), |found, _| records.push(found)).unwrap();
        (scan, records)
    }

    #[test]
    fn whole_file_scans_and_records_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        let (found, records) = scan_path(&path);
        assert!(found.torn.is_none());
        assert_eq!(found.valid_end, std::fs::metadata(&path).unwrap().len());
        let seqs: Vec<u64> = records.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(
            records.iter().map(|f| f.offset).collect::<Vec<_>>(),
            offsets
        );
        let file = File::open(&path).unwrap();
        let (seq, back) = read(&file, records[1].offset, records[1].len).unwrap();
        assert_eq!((seq, back), (2, event(2)));

        // A run of frames read at once gives what reading each gives.
        let lens: Vec<u32> = records[1..].iter().map(|f| f.len).collect();
        let run = read_run(&file, records[1].offset, &lens).unwrap();
        assert_eq!(run, [(2, event(2)), (3, event(3))]);
        // A run whose lengths do not follow the frames is refused, not misread.
        let shifted = [records[1].len + 1, records[2].len - 1];
        assert!(read_run(&file, records[1].offset, &shifted).is_err());
    }

    fn cut_at(path: &Path, len: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    #[test]
    fn a_tail_cut_mid_header_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        cut_at(&path, offsets[2] + 3);
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, Some("cut inside a frame header"));
        assert_eq!(found.valid_end, offsets[2]);
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_tail_cut_mid_body_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        cut_at(&path, offsets[2] + 40);
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, Some("cut inside a record"));
        assert_eq!(found.valid_end, offsets[2]);
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_flipped_byte_stops_the_scan_at_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = offsets[1] as usize + HEADER + 20;
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, Some("checksum mismatch"));
        assert_eq!(found.valid_end, offsets[1]);
        assert_eq!(records.len(), 1);
        let file = File::open(&path).unwrap();
        assert!(matches!(
            read(&file, offsets[1], (offsets[2] - offsets[1]) as u32),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn garbage_length_is_not_taken_for_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&[0xFF; 12]).unwrap();
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, Some("impossible frame length"));
        assert_eq!(records.len(), 3);
        assert!(found.valid_end > offsets[2]);
    }

    #[test]
    fn names_sort_by_seq_and_parse_back() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_name("conf"), None);
    }
}
