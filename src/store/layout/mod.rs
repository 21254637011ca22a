//! Byte layouts of everything the store keeps (the contract in `store` has them all): pure
//! encoding and decoding, no I/O, and the names of the sled trees and keys that hold them.
//!
//! `frame`: a segment's frames; `record`: event and dead records; `meta`: the binary metadata
//! of an event record; `marks`: delivery states and their marks; `block`: the blocks of dedup
//! keys that runs are made of.

pub(crate) mod block;
mod fields;
pub(crate) mod frame;
pub(crate) mod marks;
pub(crate) mod meta;
pub(crate) mod record;
pub(crate) mod summary;

/// Tree of dead letters: seq → dead record.
pub(crate) const DEAD_TREE: &str = "dead";
/// Tree of the checkpoint and the write probe.
pub(crate) const META_TREE: &str = "meta";
/// Prefix of the dedup slices' trees: `dedup@<slice end ms, 20 digits>`.
pub(crate) const DEDUP_PREFIX: &str = "dedup@";

/// Key in `meta`: the highest seq whose dedup keys a flush made durable (I6).
pub(crate) const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Key in `meta` that write probes overwrite.
pub(crate) const PROBE_KEY: &[u8] = b"probe";

/// The checkpoint's value; `None` for a value that is not 8 bytes.
pub(crate) fn decode_checkpoint(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}
