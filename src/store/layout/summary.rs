//! The event index's byte layouts (I16): an event's summary, blocks of summaries in a segment's
//! summary file (and in the `events@` trees of earlier versions), and the duplicates answered
//! for an event id. No name, phone number or text
//! is in any of them: ids, numbers, the connection's name and the kind's and change's words.
//!
//! ```text
//! summary  [seq: u64 BE][id: 16][received_at_ms: u64 BE][stored_at_ms: u64 BE][size: u32 BE]
//!          [flags: u8][company_id: i64 BE]?[ticket_id: i64 BE]?[kind: u8 len + name]
//!          [connection: u16 BE len + UTF-8][change: u8 len + name]?[format: u8 len + name]?
//!          [wa_id: u8 len + UTF-8]?[replay_of: u64 BE]?[published_at_ms: u64 BE]?
//!          [confirmed_at_ms: u64 BE]?
//!          flags: 1 company_id, 2 ticket_id, 4 change, 8 format, 16 wa_id, 32 replay_of (the
//!          record this one is a replayed copy of), 64 published_at_ms (when the publisher
//!          first handed it to the broker), 128 confirmed_at_ms (its first confirm, kept once a
//!          replay's mark took the mark's time); summaries of earlier versions have neither
//!          (unknown), and the flags byte is full: a later field needs a second one
//! block    [count: u16 BE][summary]*          key: the first summary's seq, u64 BE (in a
//!                                             file, the frame's seq)
//! dups     [count: u32 BE][last_at_ms: u64 BE]   key: event id, 16 bytes
//! ```

use super::fields::Fields;
use crate::event::{Change, Event, EventId, Format, Kind};
use crate::store::error::{corrupt, StoreError};

/// Prefix of a segment's events tree of earlier versions: `events@<first seq, 20 digits>`.
pub(crate) const EVENTS_PREFIX: &str = "events@";
/// Tree of the duplicates answered per event id.
pub(crate) const DUPS_TREE: &str = "event-dups";
/// Summaries per block: a block is read whole to show one of them.
pub(crate) const BLOCK: usize = 64;

const COMPANY: u8 = 1;
const TICKET: u8 = 2;
const CHANGE: u8 = 4;
const FORMAT: u8 = 8;
const WA_ID: u8 = 16;
const REPLAY_OF: u8 = 32;
const PUBLISHED: u8 = 64;
const CONFIRMED: u8 = 128;

pub(crate) fn events_tree_name(first_seq: u64) -> String {
    format!("{EVENTS_PREFIX}{first_seq:020}")
}

pub(crate) fn parse_events_tree_name(name: &[u8]) -> Option<u64> {
    let rest = name.strip_prefix(EVENTS_PREFIX.as_bytes())?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// What the index keeps of one stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) seq: u64,
    pub(crate) id: EventId,
    pub(crate) received_at_ms: u64,
    pub(crate) stored_at_ms: u64,
    /// Bytes of the stored (redacted) body.
    pub(crate) size: u32,
    pub(crate) company_id: Option<i64>,
    pub(crate) ticket_id: Option<i64>,
    pub(crate) kind: Kind,
    pub(crate) connection: String,
    pub(crate) change: Option<Change>,
    pub(crate) format: Option<Format>,
    pub(crate) wa_id: Option<String>,
    /// The seq of the record a replay copied into this one.
    pub(crate) replay_of: Option<u64>,
    /// When the publisher first handed it to the broker (unknown before the confirm, and for
    /// records indexed by earlier versions).
    pub(crate) published_at_ms: Option<u64>,
    /// When the broker first confirmed it, once a replay's mark replaced that time in the
    /// delivery index (else the mark's time is the confirm's).
    pub(crate) confirmed_at_ms: Option<u64>,
}

impl Summary {
    /// The summary of `event` stored as `seq` at `stored_at_ms`; `wa_id` as the event carries
    /// it, or read again from the body (a record of an earlier version).
    pub(crate) fn of(seq: u64, event: &Event, stored_at_ms: u64, wa_id: Option<String>) -> Summary {
        let meta = &event.meta;
        Summary {
            seq,
            id: meta.id,
            received_at_ms: meta.received_at_ms,
            stored_at_ms,
            size: u32::try_from(event.body.len()).unwrap_or(u32::MAX),
            company_id: meta.company_id,
            ticket_id: meta.ticket_id,
            kind: meta.kind,
            connection: meta.connection.clone(),
            change: meta.change,
            format: meta.format,
            // Longer than a byte's count is no WhatsApp id: left out rather than cut.
            wa_id: wa_id.filter(|w| w.len() <= usize::from(u8::MAX)),
            replay_of: None,
            published_at_ms: None,
            confirmed_at_ms: None,
        }
    }
}

fn short(out: &mut Vec<u8>, name: &str) {
    // Kind, change and format names are a few ASCII letters; a wa_id is checked in `of`.
    let len = u8::try_from(name.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
}

pub(crate) fn encode_into(out: &mut Vec<u8>, s: &Summary) {
    let mut flags = 0;
    for (bit, set) in [
        (COMPANY, s.company_id.is_some()),
        (TICKET, s.ticket_id.is_some()),
        (CHANGE, s.change.is_some()),
        (FORMAT, s.format.is_some()),
        (WA_ID, s.wa_id.is_some()),
        (REPLAY_OF, s.replay_of.is_some()),
        (PUBLISHED, s.published_at_ms.is_some()),
        (CONFIRMED, s.confirmed_at_ms.is_some()),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.extend_from_slice(&s.seq.to_be_bytes());
    out.extend_from_slice(&s.id.0);
    out.extend_from_slice(&s.received_at_ms.to_be_bytes());
    out.extend_from_slice(&s.stored_at_ms.to_be_bytes());
    out.extend_from_slice(&s.size.to_be_bytes());
    out.push(flags);
    for value in [s.company_id, s.ticket_id].into_iter().flatten() {
        out.extend_from_slice(&value.to_be_bytes());
    }
    short(out, s.kind.as_str());
    // A connection name is a config key, far below 64 KiB.
    let conn = &s.connection.as_bytes()[..s.connection.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(conn.len() as u16).to_be_bytes());
    out.extend_from_slice(conn);
    if let Some(change) = s.change {
        short(out, change.as_str());
    }
    if let Some(format) = s.format {
        short(out, format.as_str());
    }
    if let Some(wa_id) = &s.wa_id {
        short(out, wa_id);
    }
    for value in [s.replay_of, s.published_at_ms, s.confirmed_at_ms]
        .into_iter()
        .flatten()
    {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// A block of summaries (at most `u16::MAX`, in practice [`BLOCK`]).
pub(crate) fn encode_block(summaries: &[Summary]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + summaries.len() * 96);
    let count = u16::try_from(summaries.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for s in summaries.iter().take(usize::from(count)) {
        encode_into(&mut out, s);
    }
    out
}

/// `[len: u8][UTF-8]`.
fn short_text<'a>(fields: &mut Fields<'a>) -> Result<&'a str, StoreError> {
    std::str::from_utf8(fields.short_name()?)
        .map_err(|_| corrupt("event index entry text is not UTF-8"))
}

/// The 8 bytes of an optional field, there when `flags` has its `bit`.
fn eight_if(fields: &mut Fields<'_>, flags: u8, bit: u8) -> Result<Option<[u8; 8]>, StoreError> {
    if flags & bit == 0 {
        return Ok(None);
    }
    fields.array().map(Some)
}

fn decode_one(fields: &mut Fields<'_>) -> Result<Summary, StoreError> {
    let seq = u64::from_be_bytes(fields.array()?);
    let id = EventId(fields.array()?);
    let received_at_ms = u64::from_be_bytes(fields.array()?);
    let stored_at_ms = u64::from_be_bytes(fields.array()?);
    let size = u32::from_be_bytes(fields.array()?);
    let [flags] = fields.array()?;
    let company_id = eight_if(fields, flags, COMPANY)?.map(i64::from_be_bytes);
    let ticket_id = eight_if(fields, flags, TICKET)?.map(i64::from_be_bytes);
    let kind = Kind::from_name(short_text(fields)?)
        .ok_or_else(|| corrupt("event index entry names an unknown kind"))?;
    let len = u16::from_be_bytes(fields.array()?);
    let connection = std::str::from_utf8(fields.take(usize::from(len))?)
        .map_err(|_| corrupt("event index entry text is not UTF-8"))?
        .to_owned();
    let change = if flags & CHANGE != 0 {
        Some(
            Change::from_name(short_text(fields)?)
                .ok_or_else(|| corrupt("event index entry names an unknown change"))?,
        )
    } else {
        None
    };
    let format = if flags & FORMAT != 0 {
        Some(
            Format::from_name(short_text(fields)?)
                .ok_or_else(|| corrupt("event index entry names an unknown format"))?,
        )
    } else {
        None
    };
    let wa_id = if flags & WA_ID != 0 {
        Some(short_text(fields)?.to_owned())
    } else {
        None
    };
    let replay_of = eight_if(fields, flags, REPLAY_OF)?.map(u64::from_be_bytes);
    let published_at_ms = eight_if(fields, flags, PUBLISHED)?.map(u64::from_be_bytes);
    let confirmed_at_ms = eight_if(fields, flags, CONFIRMED)?.map(u64::from_be_bytes);
    Ok(Summary {
        seq,
        id,
        received_at_ms,
        stored_at_ms,
        size,
        company_id,
        ticket_id,
        kind,
        connection,
        change,
        format,
        wa_id,
        replay_of,
        published_at_ms,
        confirmed_at_ms,
    })
}

pub(crate) fn decode_block(bytes: &[u8]) -> Result<Vec<Summary>, StoreError> {
    let mut fields = Fields::new(bytes, "event index entry cut short");
    let count = u16::from_be_bytes(fields.array()?);
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        out.push(decode_one(&mut fields)?);
    }
    Ok(out)
}

pub(crate) fn dups_value(count: u32, last_at_ms: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&count.to_be_bytes());
    out[4..].copy_from_slice(&last_at_ms.to_be_bytes());
    out
}

pub(crate) fn decode_dups(value: &[u8]) -> Option<(u32, u64)> {
    let count = u32::from_be_bytes(value.get(..4)?.try_into().ok()?);
    let last = u64::from_be_bytes(value.get(4..12)?.try_into().ok()?);
    Some((count, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_reads_back_as_written_and_a_cut_one_is_refused() {
        let full = Summary {
            seq: 7,
            id: EventId([3; 16]),
            received_at_ms: 1,
            stored_at_ms: 2,
            size: 1500,
            company_id: Some(-4),
            ticket_id: Some(357),
            kind: Kind::Message,
            connection: "loja".into(),
            change: Some(Change::Created),
            format: Some(Format::WhaticketSaas),
            wa_id: Some("3EB0C767D82B3A2E1B2F".into()),
            replay_of: Some(3),
            published_at_ms: Some(3),
            confirmed_at_ms: Some(4),
        };
        let bare = Summary {
            seq: 8,
            company_id: None,
            ticket_id: None,
            change: None,
            format: None,
            wa_id: None,
            replay_of: None,
            published_at_ms: None,
            confirmed_at_ms: None,
            ..full.clone()
        };
        let block = encode_block(&[full.clone(), bare.clone()]);
        assert_eq!(decode_block(&block).unwrap(), vec![full, bare]);
        assert!(decode_block(&block[..block.len() - 1]).is_err());
        assert_eq!(
            parse_events_tree_name(events_tree_name(42).as_bytes()),
            Some(42)
        );
        assert_eq!(decode_dups(&dups_value(3, 9)), Some((3, 9)));
    }

    /// A block as the release before the publish and first confirm times wrote it (bytes laid
    /// out by hand, not by `encode_block`): it reads with both unknown.
    #[test]
    fn a_block_of_the_layout_before_reads_with_its_times_unknown() {
        let mut old = vec![0, 1];
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&[3; 16]);
        old.extend_from_slice(&1u64.to_be_bytes());
        old.extend_from_slice(&2u64.to_be_bytes());
        old.extend_from_slice(&1500u32.to_be_bytes());
        old.push(COMPANY | TICKET | REPLAY_OF);
        old.extend_from_slice(&(-4i64).to_be_bytes());
        old.extend_from_slice(&357i64.to_be_bytes());
        old.push(7);
        old.extend_from_slice(b"message");
        old.extend_from_slice(&4u16.to_be_bytes());
        old.extend_from_slice(b"loja");
        old.extend_from_slice(&3u64.to_be_bytes());
        let read = decode_block(&old).unwrap();
        assert_eq!(read.len(), 1);
        let s = &read[0];
        assert_eq!(
            (s.seq, s.ticket_id, s.replay_of, s.connection.as_str()),
            (7, Some(357), Some(3), "loja")
        );
        assert_eq!((s.published_at_ms, s.confirmed_at_ms), (None, None));
        // And the same summary written now, with no time known, is those very bytes.
        assert_eq!(encode_block(&read), old);
    }
}
