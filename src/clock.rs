//! Wall-clock time as unix milliseconds, the unit events, keys and metrics are stamped in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds. A clock before 1970 reads as 0: every dedup entry then counts as
/// unexpired, the safe side.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `Rfc3339Timestamp`'s Display fails (and `to_string` would panic) from the year 10000 on.
const MAX_RFC3339_SECS: u64 = 253_402_300_800;

/// Unix milliseconds as RFC 3339 UTC with milliseconds; `None` past the year 9999.
pub fn rfc3339_millis(ms: u64) -> Option<String> {
    let at = std::time::Duration::from_millis(ms);
    if at.as_secs() >= MAX_RFC3339_SECS {
        return None;
    }
    let time = UNIX_EPOCH.checked_add(at)?;
    Some(humantime::format_rfc3339_millis(time).to_string())
}
