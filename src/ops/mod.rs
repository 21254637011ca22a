//! Operator commands over a store — stats, dead letters, replay — with their wire types: one
//! implementation serves the CLI on a stopped relay's directory and the admin API of a running one.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub mod admin;
pub mod client;
pub mod events;
pub mod status;
pub mod throttle;
pub mod web;

use crate::event::{EventId, Kind};
use crate::store::{DeadLetter, ReplayFilter, Replays, Store, StoreError, StoreStats};

/// Most dead letters one `dead list` shows.
pub const DEAD_LIST_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("`{0}` is neither a dead-letter number nor a 32-hex event id")]
    BadId(String),
    #[error("no dead letter `{0}`")]
    NotFound(String),
    #[error("`{0}` is neither an RFC 3339 time nor a duration such as 2h")]
    BadTime(String),
    #[error("unknown kind `{0}` (message, media, status, tags, receipt, connection, other)")]
    BadKind(String),
    #[error("{0}")]
    BadQuery(String),
    #[error("no event `{0}` is kept")]
    UnknownEvent(String),
    #[error("event `{0}` has nothing to replay yet (pending, or replayed and not yet confirmed)")]
    NotReplayable(String),
}

/// One dead letter as listed: metadata only, no body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadSummary {
    /// Its former outbox position: what `dead show` / `dead replay` take.
    pub seq: u64,
    pub id: String,
    pub kind: String,
    pub connection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<i64>,
    pub reason: String,
    pub received_at: String,
    pub dead_at: String,
}

/// `dead show`: the summary and the (redacted) body as relayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadDetail {
    #[serde(flatten)]
    pub summary: DeadSummary,
    pub body: serde_json::Value,
}

/// `POST /admin/dead/replay`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadReplayRequest {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

/// `POST /admin/replay`: delivered between `since_ms` and `until_ms` (unix ms).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub since_ms: u64,
    #[serde(default)]
    pub until_ms: Option<u64>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub connection: Option<String>,
}

/// How many events went back into the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: usize,
}

/// `stats`, with the times also as ages for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub outbox: usize,
    pub outbox_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_age_secs: Option<u64>,
    pub dead: usize,
    pub dedup_keys: usize,
    pub delivered_kept: usize,
    pub delivered_bytes: u64,
    pub disk_bytes: u64,
    /// Segment damage found when the store was opened (zero on a healthy store). Defaults
    /// so that this CLI still reads the answer of a relay from before these fields.
    #[serde(default)]
    pub damaged_bytes: u64,
    #[serde(default)]
    pub lost_records: u64,
}

pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub fn stats(store: &Store) -> Stats {
    let s: StoreStats = store.stats();
    Stats {
        outbox: s.outbox,
        outbox_bytes: s.outbox_bytes,
        oldest_pending: s.oldest_pending_ms.map(rfc3339_ms),
        oldest_pending_age_secs: s
            .oldest_pending_ms
            .map(|at| crate::store::now_ms().saturating_sub(at) / 1000),
        dead: s.dead,
        dedup_keys: s.dedup_keys,
        delivered_kept: s.delivered_kept,
        delivered_bytes: s.delivered_bytes,
        disk_bytes: s.disk_bytes,
        damaged_bytes: s.damaged.bytes,
        lost_records: s.damaged.lost_records,
    }
}

fn summary(letter: &DeadLetter) -> DeadSummary {
    let meta = &letter.event.meta;
    DeadSummary {
        seq: letter.seq,
        id: meta.id.to_string(),
        kind: meta.kind.as_str().to_owned(),
        connection: meta.connection.clone(),
        action: meta.action.clone(),
        company_id: meta.company_id,
        ticket_id: meta.ticket_id,
        reason: letter.reason.clone(),
        received_at: rfc3339_ms(meta.received_at_ms),
        dead_at: rfc3339_ms(letter.dead_at_ms),
    }
}

pub fn dead_list(store: &Store, limit: usize) -> Result<Vec<DeadSummary>, OpsError> {
    Ok(store
        .dead_list(limit.min(DEAD_LIST_MAX))?
        .iter()
        .map(summary)
        .collect())
}

/// A dead letter by number (`seq`) or by event id (the newest of that id).
fn find(store: &Store, id: &str) -> Result<DeadLetter, OpsError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        let seq = id
            .parse::<u64>()
            .map_err(|_| OpsError::BadId(id.to_owned()))?;
        return store
            .dead_get(seq)?
            .ok_or_else(|| OpsError::NotFound(id.to_owned()));
    }
    let mut raw = [0u8; 16];
    if id.len() != 32 || hex::decode_to_slice(id, &mut raw).is_err() {
        return Err(OpsError::BadId(id.to_owned()));
    }
    store
        .dead_find(&EventId(raw))?
        .pop()
        .ok_or_else(|| OpsError::NotFound(id.to_owned()))
}

pub fn dead_show(store: &Store, id: &str) -> Result<DeadDetail, OpsError> {
    let letter = find(store, id)?;
    let body = serde_json::from_slice(&letter.event.body)
        // Accepted bodies are JSON objects; show anything else as text rather than fail.
        .unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&letter.event.body).into_owned())
        });
    Ok(DeadDetail {
        summary: summary(&letter),
        body,
    })
}

/// A dead letter with its (redacted) body exactly as relayed, bytes and key order unchanged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadRelayed {
    #[serde(flatten)]
    pub summary: DeadSummary,
    pub body_text: String,
}

pub fn dead_relayed(store: &Store, id: &str) -> Result<DeadRelayed, OpsError> {
    let letter = find(store, id)?;
    Ok(DeadRelayed {
        summary: summary(&letter),
        body_text: String::from_utf8_lossy(&letter.event.body).into_owned(),
    })
}

/// Moves the named dead letters (or all) back into the outbox; they are published again with
/// their original ids. Every id is checked before anything moves. Reads inline: a server reads
/// with [`dead_replay_read`] on its blocking pool, then [`put_back`].
pub async fn dead_replay(store: &Store, request: &DeadReplayRequest) -> Result<Replayed, OpsError> {
    put_back(store, dead_replay_read(store, request)?).await
}

/// The dead letters a replay moves (blocking: sled reads, and a scan of the dead letters for an
/// event id); every id is checked.
pub fn dead_replay_read(store: &Store, request: &DeadReplayRequest) -> Result<Replays, OpsError> {
    if request.all {
        return Ok(store.read_requeue_dead(None)?);
    }
    let seqs = request
        .ids
        .iter()
        .map(|id| find(store, id).map(|letter| letter.seq))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(store.read_requeue_dead(Some(&seqs))?)
}

/// Puts back what a replay read; durable when it returns.
pub async fn put_back(store: &Store, replays: Replays) -> Result<Replayed, OpsError> {
    Ok(Replayed {
        replayed: store.put_back(replays).await?,
    })
}

pub fn parse_kind(text: &str) -> Result<Kind, OpsError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| OpsError::BadKind(text.to_owned()))
}

/// Re-publishes kept delivered events (see `storage.keep_delivered`) with their original ids.
pub async fn replay(store: &Store, request: &ReplayRequest) -> Result<Replayed, OpsError> {
    let filter = ReplayFilter {
        since_ms: request.since_ms,
        until_ms: request.until_ms,
        kind: request.kind.as_deref().map(parse_kind).transpose()?,
        connection: request.connection.clone(),
    };
    Ok(Replayed {
        replayed: store.replay_delivered(&filter).await?,
    })
}

/// `2026-11-25T10:00:00Z` (RFC 3339, `T` or space) or an age such as `2h` / `30m` (before now).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, OpsError> {
    let text = text.trim();
    if let Ok(time) =
        humantime::parse_rfc3339_weak(text).or_else(|_| humantime::parse_rfc3339(text))
    {
        let since = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| OpsError::BadTime(text.to_owned()))?;
        return Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    }
    let age = humantime::parse_duration(text).map_err(|_| OpsError::BadTime(text.to_owned()))?;
    Ok(now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_ages() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0).unwrap(), 1000);
        assert_eq!(parse_time("1970-01-01 00:00:02", 0).unwrap(), 2000);
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert!(matches!(
            parse_time("yesterday-ish", 0),
            Err(OpsError::BadTime(_))
        ));
    }

    #[test]
    fn kinds_parse_by_name() {
        assert_eq!(parse_kind("status").unwrap(), Kind::Status);
        assert!(parse_kind("Status").is_err());
    }
}
