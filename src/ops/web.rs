//! What every handler of the admin listener shares: the token check, store work off the async
//! workers, and the one mapping of [`OpsError`] to statuses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::error::json_error;
use crate::ops::OpsError;
use crate::report::chain;

/// `presented` is the admin token, compared in constant time; an empty token opens nothing.
pub fn token_matches(token: &Secret, presented: &[u8]) -> bool {
    let expected = token.expose().as_bytes();
    !expected.is_empty() && bool::from(presented.ct_eq(expected))
}

/// `Authorization: Bearer <admin.token>`, compared in constant time; `Some`: the refusal.
pub fn bearer(req: &HttpRequest, token: &Secret) -> Option<HttpResponse> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if token_matches(token, presented.as_bytes()) => None,
        _ => {
            tracing::warn!(
                path = req.path(),
                "admin request refused: missing or wrong admin token"
            );
            Some(json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin token required",
            ))
        }
    }
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
        OpsError::NotFound(_) => json_error(StatusCode::NOT_FOUND, "not_found", err.to_string()),
        OpsError::BadId(_) | OpsError::BadTime(_) | OpsError::BadKind(_) => {
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
