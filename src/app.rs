//! Wires store, publisher, sweeper and HTTP server into one `Application` with a graceful stop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::first_run::{self, FirstRunError};
use crate::config::Settings;
use crate::http;
use crate::http::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::ops::{admin, status};
use crate::process::handover::{self, Handover, InheritError};
use crate::process::reload::ReloadHandle;
use crate::publish::{self as publisher, PublisherHandle};
use crate::store::{Store, StoreError};

/// Store watchdog: probe period, probe time-out, failed probes in a row before the relay exits.
const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(5);
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const STORE_FAILURES_BEFORE_EXIT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid connection secret or rule")]
    Rules(#[from] ingest::RulesError),
    #[error("cannot use the inherited listening socket")]
    Inherit(#[from] InheritError),
    #[error("cannot set up the generated webhook token")]
    FirstRun(#[from] FirstRunError),
}

/// A listener beside the webhook one (admin API, metrics): its handle, port and task.
struct SideServer {
    handle: ServerHandle,
    port: u16,
    task: JoinHandle<std::io::Result<()>>,
}

impl SideServer {
    fn spawn(server: Server, port: u16) -> Self {
        Self {
            handle: server.handle(),
            port,
            task: tokio::spawn(server),
        }
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

struct AdminServer {
    server: SideServer,
    /// The status page's sampler: it holds a store handle too.
    sampler: JoinHandle<()>,
}

pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    publisher: PublisherHandle,
    sweeper: JoinHandle<()>,
    background: CancellationToken,
    reload: ReloadHandle,
    /// `None` when the listener could not be duplicated or our program path is unknown.
    handover: Option<Handover>,
    /// The admin API server: its handle, port, task and the status page's sampler.
    admin: Option<AdminServer>,
    /// `GET /metrics` on `metrics.bind`: it reads the store, so it stops before the store closes.
    metrics: Option<SideServer>,
}

impl Application {
    /// Opens the store, starts the publisher (which connects in the background: the relay
    /// accepts webhooks while the broker is down) and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_source(settings, None).await
    }

    /// As [`Application::build`], remembering the config file SIGHUP reloads (`None`: the default
    /// lookup, as `serve` without `--config`). Serves on an inherited listening socket (systemd
    /// socket activation, SIGUSR2 hand-over) instead of binding when one was passed; the store
    /// is then opened first, waiting for the previous relay to release it, so that no webhook is
    /// answered before it can be stored.
    pub async fn build_with_source(
        mut settings: Settings,
        source: Option<PathBuf>,
    ) -> Result<Self, StartupError> {
        let inherited = handover::take_inherited_listener()?;
        let metrics = Metrics::new();
        let store = if inherited.is_some() {
            // A predecessor stops accepting once told: make sure this config is usable first.
            ingest::Rules::new(&settings, &metrics)?;
            handover::notify_predecessor();
            // The predecessor drains for at most shutdown_timeout, then flushes and closes
            // the broker connection (bounded by amqp.timeout).
            let wait =
                settings.server.shutdown_timeout + settings.amqp.timeout + Duration::from_secs(10);
            handover::open_store_waiting(&settings.storage, wait).await?
        } else {
            Store::open(&settings.storage)?
        };
        // Under the store's lock: no other start writes the token files meanwhile.
        let generated = first_run::complete(&mut settings)?;
        let background = CancellationToken::new();
        let publisher = publisher::start_with_metrics(
            store.clone(),
            settings.amqp.clone(),
            background.child_token(),
            metrics.clone(),
        );
        let sweeper =
            store.spawn_sweeper(settings.storage.sweep_interval, background.child_token());

        let ingest = web::Data::new(Ingest::new(&settings, store.clone(), metrics.clone())?);
        tokio::spawn(crate::report::summarize(
            ingest.refusals(),
            "webhook requests refused",
            background.child_token(),
        ));
        let status = status::Sources {
            store: store.clone(),
            metrics: metrics.clone(),
            publisher: publisher.stats(),
            connected: publisher.connected_watch(),
            max_outbox: settings.storage.max_outbox as u64,
            max_outbox_bytes: settings.storage.max_outbox_bytes,
        };
        let routes = http::Routes::new(
            ingest.clone(),
            http::Readiness::new(store.clone(), publisher.connected_watch()),
        );
        let exporter = http::Exporter::new(
            metrics.clone(),
            store.clone(),
            publisher.stats(),
            publisher.connected_watch(),
            &settings.storage,
        );
        let metrics_server = match settings.metrics.bind {
            Some(addr) => {
                let (server, port) = http::metrics::start(addr, exporter)
                    .map_err(|source| StartupError::Bind { addr, source })?;
                tracing::info!(
                    port,
                    "metrics at http://{}/metrics",
                    std::net::SocketAddr::new(addr.ip(), port)
                );
                Some(SideServer::spawn(server, port))
            }
            None => None,
        };
        let admin = if let Some(token) = settings.admin.token.clone() {
            let started = admin::start(settings.admin.bind, token, status).map_err(|source| {
                StartupError::Bind {
                    addr: settings.admin.bind,
                    source,
                }
            })?;
            let port = started.port;
            tracing::info!(
                port,
                "admin API listening; status page at http://{}/status",
                std::net::SocketAddr::new(settings.admin.bind.ip(), port)
            );
            Some(AdminServer {
                server: SideServer::spawn(started.server, port),
                sampler: started.sampler,
            })
        } else {
            None
        };

        let addr = settings.server.bind;
        let listener = match inherited {
            Some(listener) => listener,
            None => {
                TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?
            }
        };
        let handover = match listener.try_clone().and_then(Handover::new) {
            Ok(handover) => Some(handover),
            Err(err) => {
                tracing::warn!(error = %err, "SIGUSR2 hand-over unavailable");
                None
            }
        };
        let listening = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let port = listening.port();
        let reload = ReloadHandle::new(ingest, source, settings.clone(), listening);

        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let per_worker = settings.server.max_connections.div_ceil(workers).max(1);
        let slots = http::slots::Slots {
            head_timeout: settings.server.client_timeout,
            keep_alive: settings.server.keep_alive,
            per_worker,
            metrics: metrics.clone(),
        };
        let server = HttpServer::new(move || {
            App::new()
                .wrap_fn(http::slots::track)
                .configure(|cfg| routes.configure(cfg))
        })
        .on_connect(move |io, data| slots.on_connect(io, data))
        .workers(workers)
        // Signals are ours (see run_until_stopped): SIGTERM must also stop the publisher.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
        // actix's cap is per worker; the setting is for the whole listener.
        .max_connections(per_worker)
        // The first head of a connection; `slots` times every later one.
        .client_request_timeout(settings.server.client_timeout)
        .client_disconnect_timeout(Duration::from_secs(2))
        // Longer than any sender's idle-connection timeout (Node's agent: 5 s), so it is the
        // client that closes an idle connection; a server closing first races the client's next
        // request on it, which fails, and Whaticket never retries.
        .keep_alive(settings.server.keep_alive)
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();

        tracing::info!(
            port,
            data = %settings.storage.path.display(),
            broker = %settings.amqp.nodes().iter().map(|u| u.node()).collect::<Vec<_>>().join(","),
            exchange = %settings.amqp.exchange,
            "relay started"
        );
        // The one place a generated token is shown: stderr, not the logs.
        eprint!("{}", first_run::announcement(&generated, listening));

        Ok(Self {
            port,
            server,
            store,
            publisher,
            sweeper,
            background,
            reload,
            handover,
            admin,
            metrics: metrics_server,
        })
    }

    /// Port of the metrics listener, when `metrics.bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|m| m.port)
    }

    /// Port of the admin API, when `admin.bind` and `admin.token` are set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|admin| admin.server.port)
    }

    /// Reloads the config as SIGHUP does; also for tests.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
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

    /// Serves until SIGTERM/SIGINT, a completed SIGUSR2 hand-over or [`Application::handle`]'s
    /// stop (SIGHUP reloads the config); then stops accepting,
    /// answers the requests in flight, flushes, closes the broker connection and returns.
    pub async fn run_until_stopped(self) -> Result<(), StoreError> {
        let signals = tokio::spawn(crate::process::signals::watch(
            self.server.handle(),
            self.reload,
            self.handover,
        ));
        let watchdog = tokio::spawn(store_watchdog(self.store.clone(), self.server.handle()));
        if let Err(err) = self.server.await {
            tracing::error!(error = %err, "http server failed");
        }
        signals.abort();
        // The watchdog holds a store handle: it must be gone for the directory to be released.
        let unwritable = if watchdog.is_finished() {
            matches!(watchdog.await, Ok(true))
        } else {
            watchdog.abort();
            let _ = watchdog.await;
            false
        };
        // The admin API and the metrics hold store handles: they must be gone for the directory
        // to be released.
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        if let Some(admin) = self.admin {
            admin.server.stop().await;
            admin.sampler.abort();
            let _ = admin.sampler.await;
        }
        // A store the watchdog gave up on would only hang the flush.
        let flushed = if unwritable {
            Err(StoreError::Unwritable)
        } else {
            match tokio::time::timeout(STORE_PROBE_TIMEOUT, self.store.flush()).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Unwritable),
            }
        };
        self.background.cancel();
        // Both may sit in a sled call that a failed disk never returns from.
        let limit = STORE_PROBE_TIMEOUT;
        if tokio::time::timeout(limit, self.publisher.stopped())
            .await
            .is_err()
        {
            tracing::error!("publisher did not stop within {limit:?}");
        }
        if tokio::time::timeout(limit, self.sweeper).await.is_err() {
            tracing::error!("sweeper did not stop within {limit:?}");
        }
        tracing::info!("relay stopped");
        flushed
    }
}

/// Crash-only recovery: sled stays failed after an I/O error and can block in its flush on a full
/// disk, and only reopening it (a new process) recovers. When the store has failed every probe for
/// [`STORE_FAILURES_BEFORE_EXIT`] probes in a row, the relay stops with an error so its supervisor
/// (systemd `Restart=`, Kubernetes) starts it again; requests meanwhile get 503 + Retry-After.
/// Returns true when it stopped the server.
async fn store_watchdog(store: Store, server: ServerHandle) -> bool {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(STORE_PROBE_INTERVAL).await;
        match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.check_writable()).await {
            Ok(Ok(())) => failures = 0,
            Ok(Err(e)) => {
                failures += 1;
                tracing::error!(error = %crate::report::chain(&e), failures, "store write probe failed");
            }
            Err(_) => {
                failures += 1;
                tracing::error!(failures, "store write probe hung");
            }
        }
        if failures >= STORE_FAILURES_BEFORE_EXIT {
            tracing::error!(
                "the store stopped taking writes; stopping so the supervisor restarts the relay"
            );
            server.stop(true).await;
            return true;
        }
    }
}
