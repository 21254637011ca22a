//! Segment files: append-only logs of frames (`layout::frame`), created, scanned at open (reading
//! past damage, finding a torn tail) and read back. A file is named by the first seq it was
//! opened for, zero-padded so names sort in seq order (see the contract in `store`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::StoreError;
use super::index;
use super::layout::frame::{self, Found, HEADER, SEQ};
use super::layout::marks::marks_tree_name;
use crate::event::Event;

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

/// What a scan found: where the last whole record ends, the damaged stretches it read past, and
/// why it stopped before the end of the file (if it did).
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) valid_end: u64,
    pub(super) damaged: Vec<Damage>,
    pub(super) torn: Option<&'static str>,
}

/// Bytes between two readable records that hold no readable record: damage, since whole frames
/// follow them (a crash leaves a bad stretch only at the end of what it was writing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Damage {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) reason: &'static str,
    /// The seq of the last record before the stretch (`None` at the file's start).
    pub(super) after_seq: Option<u64>,
    /// The seq of the record the scan found again after it.
    pub(super) resumed_seq: u64,
}

/// Whether the next record may carry `seq` when the lowest it may carry is `floor`: at or
/// above it, and within 2^32 of it (I3). Seqs grow by one per event in the relay's own segments
/// (with gaps in migrated ones), so a frame that claims a seq outside this range is not one,
/// whatever its checksum says.
fn plausible_seq(seq: u64, floor: u64) -> bool {
    seq >= floor && seq - floor < 1 << 32
}

/// The segment being appended to (only the writer thread holds it).
pub(super) struct Active {
    pub(super) first_seq: u64,
    pub(super) file: File,
    pub(super) len: u64,
}

/// Creates segment `first_seq` (its directory entry durable) with its marks tree, as the active
/// segment and its place in the index.
pub(super) fn create(
    db: &sled::Db,
    dir: &Path,
    first_seq: u64,
) -> Result<(Active, index::Segment), StoreError> {
    let path = dir.join(file_name(first_seq));
    // Whole bodies: the relay's user's alone, whatever the umask (store::private).
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(&path)?;
    // I12: the entry is durable before any record goes into the file.
    sync_dir(dir)?;
    let len = file.metadata()?.len();
    let reader = File::open(&path)?;
    let marks = db.open_tree(marks_tree_name(first_seq))?;
    let mut info = index::Segment::new(path, Arc::new(reader), marks);
    info.len = len;
    Ok((
        Active {
            first_seq,
            file,
            len,
        },
        info,
    ))
}

/// Reads a segment from the start, checking each frame (I3). A frame that is incomplete or fails its
/// CRC starts a search for the next whole frame: if there is one, the stretch between is
/// damage, reported, and the scan goes on; if not, it is a torn tail and the scan stops there.
/// `first_seq` is the seq the segment is named for (no record in it is below it).
pub(super) fn scan(
    file: &File,
    first_seq: u64,
    mut visit: impl FnMut(Found, &[u8]),
) -> io::Result<Scan> {
    let size = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut payload = Vec::new();
    let mut damaged = Vec::new();
    let mut last_seq: Option<u64> = None;
    let torn = loop {
        if offset == size {
            break None;
        }
        let floor = last_seq.map_or(first_seq, |last| last.saturating_add(1));
        let bad = match read_frame(&mut reader, offset, size, &mut payload)? {
            Ok(seq) if plausible_seq(seq, floor) => {
                let found = Found {
                    seq,
                    offset,
                    len: payload.len() as u32 + HEADER as u32,
                };
                visit(found, &payload[SEQ..]);
                offset += u64::from(found.len);
                last_seq = Some(seq);
                continue;
            }
            Ok(_) => "record out of sequence",
            Err(reason) => reason,
        };
        match resync(file, offset + 1, size, floor, &mut payload)? {
            Some((to, resumed_seq)) => {
                damaged.push(Damage {
                    from: offset,
                    to,
                    reason: bad,
                    after_seq: last_seq,
                    resumed_seq,
                });
                offset = to;
                reader.seek(io::SeekFrom::Start(to))?;
            }
            None => break Some(bad),
        }
    };
    Ok(Scan {
        valid_end: offset,
        damaged,
        torn,
    })
}

/// Reads the frame at `offset` (where `reader` stands) into `payload`: its seq, or why it is
/// not a whole frame.
fn read_frame(
    reader: &mut impl Read,
    offset: u64,
    size: u64,
    payload: &mut Vec<u8>,
) -> io::Result<Result<u64, &'static str>> {
    if size - offset < HEADER as u64 {
        return Ok(Err("cut inside a frame header"));
    }
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header)?;
    let (len, crc) = frame::split_header(&header);
    if !frame::length_fits(len) {
        return Ok(Err("impossible frame length"));
    }
    if size - offset - (HEADER as u64) < u64::from(len) {
        return Ok(Err("cut inside a record"));
    }
    payload.resize(len as usize, 0);
    reader.read_exact(payload)?;
    if crc32fast::hash(payload) != crc {
        return Ok(Err("checksum mismatch"));
    }
    Ok(Ok(frame::seq_of(payload)))
}

/// The first offset at or after `from` where a whole frame starts whose seq is plausible
/// above `floor`, and that seq. Only a candidate whose length fits the file and whose seq is
/// plausible has its checksum computed, so a search through text costs little.
fn resync(
    file: &File,
    from: u64,
    size: u64,
    floor: u64,
    payload: &mut Vec<u8>,
) -> io::Result<Option<(u64, u64)>> {
    const PROBE: usize = HEADER + SEQ;
    const CHUNK: usize = 1 << 20;
    let mut window = vec![0u8; CHUNK + PROBE];
    let mut base = from;
    while base + PROBE as u64 <= size {
        let have = usize::try_from(size - base).map_or(window.len(), |n| n.min(window.len()));
        file.read_exact_at(&mut window[..have], base)?;
        let starts = (have - PROBE + 1).min(CHUNK);
        for i in 0..starts {
            let at = base + i as u64;
            let (len, crc) = frame::split_header(&window[i..]);
            let seq = frame::seq_of(&window[i + HEADER..i + PROBE]);
            if !frame::length_fits(len)
                || size - at - (HEADER as u64) < u64::from(len)
                || !plausible_seq(seq, floor)
            {
                continue;
            }
            payload.resize(len as usize, 0);
            file.read_exact_at(payload, at + HEADER as u64)?;
            if crc32fast::hash(payload) == crc {
                return Ok(Some((at, seq)));
            }
        }
        base += starts as u64;
    }
    Ok(None)
}

/// Reads the record of a frame found earlier (or written by this process).
pub(super) fn read(file: &File, offset: u64, len: u32) -> Result<(u64, Event), StoreError> {
    let mut frame = vec![0u8; len as usize];
    file.read_exact_at(&mut frame, offset)?;
    frame::decode_frame(&Bytes::from(frame))
}

/// Reads frames that follow each other in `file` from `offset`, of these lengths, with one read;
/// their bodies share the buffer read (no copy each).
#[cfg(test)]
pub(super) fn read_run(
    file: &File,
    offset: u64,
    lens: &[u32],
) -> Result<Vec<(u64, Event)>, StoreError> {
    read_frames(file, offset, lens)?
        .iter()
        .map(frame::decode_frame)
        .collect()
}

/// The bytes of frames that follow each other in `file` from `offset`, of these lengths, with
/// one read (slices of one buffer), unchecked.
pub(super) fn read_frames(file: &File, offset: u64, lens: &[u32]) -> io::Result<Vec<Bytes>> {
    let total: usize = lens.iter().map(|len| *len as usize).sum();
    let mut buf = vec![0u8; total];
    file.read_exact_at(&mut buf, offset)?;
    let buf = Bytes::from(buf);
    let mut start = 0;
    Ok(lens
        .iter()
        .map(|len| {
            let end = start + *len as usize;
            let frame = buf.slice(start..end);
            start = end;
            frame
        })
        .collect())
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
            frame::frame(&mut buf, u64::from(n), &event(n)).unwrap();
        }
        File::create(&path).unwrap().write_all(&buf).unwrap();
        (path, offsets)
    }

    /// The scan and the records it visited.
    fn scan_path(path: &Path) -> (Scan, Vec<Found>) {
        let mut records = Vec::new();
        let scan = scan(&File::open(path).unwrap(), 1, |found, _| {
            records.push(found)
        })
        .unwrap();
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

    fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = std::fs::read(path).unwrap();
        change(&mut bytes);
        std::fs::write(path, &bytes).unwrap();
    }

    #[test]
    fn a_flipped_byte_mid_file_loses_its_record_only() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        rewrite(&path, |bytes| {
            bytes[offsets[1] as usize + HEADER + 20] ^= 0x40
        });
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, None);
        assert_eq!(found.valid_end, std::fs::metadata(&path).unwrap().len());
        assert_eq!(
            found.damaged,
            [Damage {
                from: offsets[1],
                to: offsets[2],
                reason: "checksum mismatch",
                after_seq: Some(1),
                resumed_seq: 3,
            }]
        );
        let seqs: Vec<u64> = records.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(records[1].offset, offsets[2]);
        let file = File::open(&path).unwrap();
        assert!(matches!(
            read(&file, offsets[1], (offsets[2] - offsets[1]) as u32),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn damage_at_the_start_of_a_file_is_read_past() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        // A length no frame has: the header itself is what is damaged.
        rewrite(&path, |bytes| bytes[3] = 0xFF);
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, None);
        assert_eq!(found.damaged.len(), 1);
        let damage = found.damaged[0];
        assert_eq!((damage.from, damage.to), (0, offsets[1]));
        assert_eq!(damage.reason, "impossible frame length");
        assert_eq!((damage.after_seq, damage.resumed_seq), (None, 2));
        assert_eq!(records.iter().map(|f| f.seq).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_long_stretch_of_zeros_between_frames_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        // Longer than the window the search reads at a time, so it crosses one.
        let hole = (1 << 20) + 5000;
        rewrite(&path, |bytes| {
            let at = offsets[2] as usize;
            bytes.splice(at..at, std::iter::repeat_n(0u8, hole));
        });
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, None);
        assert_eq!(found.damaged.len(), 1);
        let damage = found.damaged[0];
        assert_eq!(damage.from, offsets[2]);
        assert_eq!(damage.to, offsets[2] + hole as u64);
        assert_eq!(damage.reason, "impossible frame length");
        assert_eq!((damage.after_seq, damage.resumed_seq), (Some(2), 3));
        assert_eq!(records.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(records[2].offset, offsets[2] + hole as u64);
    }

    #[test]
    fn damage_with_no_whole_frame_after_it_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = three(&dir);
        rewrite(&path, |bytes| {
            bytes[offsets[2] as usize + HEADER + 20] ^= 0x40
        });
        let (found, records) = scan_path(&path);
        assert_eq!(found.torn, Some("checksum mismatch"));
        assert!(found.damaged.is_empty());
        assert_eq!(found.valid_end, offsets[2]);
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_whole_frame_out_of_sequence_is_not_taken_for_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(10));
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        // 10, then a frame whose checksum holds but whose seq goes back, then 12; a file
        // whose first record lies below the seq it is named for is damaged too.
        for seq in [10, 4, 12] {
            offsets.push(buf.len() as u64);
            frame::frame(&mut buf, seq, &event(seq as u8)).unwrap();
        }
        File::create(&path).unwrap().write_all(&buf).unwrap();
        let mut records = Vec::new();
        let found = scan(&File::open(&path).unwrap(), 10, |f, _| records.push(f.seq)).unwrap();
        assert_eq!(records, [10, 12]);
        assert_eq!(found.torn, None);
        assert_eq!(found.damaged.len(), 1);
        assert_eq!(found.damaged[0].reason, "record out of sequence");
        assert_eq!(
            (found.damaged[0].from, found.damaged[0].to),
            (offsets[1], offsets[2])
        );

        let mut records = Vec::new();
        let found = scan(&File::open(&path).unwrap(), 11, |f, _| records.push(f.seq)).unwrap();
        assert_eq!(records, [12]);
        assert_eq!(found.damaged[0].reason, "record out of sequence");
        assert_eq!(
            (found.damaged[0].from, found.damaged[0].to),
            (0, offsets[2])
        );
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
