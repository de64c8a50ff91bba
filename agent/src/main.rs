//! `agent`: the muster daemon that runs on every managed host.
//!
//! This file only wires things together: parse the flags, set up logging, load the key,
//! bind the listener, and serve until SIGINT or SIGTERM. The work is in [`server`] (accepting
//! connections), [`session`] (one authenticated connection) and [`request`] (one request of
//! each kind), with [`config`] and [`error`] below them all.
//!
//! It also owns how the process ends. SIGHUP is logged and otherwise ignored (the agent has
//! nothing it could reload), so it never kills the agent behind its commands' backs. Every
//! way out of `main` (a return, an error, a panic that unwinds it) passes through
//! [`StopCommandsOnExit`], which stops the process groups of the commands still running.

mod command_env;
mod config;
mod connection;
mod descriptors;
mod error;
mod failure_report;
mod request;
mod server;
mod session;
mod startups;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use common::identity::authorized_keys::AuthorizedKeysFile;
use common::identity::keys::Identity;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Runs shell commands for muster operators whose keys are in its authorized_keys.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address and port to listen on; port 0 picks a free one (printed on stdout).
    #[arg(
        long,
        env = "MUSTER_LISTEN",
        default_value = "0.0.0.0:7070",
        value_name = "ADDR:PORT"
    )]
    listen: SocketAddr,

    /// The agent's host key (OpenSSH Ed25519 private key); made, mode 0600, with PATH.pub
    /// beside it, when missing.
    #[arg(long, default_value = "/etc/muster/host_key", value_name = "PATH")]
    host_key: PathBuf,

    /// The operator keys that may connect, in OpenSSH authorized_keys format (options
    /// from="..." and permit="run,push,pull,ping"); re-read when it changes.
    #[arg(
        long,
        default_value = "/etc/muster/authorized_keys",
        value_name = "PATH"
    )]
    authorized_keys: PathBuf,

    /// Also write diagnostic logs to daily-rotated files (agent.log.YYYY-MM-DD) in this folder.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,

    /// Keep at most this many bytes of those files; the oldest are removed first.
    #[arg(long, default_value_t = common::diagnostics_file::DEFAULT_MAX_BYTES, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    log_max_bytes: u64,

    /// Drop a connection that has not authenticated within this many seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    handshake_timeout: u64,

    /// Drop an authenticated connection that sends no request, or does not take our output,
    /// for this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    idle_timeout: u64,

    /// After SIGTERM to a command's process group, wait this long before SIGKILL.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    kill_grace: u64,

    /// Serve at most this many authenticated connections at once; more wait, authenticated,
    /// until one ends.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_connections: usize,

    /// At most this many connections in the handshake at once; a newer one makes the agent
    /// drop the oldest of the source that has the most.
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_startups: u32,

    /// At most this many connections in the handshake at once from one IPv4 address or
    /// IPv6 /64; a newer one makes the agent drop that source's oldest.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_startups_per_source: u32,

    /// Where relative paths of `ctl push` and `ctl pull` resolve (default: the working
    /// folder). Temporary files of interrupted pushes are removed from below it at start.
    #[arg(long, value_name = "DIR")]
    files_dir: Option<PathBuf>,

    /// Set this variable for every command (repeatable). Commands get a fixed, minimal
    /// environment, not the agent's: PATH, HOME, USER, LOGNAME, SHELL, LANG and LC_ALL
    /// (when the agent has them), MUSTER_OP_ID, and these.
    #[arg(long, value_name = "NAME=VALUE", value_parser = common::command_vars::parse_pair)]
    command_env: Vec<(String, String)>,

    /// More diagnostics (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only warnings and errors; RUST_LOG overrides.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // First, while the process has a single thread (see `descriptors`).
    let inherited = descriptors::mark_inherited_cloexec();
    if let Some(dir) = &args.log_dir {
        if let Err(err) = common::private_file::create_private_dir(dir) {
            let err = anyhow::Error::new(err)
                .context(format!("cannot create the log folder {}", dir.display()));
            return fail(&err);
        }
    }
    let _log_guard = init_logging(&args);
    log_panics();
    match inherited {
        Ok(0) => {}
        Ok(descriptors) => {
            tracing::info!(descriptors, "inherited descriptors kept from commands");
        }
        Err(err) => {
            let err = anyhow::Error::new(err).context("cannot list the inherited descriptors");
            return fail(&err);
        }
    }
    // Declared before the runtime, so dropped after it: by then no task can stop anything.
    let _stop_commands = StopCommandsOnExit {
        grace: Duration::from_secs(args.kill_grace),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("cannot start the runtime")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> std::process::ExitCode {
    tracing::error!("{err:#}");
    eprintln!("agent: {err:#}");
    std::process::ExitCode::from(2)
}

/// Stops the commands still running when it is dropped: at the end of `main`, however it
/// ends. A graceful shutdown has stopped them all by then and this finds nothing; after an
/// error or a panic it is what keeps commands from running on for nobody.
struct StopCommandsOnExit {
    grace: Duration,
}

impl Drop for StopCommandsOnExit {
    fn drop(&mut self) {
        let groups = request::process_group::stop_all(self.grace);
        if groups > 0 {
            tracing::warn!(groups, "stopped commands still running at exit");
        }
    }
}

/// Panics reach the diagnostics file too, not only stderr: a session that panics is
/// dropped by the runtime without any other trace.
fn log_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panicked");
        default_hook(info);
    }));
}

async fn run(args: Args) -> Result<()> {
    let (host_key, created) = Identity::load_or_create(&args.host_key, &host_key_comment())
        .with_context(|| format!("cannot use the host key {}", args.host_key.display()))?;
    let host_key = Arc::new(host_key);
    let credentials = common::tls::Credentials::new(Arc::clone(&host_key))?;
    let tls = common::tls::server_config(&credentials).context("cannot set up TLS")?;
    let authorized_keys = AuthorizedKeysFile::open(args.authorized_keys.clone());
    // Installed before anyone can connect, so no signal reaches a running command's agent
    // with its default action (which, for SIGHUP, is to die).
    let signals = Signals::install().context("cannot install signal handlers")?;
    let listener =
        bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        addr = %local,
        version = env!("CARGO_PKG_VERSION"),
        host_key = %host_key.public_key().fingerprint(),
        created,
        "listening"
    );
    // Scripts and tests read this line to learn the port; it is the only thing on stdout.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {local}")?;
    writeln!(stdout, "host key {}", host_key.public_key().fingerprint())?;
    stdout.flush()?;
    drop(stdout);

    // Only a folder named on purpose is searched through for stale temporary files: the
    // default (the working folder, `/` under systemd) could be the whole file system.
    // Destination folders are cleaned of them at every push anyway.
    let (files_dir, scan_below) = match args.files_dir {
        Some(dir) => (dir, true),
        None => (
            std::env::current_dir().context("cannot tell the working folder")?,
            false,
        ),
    };
    // Absolute, so the paths the agent reports back can be used as they are.
    let files_dir = files_dir
        .canonicalize()
        .with_context(|| format!("cannot use the files folder {}", files_dir.display()))?;
    if !files_dir.is_dir() {
        anyhow::bail!("the files folder {} is not a folder", files_dir.display());
    }
    let files_folder = common::folder::Folder::open(&files_dir)
        .with_context(|| format!("cannot use the files folder {}", files_dir.display()))?;
    for path in common::atomic_file::remove_stale_temps(&files_folder, scan_below) {
        tracing::info!(path = %path.display(), "removed a temporary file of an interrupted push");
    }

    let config = Arc::new(config::Config {
        tls,
        authorized_keys,
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        kill_grace: Duration::from_secs(args.kill_grace),
        max_connections: args.max_connections,
        startup_limits: startups::Limits {
            total: args.max_startups as usize,
            per_source: args.max_startups_per_source as usize,
        },
        files_dir,
        command_env: command_env::base_env(
            &command_env::Account::current(),
            |name| std::env::var_os(name),
            &args.command_env,
        ),
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(signals.cancel_on_stop(shutdown.clone()));
    server::serve(listener, config, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// The comment of a new host key: `muster-agent@HOSTNAME`, as ssh-keygen names host keys
/// `root@HOSTNAME`.
fn host_key_comment() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned());
    format!("muster-agent@{host}")
}

/// Binds with SO_REUSEADDR, so a restarted agent can listen again at once even while
/// connections of its previous life sit in TIME_WAIT. The listen queue is as long as
/// Linux allows by default (`net.core.somaxconn`), so a burst of connections that outruns
/// the accept loop for a moment does not make a controller's SYN wait for a retransmit.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The signals the agent handles: SIGTERM and SIGINT stop it, SIGHUP is ignored.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// # Errors
    /// A handler cannot be installed.
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Cancels `shutdown` at the first SIGTERM or SIGINT; logs each SIGHUP and goes on.
    async fn cancel_on_stop(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.term.recv() => break tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = self.int.recv() => break tracing::info!(signal = "SIGINT", "shutting down"),
                // Warn, not info: whoever sent it expected something, and should learn here
                // that nothing happened (a new key or new flags need a restart).
                _ = self.hup.recv() => tracing::warn!(
                    signal = "SIGHUP",
                    "signal ignored: the agent reloads nothing, restart it to apply changes"
                ),
            }
        }
        shutdown.cancel();
    }
}

/// Diagnostics go to stderr and, with `--log-dir`, to daily files. The returned guard
/// flushes the file writer when `main` ends.
fn init_logging(args: &Args) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let default_level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only for a person at a terminal: journald and log files get plain text.
    let stderr_layer = fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let (file_layer, guard) = match &args.log_dir {
        Some(dir) => {
            let capped = common::diagnostics_file::capped_daily_file_writer(
                dir,
                "agent.log",
                args.log_max_bytes,
            );
            let (writer, guard) = match capped {
                Ok(capped) => capped,
                Err(err) => {
                    // Logging is not set up yet; this is a failure to start, like a bad key.
                    eprintln!("agent: cannot write logs in {}: {err}", dir.display());
                    std::process::exit(2);
                }
            };
            let layer = fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
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
