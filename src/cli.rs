//! Command line: `serve` and `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::Settings;
use crate::error::chain;
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(name = "whaticket-relay", version, about = "Relays Whaticket webhooks to RabbitMQ, verified, deduplicated and durably")]
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
}

/// Runs the parsed command; the process exit code is the result.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig { config } => match Settings::load(config.as_deref()) {
            Ok(settings) => match settings.to_masked_toml() {
                Ok(text) => {
                    println!("{text}");
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
            telemetry::init(&settings.log);
            let app = match Application::build(settings).await {
                Ok(app) => app,
                Err(err) => {
                    tracing::error!(error = %chain(&err), "relay failed to start");
                    return ExitCode::FAILURE;
                }
            };
            match app.run_until_stopped().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %chain(&err), "final flush failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
