//! Command line: `serve`, `check-config`, and the operators' `stats`, `dead`, `replay` and `events`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::first_run::{self, Pending};
use crate::config::Settings;
use crate::ops::client::{self, DeadCommand, Request};
use crate::ops::events::EventQuery;
use crate::ops::{self, DeadReplayRequest, ReplayRequest};
use crate::process::telemetry;
use crate::report::chain;

#[derive(Debug, Parser)]
#[command(
    name = "whaticket-relay",
    version,
    about = "Relays Whaticket webhooks to RabbitMQ, verified, deduplicated and durably"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve {
        /// TOML config file; without it config/default.toml (or the built-in defaults) is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Load and validate the config, print it with secrets masked.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Outbox depth, oldest pending event, dead letters, dedup keys, disk use (JSON).
    Stats {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Inspect and replay events RabbitMQ refused.
    Dead {
        #[command(subcommand)]
        action: DeadCommand,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Publish kept delivered events again, with their original message_id.
    Replay {
        /// Delivered at or after: RFC 3339 (2026-11-25T10:00:00Z) or an age (2h).
        #[arg(long)]
        since: String,
        /// Delivered before (same forms); default: now.
        #[arg(long)]
        until: Option<String>,
        /// Only this kind: message, media, status, tags, other.
        #[arg(long)]
        kind: Option<String>,
        /// Only this connection.
        #[arg(long)]
        connection: Option<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Find stored events, newest first: a table without personal data, or --json. With --show,
    /// one event and its timeline (received, stored, published, confirmed, replays).
    Events {
        #[command(flatten)]
        filters: EventFlags,
        /// Show this one event (its 32-hex id) with its timeline, instead of a list.
        #[arg(long, value_name = "EVENT_ID", conflicts_with_all = [
            "ticket", "id", "event", "kind", "connection", "state", "since", "until", "cursor", "limit",
        ])]
        show: Option<String>,
        /// JSON for scripts (`{"events": [...], "next_cursor": ...}`, or the event's detail).
        #[arg(long)]
        json: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// The filters of `events`, named as the admin API's query parameters.
#[derive(Debug, clap::Args)]
pub struct EventFlags {
    /// Ticket number.
    #[arg(long)]
    ticket: Option<String>,
    /// WhatsApp message id.
    #[arg(long)]
    id: Option<String>,
    /// Event id (32 hex digits, the message_id relayed).
    #[arg(long)]
    event: Option<String>,
    /// message, media, status, tags, receipt, connection, other.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    connection: Option<String>,
    /// pending (not yet confirmed, in flight included), confirmed or dead.
    #[arg(long)]
    state: Option<String>,
    /// Received at or after: RFC 3339 or an age (2h).
    #[arg(long)]
    since: Option<String>,
    /// Received before (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Where the last page ended (its next_cursor).
    #[arg(long)]
    cursor: Option<String>,
    /// Events per page (default 50, at most 500).
    #[arg(long)]
    limit: Option<String>,
}

impl EventFlags {
    fn params(self) -> std::collections::HashMap<String, String> {
        [
            ("ticket", self.ticket),
            ("id", self.id),
            ("event", self.event),
            ("kind", self.kind),
            ("connection", self.connection),
            ("state", self.state),
            ("since", self.since),
            ("until", self.until),
            ("cursor", self.cursor),
            ("limit", self.limit),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect()
    }
}

/// Runs the parsed command; the process exit code is the result.
pub async fn run(cli: Cli) -> ExitCode {
    crate::process::umask::private();
    match cli.command {
        Command::Stats { config } => client::run(config.as_deref(), Request::Stats).await,
        Command::Dead { action, config } => {
            let request = match action {
                DeadCommand::List { limit } => Request::DeadList { limit },
                DeadCommand::Show { id } => Request::DeadShow { id },
                DeadCommand::Replay { ids, all } => {
                    Request::DeadReplay(DeadReplayRequest { ids, all })
                }
            };
            client::run(config.as_deref(), request).await
        }
        Command::Replay {
            since,
            until,
            kind,
            connection,
            config,
        } => {
            let now = crate::store::now_ms();
            let parsed = ops::parse_time(&since, now).and_then(|since_ms| {
                let until_ms = until
                    .as_deref()
                    .map(|u| ops::parse_time(u, now))
                    .transpose()?;
                if let Some(kind) = &kind {
                    ops::parse_kind(kind)?;
                }
                Ok(ReplayRequest {
                    since_ms,
                    until_ms,
                    kind,
                    connection,
                })
            });
            match parsed {
                Ok(request) => client::run(config.as_deref(), Request::Replay(request)).await,
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Events {
            show: Some(id),
            json,
            config,
            ..
        } => client::run(config.as_deref(), Request::EventShow { id, json }).await,
        Command::Events {
            filters,
            json,
            config,
            show: None,
        } => match EventQuery::from_params(&filters.params(), crate::store::now_ms()) {
            Ok(query) => client::run(config.as_deref(), Request::Events { query, json }).await,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig { config } => match Settings::load(config.as_deref()) {
            Ok(settings) => match settings.to_masked_toml() {
                Ok(text) => {
                    println!("{text}");
                    eprint!("{}", config_notes(&settings));
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: cannot print the configuration: {err}");
                    ExitCode::FAILURE
                }
            },
            Err(err) => {
                eprintln!("error: {}", chain(&err));
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            let settings = match Settings::load(config.as_deref()) {
                Ok(settings) => settings,
                Err(err) => {
                    eprintln!("error: {}", chain(&err));
                    return ExitCode::from(2);
                }
            };
            crate::process::memory::limit_arenas();
            let logs = match telemetry::init(&settings.log) {
                Ok(logs) => logs,
                Err(err) => {
                    eprintln!("error: cannot start the logging thread: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let app = match Application::build_with_source(settings, config).await {
                Ok(app) => app,
                Err(err) => {
                    tracing::error!(error = %chain(&err), "relay failed to start");
                    return ExitCode::FAILURE;
                }
            };
            match app.run_until_stopped().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %chain(&err), "relay stopped on a storage failure");
                    drop(logs);
                    // Exit now: threads stuck inside a failed store would hold up the runtime's
                    // shutdown, and the supervisor must get its chance to restart us.
                    std::process::exit(1)
                }
            }
        }
    }
}

/// What `check-config` adds on stderr: a redaction list that dropped built-in credential keys,
/// the connections that still need a token in the configuration, and placeholders that are
/// never accepted.
fn config_notes(settings: &Settings) -> String {
    let mut notes = String::new();
    if let Some(warning) = settings.redact.warning() {
        notes.push_str(&format!("warning: {warning}\n"));
    }
    for (i, conn) in settings.connections.iter().enumerate() {
        if conn.tokens.iter().any(first_run::is_placeholder) {
            notes.push_str(&format!(
                "warning: connections[{i}].tokens: `{}` is never accepted; remove it\n",
                first_run::PLACEHOLDER_TOKEN
            ));
        }
    }
    for (name, pending) in first_run::pending(settings) {
        notes.push_str(&match pending {
            Pending::Kept(path) => format!(
                "note: connection `{name}` has no token in the configuration; `serve` uses the one \
                 generated on its first start, kept in {} (its URL is printed at start-up)\n",
                path.display()
            ),
            Pending::Missing(path) => format!(
                "note: connection `{name}` needs a token: set its `tokens`, or `serve` generates \
                 one on its first start, keeps it in {} and prints the webhook URL\n",
                path.display()
            ),
        });
    }
    notes
}
