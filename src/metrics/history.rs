//! The last hour of each connection, minute by minute, for the status page: lock-free counters the
//! webhook path bumps beside its Prometheus counters.
//!
//! Each minute slot of a ring of 60 packs the minute it counts (unix minutes, high 32 bits) with
//! its count (low 32 bits) in one atomic word, so that a bump is one compare-and-swap and a slot
//! left over from an earlier hour reads as zero without anyone clearing it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

/// Minutes kept per connection.
pub const MINUTES: usize = 60;

const COUNT_MASK: u64 = u32::MAX as u64;

/// What happened to one webhook request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Rejected,
}

/// One minute's three counters.
#[derive(Debug, Default)]
struct Minute {
    counts: [AtomicU64; 3],
}

/// One connection's ring and the time of its last stored or duplicate event.
#[derive(Debug)]
pub struct ConnHistory {
    /// Unix ms of the last accepted or duplicate event; 0: none since start.
    last_event_ms: AtomicU64,
    minutes: [Minute; MINUTES],
}

impl Default for ConnHistory {
    fn default() -> Self {
        Self {
            last_event_ms: AtomicU64::new(0),
            minutes: std::array::from_fn(|_| Minute::default()),
        }
    }
}

/// Counts of one minute, oldest first in [`ConnHistory::last_hour`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MinuteCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl ConnHistory {
    /// Counts one request at `now_ms`.
    pub fn record(&self, outcome: Outcome, now_ms: u64) {
        let minute = now_ms / 60_000;
        let slot = &self.minutes[(minute % MINUTES as u64) as usize];
        bump(&slot.counts[outcome as usize], minute);
        // A load and a plain store rather than a read-modify-write: two racing requests may
        // leave the earlier of their two times, microseconds apart.
        if outcome != Outcome::Rejected && now_ms > self.last_event_ms.load(Relaxed) {
            self.last_event_ms.store(now_ms, Relaxed);
        }
    }

    pub fn last_event_ms(&self) -> Option<u64> {
        Some(self.last_event_ms.load(Relaxed)).filter(|&ms| ms > 0)
    }

    /// The 60 minutes up to and including the one of `now_ms`, oldest first.
    pub fn last_hour(&self, now_ms: u64) -> Vec<MinuteCounts> {
        let now = now_ms / 60_000;
        (0..MINUTES as u64)
            .rev()
            .map(|back| {
                let Some(minute) = now.checked_sub(back) else {
                    return MinuteCounts::default();
                };
                let slot = &self.minutes[(minute % MINUTES as u64) as usize];
                let read = |i: usize| {
                    let word = slot.counts[i].load(Relaxed);
                    if word >> 32 == minute {
                        word & COUNT_MASK
                    } else {
                        0
                    }
                };
                MinuteCounts {
                    accepted: read(Outcome::Accepted as usize),
                    duplicate: read(Outcome::Duplicate as usize),
                    rejected: read(Outcome::Rejected as usize),
                }
            })
            .collect()
    }
}

/// Adds one to the count of `minute` in `cell`, restarting it at 1 when the cell still holds an
/// older minute; saturates at `u32::MAX` a minute.
fn bump(cell: &AtomicU64, minute: u64) {
    let mut current = cell.load(Relaxed);
    loop {
        let next = if current >> 32 == minute {
            if current & COUNT_MASK == COUNT_MASK {
                return;
            }
            current + 1
        } else {
            (minute << 32) | 1
        };
        match cell.compare_exchange_weak(current, next, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// Every connection's ring by name. The map is locked only when a config (re)load hands the
/// rings out and when the status page reads them, never per request.
#[derive(Clone, Debug, Default)]
pub struct History {
    connections: Arc<Mutex<BTreeMap<String, Arc<ConnHistory>>>>,
    unknown: Arc<ConnHistory>,
}

impl History {
    /// The ring of `connection`, created on first use; a reload keeps the counts.
    pub fn connection(&self, connection: &str) -> Arc<ConnHistory> {
        let mut map = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(connection.to_owned()).or_default())
    }

    /// Where requests naming no configured connection are counted.
    pub fn unknown(&self) -> &Arc<ConnHistory> {
        &self.unknown
    }

    /// Every named ring, by name.
    pub fn all(&self) -> Vec<(String, Arc<ConnHistory>)> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, ring)| (name.clone(), Arc::clone(ring)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn counts_land_in_their_minute_and_age_out_after_an_hour() {
        let ring = ConnHistory::default();
        let t0 = 1_000_000 * MIN;
        ring.record(Outcome::Accepted, t0);
        ring.record(Outcome::Accepted, t0 + 59_999);
        ring.record(Outcome::Duplicate, t0 + 1);
        ring.record(Outcome::Rejected, t0 + MIN);
        let hour = ring.last_hour(t0 + MIN);
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(
            hour[MINUTES - 2],
            MinuteCounts {
                accepted: 2,
                duplicate: 1,
                rejected: 0
            }
        );
        assert_eq!(hour[MINUTES - 1].rejected, 1);
        assert_eq!(
            hour[..MINUTES - 2].iter().map(|m| m.accepted).sum::<u64>(),
            0
        );
        // A rejection is not an event received.
        assert_eq!(ring.last_event_ms(), Some(t0 + 59_999));

        // 60 minutes on, the first minute's slot is read as empty, then reused from 1.
        let later = t0 + 60 * MIN;
        assert!(ring.last_hour(later).iter().all(|m| m.accepted == 0));
        ring.record(Outcome::Accepted, later);
        assert_eq!(ring.last_hour(later)[MINUTES - 1].accepted, 1);
    }

    #[test]
    fn concurrent_bumps_are_all_counted() {
        let ring = Arc::new(ConnHistory::default());
        let t = 5 * MIN;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        ring.record(Outcome::Accepted, t);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(ring.last_hour(t)[MINUTES - 1].accepted, 40_000);
    }

    #[test]
    fn a_reload_gets_the_same_ring() {
        let history = History::default();
        history
            .connection("loja")
            .record(Outcome::Accepted, 10 * MIN);
        assert_eq!(
            history.connection("loja").last_hour(10 * MIN)[MINUTES - 1].accepted,
            1
        );
        assert_eq!(history.all().len(), 1);
        assert!(history.unknown().last_event_ms().is_none());
    }
}
