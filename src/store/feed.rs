//! The in-memory hand-off of durable events from the writer to the publisher, bounded in bytes.
//!
//! After its fsync the writer moves each group's events here, so the publisher never reads back
//! what was just written. When the publisher falls behind by more than the cap (a broker
//! outage), new events are left on disk only ("spilled"); the publisher is then told up to which
//! seq to read the segments, and the feed starts over from there. A store with pending events
//! opens spilled, so what was pending before a restart is read from disk once.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::types::{Pending, Room};

/// What the publisher gets next.
#[derive(Debug)]
pub enum Next {
    /// New events, in seq order.
    Events(Vec<Pending>),
    /// Pending events up to this seq (after what it loaded) are on disk only: read them with
    /// `Store::read_pending` before taking from the feed again.
    FromDisk { until: u64 },
    /// Nothing new.
    Idle,
}

struct State {
    queue: VecDeque<(Pending, u32)>,
    bytes: u64,
    /// Some events after the queue's were left on disk.
    spilled: bool,
    /// Highest seq written to a segment.
    high: u64,
}

pub(super) struct Feed {
    state: Mutex<State>,
    notify: Notify,
    cap_bytes: u64,
}

impl Feed {
    /// `spilled` when events are pending on disk at open: up to `high` they are read from there.
    pub(super) fn new(cap_bytes: u64, high: u64, spilled: bool) -> Feed {
        Feed {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                spilled,
                high,
            }),
            notify: Notify::new(),
            cap_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single push/pop with counters: a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A committed group's events (with their frame sizes), in seq order; `high` is the last
    /// seq written.
    pub(super) fn push(&self, events: Vec<(Pending, u32)>, high: u64) {
        let wake = !events.is_empty();
        {
            let mut state = self.lock();
            for (pending, size) in events {
                if state.spilled || state.bytes + u64::from(size) > self.cap_bytes {
                    state.spilled = true;
                    continue;
                }
                state.bytes += u64::from(size);
                state.queue.push_back((pending, size));
            }
            state.high = state.high.max(high);
        }
        if wake {
            self.notify.notify_one();
        }
    }

    pub(super) fn take(&self, room: Room) -> Next {
        let mut state = self.lock();
        if !state.queue.is_empty() {
            let room = Room {
                events: room.events.max(1),
                ..room
            };
            let mut out = Vec::new();
            let mut taken = 0u64;
            while let Some((_, size)) = state.queue.front() {
                if !room.admits(out.len(), taken, u64::from(*size)) {
                    break;
                }
                let Some((pending, size)) = state.queue.pop_front() else {
                    break;
                };
                out.push(pending);
                taken += u64::from(size);
            }
            state.bytes = state.bytes.saturating_sub(taken);
            return Next::Events(out);
        }
        if state.spilled {
            // Everything written from now on is queued again; the rest is read from disk.
            state.spilled = false;
            return Next::FromDisk { until: state.high };
        }
        Next::Idle
    }

    /// Resolves once events were pushed since the last call (a permit is kept if none waits).
    pub(super) async fn pushed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pending(seq: u64) -> (Pending, u32) {
        let event = crate::store::tests::event(seq as u8, 0);
        (
            Pending {
                seq,
                event: Arc::new(event),
            },
            100,
        )
    }

    fn seqs(next: Next) -> Vec<u64> {
        match next {
            Next::Events(events) => events.iter().map(|p| p.seq).collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn opens_spilled_then_hands_over_in_memory() {
        let feed = Feed::new(1000, 7, true);
        assert!(matches!(
            feed.take(Room::events(10)),
            Next::FromDisk { until: 7 }
        ));
        assert!(matches!(feed.take(Room::events(10)), Next::Idle));
        feed.push(vec![pending(8), pending(9)], 9);
        assert_eq!(seqs(feed.take(Room::events(1))), [8]);
        assert_eq!(seqs(feed.take(Room::events(10))), [9]);
        assert!(matches!(feed.take(Room::events(10)), Next::Idle));
    }

    #[test]
    fn overflow_leaves_the_rest_on_disk_and_resumes_after_it() {
        let feed = Feed::new(250, 0, true);
        assert!(matches!(
            feed.take(Room::events(10)),
            Next::FromDisk { until: 0 }
        ));
        feed.push(vec![pending(1), pending(2), pending(3)], 3);
        // Room for two; once spilled, later events stay on disk even if room comes back.
        assert_eq!(seqs(feed.take(Room::events(1))), [1]);
        feed.push(vec![pending(4)], 4);
        assert_eq!(seqs(feed.take(Room::events(10))), [2]);
        assert!(matches!(
            feed.take(Room::events(10)),
            Next::FromDisk { until: 4 }
        ));
        feed.push(vec![pending(5)], 5);
        assert_eq!(seqs(feed.take(Room::events(10))), [5]);
    }

    #[test]
    fn takes_within_the_byte_room_and_always_one() {
        let feed = Feed::new(10_000, 0, false);
        feed.push((1..=5).map(pending).collect(), 5);
        let room = |bytes| Room { events: 10, bytes };
        // Records of 100 bytes each.
        assert_eq!(seqs(feed.take(room(250))), [1, 2]);
        assert_eq!(
            seqs(feed.take(room(10))),
            [3],
            "one even when it does not fit"
        );
        assert_eq!(seqs(feed.take(room(u64::MAX))), [4, 5]);
        assert!(matches!(feed.take(room(100)), Next::Idle));
    }
}
