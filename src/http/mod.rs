//! The HTTP side: every route in one place, and the listener's shared state.
//!
//! `/hooks/…` takes webhooks (ingest → verify → event → store); `/healthz`, `/readyz` and
//! `/metrics` are for supervisors and scrapers. The admin API has its own listener (`ops::admin`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

pub mod error;
mod health;
pub mod ingest;
mod metrics;
pub mod verify;

pub use health::Readiness;
pub use metrics::Exporter;

use error::json_error;
use ingest::Ingest;

/// The state every worker's routes share (cheap `Data` clones of one instance each).
#[derive(Clone)]
pub struct Routes {
    ingest: web::Data<Ingest>,
    readiness: web::Data<Readiness>,
    exporter: web::Data<Exporter>,
}

impl Routes {
    pub fn new(ingest: web::Data<Ingest>, readiness: Readiness, exporter: Exporter) -> Self {
        Self {
            ingest,
            readiness: web::Data::new(readiness),
            exporter: web::Data::new(exporter),
        }
    }

    /// The webhook listener's routes: static paths, and `/hooks/…` split by the ingest handler;
    /// unknown paths answer a JSON 404 and wrong methods a JSON 405.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.ingest.clone())
            .app_data(self.readiness.clone())
            .app_data(self.exporter.clone())
            .route("/metrics", web::get().to(metrics::serve))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .service(web::scope("/hooks").default_service(web::to(ingest::hooks)))
            .default_service(web::to(|| async { not_found() }));
    }
}

fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

fn method_not_allowed() -> HttpResponse {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "use POST",
    )
}
