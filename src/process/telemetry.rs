//! Logging setup: `tracing` to stdout, pretty or JSON, level from config or `RUST_LOG`.
//!
//! Lines are written by a logging thread of their own (`tracing-appender`), in batches: the relay
//! logs a line per webhook, and a `write(2)` per line on the HTTP workers cost several µs of an
//! event's budget. That thread takes every line queued, then flushes: through a buffer, that is
//! one `write(2)` per batch (stdout alone would write each line as it ends). When that thread
//! falls far behind (a blocked stdout), lines are dropped rather than stalling the workers that
//! answer Whaticket, which never retries.

use std::io::IsTerminal;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Directives always added unless the filter names these crates itself: at debug/trace, the AMQP
/// client logs frames, and frames carry message bodies (personal data).
const QUIET_DEPENDENCIES: &[&str] = &["lapin=warn", "amq_protocol=warn", "sled=warn"];

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

/// Lines waiting for the logging thread at most. The crate's default (128 000) let a trace-level
/// soak hold ~50 MB of queued lines; this many is a few MB, and a burst beyond it is dropped.
const BUFFERED_LINES: usize = 8_192;

/// Bytes gathered by the logging thread before a write, when its batch is longer than that.
const WRITE_BUFFER: usize = 64 * 1024;

/// Keeps the logging thread alive; dropping it writes out what is queued.
#[must_use = "dropping the guard stops the logging thread"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Installs the global subscriber. Call once, from `main`, and hold the guard until exit.
pub fn init(settings: &LogSettings) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            std::io::stdout(),
        ));
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
    LogGuard(guard)
}
