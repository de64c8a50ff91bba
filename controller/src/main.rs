//! `ctl`: the muster controller. Reads the inventory, picks hosts, fans work out to their
//! agents, and records every operation.
//!
//! This file only wires: parse the command line, set up diagnostics, run the subcommand, and
//! turn the result into the exit status in one place (see `commands::Exit`).

mod audit;
mod bootstrap;
mod cli;
mod client;
mod commands;
mod fanout;
mod inventory;
mod local_tree;
mod log_view;
mod outcome;
mod output;
mod plan;
mod rollout;
mod source_hash;
mod stream_pair;
mod transfer_progress;
mod trust;

use std::process::ExitCode;

use std::path::Path;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::cli::{Cli, Command};
use crate::commands::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Operations that write the operation log also keep ctl's diagnostics beside it.
    let diagnostics_dir = matches!(
        cli.command,
        Command::Run(_)
            | Command::Push(_)
            | Command::Pull(_)
            | Command::Bootstrap(_)
            | Command::Rerun(_)
    )
    .then_some(cli.log.log_dir.as_path());
    let _log_guard = init_logging(cli.verbose, cli.quiet, diagnostics_dir);
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads(&cli.command))
        .enable_all()
        .build()
        .expect("can start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run(args, &cli.log).await,
            Command::Push(args) => commands::push(args, &cli.log).await,
            Command::Pull(args) => commands::pull(args, &cli.log).await,
            Command::Ping(args) => commands::ping(args).await,
            Command::Trust(args) => commands::trust(args, &cli.log).await,
            Command::Bootstrap(args) => commands::bootstrap(args, &cli.log).await,
            Command::Hosts(args) => commands::hosts(args),
            Command::Keygen(args) => commands::keygen(args),
            Command::Log(args) => commands::log(args, &cli.log),
            Command::Rerun(args) => commands::rerun(args, &cli.log).await,
            Command::Completions(args) => commands::completions(&args),
            Command::Man(args) => commands::man(&args),
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

/// Diagnostics (results go to stdout): warnings on stderr by default, `-v` for more; with
/// `file_dir`, also info and up to daily-rotated `ctl.log.YYYY-MM-DD` files there. The
/// returned guard flushes the file writer when `main` ends.
fn init_logging(
    verbose: u8,
    quiet: bool,
    file_dir: Option<&Path>,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let stderr_level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let file_level = match verbose {
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        |level: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only for a person at a terminal: journald and log files get plain text.
    let stderr_layer = fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter(stderr_level));
    // A log folder that cannot be created is reported by the operation itself; diagnostics
    // then go to stderr only.
    let file = file_dir
        .filter(|dir| common::private_file::create_private_dir(dir).is_ok())
        .map(|dir| common::diagnostics_file::daily_file_writer(dir, "ctl.log"));
    let (file_layer, guard) = match file {
        Some((writer, guard)) => {
            let layer = fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter(file_level));
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .init();
    guard
}

/// Push and pull give every host in flight a blocking thread for as long as its file is
/// read or written (`chunk_reader`, `hashing_writer`). A host left waiting for a thread
/// sends nothing, and its agent drops a connection that brings no data for its
/// `--idle-timeout`; so the pool must cover every host in flight, with room to spare for
/// the other blocking work.
fn blocking_threads(command: &Command) -> usize {
    const TOKIO_DEFAULT: usize = 512;
    const SPARE: usize = 64;
    let forks = match command {
        Command::Push(args) => args.connect.forks,
        Command::Pull(args) => args.connect.forks,
        _ => return TOKIO_DEFAULT,
    };
    (forks as usize).saturating_add(SPARE).max(TOKIO_DEFAULT)
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
