//! Process signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the config, SIGUSR2 hands the
//! listener over to a successor process and then stops.

use std::time::Duration;

use actix_web::dev::ServerHandle;

use crate::process::handover::Handover;
use crate::process::reload::ReloadHandle;
use crate::report::chain;

/// Between pausing the accept loop and stopping the workers: lets connections already accepted
/// reach their worker. actix's stop pauses accepting and stops the workers at once, and a
/// stopping worker drops the connections still queued to it (resets, seen under load).
const ACCEPT_SETTLE: Duration = Duration::from_millis(250);

/// Stops accepting (new connections wait in the kernel's backlog for whoever serves next),
/// then answers what was accepted and stops.
async fn drain(server: &ServerHandle) {
    server.pause().await;
    tokio::time::sleep(ACCEPT_SETTLE).await;
    server.stop(true).await;
}

/// Runs until a stop (or a completed hand-over), then stops the HTTP server gracefully.
pub(crate) async fn watch(server: ServerHandle, reload: ReloadHandle, handover: Option<Handover>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let installed = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined2()),
        );
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = installed else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL only");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => reload.reload_and_log(),
                _ = usr2.recv() => {
                    let Some(handover) = &handover else {
                        tracing::error!("hand-over unavailable: the listener could not be shared at start");
                        continue;
                    };
                    match handover.start_successor().await {
                        Ok(pid) => {
                            tracing::info!(successor_pid = pid, "hand-over: successor holds the listener; draining");
                            drain(&server).await;
                            return;
                        }
                        Err(err) => tracing::error!(error = %chain(&err), "hand-over failed; still serving"),
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (&reload, &handover);
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop signal received: draining");
    drain(&server).await;
}
