//! The request body: its content type and declared length, checked before anything else, and
//! reading it within `server.max_body_bytes`, and, while its sender is not known yet, within the
//! budget of unauthenticated bytes all such requests share.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::IngestError;

/// JSON, `application/*+json`, or no content type at all (taken as JSON); UTF-8 only.
pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| IngestError::UnsupportedMediaType)?;
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || (starts_with_ignore_case(essence, "application/")
            && ends_with_ignore_case(essence, "+json"));
    if !is_json {
        return Err(IngestError::UnsupportedMediaType);
    }
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("charset") {
                let charset = value.trim().trim_matches('"');
                if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                    return Err(IngestError::UnsupportedMediaType);
                }
            }
        }
    }
    Ok(())
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len()
        .checked_sub(suffix.len())
        .and_then(|at| text.as_bytes().get(at..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

/// The declared `Content-Length`, refused at once when over `limit`.
pub(super) fn declared_length(
    headers: &HeaderMap,
    limit: usize,
) -> Result<Option<u64>, IngestError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => Err(IngestError::TooLarge { limit }),
        _ => Ok(declared),
    }
}

/// Reads the body up to `limit` bytes, and stops reading as soon as a chunked or lying body
/// passes it. With a `budget` (the sender is not known yet), every byte takes a permit first,
/// the declared length at once: the permits come back with the body, held until it is verified.
pub(super) async fn read_body(
    mut payload: web::Payload,
    declared: Option<u64>,
    limit: usize,
    budget: Option<&Arc<Semaphore>>,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), IngestError> {
    let take = |bytes: usize| -> Result<Option<OwnedSemaphorePermit>, IngestError> {
        match budget {
            None => Ok(None),
            Some(semaphore) => {
                let bytes = u32::try_from(bytes).map_err(|_| IngestError::TooLarge { limit })?;
                Arc::clone(semaphore)
                    .try_acquire_many_owned(bytes)
                    .map(Some)
                    .map_err(|_| IngestError::Busy)
            }
        }
    };
    let mut permit = take(declared.unwrap_or(0) as usize)?;
    let mut reserved = declared.unwrap_or(0) as usize;
    let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |l| l as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(IngestError::Payload)?;
        if buf.len() + chunk.len() > limit {
            return Err(IngestError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
        if buf.len() > reserved {
            if let Some(more) = take(buf.len() - reserved)? {
                match permit.as_mut() {
                    Some(held) => held.merge(more),
                    None => permit = Some(more),
                }
            }
            reserved = buf.len();
        }
    }
    Ok((buf.freeze(), permit))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

    use super::check_content_type;

    fn accepts(content_type: &str) -> bool {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(content_type).expect("a valid header value");
        headers.insert(CONTENT_TYPE, value);
        check_content_type(&headers).is_ok()
    }

    #[test]
    fn json_content_types_are_told_apart_without_regard_to_case() {
        for json in [
            "application/json",
            "Application/JSON",
            "text/json",
            "TEXT/Json",
            " application/json ; charset=UTF-8",
            "application/vnd.api+json",
            "APPLICATION/LD+JSON",
            "application/json; charset=utf8",
        ] {
            assert!(accepts(json), "{json:?} refused");
        }
        for other in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "text/+json",
            "+json",
            "application/json; charset=latin1",
            "application/",
            "",
        ] {
            assert!(!accepts(other), "{other:?} accepted");
        }
        assert!(
            check_content_type(&HeaderMap::new()).is_ok(),
            "no type is JSON"
        );
    }
}
