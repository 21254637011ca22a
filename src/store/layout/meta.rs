//! The compact binary layout of an event's metadata in segment records (the JSON of earlier
//! versions took a tenth of a 1.5 KB event's bytes on disk and most of its encoding time).
//!
//! `[TAG][id: 16][received_at_ms: u64 BE][flags][company_id: i64 BE]?[ticket_id: i64 BE]?`
//! `[kind: u8 len + name][connection: u32 BE len + bytes][action: u32 BE len + bytes]?`
//! `[format: u8 len + name]?[change: u8 len + name]?`, then the body (records from before formats
//! have no format bit, from before changes were named no change bit). The flag's top bit says
//! the body is a CloudEvents envelope (no byte of its own: records from before, raw, lack it). The tag is never the first byte of the JSON layout (its u32 BE length starts with
//! 0 below 16 MiB), so readers tell the two apart; the kind is kept by name, so reordering
//! `Kind` cannot change what a stored record means.

use super::fields::Fields;
use crate::event::{BodyMode, Change, EventId, EventMeta, Format, Kind};
use crate::store::error::{corrupt, StoreError};

pub(crate) const TAG: u8 = 0x01;

const ACTION: u8 = 1;
const COMPANY: u8 = 2;
const TICKET: u8 = 4;
const FROM_ME: u8 = 8;
const FROM_ME_TRUE: u8 = 16;
const FORMAT: u8 = 32;
const CHANGE: u8 = 64;
const CLOUDEVENTS: u8 = 128;

fn long(len: usize) -> Result<[u8; 4], StoreError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| corrupt("metadata field longer than 4 GiB"))
}

pub(crate) fn encode_into(out: &mut Vec<u8>, meta: &EventMeta) -> Result<(), StoreError> {
    let mut flags = 0;
    if meta.action.is_some() {
        flags |= ACTION;
    }
    if meta.company_id.is_some() {
        flags |= COMPANY;
    }
    if meta.ticket_id.is_some() {
        flags |= TICKET;
    }
    match meta.from_me {
        Some(true) => flags |= FROM_ME | FROM_ME_TRUE,
        Some(false) => flags |= FROM_ME,
        None => {}
    }
    if meta.format.is_some() {
        flags |= FORMAT;
    }
    if meta.change.is_some() {
        flags |= CHANGE;
    }
    if meta.body == BodyMode::CloudEvents {
        flags |= CLOUDEVENTS;
    }
    out.push(TAG);
    out.extend_from_slice(&meta.id.0);
    out.extend_from_slice(&meta.received_at_ms.to_be_bytes());
    out.push(flags);
    for value in [meta.company_id, meta.ticket_id].into_iter().flatten() {
        out.extend_from_slice(&value.to_be_bytes());
    }
    short_name(out, meta.kind.as_str())?;
    out.extend_from_slice(&long(meta.connection.len())?);
    out.extend_from_slice(meta.connection.as_bytes());
    if let Some(action) = &meta.action {
        out.extend_from_slice(&long(action.len())?);
        out.extend_from_slice(action.as_bytes());
    }
    if let Some(format) = meta.format {
        short_name(out, format.as_str())?;
    }
    if let Some(change) = meta.change {
        short_name(out, change.as_str())?;
    }
    Ok(())
}

/// Kind, format and change names are a few ASCII letters, kept by name so reordering cannot change them.
fn short_name(out: &mut Vec<u8>, name: &str) -> Result<(), StoreError> {
    out.push(u8::try_from(name.len()).map_err(|_| corrupt("name too long"))?);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// `[len: u32 BE][UTF-8]`: the connection's name, the action.
fn text(fields: &mut Fields<'_>) -> Result<String, StoreError> {
    let len = u32::from_be_bytes(fields.array()?) as usize;
    String::from_utf8(fields.take(len)?.to_vec())
        .map_err(|_| corrupt("record metadata text is not UTF-8"))
}

/// The metadata, and the rest of the record (the body).
pub(crate) fn decode(bytes: &[u8]) -> Result<(EventMeta, &[u8]), StoreError> {
    let mut fields = Fields::new(bytes, "record metadata cut short");
    if fields.array::<1>()? != [TAG] {
        return Err(corrupt("record metadata has an unknown layout"));
    }
    let id = EventId(fields.array()?);
    let received_at_ms = u64::from_be_bytes(fields.array()?);
    let [flags] = fields.array()?;
    let optional = |bit: u8, fields: &mut Fields<'_>| -> Result<Option<i64>, StoreError> {
        if flags & bit == 0 {
            return Ok(None);
        }
        Ok(Some(i64::from_be_bytes(fields.array()?)))
    };
    let company_id = optional(COMPANY, &mut fields)?;
    let ticket_id = optional(TICKET, &mut fields)?;
    let kind_name = fields.short_name()?;
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.as_str().as_bytes() == kind_name)
        .ok_or_else(|| corrupt("record metadata names an unknown kind"))?;
    let connection = text(&mut fields)?;
    let action = if flags & ACTION != 0 {
        Some(text(&mut fields)?)
    } else {
        None
    };
    let format = if flags & FORMAT != 0 {
        let name = fields.short_name()?;
        let format = std::str::from_utf8(name).ok().and_then(Format::from_name);
        Some(format.ok_or_else(|| corrupt("record metadata names an unknown format"))?)
    } else {
        None
    };
    let change = if flags & CHANGE != 0 {
        let name = fields.short_name()?;
        let change = std::str::from_utf8(name).ok().and_then(Change::from_name);
        Some(change.ok_or_else(|| corrupt("record metadata names an unknown change"))?)
    } else {
        None
    };
    let from_me = (flags & FROM_ME != 0).then_some(flags & FROM_ME_TRUE != 0);
    let body = if flags & CLOUDEVENTS != 0 {
        BodyMode::CloudEvents
    } else {
        BodyMode::Raw
    };
    let meta = EventMeta {
        id,
        kind,
        connection,
        action,
        format,
        company_id,
        ticket_id,
        from_me,
        received_at_ms,
        change,
        body,
    };
    Ok((meta, fields.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> EventMeta {
        EventMeta {
            id: EventId([7; 16]),
            kind: Kind::Media,
            connection: "main".to_owned(),
            action: Some("ação".to_owned()),
            format: Some(Format::Wwebjs),
            company_id: Some(-3),
            ticket_id: Some(i64::MAX),
            from_me: Some(true),
            received_at_ms: 1_700_000_000_123,
            change: Some(Change::SessionError),
            body: Default::default(),
        }
    }

    #[test]
    fn every_field_round_trips_present_or_absent() {
        let full = meta();
        let bare = EventMeta {
            action: None,
            format: None,
            company_id: None,
            ticket_id: None,
            from_me: None,
            change: None,
            ..meta()
        };
        let not_me = EventMeta {
            from_me: Some(false),
            ..meta()
        };
        let cloudevents = EventMeta {
            body: BodyMode::CloudEvents,
            ..bare.clone()
        };
        let every_format = Format::ALL.map(|format| EventMeta {
            format: Some(format),
            ..meta()
        });
        let every_change = Change::ALL.map(|change| EventMeta {
            change: Some(change),
            ..meta()
        });
        for m in [full, bare, not_me, cloudevents]
            .into_iter()
            .chain(every_format)
            .chain(every_change)
        {
            let mut out = Vec::new();
            encode_into(&mut out, &m).unwrap();
            out.extend_from_slice(b"body");
            let (back, body) = decode(&out).unwrap();
            assert_eq!(back, m);
            assert_eq!(body, b"body");
        }
    }

    /// A record written before formats existed: no format bit, nothing after the action.
    #[test]
    fn a_record_without_a_format_reads_as_none() {
        let old = EventMeta {
            format: None,
            ..meta()
        };
        let mut out = Vec::new();
        encode_into(&mut out, &old).unwrap();
        assert_eq!(out[1 + 16 + 8] & FORMAT, 0);
        out.extend_from_slice(b"{}");
        let (back, body) = decode(&out).unwrap();
        assert_eq!(back.format, None);
        assert_eq!(body, b"{}");
    }

    /// A record written before changes were named: no change bit, nothing after the format.
    #[test]
    fn a_record_without_a_change_reads_as_none() {
        let old = EventMeta {
            change: None,
            ..meta()
        };
        let mut out = Vec::new();
        encode_into(&mut out, &old).unwrap();
        assert_eq!(out[1 + 16 + 8] & CHANGE, 0);
        out.extend_from_slice(b"{}");
        let (back, body) = decode(&out).unwrap();
        assert_eq!(back.change, None);
        assert_eq!(back.format, old.format);
        assert_eq!(body, b"{}");
    }

    #[test]
    fn damage_is_reported_not_misread() {
        let mut out = Vec::new();
        encode_into(&mut out, &meta()).unwrap();
        for cut in [0, 1, 20, 26, out.len() - 1] {
            assert!(
                matches!(decode(&out[..cut]), Err(StoreError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut bad_kind = out.clone();
        let at = 1 + 16 + 8 + 1 + 16 + 1;
        bad_kind[at] = b'x';
        assert!(decode(&bad_kind).is_err());
    }
}
