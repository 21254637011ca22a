//! Delivery states and how they are persisted: marks, one small sled tree per segment
//! (`marks@{first seq}`), dropped whole with its segment.
//!
//! A mark covers a run of consecutive seqs settled together (confirms mostly come in seq order,
//! so a batch is a few runs, not one entry per event): `[first seq, 8 bytes BE][count, 4 bytes
//! BE]` → `[state][unix ms, 8 bytes BE]`. Runs may overlap (a replay marks one delivered event
//! again); a seq takes the furthest state, as states only ever move forward.

use std::collections::HashMap;

/// What became of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for a confirm.
    Pending,
    /// Confirmed; kept for replay while its segment lives.
    Delivered,
    /// Refused for good; its copy is in the dead letters.
    Dead,
    /// Delivered, then put back by a replay under a new seq: not replayed again from here.
    Replayed,
}

impl State {
    /// States only move forward (pending → delivered → replayed, or pending → dead): a larger
    /// code is later.
    pub(crate) fn code(self) -> u8 {
        match self {
            State::Pending => 0,
            State::Delivered => 1,
            State::Dead => 2,
            State::Replayed => 3,
        }
    }

    /// A mark's state (marks are never `Pending`).
    pub(crate) fn from_code(code: u8) -> Option<State> {
        match code {
            1 => Some(State::Delivered),
            2 => Some(State::Dead),
            3 => Some(State::Replayed),
            _ => None,
        }
    }
}

pub(crate) fn marks_tree_name(first_seq: u64) -> String {
    format!("marks@{first_seq:020}")
}

/// First seq of the segment a marks tree belongs to.
pub(crate) fn parse_marks_tree_name(name: &[u8]) -> Option<u64> {
    std::str::from_utf8(name)
        .ok()?
        .strip_prefix("marks@")?
        .parse()
        .ok()
}

pub(crate) fn mark_key(run: &MarkRun) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&run.first.to_be_bytes());
    key[8..].copy_from_slice(&run.count.to_be_bytes());
    key
}

fn decode_mark_key(key: &[u8]) -> Option<(u64, u32)> {
    let key: [u8; 12] = key.try_into().ok()?;
    let (first, count) = key.split_at(8);
    Some((
        u64::from_be_bytes(first.try_into().ok()?),
        u32::from_be_bytes(count.try_into().ok()?),
    ))
}

/// One seq's new state and its time, to be written as a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) seq: u64,
    pub(crate) state: State,
    pub(crate) at_ms: u64,
}

/// What one mark says: `count` seqs from `first` took `state` at `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MarkRun {
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) state: State,
    pub(crate) at_ms: u64,
}

/// Consecutive marks (sorted by seq) of one state and time, as runs.
pub(crate) fn runs(marks: &[Mark]) -> Vec<MarkRun> {
    let mut out: Vec<MarkRun> = Vec::new();
    for mark in marks {
        if let Some(last) = out.last_mut() {
            let next = last.first.checked_add(u64::from(last.count));
            if next == Some(mark.seq)
                && last.state == mark.state
                && last.at_ms == mark.at_ms
                && last.count < u32::MAX
            {
                last.count += 1;
                continue;
            }
        }
        out.push(MarkRun {
            first: mark.seq,
            count: 1,
            state: mark.state,
            at_ms: mark.at_ms,
        });
    }
    out
}

/// The state each seq took, from a segment's marks in any order: of overlapping marks the
/// furthest state wins (I9).
pub(crate) fn furthest(runs: impl IntoIterator<Item = MarkRun>) -> HashMap<u64, Mark> {
    let mut states: HashMap<u64, Mark> = HashMap::new();
    for run in runs {
        let seqs = (0..u64::from(run.count)).map_while(|i| run.first.checked_add(i));
        for seq in seqs {
            let mark = states.entry(seq).or_insert(Mark {
                seq,
                state: run.state,
                at_ms: run.at_ms,
            });
            if run.state.code() > mark.state.code() {
                (mark.state, mark.at_ms) = (run.state, run.at_ms);
            }
        }
    }
    states
}

pub(crate) fn mark_value(run: &MarkRun) -> [u8; 9] {
    let mut value = [0u8; 9];
    value[0] = run.state.code();
    value[1..].copy_from_slice(&run.at_ms.to_be_bytes());
    value
}

/// The run a mark's key and value stand for; `None` if either is not a mark's.
pub(crate) fn decode_mark(key: &[u8], value: &[u8]) -> Option<MarkRun> {
    let (first, count) = decode_mark_key(key)?;
    let (&code, at) = value.split_first()?;
    let at: [u8; 8] = at.try_into().ok()?;
    Some(MarkRun {
        first,
        count,
        state: State::from_code(code)?,
        at_ms: u64::from_be_bytes(at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_seqs_of_one_state_and_time() {
        let d = State::Delivered;
        let changes = [
            (1, d, 5),
            (2, d, 5),
            (3, d, 5),
            (5, d, 5),
            (6, State::Dead, 5),
            (7, d, 6),
        ]
        .map(|(seq, state, at_ms)| Mark { seq, state, at_ms });
        assert_eq!(
            runs(&changes),
            [
                (1, 3, d, 5),
                (5, 1, d, 5),
                (6, 1, State::Dead, 5),
                (7, 1, d, 6)
            ]
            .map(|(first, count, state, at_ms)| MarkRun {
                first,
                count,
                state,
                at_ms
            })
        );
        let run = MarkRun {
            first: 40,
            count: 3,
            state: State::Replayed,
            at_ms: 9,
        };
        assert_eq!(decode_mark(&mark_key(&run), &mark_value(&run)), Some(run));
        assert_eq!(decode_mark(&mark_key(&run), &[0, 1]), None);
        assert_eq!(decode_mark(&[0; 11], &mark_value(&run)), None);
    }
}
