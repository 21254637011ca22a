//! Reading what the window owes from the store: each ticket's next event when its turn comes
//! (by seq), the events of a ticket whose line kept no seqs (looked for again), and the catch-up
//! of the segments in seq order. Records that cannot be read go to the dead letters.

use super::window::{LookAgain, Window, WINDOW_BYTES};
use super::{PublishError, Publisher, PublisherStats};
use crate::store::{Pending, Records, Room, Settlement, Store, StoreError};

/// Records one read of a look again takes at most.
const LOOK_BATCH: usize = 1024;

/// The seqs of the ticket's pending events after `look.after`, up to `look.until`, in order: at
/// most `room`, and no more reads once a batch found one (the rest can wait for its turn); with
/// where to look next if it stopped before `look.until`.
async fn find(
    store: &Store,
    look: &LookAgain,
    room: usize,
) -> Result<(Vec<u64>, Option<u64>), StoreError> {
    let mut found = Vec::new();
    let mut after = look.after;
    while after < look.until {
        let batch = Room {
            events: LOOK_BATCH,
            bytes: WINDOW_BYTES,
        };
        // Unreadable records were handed back when the window first read past them.
        let records = store.read_records(Some(after), look.until, batch).await?;
        let Some(last) = records.last else {
            break;
        };
        for pending in &records.events {
            if look.ticket.holds(&pending.event.meta) {
                found.push(pending.seq);
                if found.len() >= room {
                    return Ok((found, Some(pending.seq)));
                }
            }
        }
        after = last;
        if !found.is_empty() {
            return Ok((found, (after < look.until).then_some(after)));
        }
    }
    Ok((found, None))
}

impl Publisher {
    /// Reads everything the window owes (due events, looks again) so it is ready to publish.
    pub(super) async fn catch_up(&self, window: &mut Window) -> Result<(), PublishError> {
        while window.owes_reads() {
            let due = window.take_due();
            if !due.is_empty() {
                let seqs = due.iter().map(|(seq, _)| *seq).collect();
                let records = self.store.read_seqs(seqs).await?;
                self.bury(records.unreadable).await?;
                window.load_due(due, records.events);
            }
            for look in window.take_look_again() {
                self.look_again(window, look).await?;
            }
        }
        Ok(())
    }

    /// Finds the next events of a ticket whose line kept none of them, in seq order, as many as
    /// the line may keep; only their seqs are kept.
    async fn look_again(&self, window: &mut Window, look: LookAgain) -> Result<(), PublishError> {
        let (found, more_after) = find(&self.store, &look, window.room_to_keep()).await?;
        window.found(look.ticket, found, more_after);
        Ok(())
    }

    /// Takes the records read in seq order into the window; unreadable ones go to the dead
    /// letters (read past, never held).
    pub(super) async fn load(
        &self,
        window: &mut Window,
        records: Records,
    ) -> Result<(), PublishError> {
        window.load(records.events);
        if let Some(last) = records.last {
            window.pass(last);
        }
        self.bury(records.unreadable).await
    }

    /// Moves records that cannot be read to the dead letters, with why.
    async fn bury(&self, unreadable: Vec<(Pending, String)>) -> Result<(), PublishError> {
        if unreadable.is_empty() {
            return Ok(());
        }
        for _ in &unreadable {
            PublisherStats::bump(&self.stats.unreadable);
        }
        self.store
            .settle_later(Settlement {
                dead: unreadable,
                ..Settlement::default()
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::{Event, EventId, Kind};
    use crate::publish::lines::Ticket;
    use crate::publish::window::tests::meta;

    /// Looked for again in the segments, a busy ticket's events come back in seq order, across
    /// read batches, at most as many as asked, with where to go on; the others' are passed over.
    #[tokio::test]
    async fn a_look_again_finds_a_tickets_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::store::tests::settings(dir.path(), Duration::from_secs(3600));
        let store = Store::open(&settings).unwrap();
        // Every third event on ticket 1, the others each on a ticket of its own.
        let appends = (0..3000u32).map(|n| {
            let mut m = meta(
                0,
                Kind::Message,
                Some(if n % 3 == 0 { 1 } else { 2 + i64::from(n) }),
            );
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            m.id = EventId(id);
            let event = Event {
                meta: m,
                body: bytes::Bytes::from(format!("{{\"n\":{n}}}")),
                earlier_id: None,
                wa_id: None,
            };
            let store = store.clone();
            async move { store.append(event).await }
        });
        for appended in futures_util::future::join_all(appends).await {
            appended.unwrap();
        }
        let all = store.pending_after(None, Room::events(10_000)).unwrap();
        let ticket = Ticket::of(&meta(0, Kind::Message, Some(1))).unwrap();
        let hot: Vec<u64> = all
            .iter()
            .filter(|p| ticket.holds(&p.event.meta))
            .map(|p| p.seq)
            .collect();
        assert_eq!(hot.len(), 1000);
        let until = all.last().map(|p| p.seq).unwrap();
        let look = |after| LookAgain {
            ticket: ticket.clone(),
            after,
            until,
        };

        let (found, more) = find(&store, &look(hot[0]), 5).await.unwrap();
        assert_eq!(found, hot[1..6]);
        assert_eq!(more, Some(hot[5]));

        let mut again = Vec::new();
        let mut after = Some(hot[0]);
        let mut looks = 0;
        while let Some(from) = after {
            let (found, more) = find(&store, &look(from), 10_000).await.unwrap();
            assert!(!found.is_empty() || more.is_none());
            again.extend(found);
            after = more;
            looks += 1;
        }
        assert_eq!(again, hot[1..], "every later event once, in order");
        assert!(looks > 1, "a look stops after the batch that found some");

        let tail = LookAgain {
            ticket,
            after: until,
            until,
        };
        assert_eq!(find(&store, &tail, 10).await.unwrap(), (Vec::new(), None));
    }
}
