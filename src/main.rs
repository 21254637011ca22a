//! Entry point: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use whaticket_relay::cli::{self, Cli};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    cli::run(Cli::parse()).await
}
