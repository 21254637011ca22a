//! Byte layouts of what the store keeps: event and dead-letter records, dedup keys and expiries.
//!
//! Event record: the compact binary metadata (see `meta`) then the body bytes, kept raw so what
//! is relayed is byte-for-byte what was accepted. Earlier versions wrote
//! `[u32 BE header_len][EventMeta as JSON][body bytes]` (the old sled `outbox` tree, migrated
//! segments, old dead letters); readers take both.
//! Dead record: `[u32 BE info_len][DeadInfo as JSON][event record]`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::meta;
use crate::event::{Event, EventMeta};
use crate::store::error::{corrupt, corrupt_json, StoreError};

const LEN_PREFIX: usize = 4;

/// What a dead record adds to the outbox record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DeadInfo {
    pub reason: String,
    pub dead_at_ms: u64,
}

fn prefixed(header: &[u8], capacity_extra: usize) -> Result<Vec<u8>, StoreError> {
    let len =
        u32::try_from(header.len()).map_err(|_| corrupt("record header longer than 4 GiB"))?;
    let mut out = Vec::with_capacity(LEN_PREFIX + header.len() + capacity_extra);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(header);
    Ok(out)
}

/// Splits a length-prefixed record into its header and the rest.
fn split_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let (len, rest) = bytes
        .split_first_chunk::<LEN_PREFIX>()
        .ok_or_else(|| corrupt("record shorter than its length prefix"))?;
    let len = usize::try_from(u32::from_be_bytes(*len))
        .map_err(|_| corrupt("record header length overflows"))?;
    if rest.len() < len {
        return Err(corrupt("record shorter than its header length"));
    }
    Ok(rest.split_at(len))
}

#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn encode_event(event: &Event) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128 + event.body.len());
    encode_event_into(&mut out, event)?;
    Ok(out)
}

/// An event record in the layout of the sled-only version (migration tests write old data dirs).
#[cfg(any(test, feature = "fuzz"))]
pub(crate) fn encode_event_json(event: &Event) -> Result<Vec<u8>, StoreError> {
    let meta = serde_json::to_vec(&event.meta).map_err(corrupt_json)?;
    let mut out = prefixed(&meta, event.body.len())?;
    out.extend_from_slice(&event.body);
    Ok(out)
}

/// Appends the event record of `event` to `out`.
pub(crate) fn encode_event_into(out: &mut Vec<u8>, event: &Event) -> Result<(), StoreError> {
    meta::encode_into(out, &event.meta)?;
    out.extend_from_slice(&event.body);
    Ok(())
}

/// The metadata of an event record (either layout) and its body.
fn split_event(bytes: &[u8]) -> Result<(EventMeta, &[u8]), StoreError> {
    if bytes.first() == Some(&meta::TAG) {
        return meta::decode(bytes);
    }
    let (meta, body) = split_prefixed(bytes)?;
    Ok((serde_json::from_slice(meta).map_err(corrupt_json)?, body))
}

/// The metadata of an event record, without copying its body.
pub(crate) fn decode_meta(bytes: &[u8]) -> Result<EventMeta, StoreError> {
    Ok(split_event(bytes)?.0)
}

/// Key of a kept delivered event in the sled-only version (`delivered@` slices): delivery time, seq.
#[cfg(test)]
pub(crate) fn delivered_key(delivered_at_ms: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&delivered_at_ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// As [`decode_event`], the body a slice of `bytes` rather than a copy.
pub(crate) fn decode_event_shared(bytes: &Bytes) -> Result<Event, StoreError> {
    let (meta, body) = split_event(bytes)?;
    Ok(read_back(meta, bytes.slice_ref(body)))
}

pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, StoreError> {
    let (meta, body) = split_event(bytes)?;
    Ok(read_back(meta, Bytes::copy_from_slice(body)))
}

/// An event as read back: a record from before changes were named gets its change from its
/// body, so it is published with the routing key and header of every other.
fn read_back(mut meta: EventMeta, body: Bytes) -> Event {
    if meta.change.is_none() {
        meta.change = Some(crate::event::stored_change(meta.kind, &body));
    }
    Event {
        meta,
        body,
        earlier_id: None,
        wa_id: None,
    }
}

/// The part of a dead record in front of the moved outbox record.
pub(crate) fn dead_prefix(reason: &str, dead_at_ms: u64) -> Result<Vec<u8>, StoreError> {
    let info = DeadInfo {
        reason: reason.to_owned(),
        dead_at_ms,
    };
    let info = serde_json::to_vec(&info).map_err(corrupt_json)?;
    prefixed(&info, 0)
}

pub(crate) fn decode_dead(bytes: &[u8]) -> Result<(DeadInfo, Event), StoreError> {
    let (info, record) = split_prefixed(bytes)?;
    let info: DeadInfo = serde_json::from_slice(info).map_err(corrupt_json)?;
    Ok((info, decode_event(record)?))
}

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn decode_seq(key: &[u8]) -> Result<u64, StoreError> {
    let key: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt("sequence key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(key))
}

pub(crate) fn expiry_value(expiry_ms: u64) -> [u8; 8] {
    expiry_ms.to_be_bytes()
}

/// `None` for a value that is not 8 bytes.
pub(crate) fn decode_expiry(value: &[u8]) -> Option<u64> {
    let value: [u8; 8] = value.try_into().ok()?;
    Some(u64::from_be_bytes(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::record;
    use crate::store::tests::event;

    #[test]
    fn records_round_trip_and_damage_is_reported() {
        let e = event(3, 1_700_000_000_000);
        let encoded = record::encode_event(&e).unwrap();
        assert_eq!(record::decode_event(&encoded).unwrap(), e);
        assert!(
            encoded.ends_with(&e.body),
            "the body sits raw at the end of the record"
        );
        let mut dead = record::dead_prefix("why", 42).unwrap();
        dead.extend_from_slice(&encoded);
        let (info, back) = record::decode_dead(&dead).unwrap();
        assert_eq!((info.reason.as_str(), info.dead_at_ms), ("why", 42));
        assert_eq!(back, e);
        let old = record::encode_event_json(&e).unwrap();
        assert_eq!(
            record::decode_event(&old).unwrap(),
            e,
            "the JSON layout still reads"
        );
        for damaged in [
            &encoded[..2],
            &encoded[..10],
            &b"\0\0\0\x02{x"[..],
            &old[..9],
        ] {
            assert!(matches!(
                record::decode_event(damaged),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
