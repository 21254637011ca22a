//! A segment's frame: `[payload_len: u32 LE][crc32 of payload: u32 LE][payload]`, payload =
//! `[seq: u64 BE][event record]` (`record`). The CRC covers the seq too, so a torn or flipped
//! frame is never taken for another event (I3).

use bytes::Bytes;

use super::record;
use crate::event::Event;
use crate::store::error::{corrupt, StoreError};

pub(crate) const HEADER: usize = 8;
pub(crate) const SEQ: usize = 8;
/// Larger than any body the HTTP side accepts; a length beyond it is damage, not a record.
pub(crate) const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

/// Whether a header's payload length can be a frame's: room for the seq, and no larger than
/// any record.
pub(crate) fn length_fits(len: u32) -> bool {
    len <= MAX_PAYLOAD && (len as usize) >= SEQ
}

/// Appends one framed record to `buf`; returns the frame's length.
pub(crate) fn frame(buf: &mut Vec<u8>, seq: u64, event: &Event) -> Result<u32, StoreError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    buf.extend_from_slice(&seq.to_be_bytes());
    record::encode_event_into(buf, event)?;
    seal(buf, start)
}

/// As [`frame`], for a record already in the outbox layout (migration).
pub(crate) fn frame_record(buf: &mut Vec<u8>, seq: u64, stored: &[u8]) -> Result<u32, StoreError> {
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
        .ok_or_else(|| corrupt("record larger than a segment frame holds"))?;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(len + HEADER as u32)
}

/// Where a frame lies in its segment: found by a scan, or written by this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) seq: u64,
    pub(crate) offset: u64,
    /// Frame length, header included.
    pub(crate) len: u32,
}

/// Length and CRC from the first `HEADER` bytes of `frame` (the caller has checked there are).
pub(crate) fn split_header(frame: &[u8]) -> (u32, u32) {
    let header = &frame[..HEADER];
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

pub(crate) fn seq_of(payload: &[u8]) -> u64 {
    let mut seq = [0u8; SEQ];
    seq.copy_from_slice(&payload[..SEQ]);
    u64::from_be_bytes(seq)
}

/// A whole frame checked: its seq and what follows the seq (a record, or a block of summaries).
pub(crate) fn open_frame(frame: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let payload = frame
        .get(HEADER..)
        .filter(|p| p.len() >= SEQ)
        .ok_or_else(|| corrupt("frame shorter than its header"))?;
    let (len, crc) = split_header(frame);
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("frame fails its checksum"));
    }
    if len as usize != payload.len() {
        return Err(corrupt(
            "frame header gives another length than its payload's",
        ));
    }
    Ok((seq_of(payload), &payload[SEQ..]))
}

/// A whole frame: checksum, seq and event (the body a slice of `frame`).
pub(crate) fn decode_frame(frame: &Bytes) -> Result<(u64, Event), StoreError> {
    let (seq, _) = open_frame(frame)?;
    let rest = frame.slice(HEADER + SEQ..);
    Ok((seq, record::decode_event_shared(&rest)?))
}

/// What can be made of the bytes where the record of `seq` failed its checks, for its dead
/// letter: its event if the record after the seq still decodes (a flipped bit in a body, a torn
/// header), else the bytes themselves as the body of an event of no known kind or sender.
pub(crate) fn salvage(frame: &Bytes, seq: u64) -> Event {
    let decoded = frame
        .get(HEADER..HEADER + SEQ)
        .filter(|at| seq_of(at) == seq)
        .and_then(|_| record::decode_event_shared(&frame.slice(HEADER + SEQ..)).ok());
    decoded.unwrap_or_else(|| Event {
        meta: unknown_meta(),
        body: frame.clone(),
        earlier_id: None,
        wa_id: None,
    })
}

/// The metadata of a record none of whose own could be read: no id, kind `other`, no sender,
/// no time. In the earlier versions' JSON, so that a field `EventMeta` gains takes its default.
const UNKNOWN_META: &str = r#"{"id":"00000000000000000000000000000000","kind":"other","connection":"","received_at_ms":0}"#;

fn unknown_meta() -> crate::event::EventMeta {
    // A constant the store's tests read back (`a_pending_record_that_no_longer_decodes_…`).
    serde_json::from_str(UNKNOWN_META).expect("UNKNOWN_META is whole metadata")
}
