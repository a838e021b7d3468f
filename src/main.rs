//! The `stacksnap` binary: parse the command line, run it, report failure in one line.

use std::process::ExitCode;

use clap::Parser as _;
use stacksnap::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
