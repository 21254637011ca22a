//! Logging setup: `tracing` to stdout, pretty or JSON, level from config or `RUST_LOG`.
//!
//! Lines are written by a logging thread of their own, in batches ([`log_writer`]): the relay logs
//! a line per webhook, and a `write(2)` per line on the HTTP workers cost several µs of an event's
//! budget.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

use super::log_writer;

use crate::config::{LogFormat, LogSettings};

/// Directives always added unless the filter names these targets itself: at debug/trace, the AMQP
/// client logs frames, and frames carry message bodies (personal data). lapin also warns of each
/// returned message with its whole body; the relay logs its own line, without it.
const QUIET_DEPENDENCIES: &[&str] = &[
    "lapin=warn",
    "lapin::returned_messages=error",
    "amq_protocol=warn",
    "sled=warn",
];

/// The filter: `RUST_LOG` when set, else `log.level`, plus [`QUIET_DEPENDENCIES`].
pub fn filter(settings: &LogSettings) -> EnvFilter {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.level.clone());
    let mut directives = base.clone();
    for quiet in QUIET_DEPENDENCIES {
        let krate = quiet.split('=').next().unwrap_or_default();
        if !base.contains(krate) {
            directives.push(',');
            directives.push_str(quiet);
        }
    }
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Keeps the logging thread alive; dropping it writes out what is queued.
#[must_use = "dropping the guard stops the logging thread"]
pub struct LogGuard(#[allow(dead_code)] log_writer::Guard);

/// Installs the global subscriber. Call once, from `main`, and hold the guard until exit. Fails
/// only when the logging thread cannot be started.
pub fn init(settings: &LogSettings) -> std::io::Result<LogGuard> {
    let (writer, guard) = log_writer::spawn(std::io::stdout())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(settings))
        .with_writer(writer)
        // Colour codes only for a person at a terminal: in journald, files and pipes they are
        // noise (and formatting them is CPU spent on every line).
        .with_ansi(std::io::stdout().is_terminal())
        .with_target(true);
    let result = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if let Err(err) = result {
        eprintln!("logging was already initialised: {err}");
    }
    Ok(LogGuard(guard))
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn enabled(level: &str, target_check: impl Fn() -> bool) -> bool {
        let settings = LogSettings {
            format: LogFormat::Pretty,
            level: level.to_owned(),
        };
        let subscriber = tracing_subscriber::registry().with(filter(&settings));
        tracing::subscriber::with_default(subscriber, target_check)
    }

    #[test]
    fn returned_bodies_and_frames_stay_out_of_the_logs() {
        if std::env::var_os("RUST_LOG").is_some() {
            return; // the filter is the environment's then
        }
        let returned = || tracing::enabled!(target: "lapin::returned_messages", Level::WARN);
        let frames = || tracing::enabled!(target: "lapin::io_loop", Level::DEBUG);
        let closes = || tracing::enabled!(target: "lapin::channel", Level::ERROR);
        let ours = || tracing::enabled!(target: "whaticket_relay::publish", Level::DEBUG);
        assert!(!enabled("info", returned));
        assert!(!enabled("debug", returned));
        assert!(!enabled("debug", frames));
        assert!(enabled("info", closes));
        assert!(enabled("debug", ours));
    }
}
