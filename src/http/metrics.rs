//! `GET /metrics` on its own listener (`metrics.bind`): reads the store and the publisher into a
//! snapshot and renders it. Never on the webhook listener, whose callers are the internet: the
//! metrics name connections and broker nodes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpResponse, HttpServer};
use tokio::sync::watch;

use crate::config::StorageSettings;
use crate::metrics::{Metrics, PublisherTotals, Snapshot};
use crate::publish::PublisherStats;
use crate::report::chain;
use crate::store::Store;

/// How long a scrape waits for the store's write probe before reporting it unwritable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `GET /metrics` reads.
pub struct Exporter {
    metrics: Metrics,
    store: Store,
    publisher: Arc<PublisherStats>,
    publisher_connected: watch::Receiver<crate::publish::BrokerNode>,
    /// `storage.max_outbox` and `max_outbox_bytes` (restart-only keys).
    limits: (u64, u64),
}

impl Exporter {
    pub fn new(
        metrics: Metrics,
        store: Store,
        publisher: Arc<PublisherStats>,
        publisher_connected: watch::Receiver<crate::publish::BrokerNode>,
        storage: &StorageSettings,
    ) -> Self {
        Self {
            metrics,
            store,
            publisher,
            publisher_connected,
            limits: (storage.max_outbox as u64, storage.max_outbox_bytes),
        }
    }

    fn snapshot(&self, store_writable: bool) -> Snapshot {
        let store = &self.store;
        let (outbox_events, outbox_bytes) = store.outbox_usage();
        let oldest_pending_age = match store.oldest_pending_ms() {
            Ok(Some(at)) => Duration::from_millis(crate::clock::now_ms().saturating_sub(at)),
            Ok(None) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "cannot read the oldest outbox entry");
                Duration::ZERO
            }
        };
        let p = &self.publisher;
        let damaged = store.damaged();
        Snapshot {
            outbox_events,
            outbox_bytes,
            oldest_pending_age,
            dead_letters: store.dead_count() as u64,
            dedup_keys: store.dedup_keys() as u64,
            delivered_bytes: store.delivered_bytes(),
            disk_bytes: store.disk_bytes(),
            damaged_bytes: damaged.bytes,
            lost_records: damaged.lost_records,
            publisher: PublisherTotals {
                published: p.published.load(Relaxed),
                confirms: p.acked.load(Relaxed),
                nacks: p.nacked.load(Relaxed),
                returns: p.returned.load(Relaxed),
                unreadable: p.unreadable.load(Relaxed),
                reconnects: p.reconnects.load(Relaxed),
            },
            broker_connected: self.publisher_connected.borrow().is_some(),
            store_writable,
            max_outbox_events: self.limits.0,
            max_outbox_bytes: self.limits.1,
        }
    }
}

/// Binds `addr` and serves `GET /metrics` there (one worker: a scrape is a few reads); the
/// server and its port. The caller runs it and stops it before the store is closed.
pub fn start(addr: SocketAddr, exporter: Exporter) -> std::io::Result<(Server, u16)> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let exporter = web::Data::new(exporter);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(exporter.clone())
            .route("/metrics", web::get().to(serve))
            .default_service(web::to(|| async {
                super::error::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok((server, port))
}

/// `GET /metrics`: Prometheus text format. Counts and sizes only, no personal data.
async fn serve(exporter: web::Data<Exporter>) -> HttpResponse {
    let exporter = exporter.into_inner();
    // The same probe as /readyz: a write the store's writer takes (or not) within the time-out.
    let writable = matches!(
        tokio::time::timeout(STORE_PROBE_TIMEOUT, exporter.store.check_writable()).await,
        Ok(Ok(()))
    );
    // Sizes and the oldest entry touch the disk: keep them off the async workers.
    let text =
        tokio::task::spawn_blocking(move || exporter.metrics.render(&exporter.snapshot(writable)))
            .await;
    match text {
        Ok(text) => HttpResponse::Ok()
            .insert_header((
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ))
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics task failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
