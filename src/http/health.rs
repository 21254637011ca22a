//! `GET /healthz` and `GET /readyz`: is the process up, can it store, is the broker connected.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use tokio::sync::watch;

use crate::http::error::json_error;
use crate::publish::BrokerNode;
use crate::store::Store;

/// How long `/readyz` waits for the store's write probe.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` looks at.
pub struct Readiness {
    store: Store,
    publisher_connected: watch::Receiver<BrokerNode>,
}

impl Readiness {
    pub fn new(store: Store, publisher_connected: watch::Receiver<BrokerNode>) -> Self {
        Self {
            store,
            publisher_connected,
        }
    }
}

pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `?scope=ingest` narrows readiness to what accepting webhooks needs: the store. A load balancer
/// or Kubernetes should use it, because the relay keeps accepting (and storing) events while the
/// broker is down, and an unready relay would have them refused — Whaticket never retries.
#[derive(serde::Deserialize)]
pub(super) struct ReadyQuery {
    scope: Option<String>,
}

pub(super) async fn readyz(
    readiness: web::Data<Readiness>,
    query: web::Query<ReadyQuery>,
) -> HttpResponse {
    let ingest_only = match query.scope.as_deref() {
        None | Some("all") => false,
        Some("ingest") => true,
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "scope must be `all` or `ingest`",
            );
        }
    };
    let store_ok = matches!(
        tokio::time::timeout(READY_PROBE_TIMEOUT, readiness.store.check_writable()).await,
        Ok(Ok(()))
    );
    // Which node is in use is for the metrics listener (relay_broker_node_connected) and the
    // status page: this listener faces whoever can reach the webhooks.
    let broker_ok = ingest_only || readiness.publisher_connected.borrow().is_some();
    if store_ok && broker_ok {
        return HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }));
    }
    let mut reasons = Vec::new();
    if !store_ok {
        reasons.push("store is not writable");
    }
    if !broker_ok {
        reasons.push("broker is not connected");
    }
    HttpResponse::ServiceUnavailable().json(serde_json::json!({
        "status": "unavailable",
        "reason": reasons.join("; "),
    }))
}
