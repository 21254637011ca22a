//! Guessing the admin token is throttled: wrong tokens (API bearer and status page login alike)
//! draw from one token bucket across all sources; once it is empty, a source that guessed wrong
//! within the last minute is answered 429 without its token being checked, while a source with no
//! recent failure is still checked, so the right token keeps working from anywhere else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::report::Refusals;

/// Wrong tokens checked per second once the burst is spent, across all sources.
const RATE_PER_SEC: f64 = 5.0;
/// Wrong tokens checked at once before the rate applies.
const BURST: f64 = 10.0;
/// How long a source that guessed wrong is remembered.
const REMEMBER: Duration = Duration::from_secs(60);
/// Most sources remembered; past it every source counts as one that guessed wrong.
const MAX_SOURCES: usize = 4096;

/// May a presented token be checked now?
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Check,
    /// No: answer 429 with `Retry-After` and check nothing.
    Throttled,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Guesses {
    bucket: Mutex<Bucket>,
    /// Sources with a wrong token within [`REMEMBER`], and when.
    failing: Mutex<HashMap<Option<IpAddr>, Instant>>,
    metrics: Metrics,
    refusals: Arc<Refusals>,
}

impl Guesses {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
            }),
            failing: Mutex::default(),
            metrics,
            refusals: Arc::default(),
        }
    }

    /// The refusals held back from the log, for the summary task.
    pub fn refusals(&self) -> Arc<Refusals> {
        Arc::clone(&self.refusals)
    }

    /// Whether `peer`'s token may be checked now.
    pub fn gate(&self, peer: Option<IpAddr>) -> Gate {
        self.gate_at(peer, Instant::now())
    }

    fn gate_at(&self, peer: Option<IpAddr>, now: Instant) -> Gate {
        if self.refill(now) >= 1.0 {
            return Gate::Check;
        }
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        failing.retain(|_, at| now.duration_since(*at) < REMEMBER);
        if failing.len() < MAX_SOURCES && !failing.contains_key(&peer) {
            return Gate::Check;
        }
        drop(failing);
        self.metrics.admin_auth_failure("throttled");
        if self.refusals.first("throttled") {
            tracing::warn!("admin token guesses throttled: answered 429 without a check");
        }
        Gate::Throttled
    }

    /// A checked token was wrong: it costs a token of the bucket and marks its source.
    pub fn failed(&self, peer: Option<IpAddr>, what: &'static str) {
        self.failed_at(peer, what, Instant::now());
    }

    fn failed_at(&self, peer: Option<IpAddr>, what: &'static str, now: Instant) {
        {
            self.refill(now);
            let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
        }
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.len() < MAX_SOURCES || failing.contains_key(&peer) {
            failing.insert(peer, now);
        }
        drop(failing);
        self.metrics.admin_auth_failure("refused");
        if self.refusals.first(what) {
            tracing::warn!("{what}: wrong admin token");
        }
    }

    /// Tops the bucket up for the time passed; the tokens in it now.
    fn refill(&self, now: Instant) -> f64 {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let passed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + passed * RATE_PER_SEC).min(BURST);
        bucket.at = now;
        bucket.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn a_burst_is_checked_then_five_a_second_and_clean_sources_always() {
        let guesses = Guesses::new(Metrics::new());
        let start = Instant::now();
        let attacker = ip(1);
        // 1000 wrong guesses at `at`: how many were checked.
        let guess_all = |at: Instant| {
            (0..1000)
                .filter(|_| {
                    let checked = guesses.gate_at(attacker, at) == Gate::Check;
                    if checked {
                        guesses.failed_at(attacker, "admin API", at);
                    }
                    checked
                })
                .count()
        };
        assert_eq!(guess_all(start), 10, "the burst");
        // Another source with no wrong guess is still checked (the right token works there).
        assert_eq!(guesses.gate_at(ip(2), start), Gate::Check);
        // One second later, five more of the attacker's.
        let later = start + Duration::from_secs(1);
        assert_eq!(guess_all(later), 5, "the rate");
        // A source that guessed wrong is forgotten after a minute (the bucket is empty).
        guesses.failed_at(ip(3), "admin API", later);
        assert_eq!(guesses.gate_at(ip(3), later), Gate::Throttled);
        let forgotten = later + REMEMBER + Duration::from_millis(1);
        guesses.bucket.lock().unwrap().tokens = 0.0;
        guesses.bucket.lock().unwrap().at = forgotten;
        assert_eq!(guesses.gate_at(ip(3), forgotten), Gate::Check);
    }
}
