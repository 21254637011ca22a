//! How failures reach the logs: an error as one line with its causes, and refusals an outsider
//! can repeat at will as one line per reason and window, never one per request.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// `error: cause: cause…` for logs.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How often the refusals held back are summed up in one line per reason.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(60);

/// Refusals by reason within the current window: the first of each reason is logged in full at
/// once (`first` answers true), the others only counted, and [`Refusals::take`] hands over the
/// counts at the window's end for one summary line each.
#[derive(Default)]
pub struct Refusals {
    /// Reason → refusals held back (not logged) in this window; present once the first came.
    held: Mutex<HashMap<&'static str, u64>>,
}

impl Refusals {
    /// Counts a refusal; true when it is the first of its reason in this window (log it).
    pub fn first(&self, reason: &'static str) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get_mut(reason) {
            Some(count) => {
                *count += 1;
                false
            }
            None => {
                held.insert(reason, 0);
                true
            }
        }
    }

    /// Ends the window: the reasons with refusals held back, and how many; the next refusal of
    /// any reason is logged in full again.
    pub fn take(&self) -> Vec<(&'static str, u64)> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counts: Vec<_> = held.drain().filter(|(_, n)| *n > 0).collect();
        counts.sort_unstable();
        counts
    }
}

/// Every [`SUMMARY_WINDOW`] until `stop`, one warning per reason with refusals held back.
pub async fn summarize(
    refusals: std::sync::Arc<Refusals>,
    what: &'static str,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(SUMMARY_WINDOW);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (reason, more) in refusals.take() {
            tracing::warn!(
                reason,
                more,
                window_secs = SUMMARY_WINDOW.as_secs(),
                "{what}: {more} more refused for this reason in the last minute (the first was logged in full)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_reason_is_logged_the_rest_counted_per_window() {
        let refusals = Refusals::default();
        assert!(refusals.first("unauthorized"));
        for _ in 0..4999 {
            assert!(!refusals.first("unauthorized"));
        }
        assert!(refusals.first("payload_too_large"));
        assert_eq!(refusals.take(), vec![("unauthorized", 4999)]);
        // A new window: each reason's first is logged again; nothing is held back yet.
        assert!(refusals.first("unauthorized"));
        assert!(refusals.take().is_empty());
    }
}
