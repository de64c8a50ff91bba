//! The command line of `ctl`, as clap derive types. Parsing only: turning these flags into a
//! plan (inventory, targets, key) is `plan`'s job, so nothing here touches a file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run commands on groups of hosts at once, through their muster agents.
#[derive(Debug, Parser)]
#[command(name = "ctl", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No diagnostics but errors; RUST_LOG overrides.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(flatten)]
    pub log: LogOptions,
}

/// Where the operation log lives; shared by every command that writes or reads it.
#[derive(Debug, Args)]
pub struct LogOptions {
    /// Folder of the operation log, kept output and ctl's diagnostic log files.
    #[arg(
        long,
        global = true,
        env = "CTL_LOG_DIR",
        default_value = "logs",
        value_name = "DIR"
    )]
    pub log_dir: PathBuf,

    /// Set by `ctl rerun` for the operation it starts: the one it repeats.
    #[arg(skip)]
    pub reruns: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a shell command on every target at once, streaming each host's output.
    Run(RunArgs),
    /// Send a file (or with -r a directory) to every target at once, atomically and verified.
    Push(PushArgs),
    /// Fetch a file (or with -r a directory) from every target into DEST/<host>/.
    Pull(PullArgs),
    /// Check that each target's agent answers: connect, authenticate, round trip.
    Ping(PingArgs),
    /// List the targets a selection resolves to, without contacting them.
    Hosts(HostsArgs),
    /// Record the host keys of the targets in known_hosts, printing each fingerprint.
    Trust(TrustArgs),
    /// Install, upgrade or remove the agent on the targets over SSH, and record the host
    /// key each agent makes, read over SSH, in known_hosts.
    Bootstrap(BootstrapArgs),
    /// Write a new Ed25519 identity to PATH (0600) and PATH.pub; never overwrites.
    Keygen(KeygenArgs),
    /// Review the operation log: list operations, show one, or verify the chain.
    Log(LogArgs),
    /// Repeat a run, push or pull on its hosts that were not ok (or with --all on all).
    Rerun(RerunArgs),
    /// Print the shell completion script for SHELL to stdout.
    Completions(CompletionsArgs),
    /// Write the man pages, ctl.1 and one per subcommand (ctl-run.1, ...), to DIR.
    Man(ManArgs),
}

/// Which hosts to act on.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// A target expression (repeatable; the union): groups and hosts joined by `:` or `,`
    /// (union), `:&` (and also in), `:!` (but not); `all`, ranges like web[01:20],
    /// `~REGEX` on host names, `@FILE` (a term per line). E.g. `web:&prod:!web3`.
    #[arg(short = 'g', long = "group", value_name = "EXPR")]
    pub groups: Vec<String>,

    /// These hosts (repeatable, or comma-separated; ranges like web[01:04] expand).
    #[arg(short = 'H', long = "host", value_name = "HOST", value_delimiter = ',')]
    pub hosts: Vec<String>,

    /// Leave out these hosts or groups (repeatable, or comma-separated).
    #[arg(short = 'x', long, value_name = "NAME", value_delimiter = ',')]
    pub exclude: Vec<String>,

    /// The inventory file.
    #[arg(
        short = 'i',
        long,
        env = "CTL_INVENTORY",
        default_value = "inventory.yaml",
        value_name = "PATH"
    )]
    pub inventory: PathBuf,
}

/// Who we are to the agents, and which agents we trust.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The operator's OpenSSH Ed25519 private key (a key with a passphrase is used through
    /// ssh-agent); else the inventory's `defaults.identity`, else ~/.ssh/id_ed25519.
    #[arg(long, env = "CTL_IDENTITY", value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// The agents' host keys, in OpenSSH known_hosts format; else the inventory's
    /// `defaults.known_hosts`, else known_hosts beside the inventory.
    #[arg(long, env = "CTL_KNOWN_HOSTS", value_name = "PATH")]
    pub known_hosts: Option<PathBuf>,
}

/// How to reach the targets.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    /// At most this many hosts in flight at once.
    #[arg(short = 'f', long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,

    /// Give up on a host that has not connected and authenticated within SECS.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = parse_seconds)]
    pub connect_timeout: f64,

    /// Take a host for lost when its agent sends nothing, not even its heartbeat (every
    /// 5 s), for SECS while a command runs; the host is `error`. A pull must also make
    /// progress (an entry or file data) within SECS: heartbeats alone do not count.
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = parse_silence)]
    pub silence_timeout: f64,
}

/// How the targets start: all at once (the default), or as a rollout.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// At most N hosts (or N% of the targets) in flight; the next starts as soon as one
    /// ends. --forks still caps it.
    #[arg(long, value_name = "N|N%")]
    pub batch: Option<crate::rollout::Limit>,

    /// Run on the first N hosts alone; start the others only if every one of them is ok.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub canary: usize,

    /// Once more than N hosts (or N% of the targets) are not ok, start no other host;
    /// those never started are `skipped`.
    #[arg(long, value_name = "N|N%")]
    pub max_fail: Option<crate::rollout::Limit>,

    /// Pause SECS after each host ends before the next starts.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub batch_wait: Option<f64>,

    /// The order hosts start in: inventory, random, or random:SEED (repeatable).
    #[arg(long, value_name = "ORDER", default_value = "inventory")]
    pub order: crate::rollout::Order,
}

impl RolloutArgs {
    pub fn rollout(&self) -> crate::rollout::Rollout {
        crate::rollout::Rollout {
            batch: self.batch,
            canary: self.canary,
            max_fail: self.max_fail,
            batch_wait: self.batch_wait.map_or(
                std::time::Duration::ZERO,
                std::time::Duration::from_secs_f64,
            ),
            order: self.order,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub rollout: RolloutArgs,

    /// Set this variable for the command on every host (repeatable), after the agent's own
    /// (PATH may be replaced; MUSTER_OP_ID may not).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE",
          value_parser = common::command_vars::parse_pair)]
    pub env: Vec<(String, String)>,

    /// Start the command in DIR on every host (relative: to the agent's working folder); a
    /// host without DIR is `error` and nothing runs there.
    #[arg(short = 'C', long = "chdir", value_name = "DIR")]
    pub chdir: Option<String>,

    /// Kill the command's whole process group on a host after SECS; the host is `timeout`.
    #[arg(short = 't', long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,

    /// One JSON object per host per line on stdout, instead of `HOST: line` output.
    #[arg(long, conflicts_with = "gather")]
    pub json: bool,

    /// After all hosts finish, print each distinct output once under the hosts that gave it.
    #[arg(short = 'b', long)]
    pub gather: bool,

    /// With --gather: show the output most hosts gave in full, and each other one as a
    /// unified diff against it.
    #[arg(long, requires = "gather")]
    pub diff: bool,

    /// Also write each host's stdout and stderr to DIR/<host>.out and DIR/<host>.err as
    /// they arrive (made anew, mode 0600; DIR is made if missing).
    #[arg(long, value_name = "DIR")]
    pub outdir: Option<std::path::PathBuf>,

    /// Write hosts' output byte for byte even on a terminal. By default, on a terminal,
    /// control characters other than tab are shown escaped (\x1b, \r), so no host can
    /// move the cursor, forge other hosts' lines or retitle the terminal.
    #[arg(long)]
    pub raw: bool,

    /// Keep at most this many bytes of each host's stdout and of its stderr with the
    /// operation log (the first and last half; 0 keeps none).
    #[arg(long, env = "CTL_KEEP_OUTPUT", default_value_t = crate::audit::kept::DEFAULT_KEEP_BYTES,
          value_name = "BYTES")]
    pub keep_output: usize,

    /// With --json or --gather: hold at most this many bytes of each host's stdout and of
    /// its stderr to show; past it the output is marked cut (live lines are never cut).
    #[arg(long, env = "CTL_MAX_OUTPUT", default_value_t = crate::output::capped::DEFAULT_MAX_OUTPUT,
          value_name = "BYTES")]
    pub max_output: usize,

    /// The shell command line, run with `sh -c` (words are joined with spaces).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub rollout: RolloutArgs,

    /// Where to put it on the hosts: a relative path is inside the agent's files folder; an
    /// existing directory receives DEST/<name> (as scp does). Default: the source's name.
    #[arg(short = 'd', long, value_name = "PATH")]
    pub dest: Option<String>,

    /// Permission bits for the pushed files, in octal (default: each file's own).
    #[arg(short = 'm', long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,

    /// Create missing parent folders of the destination.
    #[arg(long)]
    pub mkdir: bool,

    /// Push a directory tree (files, folders, modes; links stay links).
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// One JSON object per host per line on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,

    /// The local file or directory to send.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub rollout: RolloutArgs,

    /// Local folder that receives DEST/<host>/<name> for each host.
    #[arg(short = 'd', long, default_value = ".", value_name = "DIR")]
    pub dest: PathBuf,

    /// Pull a directory tree.
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// One JSON object per host per line on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,

    /// The file or directory on the hosts; a relative path is inside the agent's files folder.
    #[arg(value_name = "REMOTE_PATH")]
    pub remote: String,
}

#[derive(Debug, Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// One JSON object per host per line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key, e.g. keys/operator (the public key goes to PATH.pub).
    pub path: PathBuf,

    /// The key's comment (default: USER@HOSTNAME, as ssh-keygen writes it).
    #[arg(short = 'C', long, value_name = "TEXT")]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Replace a recorded key that changed (the old line is kept, commented out with the
    /// date). Without it a changed key is reported and left as it is.
    #[arg(long)]
    pub replace: bool,

    /// One JSON object per host per line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub targets: TargetArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// At most this many hosts in flight at once.
    #[arg(short = 'f', long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub forks: u32,

    /// Give up on a host whose SSH server, or whose new agent, has not answered within
    /// SECS.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = parse_seconds)]
    pub connect_timeout: f64,

    /// The SSH login for hosts whose inventory entry gives none (`ssh: user@host:port`);
    /// without either, ssh's own default (its config, else your user name).
    #[arg(long, value_name = "USER", value_parser = parse_ssh_user)]
    pub ssh_user: Option<String>,

    /// An ssh option, passed as `-o OPT` (repeatable), e.g. `IdentityFile=~/.ssh/ops`.
    #[arg(long = "ssh-option", value_name = "OPT")]
    pub ssh_options: Vec<String>,

    /// The agent binary to install (default: `agent` beside this ctl).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// More operator keys for the hosts' authorized_keys, in authorized_keys format (one
    /// line per key, options kept). Your own key is always written.
    #[arg(long, value_name = "FILE")]
    pub operators: Option<PathBuf>,

    /// How the agent is kept running: systemd (the shipped unit, enabled and started),
    /// none (started detached with setsid and a pid file), or auto: systemd where it runs.
    #[arg(long, value_enum, default_value_t = ServiceArg::Auto)]
    pub service: ServiceArg,

    /// Where the agent listens: any (0.0.0.0) or inventory (the host's inventory address,
    /// which must then be an address of the host). The port is the inventory's.
    #[arg(long, value_enum, default_value_t = AgentAddressArg::Any)]
    pub agent_address: AgentAddressArg,

    /// Run the remote steps through `sudo -n`, for a login that is not root.
    #[arg(long)]
    pub sudo: bool,

    /// Only say what would change on each host; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Stop and remove the agent, its unit and /etc/muster, and the hosts' known_hosts
    /// lines (the agent's logs and files folder stay).
    #[arg(long)]
    pub remove: bool,

    /// One JSON object per host per line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceArg {
    Auto,
    Systemd,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentAddressArg {
    Any,
    Inventory,
}

#[derive(Debug, Args)]
pub struct RerunArgs {
    /// The operation: its id, a unique prefix of it, or `last` (the newest run, push or
    /// pull in the log).
    #[arg(default_value = "last", value_name = "OP_ID|last")]
    pub op: String,

    /// On every host of the operation, not only those that were not ok.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash (source it, or put it in /etc/bash_completion.d/ctl), zsh (as
    /// `_ctl` in a folder of $fpath), fish (in ~/.config/fish/completions/ctl.fish).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write into (made if missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    pub action: Option<LogAction>,

    #[command(flatten)]
    pub list: LogListArgs,
}

#[derive(Debug, Subcommand)]
pub enum LogAction {
    /// Show one operation in full, with each host's kept output; a unique id prefix is enough.
    Show(LogShowArgs),
    /// Check every record's signature, the chain and the kept output, with public keys
    /// only; exit 1 at the first break.
    Verify(LogVerifyArgs),
}

/// `ctl log`: the newest operations, one line each; the filters combine.
#[derive(Debug, Args, PartialEq)]
pub struct LogListArgs {
    /// Operations that targeted this host.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Operations that targeted hosts of this group (membership at the time of the operation).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,

    /// Operations run by this local user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Operations of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<crate::audit::Kind>,

    /// Operations that ended so: ok (every host ok), failed (some host not ok), incomplete
    /// (no end record).
    #[arg(long, value_enum)]
    pub status: Option<crate::log_view::StatusFilter>,

    /// Operations at or after this time: RFC 3339, or an age like 90s, 30m, 2h, 3d, 1w.
    #[arg(long, value_name = "WHEN", value_parser = crate::log_view::parse_when)]
    pub since: Option<time::OffsetDateTime>,

    /// Operations at or before this time: RFC 3339, or an age like 2h.
    #[arg(long, value_name = "WHEN", value_parser = crate::log_view::parse_when)]
    pub until: Option<time::OffsetDateTime>,

    /// Operations whose command line contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// At most N operations (the newest).
    #[arg(short = 'n', long, default_value_t = DEFAULT_LOG_LIMIT, value_name = "N")]
    pub limit: usize,

    /// Print the matching records themselves (JSON lines), newest operation first.
    #[arg(long)]
    pub json: bool,
}

const DEFAULT_LOG_LIMIT: usize = 20;

/// The listing as `ctl log` with no flags would give it.
impl Default for LogListArgs {
    fn default() -> LogListArgs {
        LogListArgs {
            host: None,
            group: None,
            user: None,
            kind: None,
            status: None,
            since: None,
            until: None,
            grep: None,
            limit: DEFAULT_LOG_LIMIT,
            json: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogShowArgs {
    /// The operation id, or a prefix of it that only one operation has.
    pub id: String,

    /// Print the operation's records themselves (JSON lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogVerifyArgs {
    /// The operators whose records are accepted: public keys in authorized_keys format.
    /// Default: the .pub beside the identity ctl would use (--identity, else the
    /// inventory's `defaults.identity`, else ~/.ssh/id_ed25519). No private key is read.
    #[arg(long, value_name = "FILE")]
    pub operators: Option<PathBuf>,

    /// Without --operators: accept the records of this identity, whose PATH.pub is read.
    #[arg(long, env = "CTL_IDENTITY", value_name = "PATH")]
    pub identity: Option<PathBuf>,

    /// Without --operators and --identity: the inventory whose `defaults.identity` names
    /// the identity.
    #[arg(
        short = 'i',
        long,
        env = "CTL_INVENTORY",
        default_value = "inventory.yaml",
        value_name = "PATH"
    )]
    pub inventory: PathBuf,
}

/// A login name ssh takes as a value and no remote shell reads as syntax.
fn parse_ssh_user(text: &str) -> Result<String, String> {
    match crate::inventory::is_login_name(text) {
        true => Ok(text.to_owned()),
        false => Err("a login name: letters, digits, '.', '_' and '-'".to_owned()),
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!("{text:?} is not an octal mode like 0644")),
    }
}

fn parse_silence(text: &str) -> Result<f64, String> {
    let secs = parse_seconds(text)?;
    let heartbeat = common::message::HEARTBEAT_INTERVAL.as_secs_f64();
    if secs <= heartbeat {
        return Err(format!(
            "must be more than the agent's {heartbeat} s heartbeat"
        ));
    }
    Ok(secs)
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => Ok(secs),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn each_group_flag_is_one_whole_expression_and_they_repeat() {
        // The expression parser splits `web,db` itself (a `~REGEX` may hold a comma).
        let cli =
            Cli::try_parse_from(["ctl", "run", "-g", "web,db", "-g", "app", "uptime"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.targets.groups, ["web,db", "app"]);
        assert_eq!(run.command, ["uptime"]);
    }

    #[test]
    fn the_command_keeps_its_own_flags() {
        let cli = Cli::try_parse_from(["ctl", "run", "-g", "web", "ls", "-la", "/tmp"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.command.join(" "), "ls -la /tmp");
    }
}
