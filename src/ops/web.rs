//! What every handler of the admin listener shares: the token check (throttled), store work off
//! the async workers, and the one mapping of [`OpsError`] to statuses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::error::json_error;
use crate::metrics::Metrics;
use crate::ops::throttle::{Gate, Guesses};
use crate::ops::OpsError;
use crate::report::chain;
use crate::store::{Replays, Store};

/// Seconds a throttled guesser is asked to wait.
pub const THROTTLED_RETRY_AFTER: &str = "1";

/// `presented` is the admin token, compared in constant time; an empty token opens nothing.
pub fn token_matches(token: &Secret, presented: &[u8]) -> bool {
    let expected = token.expose().as_bytes();
    !expected.is_empty() && bool::from(presented.ct_eq(expected))
}

/// The admin token and the throttle on guessing it, shared by the admin API and the status page.
pub struct AdminAuth {
    token: Secret,
    guesses: Guesses,
}

/// What a presented admin token gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Valid,
    Wrong,
    /// Not checked: too many wrong guesses (429).
    Throttled,
}

impl AdminAuth {
    pub fn new(token: Secret, metrics: Metrics) -> Self {
        Self {
            token,
            guesses: Guesses::new(metrics),
        }
    }

    pub fn guesses(&self) -> &Guesses {
        &self.guesses
    }

    /// Checks `presented` from `req`'s source, unless guessing is throttled for it; `what`
    /// names the door in the log (`admin API`, `status page login`).
    pub fn check(
        &self,
        req: &HttpRequest,
        presented: Option<&[u8]>,
        what: &'static str,
    ) -> Checked {
        let peer = req.peer_addr().map(|a| a.ip());
        if self.guesses.gate(peer) == Gate::Throttled {
            return Checked::Throttled;
        }
        match presented {
            Some(presented) if token_matches(&self.token, presented) => Checked::Valid,
            _ => {
                self.guesses.failed(peer, what);
                Checked::Wrong
            }
        }
    }

    /// `Authorization: Bearer <admin.token>`, compared in constant time; `Some`: the refusal.
    pub fn bearer(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match self.check(req, presented.map(str::as_bytes), "admin API") {
            Checked::Valid => None,
            Checked::Wrong => Some(json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin token required",
            )),
            Checked::Throttled => Some(throttled()),
        }
    }
}

/// 429 with `Retry-After`: the answer to a guess that was not checked.
pub fn throttled() -> HttpResponse {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "too many wrong admin tokens; retry later",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(THROTTLED_RETRY_AFTER),
    );
    response
}

pub fn ops_error(err: &OpsError) -> HttpResponse {
    match err {
        OpsError::Store(_) => {
            tracing::error!(error = %chain(err), "admin request failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the store failed; see the relay's log",
            )
        }
        OpsError::NotFound(_) | OpsError::UnknownEvent(_) => {
            json_error(StatusCode::NOT_FOUND, "not_found", err.to_string())
        }
        OpsError::NotReplayable(_) => json_error(StatusCode::CONFLICT, "conflict", err.to_string()),
        OpsError::BadId(_)
        | OpsError::BadTime(_)
        | OpsError::BadKind(_)
        | OpsError::BadQuery(_) => {
            json_error(StatusCode::BAD_REQUEST, "bad_request", err.to_string())
        }
    }
}

/// Runs store work off the async workers: sled calls block.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, OpsError> + Send + 'static,
) -> Result<T, HttpResponse> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(ops_error(&err)),
        Err(err) => {
            tracing::error!(error = %err, "admin task failed");
            Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "admin task failed",
            ))
        }
    }
}

/// Bodies are parsed after the credential check, so an unauthenticated caller learns nothing.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<HttpResponse>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            e.to_string(),
        ))
    })
}

/// A replay: what goes back is read on the blocking pool (sled and segment reads block), then put
/// back from this worker, which only awaits the writer; answered as [`replayed`].
pub async fn read_then_put_back(
    store: &Store,
    read: impl FnOnce(&Store) -> Result<Replays, OpsError> + Send + 'static,
    what: &str,
) -> HttpResponse {
    let reader = store.clone();
    match blocking(move || read(&reader)).await {
        Ok(replays) => replayed(crate::ops::put_back(store, replays).await, what),
        Err(response) => response,
    }
}

/// A JSON answer of a replay, logged as such; `what` names what went back into the outbox.
pub fn replayed(result: Result<crate::ops::Replayed, OpsError>, what: &str) -> HttpResponse {
    match result {
        Ok(replayed) => {
            tracing::info!(
                replayed = replayed.replayed,
                what,
                "put back into the outbox"
            );
            HttpResponse::Ok().json(replayed)
        }
        Err(err) => ops_error(&err),
    }
}
