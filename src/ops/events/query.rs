//! A search as asked for: the query's parameters (HTTP query string or the command's flags) read,
//! checked by name and turned into the store's filter; the paging cursor.

use std::collections::HashMap;

use crate::event::{EventId, Kind};
use crate::ops::{parse_kind, parse_time, rfc3339_ms, OpsError};
use crate::store::{EventFilter, EventState};

/// Events a page holds unless asked otherwise, and at most.
pub const EVENTS_LIMIT: usize = 50;
pub const EVENTS_LIMIT_MAX: usize = 500;

/// A search: every filter narrows it; newest first, `limit` a page, `cursor` where the last
/// page ended (its `next_cursor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQuery {
    pub ticket: Option<i64>,
    /// WhatsApp message id.
    pub wa_id: Option<String>,
    pub event_id: Option<EventId>,
    pub kind: Option<Kind>,
    pub connection: Option<String>,
    pub state: Option<EventState>,
    /// Received at or after / before (unix ms).
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub cursor: Option<String>,
    pub limit: usize,
}

impl Default for EventQuery {
    fn default() -> EventQuery {
        EventQuery {
            ticket: None,
            wa_id: None,
            event_id: None,
            kind: None,
            connection: None,
            state: None,
            since_ms: None,
            until_ms: None,
            cursor: None,
            limit: EVENTS_LIMIT,
        }
    }
}

fn bad(what: &str, value: &str) -> OpsError {
    OpsError::BadQuery(format!("`{value}` is not a valid {what}"))
}

/// A 32-hex event id.
pub fn parse_event_id(text: &str) -> Result<EventId, OpsError> {
    let mut raw = [0u8; 16];
    if text.len() != 32 || hex::decode_to_slice(text, &mut raw).is_err() {
        return Err(OpsError::BadId(text.to_owned()));
    }
    Ok(EventId(raw))
}

impl EventQuery {
    /// From the query parameters (`ticket`, `id`, `event`, `kind`, `connection`, `state`,
    /// `since`, `until`, `cursor`, `limit`; empty ones are left out), or the CLI's flags of the
    /// same names; times are RFC 3339 or ages such as `2h` before `now_ms`.
    pub fn from_params(
        params: &HashMap<String, String>,
        now_ms: u64,
    ) -> Result<EventQuery, OpsError> {
        let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let limit = match get("limit") {
            None => EVENTS_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=EVENTS_LIMIT_MAX).contains(&n) => n,
                _ => return Err(bad("limit (1 to 500)", text)),
            },
        };
        let ticket = get("ticket")
            .map(|t| t.parse::<i64>().map_err(|_| bad("ticket number", t)))
            .transpose()?;
        let state = get("state")
            .map(|s| {
                EventState::from_name(s).ok_or_else(|| bad("state (pending, confirmed, dead)", s))
            })
            .transpose()?;
        let cursor = get("cursor").map(str::to_owned);
        if let Some(cursor) = &cursor {
            cursor_seq(cursor)?;
        }
        Ok(EventQuery {
            ticket,
            wa_id: get("id").map(str::to_owned),
            event_id: get("event").map(parse_event_id).transpose()?,
            kind: get("kind").map(parse_kind).transpose()?,
            connection: get("connection").map(str::to_owned),
            state,
            since_ms: get("since").map(|t| parse_time(t, now_ms)).transpose()?,
            until_ms: get("until").map(|t| parse_time(t, now_ms)).transpose()?,
            cursor,
            limit,
        })
    }

    /// The query parameters that ask for this query again (times as unix-ms RFC 3339).
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(t) = self.ticket {
            out.push(("ticket", t.to_string()));
        }
        if let Some(w) = &self.wa_id {
            out.push(("id", w.clone()));
        }
        if let Some(id) = &self.event_id {
            out.push(("event", id.to_string()));
        }
        if let Some(k) = self.kind {
            out.push(("kind", k.as_str().to_owned()));
        }
        if let Some(c) = &self.connection {
            out.push(("connection", c.clone()));
        }
        if let Some(s) = self.state {
            out.push(("state", s.as_str().to_owned()));
        }
        if let Some(ms) = self.since_ms {
            out.push(("since", rfc3339_ms(ms)));
        }
        if let Some(ms) = self.until_ms {
            out.push(("until", rfc3339_ms(ms)));
        }
        if let Some(c) = &self.cursor {
            out.push(("cursor", c.clone()));
        }
        out.push(("limit", self.limit.to_string()));
        out
    }

    pub(super) fn filter(&self) -> EventFilter {
        EventFilter {
            ticket: self.ticket,
            wa_id: self.wa_id.clone(),
            id: self.event_id,
            kind: self.kind,
            connection: self.connection.clone(),
            state: self.state,
            since_ms: self.since_ms,
            until_ms: self.until_ms,
        }
    }
}

/// A cursor says below which record the next page starts; its form is no contract.
pub(super) fn cursor_of(seq: u64) -> String {
    format!("c{seq:x}")
}

pub(super) fn cursor_seq(cursor: &str) -> Result<u64, OpsError> {
    cursor
        .strip_prefix('c')
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| bad("cursor", cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<EventQuery, OpsError> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EventQuery::from_params(&params, 10_000_000)
    }

    #[test]
    fn a_query_reads_its_parameters_and_asks_for_itself_again() {
        let q = query(&[
            ("ticket", "357"),
            ("id", "3EB0C431C26A1916E4A5"),
            ("event", &"ab".repeat(16)),
            ("kind", "message"),
            ("connection", "loja"),
            ("state", "dead"),
            ("since", "2h"),
            ("until", "1970-01-01T00:00:05Z"),
            ("cursor", "c1f"),
            ("limit", "20"),
            ("unknown", "ignored"),
        ])
        .unwrap();
        assert_eq!(q.ticket, Some(357));
        assert_eq!(q.state, Some(EventState::Dead));
        assert_eq!(q.since_ms, Some(10_000_000 - 7_200_000));
        assert_eq!(q.until_ms, Some(5000));
        assert_eq!(q.limit, 20);
        assert_eq!(cursor_seq(q.cursor.as_deref().unwrap()).unwrap(), 0x1f);
        let again: HashMap<String, String> = q
            .to_params()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(EventQuery::from_params(&again, 10_000_000).unwrap(), q);
        assert_eq!(query(&[("ticket", " ")]).unwrap(), EventQuery::default());
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (name, value) in [
            ("ticket", "x"),
            ("limit", "0"),
            ("limit", "501"),
            ("state", "lost"),
            // In flight is pending until the confirm: no filter would ever find one.
            ("state", "published"),
            ("cursor", "nope"),
            ("event", "abc"),
            ("kind", "Message"),
            ("since", "yesterday-ish"),
        ] {
            assert!(query(&[(name, value)]).is_err(), "{name}={value}");
        }
        assert_eq!(cursor_seq(&cursor_of(u64::MAX)).unwrap(), u64::MAX);
    }
}
