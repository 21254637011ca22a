//! The webhook endpoint: the request's steps in order — what needs no credential (`body`), the
//! credential from the head, the body, its signature (`verify`), the one parse (`event`), the
//! durable append (`store`) — and the one log line and count per request.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::http::Method;
use actix_web::ResponseError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::{compile_rules, Settings};
use crate::event::{self, BodyMode, CustomRules, EventId, Format, Kind, RedactKeys, RuleError};
use crate::http::body::{check_content_type, declared_length, read_body};
use crate::http::error::IngestError;
use crate::http::verify::{HeadCheck, Presented, SecretError, Verified, Verifier};
use crate::metrics::history::{ConnHistory, Outcome};
use crate::metrics::{EventClock, Metrics};
use crate::report::Refusals;
use crate::store::{Appended, Store};

/// The headers the verifiers read, as names made once: looking one up by `&str` builds (and, for
/// names outside the standard set, allocates) a `HeaderName` per request.
const X_N8N_API_KEY: HeaderName = HeaderName::from_static("x-n8n-api-key");
const X_SIGNATURE_256: HeaderName = HeaderName::from_static("x-signature-256");
const X_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The credentials of a connection that is not configured: none.
static UNKNOWN_CONNECTION: Verifier = Verifier::NONE;

/// Longest wait for the store's durable append before answering 503: well past a healthy group
/// commit (milliseconds), well within a sender's patience.
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A configuration the hot path cannot be prepared from (validated settings never give one).
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("invalid connection secret")]
    Secret(#[from] SecretError),
    #[error("invalid classification rule")]
    Rule(#[from] RuleError),
}

/// One configured connection, prepared for the hot path.
struct Connection {
    verifier: Verifier,
    company_id: Option<i64>,
    /// The connection's own classification rules (compiled once per config).
    rules: CustomRules,
    /// The body its events are stored and published with.
    body: BodyMode,
    /// Stamped per event received (accepted or duplicate), for the silent-connection alert.
    last_event: EventClock,
    /// Its minute ring for the status page, kept by `metrics` across reloads.
    history: Arc<ConnHistory>,
}

/// What a config reload (SIGHUP) replaces as one: connections with their credentials, and the
/// redaction keys. A request works on one snapshot from start to end.
pub struct Rules {
    connections: HashMap<String, Connection>,
    redact: RedactKeys,
}

impl Rules {
    /// Prepares `settings`' connections, each with its clock and minute ring from `metrics`.
    pub fn new(settings: &Settings, metrics: &Metrics) -> Result<Self, RulesError> {
        let connections = settings
            .connections
            .iter()
            .map(|c| {
                let conn = Connection {
                    verifier: Verifier::new(c)?,
                    company_id: c.company_id,
                    rules: compile_rules(&c.rules)?,
                    body: c.body_mode(&settings.amqp),
                    last_event: metrics.event_clock(&c.name),
                    history: metrics.history().connection(&c.name),
                };
                Ok((c.name.clone(), conn))
            })
            .collect::<Result<_, RulesError>>()?;
        // At start and at each reload: the list in force is the one to warn about.
        if let Some(warning) = settings.redact.warning() {
            tracing::warn!("{warning}");
        }
        Ok(Self {
            connections,
            redact: settings.redact.matcher(),
        })
    }
}

/// Everything a webhook request needs, shared by all HTTP workers.
pub struct Ingest {
    /// Read once per request (an `Arc` clone), written only by a reload.
    rules: RwLock<Arc<Rules>>,
    store: Store,
    metrics: Metrics,
    max_body_bytes: usize,
    /// Whole-body read deadline: actix's own time-out covers only the request head.
    body_timeout: std::time::Duration,
    /// Bytes of bodies read before their sender is known (`server.unauthenticated_body_bytes`):
    /// one permit a byte, so that a flood of signed garbage is bounded by configuration.
    unauthenticated: Arc<Semaphore>,
    /// Refusals logged in full once per reason and window (`report::summarize` sums the rest).
    refusals: Arc<Refusals>,
}

impl Ingest {
    pub fn new(settings: &Settings, store: Store, metrics: Metrics) -> Result<Self, RulesError> {
        Ok(Self {
            rules: RwLock::new(Arc::new(Rules::new(settings, &metrics)?)),
            store,
            metrics,
            max_body_bytes: settings.server.max_body_bytes,
            body_timeout: settings.server.client_timeout,
            unauthenticated: Arc::new(Semaphore::new(
                settings
                    .server
                    .unauthenticated_body_bytes
                    .min(Semaphore::MAX_PERMITS),
            )),
            refusals: Arc::default(),
        })
    }

    /// The refusals held back from the log, for the summary task.
    pub fn refusals(&self) -> Arc<Refusals> {
        Arc::clone(&self.refusals)
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        // A poisoned lock still holds a complete `Arc`: writers only swap it.
        Arc::clone(&self.rules.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Prepares `settings` for [`Ingest::replace_rules`], without putting them in force.
    pub fn prepare(&self, settings: &Settings) -> Result<Rules, RulesError> {
        Rules::new(settings, &self.metrics)
    }

    /// Puts new rules in force for every request that starts from now on.
    pub fn replace_rules(&self, rules: Rules) {
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
    }
}

#[derive(Serialize)]
struct Accepted<'a> {
    status: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// `POST /hooks/{connection}/{token}` (the URL pasted into Whaticket's webhook field) and
/// `POST /hooks/{connection}` (token in a header, or a signed body).
///
/// The path is split here rather than by actix's pattern routes, which run a regex engine per
/// request: this is the only dynamic route and it has one shape. Segments are percent-decoded as
/// actix's `Path` would; anything else under `/hooks/` is a 404, another method a 405.
pub async fn hooks(
    req: HttpRequest,
    payload: web::Payload,
    ingest: web::Data<Ingest>,
) -> HttpResponse {
    let rest = req.match_info().unprocessed();
    let Some((connection, token)) = hook_path(rest) else {
        return super::not_found();
    };
    if req.method() != Method::POST {
        return super::method_not_allowed();
    }
    match handle(&req, &connection, token.as_deref(), payload, &ingest).await {
        Ok(response) => response,
        Err(err) => err.error_response(),
    }
}

/// `/{connection}` or `/{connection}/{token}`, each segment non-empty and percent-decoded.
fn hook_path(rest: &str) -> Option<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    fn decode(segment: &str) -> Option<Cow<'_, str>> {
        if segment.is_empty() {
            return None;
        }
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .ok()
    }
    let mut segments = rest.strip_prefix('/')?.split('/');
    let connection = decode(segments.next()?)?;
    let token = match segments.next() {
        None => None,
        Some(segment) => Some(decode(segment)?),
    };
    if segments.next().is_some() {
        return None;
    }
    Some((connection, token))
}

async fn handle(
    req: &HttpRequest,
    connection: &str,
    path_token: Option<&str>,
    payload: web::Payload,
    ingest: &Ingest,
) -> Result<HttpResponse, IngestError> {
    let started = Instant::now();
    // One clock read stamps the event and its minute on the status page.
    let now_ms = crate::clock::now_ms();
    let rules = ingest.rules();
    let result = accept(req, connection, path_token, payload, ingest, &rules, now_ms).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The connection name is only logged once known to be configured: an unknown one is
    // attacker-chosen text (or a misplaced token).
    let configured = rules.connections.get(connection);
    let conn_field = if configured.is_some() {
        connection
    } else {
        "<unknown>"
    };
    let metrics = &ingest.metrics;
    let history = configured.map_or_else(|| metrics.history().unknown(), |c| &c.history);
    match &result {
        Ok((outcome, id, kind, format)) => {
            if let Some(conn) = configured {
                conn.last_event.touch(crate::clock::now_ms());
            }
            tracing::info!(
                connection = conn_field,
                event_id = %id,
                kind = kind.as_str(),
                outcome = outcome.as_str(),
                status = if *outcome == Appended::Accepted { 202 } else { 200 },
                latency_ms,
                "webhook"
            );
            match outcome {
                Appended::Accepted => {
                    metrics.accepted(conn_field, *kind, started.elapsed());
                    metrics.by_format(conn_field, format.unwrap_or(Format::Unknown));
                    history.record(Outcome::Accepted, now_ms);
                }
                Appended::Duplicate | Appended::DuplicateOf(_) => {
                    metrics.duplicate(conn_field, *kind);
                    history.record(Outcome::Duplicate, now_ms);
                }
            }
        }
        Err(err) => {
            // An outsider chooses how many refusals there are, not how many log lines.
            if ingest.refusals.first(err.code()) {
                err.log(conn_field, latency_ms);
            }
            metrics.rejected(conn_field, err.code());
            history.record(Outcome::Rejected, now_ms);
        }
    }
    let (outcome, id, kind, _) = result?;
    let id = id.hex();
    let response = match outcome {
        Appended::Accepted => HttpResponse::Accepted().json(Accepted {
            status: "accepted",
            id: id.as_str(),
            kind: Some(kind.as_str()),
        }),
        Appended::Duplicate | Appended::DuplicateOf(_) => HttpResponse::Ok().json(Accepted {
            status: "duplicate",
            id: id.as_str(),
            kind: None,
        }),
    };
    Ok(response)
}

trait OutcomeName {
    fn as_str(&self) -> &'static str;
}

impl OutcomeName for Appended {
    fn as_str(&self) -> &'static str {
        match self {
            Appended::Accepted => "accepted",
            Appended::Duplicate | Appended::DuplicateOf(_) => "duplicate",
        }
    }
}

async fn accept(
    req: &HttpRequest,
    connection: &str,
    path_token: Option<&str>,
    payload: web::Payload,
    ingest: &Ingest,
    rules: &Rules,
    received_at_ms: u64,
) -> Result<(Appended, EventId, Kind, Option<Format>), IngestError> {
    // What needs no credential first, answered alike whether the connection exists or not.
    check_content_type(req.headers())?;
    let declared = declared_length(req.headers(), ingest.max_body_bytes)?;
    let known = rules.connections.get(connection);
    let verifier = known.map_or(&UNKNOWN_CONNECTION, |c| &c.verifier);
    let headers = req.headers();
    let presented = Presented {
        path_token,
        authorization: header_bytes(headers, &header::AUTHORIZATION),
        api_key: header_bytes(headers, &X_N8N_API_KEY),
        signature_256: header_bytes(headers, &X_SIGNATURE_256),
        signature_hex: header_bytes(headers, &X_WEBHOOK_SIGNATURE),
        webhook_id: header_bytes(headers, &WEBHOOK_ID),
        webhook_timestamp: header_bytes(headers, &WEBHOOK_TIMESTAMP),
        webhook_signature: header_bytes(headers, &WEBHOOK_SIGNATURE),
    };
    // A token is checked before any body byte is read; a signature needs the body, read within
    // the budget of unauthenticated bytes.
    let budget = match verifier.check_head(&presented) {
        HeadCheck::Verified => None,
        HeadCheck::NeedsBody => Some(&ingest.unauthenticated),
        HeadCheck::Refused(e) => return Err(IngestError::Unauthorized(Some(e))),
    };
    let (body, permit) = tokio::time::timeout(
        ingest.body_timeout,
        read_body(payload, declared, ingest.max_body_bytes, budget),
    )
    .await
    .map_err(|_| IngestError::BodyTimeout)??;
    let verified = match permit {
        // A token proved the caller: it signs nothing about the event.
        None => Verified::Credential,
        Some(_) => verifier
            .verify(&presented, &body, SystemTime::now())
            .map_err(|e| IngestError::Unauthorized(Some(e)))?,
    };
    drop(permit);
    let conn = known.ok_or(IngestError::Unauthorized(None))?;

    // A signed `webhook-id` keys the event; the body is still parsed once, for the rest.
    let event = event::parse_with(
        connection,
        body,
        &rules.redact,
        &conn.rules,
        received_at_ms,
        verified.sender_id(),
        conn.body,
    )?;
    if let (Some(expected), Some(got)) = (conn.company_id, event.meta.company_id) {
        if expected != got {
            return Err(IngestError::CompanyMismatch);
        }
    }
    let (id, kind, format) = (event.meta.id, event.meta.kind, event.meta.format);
    // Bounded: on a full disk sled's flush can block for good, and a request must not hang with it.
    let outcome = tokio::time::timeout(STORE_TIMEOUT, ingest.store.append(event))
        .await
        .map_err(|_| IngestError::StoreStuck)?
        .map_err(IngestError::from)?;
    // A repeat of an event accepted before an upgrade is answered with that event's id.
    let id = match outcome {
        Appended::DuplicateOf(first) => first,
        _ => id,
    };
    Ok((outcome, id, kind, format))
}

fn header_bytes<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::hook_path;

    fn split(rest: &str) -> Option<(String, Option<String>)> {
        hook_path(rest).map(|(c, t)| (c.into_owned(), t.map(|t| t.into_owned())))
    }

    #[test]
    fn hook_paths_have_one_or_two_non_empty_decoded_segments() {
        assert_eq!(split("/loja"), Some(("loja".into(), None)));
        assert_eq!(
            split("/loja/tok-123"),
            Some(("loja".into(), Some("tok-123".into())))
        );
        assert_eq!(
            split("/lo%6Aa/t%2Dk"),
            Some(("loja".into(), Some("t-k".into())))
        );
        for bad in [
            "",
            "/",
            "//tok",
            "/loja/",
            "/loja/tok/x",
            "loja",
            "/loja//",
            "/%FF",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }
}
