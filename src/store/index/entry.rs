//! One record of a live segment as the index holds it, and a change of its state.

use crate::store::layout::frame::Found;
use crate::store::layout::marks::State;

/// One record of a live segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) offset: u64,
    /// Frame length.
    pub(crate) len: u32,
    pub(crate) state: State,
    /// Receive time while pending (the oldest-pending age), settle time after.
    pub(crate) at_ms: u64,
}

impl Entry {
    pub(crate) fn pending(found: Found, received_at_ms: u64) -> Entry {
        Entry {
            seq: found.seq,
            offset: found.offset,
            len: found.len,
            state: State::Pending,
            at_ms: received_at_ms,
        }
    }
}

/// A state change the writer applied, to be persisted as a mark.
pub(crate) struct Changed {
    pub(crate) segment: u64,
    pub(crate) entry: Entry,
    /// The time of the state it left: a replayed record's confirm, which the event index
    /// keeps once the replay's mark took the entry's time (I16).
    pub(crate) left_at_ms: u64,
}
