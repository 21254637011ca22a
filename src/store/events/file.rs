//! A segment's summaries on disk (I16): `segments/<first seq, 20 digits>.events`, blocks of
//! summaries appended as frames (`layout::frame`, the block's first seq in the seq's place).
//! A block written again (a time learnt after its first write) is appended again and the last
//! copy is the block. Kept out of sled so that sled's cache does not hold every summary
//! written (about 100 bytes of resident memory per kept event); the file is read only for a
//! page of search results, and what it lacks after a crash is made again from the records.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::store::error::StoreError;
use crate::store::layout::frame::{self, split_header, HEADER};
use crate::store::layout::summary::{decode_block, encode_block, Summary, BLOCK};

const SUFFIX: &str = ".events";

/// The summary file of the segment whose first seq is `first`, in the segments' folder.
pub(crate) fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

/// The first seq a summary file's name stands for; `None` for any other name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    name.strip_suffix(SUFFIX)?.parse().ok()
}

pub(crate) struct SummaryFile {
    file: File,
    place: Mutex<Place>,
}

/// Where each block's last copy lies, and what the file holds.
#[derive(Default)]
struct Place {
    /// By the block's first seq: offset and length of its frame.
    blocks: BTreeMap<u64, (u64, u32)>,
    len: u64,
    /// Written to since the last sync.
    dirty: bool,
}

impl SummaryFile {
    /// Opens (or creates, private to the relay's user) the file at `path` and reads its blocks;
    /// returns it with every summary its blocks hold. A frame that fails its checks ends what
    /// is read: the file is cut there (what followed is made again from the records).
    pub(crate) fn open(path: &Path) -> Result<(SummaryFile, Vec<Summary>), StoreError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut place = Place::default();
        let mut decoded: BTreeMap<u64, Vec<Summary>> = BTreeMap::new();
        let mut at = 0usize;
        while let Some(header) = bytes.get(at..at + HEADER) {
            let (len, _) = split_header(header);
            let end = at + HEADER + len as usize;
            let Some(whole) = bytes.get(at..end).filter(|_| frame::length_fits(len)) else {
                break;
            };
            let read =
                frame::open_frame(whole).and_then(|(key, block)| Ok((key, decode_block(block)?)));
            let Ok((key, block)) = read else {
                tracing::warn!(file = %path.display(), offset = at, "event summaries cut at an unreadable block; made again from the records");
                break;
            };
            place.blocks.insert(key, (at as u64, len + HEADER as u32));
            decoded.insert(key, block);
            at = end;
        }
        if at < bytes.len() {
            file.set_len(at as u64)?;
        }
        place.len = at as u64;
        let summaries = decoded.into_values().flatten().collect();
        Ok((
            SummaryFile {
                file,
                place: Mutex::new(place),
            },
            summaries,
        ))
    }

    fn place(&self) -> MutexGuard<'_, Place> {
        // Map updates only after a whole write: a panic leaves nothing torn.
        self.place.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Summaries of consecutive seqs, as blocks keyed by their first seq, in one write.
    pub(crate) fn write(&self, summaries: &[Summary]) -> Result<(), StoreError> {
        self.append(summaries.chunks(BLOCK))
    }

    /// Blocks (each whole and in seq order) appended in one write; each is now its key's block.
    pub(crate) fn append<'a>(
        &self,
        blocks: impl IntoIterator<Item = &'a [Summary]>,
    ) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for block in blocks {
            let Some(first) = block.first() else {
                continue;
            };
            let start = buf.len();
            let len = frame::frame_record(&mut buf, first.seq, &encode_block(block))?;
            placed.push((first.seq, start as u64, len));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let mut place = self.place();
        // O_APPEND: the write lands at the end, which `len` follows (one writer: the flusher,
        // or the open before any).
        if let Err(e) = (&self.file).write_all(&buf) {
            // A part may have gone in (a full disk): cut it off so the blocks after it are
            // found where `len` says and a reopen does not stop at it.
            if self.file.set_len(place.len).is_err() {
                place.len = self.file.metadata().map_or(place.len, |m| m.len());
            }
            return Err(e.into());
        }
        let base = place.len;
        for (key, start, len) in placed {
            place.blocks.insert(key, (base + start, len));
        }
        place.len += buf.len() as u64;
        place.dirty = true;
        Ok(())
    }

    /// The block holding `seq` if any: its summaries.
    pub(crate) fn block_at(&self, seq: u64) -> Result<Option<Vec<Summary>>, StoreError> {
        let Some((_, &(offset, len))) = self.place().blocks.range(..=seq).next_back() else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; len as usize];
        self.file.read_exact_at(&mut bytes, offset)?;
        let (_, block) = frame::open_frame(&bytes)?;
        Ok(Some(decode_block(block)?))
    }

    /// Bytes of the file, copies of rewritten blocks included.
    pub(crate) fn len(&self) -> u64 {
        self.place().len
    }

    /// Makes what was written durable (an fdatasync, if anything was).
    pub(crate) fn sync(&self) -> io::Result<()> {
        if !std::mem::take(&mut self.place().dirty) {
            return Ok(());
        }
        let result = self.file.sync_data();
        if result.is_err() {
            self.place().dirty = true;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, Kind};

    fn summary(seq: u64) -> Summary {
        Summary {
            seq,
            id: EventId([seq as u8; 16]),
            received_at_ms: 1_000 + seq,
            stored_at_ms: 2_000 + seq,
            size: 10,
            company_id: None,
            ticket_id: Some(7),
            kind: Kind::Message,
            connection: "c".to_owned(),
            change: None,
            format: None,
            wa_id: Some(format!("wa-{seq}")),
            replay_of: None,
            published_at_ms: None,
            confirmed_at_ms: None,
        }
    }

    fn seqs(summaries: &[Summary]) -> Vec<u64> {
        summaries.iter().map(|s| s.seq).collect()
    }

    #[test]
    fn blocks_read_back_by_seq_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let at = path(dir.path(), 1);
        let (file, none) = SummaryFile::open(&at).unwrap();
        assert!(none.is_empty());
        let all: Vec<Summary> = (1..=150).map(summary).collect();
        file.write(&all).unwrap();
        file.sync().unwrap();
        assert_eq!(seqs(&file.block_at(70).unwrap().unwrap())[0], 65);
        assert_eq!(file.block_at(0).unwrap(), None);
        drop(file);
        let (again, read) = SummaryFile::open(&at).unwrap();
        assert_eq!(read, all);
        assert_eq!(seqs(&again.block_at(150).unwrap().unwrap())[0], 129);
    }

    #[test]
    fn a_block_written_again_is_its_last_copy() {
        let dir = tempfile::tempdir().unwrap();
        let at = path(dir.path(), 1);
        let (file, _) = SummaryFile::open(&at).unwrap();
        let mut block: Vec<Summary> = (1..=3).map(summary).collect();
        file.write(&block).unwrap();
        block[1].published_at_ms = Some(9);
        file.append([&block[..]]).unwrap();
        assert_eq!(
            file.block_at(2).unwrap().unwrap()[1].published_at_ms,
            Some(9)
        );
        drop(file);
        let (_, read) = SummaryFile::open(&at).unwrap();
        assert_eq!(read, block);
    }

    #[test]
    fn a_torn_or_flipped_block_and_what_follows_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let at = path(dir.path(), 1);
        let (file, _) = SummaryFile::open(&at).unwrap();
        file.write(&(1..=64).map(summary).collect::<Vec<_>>())
            .unwrap();
        let whole = file.len();
        file.write(&(65..=128).map(summary).collect::<Vec<_>>())
            .unwrap();
        drop(file);
        // A torn tail: the second block cut short.
        let len = std::fs::metadata(&at).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&at)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (file, read) = SummaryFile::open(&at).unwrap();
        assert_eq!(seqs(&read), (1..=64).collect::<Vec<_>>());
        assert_eq!(file.len(), whole);
        assert_eq!(std::fs::metadata(&at).unwrap().len(), whole);
        // A flipped byte in the first block: nothing is taken from it or after it.
        file.write(&(65..=70).map(summary).collect::<Vec<_>>())
            .unwrap();
        drop(file);
        let mut bytes = std::fs::read(&at).unwrap();
        bytes[HEADER + 20] ^= 1;
        std::fs::write(&at, &bytes).unwrap();
        let (file, read) = SummaryFile::open(&at).unwrap();
        assert!(read.is_empty());
        assert_eq!(file.block_at(3).unwrap(), None);
        assert_eq!(file.len(), 0);
    }

    #[test]
    fn names_parse_back() {
        let at = path(Path::new("/x"), 42);
        let name = at.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_name(name), Some(42));
        assert_eq!(parse_name("00000000000000000042.log"), None);
    }
}
