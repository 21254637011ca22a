//! The store's public types: outcomes, entries, stats and the replay filter; and the answer
//! channel its threads share.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::error::StoreError;
use crate::event::Event;

/// How a store thread answers a request.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Result of appending an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// New event, durably in the outbox (fsynced).
    Accepted,
    /// Its dedup key is held: nothing was written.
    Duplicate,
    /// Held under the key an earlier release gave its body (`Event::earlier_id`), this id:
    /// an event accepted before the upgrade. Nothing was written.
    DuplicateOf(crate::event::EventId),
}

/// How much the publisher can take in: at most `events`, and no more than `bytes` of records
/// (at least one record, however large, so an oversized event cannot wedge the outbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    pub events: usize,
    pub bytes: u64,
}

impl Room {
    /// Up to `events`, whatever their size.
    pub fn events(events: usize) -> Room {
        Room {
            events,
            bytes: u64::MAX,
        }
    }

    /// Whether a batch holding `taken` records of `bytes` in all may take one of `size` more.
    pub(crate) fn admits(&self, taken: usize, bytes: u64, size: u64) -> bool {
        taken < self.events && (taken == 0 || bytes.saturating_add(size) <= self.bytes)
    }
}

/// An outbox entry waiting for its publisher confirm; cheap to clone (the event is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Outbox position: increasing in acceptance order, never reused.
    pub seq: u64,
    pub event: Arc<Event>,
}

/// Pending records read from the segments, in seq order.
#[derive(Debug, Default)]
pub struct Records {
    pub events: Vec<Pending>,
    /// Records that fail their checks (a flipped bit, a torn header): what could be made of
    /// each (its event if its record still decodes, else its bytes as the body) and why, for
    /// the publisher to move to the dead letters.
    pub unreadable: Vec<(Pending, String)>,
    /// The highest seq read, readable or not.
    pub last: Option<u64>,
}

/// What the publisher hands back: confirmed seqs, and events the broker refused for good
/// (with the reason), carried whole so the dead letter needs no read of the segment.
#[derive(Debug, Default)]
pub struct Settlement {
    pub delivered: Vec<u64>,
    pub dead: Vec<(Pending, String)>,
    /// When the publisher first handed each of these to the broker (seq, unix ms): the event
    /// index's "published" step, carried with the confirm so it costs no write of its own.
    pub published: Vec<(u64, u64)>,
}

impl Settlement {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty() && self.dead.is_empty()
    }
}

/// An event the broker refused for good, kept for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its former outbox position.
    pub seq: u64,
    pub event: Event,
    pub reason: String,
    pub dead_at_ms: u64,
}

/// Counts for readiness, stats and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub outbox: usize,
    /// Bytes of the events in the outbox (what `max_outbox_bytes` limits).
    pub outbox_bytes: u64,
    /// Receive time of the oldest event waiting for the broker.
    pub oldest_pending_ms: Option<u64>,
    pub dead: usize,
    pub dedup_keys: usize,
    /// Delivered events kept for replay (in live segments), and their bytes.
    pub delivered_kept: usize,
    pub delivered_bytes: u64,
    /// sled's files plus the segments.
    pub disk_bytes: u64,
    /// Damage read past when the store was opened (see [`Damaged`]).
    pub damaged: Damaged,
}

/// Damaged stretches of segment files found when the store was opened: bytes that held no whole
/// record amid whole ones (a bad disk, a bit flip), and the records that were in them. Each is
/// logged as an error with its segment, offsets and seqs. Zero on a healthy store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Damaged {
    pub bytes: u64,
    /// The seqs missing between the whole records on either side of each stretch. An upper
    /// bound in segments migrated from the sled outbox, whose seqs may have gaps.
    pub lost_records: u64,
}

/// Back-pressure limits the writer enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_outbox: u64,
    pub(crate) max_outbox_bytes: u64,
}

/// A kept delivered event (see `storage.keep_delivered`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub delivered_at_ms: u64,
    pub event: Event,
}

/// Which kept delivered events `replay` re-publishes.
#[derive(Clone, Debug, Default)]
pub struct ReplayFilter {
    /// Delivered at or after (unix ms).
    pub since_ms: u64,
    /// Delivered before (unix ms); `None`: up to now.
    pub until_ms: Option<u64>,
    pub kind: Option<crate::event::Kind>,
    pub connection: Option<String>,
}
