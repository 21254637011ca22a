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
