//! `ctl`: the muster controller. Reads the inventory, picks hosts, fans work out to their
//! agents, and records every operation.
//!
//! This file only wires: parse the command line, set up diagnostics, run the subcommand, and
//! turn the result into the exit status in one place (see `commands::Exit`).

mod audit;
mod cli;
mod client;
mod commands;
mod fanout;
mod outcome;
mod output;
mod plan;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::commands::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("can start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run(args).await,
            Command::Ping(args) => commands::ping(args).await,
            Command::Hosts(args) => commands::hosts(args),
            Command::Keygen(args) => commands::keygen(args),
        }
    });
    // Host tasks may still be parked on dead sockets after Ctrl-C twice; do not wait for them.
    runtime.shutdown_background();
    let exit = result.unwrap_or_else(|err| {
        eprintln!("ctl: {err:#}");
        Exit::Usage
    });
    ExitCode::from(exit as u8)
}

/// Diagnostics only (results go to stdout): warnings by default, `-v` for more.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// One socket per host in flight: with the usual soft limit of 1024 open files, a large
/// fan-out would fail on its own side. Raise the soft limit to the hard limit.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!(error = %err, "cannot raise the open file limit");
            }
        }
    }
}
