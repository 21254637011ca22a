//! Who may see the status page: a session made by logging in once with the admin token, held
//! server-side and named by an `HttpOnly`, `SameSite=Strict` cookie; every state-changing request
//! also carries the session's CSRF token and a same-origin `Origin`.
//!
//! The cookie is `Secure` when the request reached the relay over HTTPS (directly, or as a
//! proxy's `Forwarded` / `X-Forwarded-Proto` says): the admin listener itself speaks plain HTTP
//! on loopback, where a `Secure` cookie would never be sent back.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie naming a session.
pub const COOKIE: &str = "relay_status";
/// The header (and form field) carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after its login, used or not.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held at once; a login past it ends the one closest to expiry.
const MAX_SESSIONS: usize = 64;

struct Session {
    csrf: String,
    expires: Instant,
}

/// The sessions, keyed by the SHA-256 of their id: the map never holds a usable cookie value.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// A new session: the cookie's value and the page's CSRF token.
pub struct Login {
    pub id: String,
    pub csrf: String,
}

#[derive(Debug, thiserror::Error)]
#[error("no randomness for a session id")]
pub struct NoRandomness(#[from] getrandom::Error);

fn random_hex() -> Result<String, NoRandomness> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    Ok(hex::encode(raw))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn create(&self) -> Result<Login, NoRandomness> {
        let login = Login {
            id: random_hex()?,
            csrf: random_hex()?,
        };
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&login.id),
            Session {
                csrf: login.csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok(login)
    }

    /// The CSRF token of the request's live session, if it has one.
    pub fn csrf_of(&self, req: &HttpRequest) -> Option<String> {
        let cookie = req.cookie(COOKIE)?;
        let key = digest(cookie.value());
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.csrf.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, req: &HttpRequest) {
        if let Some(cookie) = req.cookie(COOKIE) {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            map.remove(&digest(cookie.value()));
        }
    }
}

/// The session cookie for `value`; an empty value with max-age 0 clears it.
pub fn cookie(req: &HttpRequest, value: &str) -> Cookie<'static> {
    let secure = req.connection_info().scheme() == "https";
    let max_age = if value.is_empty() {
        Duration::ZERO
    } else {
        SESSION_TTL
    };
    Cookie::build(COOKIE, value.to_owned())
        .path("/status")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            max_age.as_secs() as i64,
        ))
        .finish()
}

/// A browser's POST names its origin; this must be the listener's own (`Host`). Where a browser
/// hides it (`Origin: null`, as some do for a form under a strict referrer policy), its
/// `Sec-Fetch-Site`, which no page script can set, must say `same-origin`.
pub fn same_origin(req: &HttpRequest) -> bool {
    let header_str = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let Some(host) = header_str(header::HOST.as_str()) else {
        return false;
    };
    match header_str(header::ORIGIN.as_str()) {
        None | Some("null") => header_str("sec-fetch-site") == Some("same-origin"),
        Some(origin) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
    }
}

/// The request proves it comes from a page of this session: same origin and its CSRF token.
pub fn csrf_ok(req: &HttpRequest, expected: &str) -> bool {
    let presented = req
        .headers()
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    same_origin(req) && bool::from(presented.ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let login = sessions.create().unwrap();
        assert_eq!(login.id.len(), 64);
        assert_ne!(login.id, login.csrf);
        let req = TestRequest::default()
            .cookie(Cookie::new(COOKIE, login.id.clone()))
            .to_http_request();
        assert_eq!(sessions.csrf_of(&req).as_deref(), Some(login.csrf.as_str()));
        let forged = TestRequest::default()
            .cookie(Cookie::new(COOKIE, login.csrf.clone()))
            .to_http_request();
        assert!(sessions.csrf_of(&forged).is_none());
        sessions.end(&req);
        assert!(sessions.csrf_of(&req).is_none());
    }

    #[test]
    fn csrf_needs_the_token_and_the_same_origin() {
        let ok = |origin: Option<&str>, token: Option<&str>| {
            let mut req = TestRequest::default().insert_header((header::HOST, "127.0.0.1:9090"));
            if let Some(origin) = origin {
                req = req.insert_header((header::ORIGIN, origin));
            }
            if let Some(token) = token {
                req = req.insert_header((CSRF_HEADER, token));
            }
            csrf_ok(&req.to_http_request(), "abc123")
        };
        assert!(ok(Some("http://127.0.0.1:9090"), Some("abc123")));
        assert!(!ok(Some("http://127.0.0.1:9090"), Some("abc124")));
        assert!(!ok(Some("http://127.0.0.1:9090"), None));
        assert!(!ok(Some("http://evil.example"), Some("abc123")));
        assert!(!ok(None, Some("abc123")));
        assert!(!ok(Some("null"), Some("abc123")));
        let hidden = |site: &str| {
            let req = TestRequest::default()
                .insert_header((header::HOST, "127.0.0.1:9090"))
                .insert_header((header::ORIGIN, "null"))
                .insert_header(("sec-fetch-site", site))
                .to_http_request();
            same_origin(&req)
        };
        assert!(hidden("same-origin"));
        assert!(!hidden("cross-site"));
        assert!(!hidden("same-site"));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict() {
        let req = TestRequest::default().to_http_request();
        let text = cookie(&req, "v").to_string();
        assert!(text.contains("HttpOnly"), "{text}");
        assert!(text.contains("SameSite=Strict"), "{text}");
        assert!(!text.contains("Secure"), "{text}");
        let tls = TestRequest::default()
            .insert_header(("x-forwarded-proto", "https"))
            .to_http_request();
        assert!(cookie(&tls, "v").to_string().contains("Secure"));
    }
}
