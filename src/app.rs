//! Wires store, publisher, sweeper and HTTP server into one `Application` with a graceful stop.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::error::json_error;
use crate::ingest::{self, Ingest};
use crate::publisher::{self, PublisherHandle};
use crate::store::{Store, StoreError};
use crate::verify::SecretError;

/// How long `/readyz` waits for the store's write probe.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid connection secret")]
    Secret(#[from] SecretError),
}

/// What `/readyz` looks at.
struct Readiness {
    store: Store,
    publisher_connected: tokio::sync::watch::Receiver<bool>,
}

pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    publisher: PublisherHandle,
    sweeper: JoinHandle<()>,
    background: CancellationToken,
}

impl Application {
    /// Opens the store, starts the publisher (which connects in the background: the relay
    /// accepts webhooks while the broker is down) and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = Store::open(&settings.storage)?;
        let background = CancellationToken::new();
        let publisher = publisher::start(store.clone(), settings.amqp.clone(), background.child_token());
        let sweeper = store.spawn_sweeper(settings.storage.sweep_interval, background.child_token());

        let ingest = web::Data::new(Ingest::new(&settings, store.clone())?);
        let readiness = web::Data::new(Readiness {
            store: store.clone(),
            publisher_connected: publisher.connected_watch(),
        });

        let addr = settings.server.bind.clone();
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener.local_addr().map_err(|source| StartupError::Bind { addr, source })?.port();

        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(ingest.clone())
                .app_data(readiness.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .service(
                    web::resource("/hooks/{connection}/{token}")
                        .route(web::post().to(ingest::hook_with_token))
                        .default_service(web::to(method_not_allowed)),
                )
                .service(
                    web::resource("/hooks/{connection}")
                        .route(web::post().to(ingest::hook))
                        .default_service(web::to(method_not_allowed)),
                )
                .default_service(web::to(not_found))
        })
        .workers(workers)
        // Signals are ours (see run_until_stopped): SIGTERM must also stop the publisher.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(2))
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: settings.server.bind.clone(),
            source,
        })?
        .run();

        tracing::info!(
            port,
            data = %settings.storage.path.display(),
            broker = %settings.amqp.url.masked(),
            exchange = %settings.amqp.exchange,
            "relay started"
        );
        for name in settings.placeholder_token_connections() {
            tracing::warn!(connection = name, "connection still uses the placeholder token `change-me`");
        }

        Ok(Self {
            port,
            server,
            store,
            publisher,
            sweeper,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully when called (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn publisher(&self) -> &PublisherHandle {
        &self.publisher
    }

    /// Serves until SIGTERM/SIGINT or [`Application::handle`]'s stop; then stops accepting,
    /// answers the requests in flight, flushes, closes the broker connection and returns.
    pub async fn run_until_stopped(self) -> Result<(), StoreError> {
        let handle = self.server.handle();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stop signal received: draining");
            handle.stop(true).await;
        });
        if let Err(err) = self.server.await {
            tracing::error!(error = %err, "http server failed");
        }
        signals.abort();
        let flushed = self.store.flush().await;
        self.background.cancel();
        self.publisher.stopped().await;
        let _ = self.sweeper.await;
        tracing::info!("relay stopped");
        flushed
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL only");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let store_ok = matches!(
        tokio::time::timeout(READY_PROBE_TIMEOUT, readiness.store.check_writable()).await,
        Ok(Ok(()))
    );
    let broker_ok = *readiness.publisher_connected.borrow();
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

async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> HttpResponse {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST")
}
