//! The admin API on its own listener (loopback by default), for operators' CLI commands against
//! a running relay, and the status page beside it (`ops::status`): only `admin.token` opens
//! them, never a connection's credentials.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::http::error::json_error;
use crate::ops::status::routes::StatusPage;
use crate::ops::status::{self, sample_forever, Sources};
use crate::ops::web::{blocking, parse, read_then_put_back, replayed, AdminAuth};
use crate::ops::{self, events, DeadReplayRequest, OpsError, ReplayRequest};
use crate::store::Store;

struct AdminState {
    store: Store,
    auth: Arc<AdminAuth>,
}

/// The running admin listener: the server (the caller polls and stops it), its port, and the
/// status page's sampler with the log summary of wrong tokens (to abort with it: it holds a store
/// handle).
pub struct Started {
    pub server: Server,
    pub port: u16,
    pub sampler: tokio::task::JoinHandle<()>,
}

/// Binds `addr` and starts the admin server and the status page's sampler on this runtime.
pub fn start(addr: SocketAddr, token: Secret, sources: Sources) -> std::io::Result<Started> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let ip = listener.local_addr()?.ip();
    if !ip.is_loopback() {
        tracing::warn!(%ip, "admin API listens beyond loopback; keep it behind a firewall");
    }
    let auth = Arc::new(AdminAuth::new(token, sources.metrics.clone()));
    let guesses = auth.guesses().refusals();
    let state = web::Data::new(AdminState {
        store: sources.store.clone(),
        auth: Arc::clone(&auth),
    });
    let page = web::Data::new(StatusPage {
        auth,
        sources: Arc::new(sources),
        samples: Arc::default(),
        sessions: Default::default(),
    });
    // One task, aborted with the listener: the page's sampler and the guesses' log summary.
    let sampler = {
        let (sources, samples) = (Arc::clone(&page.sources), Arc::clone(&page.samples));
        tokio::spawn(async move {
            tokio::join!(
                sample_forever(sources, samples),
                crate::report::summarize(
                    guesses,
                    "admin token guesses refused",
                    tokio_util::sync::CancellationToken::new(),
                ),
            );
        })
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(page.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .configure(status::configure)
            .route("/admin/stats", web::get().to(stats))
            .route("/admin/dead", web::get().to(dead_list))
            .route("/admin/dead/replay", web::post().to(dead_replay))
            .route("/admin/dead/{id}", web::get().to(dead_show))
            .route("/admin/replay", web::post().to(replay))
            .route("/admin/events", web::get().to(events_search))
            .route("/admin/events/{id}", web::get().to(event_show))
            .route("/admin/events/{id}/body", web::get().to(event_body))
            .route("/admin/events/{id}/replay", web::post().to(event_replay))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(Started {
        server,
        port,
        sampler,
    })
}

fn authorized(req: &HttpRequest, state: &AdminState) -> Option<HttpResponse> {
    state.auth.bearer(req)
}

async fn stats(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let store = state.store.clone();
    match blocking(move || Ok(ops::stats(&store))).await {
        Ok(stats) => HttpResponse::Ok().json(stats),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn dead_list(
    req: HttpRequest,
    state: web::Data<AdminState>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let store = state.store.clone();
    let limit = query.limit.unwrap_or(100);
    match blocking(move || ops::dead_list(&store, limit)).await {
        Ok(list) => HttpResponse::Ok().json(list),
        Err(response) => response,
    }
}

async fn dead_show(
    req: HttpRequest,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
    show(&req, &state, id.into_inner(), ops::dead_show).await
}

/// One item by its id, for a bearer-token client: read on the blocking pool, answered as JSON.
async fn show<T: Serialize + Send + 'static>(
    req: &HttpRequest,
    state: &AdminState,
    id: String,
    read: fn(&Store, &str) -> Result<T, OpsError>,
) -> HttpResponse {
    if let Some(refused) = authorized(req, state) {
        return refused;
    }
    let store = state.store.clone();
    match blocking(move || read(&store, &id)).await {
        Ok(found) => HttpResponse::Ok().json(found),
        Err(response) => response,
    }
}

async fn dead_replay(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let body: DeadReplayRequest = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let read = move |store: &Store| ops::dead_replay_read(store, &body);
    read_then_put_back(&state.store, read, "dead letters").await
}

async fn replay(req: HttpRequest, state: web::Data<AdminState>, body: web::Bytes) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let body: ReplayRequest = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    replayed(ops::replay(&state.store, &body).await, "delivered events")
}

/// `GET /admin/events?ticket=&id=&event=&kind=&connection=&state=&since=&until=&cursor=&limit=`.
async fn events_search(
    req: HttpRequest,
    state: web::Data<AdminState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let store = state.store.clone();
    let params = query.into_inner();
    let work = move || {
        let q = events::EventQuery::from_params(&params, crate::store::now_ms())?;
        events::events_search(&store, &q)
    };
    match blocking(work).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(response) => response,
    }
}

async fn event_show(
    req: HttpRequest,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
    show(&req, &state, id.into_inner(), events::event_show).await
}

/// The body as stored (redacted), as relayed, under its own content type.
async fn event_body(
    req: HttpRequest,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let store = state.store.clone();
    let id = id.into_inner();
    match blocking(move || events::event_body(&store, &id)).await {
        Ok(body) => HttpResponse::Ok()
            .content_type(body.content_type)
            .body(body.bytes),
        Err(response) => response,
    }
}

async fn event_replay(
    req: HttpRequest,
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = authorized(&req, &state) {
        return refused;
    }
    let id = id.into_inner();
    let read = move |store: &Store| events::event_replay_read(store, &id);
    read_then_put_back(&state.store, read, "one event").await
}

async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
