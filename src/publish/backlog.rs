//! Reading what the window owes from the store: each ticket's next event when its turn comes
//! (by seq), the events of a ticket whose line kept no seqs (looked for again), and the catch-up
//! of the segments in seq order. Records that cannot be read go to the dead letters.

use super::window::{LookAgain, Window, WINDOW_BYTES};
use super::{PublishError, Publisher, PublisherStats};
use crate::store::{Pending, Records, Room, Settlement};

/// Records one read of a look again takes at most.
const LOOK_BATCH: usize = 1024;

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
        let room = window.room_to_keep();
        let mut found = Vec::new();
        let mut after = look.after;
        let more_after = loop {
            if after >= look.until {
                break None;
            }
            let batch = Room {
                events: LOOK_BATCH,
                bytes: WINDOW_BYTES,
            };
            // Unreadable records were handed back when the window first read past them.
            let records = self
                .store
                .read_records(Some(after), look.until, batch)
                .await?;
            let Some(last) = records.last else {
                break None;
            };
            let mut stop = None;
            for pending in &records.events {
                if look.ticket.holds(&pending.event.meta) {
                    found.push(pending.seq);
                    if found.len() == room {
                        stop = Some(pending.seq);
                        break;
                    }
                }
            }
            if stop.is_some() {
                break stop;
            }
            after = last;
            // What was read holds one at least: the rest may wait for its turn.
            if !found.is_empty() {
                break Some(after);
            }
        };
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
                delivered: Vec::new(),
                dead: unreadable,
            })
            .await?;
        Ok(())
    }
}
