//! `headroom`: run the Headroom filter as a standalone LLM proxy, compress one request offline
//! with the pipeline component, read the stored per-request records (`metrics`, `summary`) and
//! check a setup (`validate`).

mod args;
mod compress;
mod proxy;
mod records;

use clap::Parser as _;

use args::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy(args) => proxy::run_proxy(args),
        Command::Compress(args) => compress::run_compress(args),
        Command::Metrics(args) => records::run_metrics(args),
        Command::Summary(args) => records::run_summary(args),
        Command::Validate(args) => records::run_validate(args),
    };
    if let Err(e) = result {
        eprintln!("headroom: {e:#}");
        let code = if e.is::<BadInput>() { 2 } else { 1 };
        std::process::exit(code);
    }
}

/// An error the user's input caused (exit code 2).
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}
