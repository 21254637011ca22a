//! Errors at the HTTP boundary and their one mapping to statuses and JSON bodies.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::event::ParseError;
use crate::http::verify::VerifyError;
use crate::report::chain;
use crate::store::StoreError;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Why a webhook request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Unknown connection (`None`) or bad credentials: one answer for both, so a caller cannot
    /// probe which connections exist.
    #[error("unknown connection or bad credentials")]
    Unauthorized(#[source] Option<VerifyError>),
    #[error("companyId does not match the connection")]
    CompanyMismatch,
    #[error("body is not a JSON object")]
    BadBody(#[from] ParseError),
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("content type must be application/json (UTF-8)")]
    UnsupportedMediaType,
    #[error("the request body did not arrive within the client time-out")]
    BodyTimeout,
    #[error("could not read the request body")]
    Payload(#[source] actix_web::error::PayloadError),
    #[error("the event could not be stored")]
    Store(#[source] StoreError),
    /// The store took longer than `STORE_TIMEOUT`: sled can block for good on a full disk.
    #[error("the store did not answer in time")]
    StoreStuck,
    /// Back-pressure: `storage.max_outbox` / `max_outbox_bytes` reached because the broker is
    /// not taking events; refusing beats filling the disk.
    #[error("the outbox is full: the broker is not keeping up")]
    OutboxFull,
    /// `server.unauthenticated_body_bytes` are in flight: bodies read before their sender is
    /// known (signed requests) wait for others to be verified.
    #[error("too many unauthenticated bodies in flight")]
    Busy,
}

impl From<StoreError> for IngestError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::OutboxFull => IngestError::OutboxFull,
            other => IngestError::Store(other),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: String,
}

impl IngestError {
    /// Machine-readable reason: the `error` field of the answer and the `reason` metric label.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Unauthorized(_) => "unauthorized",
            IngestError::CompanyMismatch => "forbidden",
            IngestError::BadBody(_) => "bad_request",
            IngestError::TooLarge { .. } => "payload_too_large",
            IngestError::UnsupportedMediaType => "unsupported_media_type",
            IngestError::Payload(_) => "bad_request",
            IngestError::BodyTimeout => "request_timeout",
            IngestError::Store(_) | IngestError::StoreStuck => "unavailable",
            IngestError::OutboxFull => "outbox_full",
            IngestError::Busy => "busy",
        }
    }

    /// What the client is told. Internal causes stay out of it.
    fn detail(&self) -> String {
        match self {
            IngestError::BadBody(e) => e.to_string(),
            IngestError::Store(_) | IngestError::StoreStuck => {
                "the event was not stored; retry later".to_owned()
            }
            IngestError::OutboxFull => {
                "the relay is holding too many undelivered events; retry later".to_owned()
            }
            IngestError::Busy => {
                "the relay is reading too many signed bodies; retry later".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// One log line per refused request: the reason, never the body or credentials.
    pub fn log(&self, connection: &str, latency_ms: f64) {
        let status = self.status_code().as_u16();
        match self {
            IngestError::Store(_) | IngestError::StoreStuck => {
                tracing::error!(connection, status, latency_ms, error = %chain(self), "webhook refused")
            }
            _ => {
                tracing::warn!(connection, status, latency_ms, error = %chain(self), "webhook refused")
            }
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::CompanyMismatch => StatusCode::FORBIDDEN,
            IngestError::BadBody(_) | IngestError::Payload(_) => StatusCode::BAD_REQUEST,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngestError::Store(_)
            | IngestError::StoreStuck
            | IngestError::OutboxFull
            | IngestError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        // A caller not proven to know a credential gets nothing more from this connection: its
        // body is never read, and the slot is free at once.
        if matches!(self, IngestError::Unauthorized(_) | IngestError::Busy) {
            response.force_close();
        }
        response.json(ErrorBody {
            error: self.code(),
            detail: self.detail(),
        })
    }
}

/// A JSON error answer outside the webhook path (404, 405, 503 of /readyz).
pub fn json_error(status: StatusCode, error: &str, detail: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error,
        detail: detail.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_documented_status() {
        let cases: Vec<(IngestError, u16)> = vec![
            (IngestError::Unauthorized(None), 401),
            (IngestError::Unauthorized(Some(VerifyError::BadToken)), 401),
            (IngestError::CompanyMismatch, 403),
            (IngestError::BadBody(ParseError::NotAnObject), 400),
            (IngestError::TooLarge { limit: 10 }, 413),
            (IngestError::UnsupportedMediaType, 415),
            (IngestError::BodyTimeout, 408),
            (IngestError::Store(StoreError::Closed), 503),
            (IngestError::from(StoreError::OutboxFull), 503),
            (IngestError::Busy, 503),
        ];
        for (err, status) in cases {
            let response = err.error_response();
            assert_eq!(response.status().as_u16(), status, "{err:?}");
        }
    }

    #[test]
    fn unavailable_carries_retry_after_and_hides_the_cause() {
        let err = IngestError::Store(StoreError::Closed);
        let response = err.error_response();
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            &RETRY_AFTER_SECS.to_string()
        );
        assert!(!err.detail().contains("writer"));
        assert!(chain(&err).contains("writer has stopped"));
    }

    #[test]
    fn a_full_outbox_answers_503_with_retry_after() {
        let err = IngestError::from(StoreError::OutboxFull);
        assert!(matches!(err, IngestError::OutboxFull));
        let response = err.error_response();
        assert_eq!(response.status().as_u16(), 503);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(err.code(), "outbox_full");
    }

    #[test]
    fn unknown_connection_and_bad_token_answer_alike() {
        let a = IngestError::Unauthorized(None);
        let b = IngestError::Unauthorized(Some(VerifyError::BadSignature));
        assert_eq!(a.detail(), b.detail());
        assert_eq!(a.code(), b.code());
    }
}
