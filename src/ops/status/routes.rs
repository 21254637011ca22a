//! The status page's routes under `/status` on the admin listener (`/` leads there), and its
//! assets, embedded in the binary (no CDN: the page works without internet access), in the
//! reader's language (`i18n`). `GET /admin/status` gives the same JSON to a bearer-token client.
//! The Events view's API is in `events`, behind the same session and CSRF checks (these).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Deserialize;

use super::i18n::{self, Lang, Notice};
use super::session::{self, Sessions};
use super::{Samples, Sources};
use crate::http::error::json_error;
use crate::ops::web::{
    blocking, parse, read_then_put_back, replayed, AdminAuth, Checked, THROTTLED_RETRY_AFTER,
};
use crate::ops::{self, DeadReplayRequest, ReplayRequest};
use crate::store::Store;

const STATUS_JS: &str = include_str!("assets/status.js");
const EVENTS_JS: &str = include_str!("assets/events.js");
const STATUS_CSS: &str = include_str!("assets/status.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Most dead letters the page lists.
const DEAD_SHOWN: usize = 200;
/// A wrong token costs the guesser this long (one guesser; the throttle bounds them all).
const REFUSAL_DELAY: Duration = Duration::from_millis(400);

/// Only our own scripts and styles, no framing, forms and fetches to this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the status routes share.
pub struct StatusPage {
    pub auth: Arc<AdminAuth>,
    pub sources: Arc<Sources>,
    pub samples: Arc<Samples>,
    pub sessions: Sessions,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(root))
        .route("/status", web::get().to(page))
        .route("/status/", web::get().to(page))
        .route("/status/lang/{code}", web::get().to(choose_lang))
        .route("/status/login", web::post().to(login))
        .route("/status/logout", web::post().to(logout))
        .route("/status/assets/status.js", web::get().to(script))
        .route("/status/assets/events.js", web::get().to(events_script))
        .route("/status/assets/status.css", web::get().to(style))
        .route("/status/assets/icon.svg", web::get().to(icon))
        .route("/status/api/state", web::get().to(state))
        .route("/status/api/dead", web::get().to(dead_list))
        .route("/status/api/dead/replay", web::post().to(dead_replay))
        .route("/status/api/dead/{id}", web::get().to(dead_show))
        .route("/status/api/replay", web::post().to(replay))
        .route("/admin/status", web::get().to(bearer_state));
}

/// The headers every status response carries: nothing cached, nothing framed or sniffed.
pub(super) fn secured(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"));
    builder
}

fn html(status: StatusCode, lang: Lang, body: String) -> HttpResponse {
    secured(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_LANGUAGE, lang.code()))
        .insert_header((header::VARY, "Accept-Language, Cookie"))
        .body(body)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    secured(StatusCode::OK)
        .content_type(content_type)
        .body(body)
}

fn login_page(req: &HttpRequest, status: StatusCode, notice: Notice) -> HttpResponse {
    let lang = Lang::of(req);
    let (_, login) = i18n::pages(lang);
    html(
        status,
        lang,
        login.replace("{{notice}}", &notice.text(lang)),
    )
}

fn unauthorized() -> HttpResponse {
    json_error(StatusCode::UNAUTHORIZED, "unauthorized", "log in first")
}

/// The answer to a request without a live session; `None`: it has one.
pub(super) fn session(req: &HttpRequest, page: &StatusPage) -> Option<HttpResponse> {
    page.sessions.csrf_of(req).is_none().then(unauthorized)
}

/// As [`session`], for a state-changing request: it also needs its CSRF token and origin.
pub(super) fn changing(req: &HttpRequest, page: &StatusPage) -> Option<HttpResponse> {
    let Some(csrf) = page.sessions.csrf_of(req) else {
        return Some(unauthorized());
    };
    if session::csrf_ok(req, &csrf) {
        return None;
    }
    tracing::warn!(
        path = req.path(),
        "status request refused: CSRF check failed"
    );
    Some(json_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "missing or wrong CSRF token or origin",
    ))
}

/// After a refused login the form is shown again through a redirect (`?refused`), so that a
/// reload does not post the token again.
async fn page(req: HttpRequest, page: web::Data<StatusPage>) -> HttpResponse {
    match page.sessions.csrf_of(&req) {
        Some(csrf) => {
            let lang = Lang::of(&req);
            let (index, _) = i18n::pages(lang);
            // The token is hex: nothing in it needs escaping.
            html(StatusCode::OK, lang, index.replace("{{csrf}}", &csrf))
        }
        None if req.query_string() == "refused" => {
            login_page(&req, StatusCode::OK, Notice::Refused)
        }
        None => login_page(&req, StatusCode::OK, Notice::Nothing),
    }
}

/// `GET /`: an operator who types the listener's address finds the page.
async fn root() -> HttpResponse {
    see_other("/status").finish()
}

/// The language switch: remembered in a cookie, then the page again (logged in or not). An
/// unknown code changes nothing.
async fn choose_lang(req: HttpRequest, code: web::Path<String>) -> HttpResponse {
    let mut response = see_other("/status");
    if let Some(lang) = Lang::from_code(&code) {
        response.cookie(i18n::cookie(&req, lang));
    }
    response.finish()
}

fn see_other(location: &'static str) -> HttpResponseBuilder {
    let mut builder = secured(StatusCode::SEE_OTHER);
    builder.insert_header((header::LOCATION, HeaderValue::from_static(location)));
    builder
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    // Login CSRF: another site must not log a browser into a session of its choosing.
    if !session::same_origin(&req) {
        return login_page(&req, StatusCode::FORBIDDEN, Notice::CrossOrigin);
    }
    match page.auth.check(
        &req,
        Some(form.token.trim().as_bytes()),
        "status page login",
    ) {
        Checked::Valid => {}
        Checked::Wrong => {
            tokio::time::sleep(REFUSAL_DELAY).await;
            return see_other("/status?refused").finish();
        }
        Checked::Throttled => {
            let mut page = login_page(&req, StatusCode::TOO_MANY_REQUESTS, Notice::Throttled);
            page.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(THROTTLED_RETRY_AFTER),
            );
            return page;
        }
    }
    match page.sessions.create() {
        Ok(login) => {
            tracing::info!("status page login");
            see_other("/status")
                .cookie(session::cookie(&req, &login.id))
                .finish()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start a status page session");
            login_page(&req, StatusCode::INTERNAL_SERVER_ERROR, Notice::NoSession)
        }
    }
}

async fn logout(req: HttpRequest, page: web::Data<StatusPage>) -> HttpResponse {
    if let Some(refused) = changing(&req, &page) {
        return refused;
    }
    page.sessions.end(&req);
    secured(StatusCode::NO_CONTENT)
        .cookie(session::cookie(&req, ""))
        .finish()
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", STATUS_JS)
}

async fn events_script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", EVENTS_JS)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STATUS_CSS)
}

async fn icon() -> HttpResponse {
    asset("image/svg+xml", ICON_SVG)
}

async fn state_json(page: &StatusPage) -> HttpResponse {
    let sources = Arc::clone(&page.sources);
    let samples = Arc::clone(&page.samples);
    match blocking(move || Ok(sources.state(&samples))).await {
        Ok(state) => secured(StatusCode::OK).json(state),
        Err(response) => response,
    }
}

async fn state(req: HttpRequest, page: web::Data<StatusPage>) -> HttpResponse {
    if let Some(refused) = session(&req, &page) {
        return refused;
    }
    state_json(&page).await
}

/// `GET /admin/status`: the page's JSON for scripts holding the admin token.
async fn bearer_state(req: HttpRequest, page: web::Data<StatusPage>) -> HttpResponse {
    if let Some(refused) = page.auth.bearer(&req) {
        return refused;
    }
    state_json(&page).await
}

async fn dead_list(req: HttpRequest, page: web::Data<StatusPage>) -> HttpResponse {
    if let Some(refused) = session(&req, &page) {
        return refused;
    }
    let store = page.sources.store.clone();
    match blocking(move || ops::dead_list(&store, DEAD_SHOWN)).await {
        Ok(list) => secured(StatusCode::OK).json(list),
        Err(response) => response,
    }
}

/// The one view with a body in it (redacted as relayed), opened by an explicit click.
async fn dead_show(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = session(&req, &page) {
        return refused;
    }
    let store = page.sources.store.clone();
    let id = id.into_inner();
    match blocking(move || ops::dead_relayed(&store, &id)).await {
        Ok(detail) => secured(StatusCode::OK).json(detail),
        Err(response) => response,
    }
}

async fn dead_replay(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = changing(&req, &page) {
        return refused;
    }
    let body: DeadReplayRequest = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let read = move |store: &Store| ops::dead_replay_read(store, &body);
    read_then_put_back(&page.sources.store, read, "dead letters (status page)").await
}

async fn replay(req: HttpRequest, page: web::Data<StatusPage>, body: web::Bytes) -> HttpResponse {
    if let Some(refused) = changing(&req, &page) {
        return refused;
    }
    let body: ReplayRequest = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    replayed(
        ops::replay(&page.sources.store, &body).await,
        "delivered events (status page)",
    )
}
