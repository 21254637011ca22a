//! The admin API on its own listener (loopback by default), for operators' CLI commands against
//! a running relay: only `admin.token` opens it, never a connection's credentials.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::error::json_error;
use crate::ops::{self, DeadReplayRequest, OpsError, ReplayRequest};
use crate::report::chain;
use crate::store::Store;

struct AdminState {
    store: Store,
    token: Secret,
}

/// Binds `addr` and starts the admin server (the caller polls and stops it); returns its port.
pub fn start(addr: SocketAddr, token: Secret, store: Store) -> std::io::Result<(Server, u16)> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let ip = listener.local_addr()?.ip();
    if !ip.is_loopback() {
        tracing::warn!(%ip, "admin API listens beyond loopback; keep it behind a firewall");
    }
    let state = web::Data::new(AdminState { store, token });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/admin/stats", web::get().to(stats))
            .route("/admin/dead", web::get().to(dead_list))
            .route("/admin/dead/replay", web::post().to(dead_replay))
            .route("/admin/dead/{id}", web::get().to(dead_show))
            .route("/admin/replay", web::post().to(replay))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok((server, port))
}

/// `Authorization: Bearer <admin.token>`, compared in constant time.
fn authorized(req: &HttpRequest, state: &AdminState) -> Result<(), HttpResponse> {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let expected = state.token.expose().as_bytes();
    match presented {
        Some(token) if !expected.is_empty() && bool::from(token.as_bytes().ct_eq(expected)) => {
            Ok(())
        }
        _ => {
            tracing::warn!(
                path = req.path(),
                "admin request refused: missing or wrong admin token"
            );
            Err(json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "admin token required",
            ))
        }
    }
}

fn ops_error(err: &OpsError) -> HttpResponse {
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
async fn blocking<T: Send + 'static>(
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

async fn stats(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Err(refused) = authorized(&req, &state) {
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
    if let Err(refused) = authorized(&req, &state) {
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
    if let Err(refused) = authorized(&req, &state) {
        return refused;
    }
    let store = state.store.clone();
    let id = id.into_inner();
    match blocking(move || ops::dead_show(&store, &id)).await {
        Ok(detail) => HttpResponse::Ok().json(detail),
        Err(response) => response,
    }
}

async fn dead_replay(
    req: HttpRequest,
    state: web::Data<AdminState>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(refused) = authorized(&req, &state) {
        return refused;
    }
    let body: DeadReplayRequest = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match ops::dead_replay(&state.store, &body).await {
        Ok(replayed) => {
            tracing::info!(
                replayed = replayed.replayed,
                "dead letters put back into the outbox"
            );
            HttpResponse::Ok().json(replayed)
        }
        Err(err) => ops_error(&err),
    }
}

async fn replay(req: HttpRequest, state: web::Data<AdminState>, body: web::Bytes) -> HttpResponse {
    if let Err(refused) = authorized(&req, &state) {
        return refused;
    }
    let body: ReplayRequest = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match ops::replay(&state.store, &body).await {
        Ok(replayed) => {
            tracing::info!(
                replayed = replayed.replayed,
                "delivered events put back into the outbox"
            );
            HttpResponse::Ok().json(replayed)
        }
        Err(err) => ops_error(&err),
    }
}

/// Bodies are parsed after the token check, so an unauthenticated caller learns nothing.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
}

async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
