//! The Events view's routes: the event index searched, one event's timeline, its body (redacted,
//! as relayed; opened by an explicit click) and its replay, for a logged-in page. The work is
//! `ops::events`', shared with the admin API and the CLI.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::routes::{changing, secured, session, StatusPage};
use crate::ops::events::{self, EventQuery};
use crate::ops::web::{blocking, read_then_put_back};
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/status/api/events", web::get().to(search))
        .route("/status/api/events/{event_id}", web::get().to(show))
        .route("/status/api/events/{event_id}/body", web::get().to(body))
        .route(
            "/status/api/events/{event_id}/replay",
            web::post().to(replay),
        );
}

/// `?ticket=&id=&event=&kind=&connection=&state=&since=&until=&cursor=&limit=`, as the admin API.
async fn search(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(refused) = session(&req, &page) {
        return refused;
    }
    let store = page.sources.store.clone();
    let query = query.into_inner();
    let search = move || {
        let query = EventQuery::from_params(&query, crate::clock::now_ms())?;
        events::events_search(&store, &query)
    };
    match blocking(search).await {
        Ok(found) => secured(StatusCode::OK).json(found),
        Err(response) => response,
    }
}

async fn show(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    event_id: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = session(&req, &page) {
        return refused;
    }
    let store = page.sources.store.clone();
    let event_id = event_id.into_inner();
    match blocking(move || events::event_show(&store, &event_id)).await {
        Ok(detail) => secured(StatusCode::OK).json(detail),
        Err(response) => response,
    }
}

/// The body as text in JSON, as the dead letters' view reads one: the page shows it with
/// `textContent`, and the browser is never asked to render what a webhook sender wrote.
#[derive(Serialize)]
struct BodyText {
    content_type: String,
    body_text: String,
}

async fn body(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    event_id: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = session(&req, &page) {
        return refused;
    }
    let store = page.sources.store.clone();
    let event_id = event_id.into_inner();
    match blocking(move || events::event_body(&store, &event_id)).await {
        Ok(body) => secured(StatusCode::OK).json(BodyText {
            content_type: body.content_type.to_string(),
            body_text: String::from_utf8_lossy(&body.bytes).into_owned(),
        }),
        Err(response) => response,
    }
}

/// Publishes this one event again, with its `message_id`; CSRF-protected as every change.
async fn replay(
    req: HttpRequest,
    page: web::Data<StatusPage>,
    event_id: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = changing(&req, &page) {
        return refused;
    }
    let event_id = event_id.into_inner();
    let read = move |store: &Store| events::event_replay_read(store, &event_id);
    read_then_put_back(&page.sources.store, read, "one event (status page)").await
}
