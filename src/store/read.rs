//! The publisher's reads of pending records from the segments: after a seq (catching up, and
//! looking again for one ticket's), or by seq (a ticket's next event when its turn comes). A
//! record that fails its checks is handed back apart, with what could be made of it and why,
//! so the publisher moves it to the dead letters instead of stopping behind it.

use std::fs::File;
use std::sync::Arc;

use super::error::StoreError;
use super::index::{self, Entry};
use super::layout::frame;
use super::segment;
use super::types::{Pending, Records, Room};
use super::Store;

impl Store {
    /// `read` on the blocking pool, where sled and segment reads belong (never an async worker).
    pub(super) async fn on_blocking_pool<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Up to `limit` pending events with `after < seq <= until`, in seq order, read from the
    /// segments; fails on a record that cannot be read (the publisher uses
    /// [`Store::read_records`], which hands such records back apart). Blocking file reads.
    pub fn pending_between(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Result<Vec<Pending>, StoreError> {
        let records = self.records_between(after, until, room)?;
        match records.unreadable.into_iter().next() {
            Some((pending, _)) => Err(StoreError::Unreadable(pending.seq)),
            None => Ok(records.events),
        }
    }

    /// As [`Store::pending_between`] with no upper bound.
    pub fn pending_after(
        &self,
        after: Option<u64>,
        room: Room,
    ) -> Result<Vec<Pending>, StoreError> {
        self.pending_between(after, u64::MAX, room)
    }

    /// [`Store::pending_between`] on the blocking pool: one hop per batch, not per event.
    pub async fn read_pending(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Result<Vec<Pending>, StoreError> {
        self.on_blocking_pool(move |store| store.pending_between(after, until, room))
            .await
    }

    /// The pending records with `after < seq <= until` that fit in `room`, in seq order, the
    /// unreadable ones apart. Blocking file reads: see [`Store::read_records`].
    pub fn records_between(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Result<Records, StoreError> {
        let found = index::lock(&self.inner.table).pending_between(after, until, room);
        read_entries(&found)
    }

    /// [`Store::records_between`] on the blocking pool.
    pub async fn read_records(
        &self,
        after: Option<u64>,
        until: u64,
        room: Room,
    ) -> Result<Records, StoreError> {
        self.on_blocking_pool(move |store| store.records_between(after, until, room))
            .await
    }

    /// The records of these seqs (in seq order) that are still pending, the unreadable ones
    /// apart. Blocking file reads: see [`Store::read_seqs`].
    pub fn records_at(&self, seqs: &[u64]) -> Result<Records, StoreError> {
        let found = index::lock(&self.inner.table).pending_at(seqs);
        read_entries(&found)
    }

    /// [`Store::records_at`] on the blocking pool: one hop for all the seqs due at once.
    pub async fn read_seqs(&self, seqs: Vec<u64>) -> Result<Records, StoreError> {
        self.on_blocking_pool(move |store| store.records_at(&seqs))
            .await
    }
}

/// Reads the records of index entries (in seq order); pending records mostly follow each other
/// in their segment, so each run of them is one read.
fn read_entries(found: &[(Arc<File>, Entry)]) -> Result<Records, StoreError> {
    let mut records = Records {
        last: found.last().map(|(_, e)| e.seq),
        ..Records::default()
    };
    let mut rest = found;
    while let Some((file, first)) = rest.first() {
        let mut end = first.offset + u64::from(first.len);
        let run = 1 + rest[1..]
            .iter()
            .take_while(|(f, e)| {
                let next = Arc::ptr_eq(f, file) && e.offset == end;
                end += u64::from(e.len);
                next
            })
            .count();
        let lens: Vec<u32> = rest[..run].iter().map(|(_, e)| e.len).collect();
        let frames = segment::read_frames(file, first.offset, &lens)?;
        for ((_, entry), bytes) in rest[..run].iter().zip(frames) {
            match frame::decode_frame(&bytes) {
                Ok((seq, event)) if seq == entry.seq => records.events.push(Pending {
                    seq,
                    event: Arc::new(event),
                }),
                Ok(_) => records.unreadable.push(unreadable(
                    entry.seq,
                    &bytes,
                    "the record holds another seq than the index says",
                )),
                Err(StoreError::Corrupt(why)) => {
                    records
                        .unreadable
                        .push(unreadable(entry.seq, &bytes, &why.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        rest = &rest[run..];
    }
    Ok(records)
}

fn unreadable(seq: u64, bytes: &bytes::Bytes, why: &str) -> (Pending, String) {
    tracing::error!(
        seq,
        reason = why,
        "a pending record cannot be read; it goes to the dead letters"
    );
    let event = frame::salvage(bytes, seq);
    (
        Pending {
            seq,
            event: Arc::new(event),
        },
        format!("unreadable in its segment: {why}"),
    )
}
