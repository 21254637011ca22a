//! Delivery states and how they are persisted: marks, one small sled tree per segment
//! (`marks@{first seq}`), dropped whole with its segment.
//!
//! A mark covers a run of consecutive seqs settled together (confirms mostly come in seq order,
//! so a batch is a few runs, not one entry per event): `[first seq, 8 bytes BE][count, 4 bytes
//! BE]` → `[state][unix ms, 8 bytes BE]`. Runs may overlap (a replay marks one delivered event
//! again); a seq takes the furthest state, as states only ever move forward.

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

pub(crate) fn mark_key(first_seq: u64, count: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&first_seq.to_be_bytes());
    key[8..].copy_from_slice(&count.to_be_bytes());
    key
}

pub(crate) fn decode_mark_key(key: &[u8]) -> Option<(u64, u32)> {
    let key: [u8; 12] = key.try_into().ok()?;
    let (first, count) = key.split_at(8);
    Some((
        u64::from_be_bytes(first.try_into().ok()?),
        u32::from_be_bytes(count.try_into().ok()?),
    ))
}

/// Consecutive runs of `(seq, state, at)` (sorted by seq) with one state and time: `(first, count, state, at)`.
pub(crate) fn runs(changes: &[(u64, State, u64)]) -> Vec<(u64, u32, State, u64)> {
    let mut out: Vec<(u64, u32, State, u64)> = Vec::new();
    for &(seq, state, at) in changes {
        if let Some(last) = out.last_mut() {
            let next = last.0.checked_add(u64::from(last.1));
            if next == Some(seq) && last.2 == state && last.3 == at && last.1 < u32::MAX {
                last.1 += 1;
                continue;
            }
        }
        out.push((seq, 1, state, at));
    }
    out
}

pub(crate) fn mark_value(state: State, at_ms: u64) -> [u8; 9] {
    let mut value = [0u8; 9];
    value[0] = state.code();
    value[1..].copy_from_slice(&at_ms.to_be_bytes());
    value
}

pub(crate) fn decode_mark(value: &[u8]) -> Option<(State, u64)> {
    let (&code, at) = value.split_first()?;
    let at: [u8; 8] = at.try_into().ok()?;
    Some((State::from_code(code)?, u64::from_be_bytes(at)))
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
        ];
        assert_eq!(
            runs(&changes),
            [
                (1, 3, d, 5),
                (5, 1, d, 5),
                (6, 1, State::Dead, 5),
                (7, 1, d, 6)
            ]
        );
        let key = mark_key(40, 3);
        assert_eq!(decode_mark_key(&key), Some((40, 3)));
        assert_eq!(
            decode_mark(&mark_value(State::Replayed, 9)),
            Some((State::Replayed, 9))
        );
        assert_eq!(decode_mark(&[0, 1]), None);
    }
}
