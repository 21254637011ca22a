//! The delivery index: every live segment, where each of its records lies and what became of it.
//!
//! Held in memory so the publisher's catch-up reads, replay and stats never touch sled: a record
//! is a 32-byte entry from the first that may still be pending, and is packed to a few bytes
//! once it and every record before it settled (`packed`), in batches (`table::PACK_AFTER`) while its
//! segment takes appends and whole once the segment is closed. Its only writer is the store's
//! writer thread. What it knows is persisted as marks (`layout::marks`). No I/O here: the
//! index holds the segments' read handles and marks trees for others to use.

mod entry;
pub(crate) mod packed;
mod table;

pub(crate) use entry::{Changed, Entry};
pub(crate) use table::{lock, Segment, Table};
