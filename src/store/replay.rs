//! Operator reads and replays: dead letters (list, show, find, requeue) and kept delivered
//! events (by delivery window, kind, connection), put back through the writer under new seqs.

use super::error::StoreError;
use super::index;
use super::layout::marks::State;
use super::layout::record;
use super::segment;
use super::types::{DeadLetter, Delivered, ReplayFilter};
use super::writer::{Command, Requeue, Source};
use super::Store;

/// Events handed to the writer per replay command: bounds one group.
pub(super) const REQUEUE_BATCH: usize = 1024;

/// What a replay puts back, read first: the reads (sled, segment files) block, so a server reads
/// on its blocking pool and then puts back ([`Store::put_back`]) from an async worker.
#[derive(Default)]
pub struct Replays {
    items: Vec<Requeue>,
}

impl Replays {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl Store {
    /// Puts the one record `seq` back into the outbox with its `message_id`: its dead letter,
    /// or a delivered record (marked replayed). Returns how many (0: neither, or taken).
    pub async fn replay_event(&self, seq: u64) -> Result<usize, StoreError> {
        self.put_back(self.read_replay_event(seq)?).await
    }

    /// Reads what [`Store::replay_event`] puts back (blocking): the dead letter `seq`, or the
    /// delivered record `seq` while it is kept; nothing for any other.
    pub fn read_replay_event(&self, seq: u64) -> Result<Replays, StoreError> {
        if self.dead_get(seq)?.is_some() {
            return self.read_requeue_dead(Some(&[seq]));
        }
        let delivered = index::lock(&self.inner.table).state_of(seq) == Some(State::Delivered);
        if !delivered || self.inner.keep_delivered.is_zero() {
            return Ok(Replays::default());
        }
        let items = self
            .event_record(seq)?
            .map(|event| Requeue {
                event,
                source: Source::Delivered(seq),
            })
            .into_iter()
            .collect();
        Ok(Replays { items })
    }

    /// Puts back what was read for a replay, in batches; returns how many went back (one whose
    /// source was taken meanwhile, by another replay, does not: I13). Durable when it returns.
    pub async fn put_back(&self, replays: Replays) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut items = replays.items;
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(REQUEUE_BATCH));
            total += self.requeue(std::mem::replace(&mut items, rest)).await?;
        }
        Ok(total)
    }

    /// Up to `limit` dead letters, oldest outbox position first.
    pub fn dead_list(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters = Vec::new();
        for entry in self.inner.dead.iter().take(limit) {
            let (key, value) = entry?;
            letters.push(dead_letter_of(record::decode_seq(&key)?, &value)?);
        }
        Ok(letters)
    }

    /// The dead letter at outbox position `seq`.
    pub fn dead_get(&self, seq: u64) -> Result<Option<DeadLetter>, StoreError> {
        match self.inner.dead.get(record::seq_key(seq))? {
            Some(value) => Ok(Some(dead_letter_of(seq, &value)?)),
            None => Ok(None),
        }
    }

    /// The dead letters of one event id (normally one; more if it died, was replayed, died again).
    pub fn dead_find(&self, id: &crate::event::EventId) -> Result<Vec<DeadLetter>, StoreError> {
        let mut found = Vec::new();
        for entry in self.inner.dead.iter() {
            let (key, value) = entry?;
            let letter = dead_letter_of(record::decode_seq(&key)?, &value)?;
            if letter.event.meta.id == *id {
                found.push(letter);
            }
        }
        Ok(found)
    }

    /// Puts dead letters back into the outbox (all when `seqs` is `None`), to be published
    /// again with their original ids; returns how many. Durable when it returns.
    pub async fn requeue_dead(&self, seqs: Option<&[u64]>) -> Result<usize, StoreError> {
        self.put_back(self.read_requeue_dead(seqs)?).await
    }

    /// Reads what [`Store::requeue_dead`] puts back (blocking).
    pub fn read_requeue_dead(&self, seqs: Option<&[u64]>) -> Result<Replays, StoreError> {
        let letters = match seqs {
            None => self.dead_list(usize::MAX)?,
            Some(seqs) => {
                let mut letters = Vec::new();
                for &seq in seqs {
                    letters.extend(self.dead_get(seq)?);
                }
                letters
            }
        };
        let items = letters
            .into_iter()
            .map(|letter| Requeue {
                event: letter.event,
                source: Source::Dead(letter.seq),
            })
            .collect();
        Ok(Replays { items })
    }

    /// Kept delivered events matching `filter`, in seq order, at most `limit`.
    pub fn delivered_matching(
        &self,
        filter: &ReplayFilter,
        limit: usize,
    ) -> Result<Vec<Delivered>, StoreError> {
        let mut out = Vec::new();
        self.scan_delivered(filter, None, self.last_seq(), |_, delivered| {
            out.push(delivered);
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Puts kept delivered events matching `filter` back into the outbox: they are published
    /// again with their original `message_id`. Returns how many.
    pub async fn replay_delivered(&self, filter: &ReplayFilter) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut after = None;
        // Only what was delivered when the command came: a replayed copy is a new record, and
        // one confirmed before the scan moves on must not be replayed again (and again).
        let through = self.last_seq();
        loop {
            // The scan reads sled and segment files: one hop per batch.
            let window = filter.clone();
            let items = self
                .on_blocking_pool(move |store| store.delivered_batch(&window, after, through))
                .await?;
            let Some(last) = items.last() else {
                return Ok(total);
            };
            after = Some(last.source.seq());
            total += self.requeue(items).await?;
        }
    }

    /// Up to one batch of kept delivered events in the filter's window after `after` (blocking).
    fn delivered_batch(
        &self,
        filter: &ReplayFilter,
        after: Option<u64>,
        through: Option<u64>,
    ) -> Result<Vec<Requeue>, StoreError> {
        let mut items = Vec::new();
        self.scan_delivered(filter, after, through, |seq, delivered| {
            items.push(Requeue {
                event: delivered.event,
                source: Source::Delivered(seq),
            });
            items.len() < REQUEUE_BATCH
        })?;
        Ok(items)
    }

    /// The newest record's seq, if any.
    fn last_seq(&self) -> Option<u64> {
        index::lock(&self.inner.table)
            .segments
            .values()
            .rev()
            .find_map(|segment| segment.last_seq())
    }

    /// Visits kept delivered events in the filter's window (seq after `after`, up to `through`),
    /// in seq order, while `visit` returns true. The index is copied per batch; files are read
    /// outside its lock.
    fn scan_delivered(
        &self,
        filter: &ReplayFilter,
        mut after: Option<u64>,
        through: Option<u64>,
        mut visit: impl FnMut(u64, Delivered) -> bool,
    ) -> Result<(), StoreError> {
        let Some(through) = through else {
            return Ok(());
        };
        if self.inner.keep_delivered.is_zero() {
            return Ok(());
        }
        loop {
            let batch = index::lock(&self.inner.table).delivered_between(
                filter.since_ms,
                filter.until_ms,
                after,
                REQUEUE_BATCH,
            );
            let Some((_, last)) = batch.last() else {
                return Ok(());
            };
            after = Some(last.seq);
            for (file, entry) in batch {
                if entry.seq > through {
                    return Ok(());
                }
                let (_, event) = match segment::read(&file, entry.offset, entry.len) {
                    Ok(read) => read,
                    // Retention may have dropped its segment since: it is no longer kept.
                    Err(StoreError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if !matches(filter, &event.meta) {
                    continue;
                }
                let delivered = Delivered {
                    delivered_at_ms: entry.at_ms,
                    event,
                };
                if !visit(entry.seq, delivered) {
                    return Ok(());
                }
            }
        }
    }

    pub(super) async fn requeue(&self, items: Vec<Requeue>) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let moved = self
            .request(|reply| Command::Requeue { items, reply })
            .await?;
        // Operator commands are rare: the source's removal is made durable right away (I13).
        self.flush().await?;
        Ok(moved)
    }
}

fn dead_letter_of(seq: u64, value: &[u8]) -> Result<DeadLetter, StoreError> {
    let (info, event) = record::decode_dead(value)?;
    Ok(DeadLetter {
        seq,
        event,
        reason: info.reason,
        dead_at_ms: info.dead_at_ms,
    })
}

fn matches(filter: &ReplayFilter, meta: &crate::event::EventMeta) -> bool {
    filter.kind.is_none_or(|kind| kind == meta.kind)
        && filter
            .connection
            .as_deref()
            .is_none_or(|c| c == meta.connection)
}
