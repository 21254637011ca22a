//! The HTTP side: every route in one place, and the listener's shared state.
//!
//! `/hooks/…` takes webhooks (ingest: body → verify → event → store); `/healthz` and `/readyz` are for
//! supervisors and load balancers. `slots` bounds what each connection may hold. `/metrics` has
//! a listener of its own (`metrics::start`), and so has the admin API (`ops::admin`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

mod body;
pub mod error;
mod health;
pub mod ingest;
pub mod metrics;
pub mod slots;
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
}

impl Routes {
    pub fn new(ingest: web::Data<Ingest>, readiness: Readiness) -> Self {
        Self {
            ingest,
            readiness: web::Data::new(readiness),
        }
    }

    /// The webhook listener's routes: static paths, and `/hooks/…` split by the ingest handler;
    /// unknown paths answer a JSON 404 and wrong methods a JSON 405.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.ingest.clone())
            .app_data(self.readiness.clone())
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
