//! The harness: real `agent` and `ctl` processes on loopback, a temp folder per test with an
//! operator identity, the agents' authorized_keys, known_hosts, an inventory and a log
//! folder, agents with a files folder of their own and ways
//! to read what is on disk, and waits that always have a deadline.
//!
//! It does not know any test's expectations; it only starts, feeds and reads processes and
//! panics with everything it saw (status, stdout, stderr) when a wait runs out. The binaries
//! are built once per test run with the same profile as this test, so a test never runs a
//! stale `ctl` or `agent`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// How long a `ctl` invocation may take before the harness gives up on it. Generous, because
/// a loaded CI machine is slow; a passing test never waits for it.
pub const CTL_DEADLINE: Duration = Duration::from_secs(60);
/// How long an agent may take to print its address.
const AGENT_START_DEADLINE: Duration = Duration::from_secs(20);
/// The pause between two looks at a condition in [`wait_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The environment variables `ctl` reads; removed so the developer's shell cannot leak in.
/// A test that wants one sets it with [`Ctl::env`].
const CTL_ENV: [&str; 10] = [
    "CTL_INVENTORY",
    "CTL_LOG_DIR",
    "CTL_IDENTITY",
    "CTL_KNOWN_HOSTS",
    "SSH_AUTH_SOCK",
    "CTL_KEEP_OUTPUT",
    "CTL_MAX_OUTPUT",
    "CTL_LOG_ROTATE_BYTES",
    "NO_COLOR",
    "RUST_LOG",
];

// ---------------------------------------------------------------------------------------------
// Binaries

/// The folder holding the freshly built `agent` and `ctl`.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Cargo only builds the binaries of the test's own package for us; ours live in
        // other workspace members, so build them here, once, in the test's profile.
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "-p", "agent", "-p", "controller"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().expect("can run cargo build");
        assert!(status.success(), "cargo build of agent and ctl failed");
        // The test runs as <target>/<profile>/deps/e2e-HASH; the binaries sit in <profile>.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target>/<profile>/deps")
            .to_owned();
        for bin in ["agent", "ctl"] {
            assert!(
                dir.join(bin).is_file(),
                "{bin} not found in {}",
                dir.display()
            );
        }
        dir
    })
}

/// The freshly built agent binary (what `ctl bootstrap` installs by default).
pub fn agent_bin() -> PathBuf {
    bin_dir().join("agent")
}

fn ctl_bin() -> PathBuf {
    bin_dir().join("ctl")
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// Polls `condition` until it holds, panicking with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// True while process `pid` exists and is not a zombie. A killed background job may stay a
/// zombie for a while when its reaper (init of a container) is slow; it runs no more code.
pub fn is_process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !rest.trim_start().starts_with(['Z', 'X']),
            None => true,
        },
    }
}

/// The peak resident set (VmHWM) of a live process, in KiB; `None` once it has exited.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits until `path` holds a process id (written by the remote command) and returns it.
pub fn read_pid_file(path: &Path) -> i32 {
    let mut pid = None;
    wait_until(
        &format!("{} holds a pid", path.display()),
        Duration::from_secs(20),
        || {
            pid = fs::read_to_string(path)
                .ok()
                .filter(|text| text.ends_with('\n'))
                .and_then(|text| text.trim().parse().ok());
            pid.is_some()
        },
    );
    pid.expect("set when the wait ends")
}

/// Held by tests that load the machine (a fleet of sshd and ssh processes) and by tests
/// that measure the agent's memory under a flood, so that neither runs beside the other:
/// how much a flooded agent holds at its peak depends on how much CPU it gets.
pub fn heavy_test() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    // A test that panicked while holding it leaves it poisoned; the lock still serves.
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Keys

/// Writes a new operator identity at `path` (mode 0600) and `path.pub`, as `ctl keygen`
/// does; returns its public line (`ssh-ed25519 AAAA... comment`).
pub fn write_identity(path: &Path, comment: &str) -> String {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("can create the keys folder");
    }
    let identity = common::identity::keys::Identity::write_new(path, comment)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    format!("{} {comment}", identity.public_key().to_openssh())
}

/// Host keys of the agents a fleet started, by address: what `known_hosts` is written from.
#[derive(Clone, Default)]
pub struct HostKeys(Arc<Mutex<HashMap<SocketAddr, String>>>);

impl HostKeys {
    /// The public line (`ssh-ed25519 AAAA...`) of the agent at `addr`.
    pub fn of(&self, addr: SocketAddr) -> Option<String> {
        self.0.lock().unwrap().get(&addr).cloned()
    }

    /// Records `public` as the host key of the agent at `addr`.
    pub fn record(&self, addr: SocketAddr, public: String) {
        self.0.lock().unwrap().insert(addr, public);
    }
}

// ---------------------------------------------------------------------------------------------
// Agent

/// A running `agent` on 127.0.0.1, killed when dropped.
pub struct Agent {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// How to start an agent: its keys plus optional flags, environment and working folder.
pub struct AgentBuilder {
    host_key: PathBuf,
    authorized_keys: PathBuf,
    host_keys: HostKeys,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

impl AgentBuilder {
    /// Uses the host key at `path` (made by the agent if missing) instead of a new one.
    pub fn host_key(mut self, path: &Path) -> AgentBuilder {
        path.clone_into(&mut self.host_key);
        self
    }

    /// Adds command-line flags, e.g. `["--kill-grace", "1"]`.
    pub fn flags(mut self, flags: &[&str]) -> AgentBuilder {
        self.flags.extend(flags.iter().map(|flag| flag.to_string()));
        self
    }

    /// Sets an environment variable of every command the agent runs (`--command-env`): the
    /// way to make one command behave differently per host when all hosts share this
    /// machine.
    pub fn env(mut self, name: &str, value: &str) -> AgentBuilder {
        self.flags.push(format!("--command-env={name}={value}"));
        self
    }

    /// Sets an environment variable of the agent process itself, which its commands do not
    /// see.
    pub fn daemon_env(mut self, name: &str, value: &str) -> AgentBuilder {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the agent through `wrapper` (a command line that ends by running the rest of
    /// its arguments), e.g. to give it a mount namespace of its own.
    pub fn wrapped_in(mut self, wrapper: &[&str]) -> AgentBuilder {
        self.wrapper = wrapper.iter().map(|arg| arg.to_string()).collect();
        self
    }

    /// Starts the agent and waits until it says where it listens.
    pub fn start(self) -> Agent {
        let mut command = match self.wrapper.split_first() {
            None => Command::new(agent_bin()),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(agent_bin());
                command
            }
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "-q", "--host-key"])
            .arg(&self.host_key)
            .arg("--authorized-keys")
            .arg(&self.authorized_keys)
            .args(&self.flags)
            .envs(self.env)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("can start the agent");
        let stderr = collect(child.stderr.take().expect("piped"));
        let first_line = read_first_line(child.stdout.take().expect("piped"));
        let line = match first_line.recv_timeout(AGENT_START_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the agent did not print its address within {AGENT_START_DEADLINE:?}; \
                     stderr:\n{}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                );
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the agent: {line:?}"));
        // The agent made its host key before it listened.
        let public = fs::read_to_string(self.host_key.with_extension("pub"))
            .expect("the agent wrote its public host key");
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        self.host_keys.record(addr, public.join(" "));
        Agent {
            child,
            addr,
            stderr,
        }
    }
}

impl Agent {
    /// Where the agent listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent's process id, e.g. to read its memory use from `/proc`.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// True while the agent process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the agent wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Sends SIGTERM, as systemd does to stop the service.
    pub fn terminate(&self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGTERM).expect("can signal the agent");
    }

    /// Sends SIGHUP, as a closed terminal or `systemctl reload`/`kill -HUP` would.
    pub fn hang_up(&self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, Signal::SIGHUP).expect("can signal the agent");
    }

    /// Panics, with the agent's stderr, unless the agent is still running.
    pub fn assert_running(&mut self) {
        assert!(
            self.is_running(),
            "the agent exited ({:?}); stderr:\n{}",
            self.child.try_wait(),
            self.stderr()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the first stdout line over a channel, then keeps draining stdout so the agent never
/// blocks on a full pipe.
fn read_first_line(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        if reader.read_line(&mut line).is_ok() && !line.is_empty() {
            let _ = tx.send(line);
        }
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    rx
}

/// Reads a pipe to its end on a thread, into a shared buffer that can be looked at any time.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

// ---------------------------------------------------------------------------------------------
// Fleet fixture

/// A temp folder with the operator's identity (`keys/operator`, mode 0600), the agents'
/// `authorized_keys` holding its public key, their host keys (`hostkeys/`), room for
/// `inventory.yaml` and `known_hosts`, and `logs/`.
pub struct Fleet {
    dir: TempDir,
    host_keys: HostKeys,
    next_agent: std::sync::atomic::AtomicUsize,
}

impl Fleet {
    /// A folder with an operator identity the agents will authorize, and no inventory yet.
    pub fn new() -> Fleet {
        let dir = tempfile::tempdir().expect("can make a temp folder");
        let operator = write_identity(&dir.path().join("keys/operator"), "operator@test");
        fs::write(dir.path().join("authorized_keys"), format!("{operator}\n"))
            .expect("can write authorized_keys");
        fs::create_dir_all(dir.path().join("hostkeys")).expect("can create hostkeys/");
        Fleet {
            dir,
            host_keys: HostKeys::default(),
            next_agent: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A path inside the fixture's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The operator's identity (private key; `.pub` beside it).
    pub fn identity(&self) -> PathBuf {
        self.path("keys/operator")
    }

    /// The `authorized_keys` every agent of this fleet reads.
    pub fn authorized_keys(&self) -> PathBuf {
        self.path("authorized_keys")
    }

    /// The host keys of the agents started so far.
    pub fn host_keys(&self) -> &HostKeys {
        &self.host_keys
    }

    /// An agent of this fleet (a host key of its own, the fleet's authorized_keys), to be
    /// configured before it starts.
    pub fn agent_builder(&self) -> AgentBuilder {
        let n = self
            .next_agent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        AgentBuilder {
            host_key: self.path(&format!("hostkeys/agent{n}")),
            authorized_keys: self.authorized_keys(),
            host_keys: self.host_keys.clone(),
            flags: Vec::new(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// An agent of this fleet with default settings.
    pub fn agent(&self) -> Agent {
        self.agent_builder().start()
    }

    /// Writes `inventory.yaml` (`identity: keys/operator`, then `hosts` (name, agent
    /// address) and `groups` (name, members) in the order given), and `known_hosts` with
    /// the host key of every listed agent this fleet started.
    pub fn write_inventory(&self, hosts: &[(&str, SocketAddr)], groups: &[(&str, &[&str])]) {
        let mut yaml = String::from("defaults:\n  identity: keys/operator\nhosts:\n");
        for (name, addr) in hosts {
            yaml.push_str(&format!("  {name}: {addr}\n"));
        }
        if !groups.is_empty() {
            yaml.push_str("groups:\n");
        }
        for (name, members) in groups {
            yaml.push_str(&format!("  {name}: [{}]\n", members.join(", ")));
        }
        self.write_inventory_text(&yaml);
        self.write_known_hosts(hosts);
    }

    /// Writes `known_hosts` with a line `[ADDRESS]:PORT,NAME KEY` for each host whose agent
    /// this fleet started, as `ctl trust` would.
    pub fn write_known_hosts(&self, hosts: &[(&str, SocketAddr)]) {
        let mut text = String::new();
        for (name, addr) in hosts {
            if let Some(key) = self.host_keys.of(*addr) {
                text.push_str(&format!("[{}]:{},{name} {key}\n", addr.ip(), addr.port()));
            }
        }
        fs::write(self.path("known_hosts"), text).expect("can write known_hosts");
    }

    /// Writes `inventory.yaml` as given.
    pub fn write_inventory_text(&self, yaml: &str) {
        fs::write(self.path("inventory.yaml"), yaml).expect("can write the inventory");
    }

    /// `ctl SUBCOMMAND -i <inventory>` (plus `--log-dir <logs>` for `run`).
    pub fn ctl(&self, subcommand: &str) -> Ctl {
        let mut ctl = self.ctl_plain();
        ctl.cmd
            .arg(subcommand)
            .arg("-i")
            .arg(self.path("inventory.yaml"));
        if subcommand == "run" {
            ctl.cmd.arg("--log-dir").arg(self.path("logs"));
        }
        ctl
    }

    /// `ctl` with no arguments yet, run in the fixture's folder (so `inventory.yaml` and
    /// `logs` are ctl's defaults there), for subcommands that take no `-i` (`ctl log`).
    pub fn ctl_plain(&self) -> Ctl {
        self.ctl_wrapped_in(&[])
    }

    /// `ctl` with no arguments yet, started through `wrapper` (a program and its leading
    /// arguments, say `unshare -rm sh -c SCRIPT sh`, which gets ctl's path and arguments
    /// last), in the fixture's folder. An empty `wrapper` starts ctl itself.
    pub fn ctl_wrapped_in(&self, wrapper: &[&str]) -> Ctl {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(ctl_bin()),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(ctl_bin());
                command
            }
        };
        cmd.current_dir(self.dir.path());
        for name in CTL_ENV {
            cmd.env_remove(name);
        }
        Ctl { cmd, stdout: None }
    }

    /// The log folder `ctl run` is given.
    pub fn log_dir(&self) -> PathBuf {
        self.path("logs")
    }

    /// The operation log.
    pub fn audit_path(&self) -> PathBuf {
        self.log_dir().join("audit.jsonl")
    }

    /// Every record of the operation log, parsed; panics on a line that is not JSON.
    pub fn audit_records(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.audit_path())
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", self.audit_path().display()));
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("audit line is not JSON ({err}): {line:?}"))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Agents with a files folder, and what is on disk

/// One agent with its own files folder, under a host name of the inventory.
pub struct Host {
    pub name: &'static str,
    pub files: PathBuf,
    pub agent: Agent,
}

/// Starts an agent whose files folder is `<fleet>/files-<name>` (created).
pub fn start_host(fleet: &Fleet, name: &'static str) -> Host {
    let files = fleet.path(&format!("files-{name}"));
    fs::create_dir_all(&files).expect("can create the files folder");
    // The agent reports canonical paths; so do we, in case the temp folder is a link.
    let files = files.canonicalize().expect("the files folder exists");
    let agent = agent_on(fleet, &files);
    Host { name, files, agent }
}

/// Starts an agent serving `files` (a new one, or again after the first was killed).
pub fn agent_on(fleet: &Fleet, files: &Path) -> Agent {
    fleet
        .agent_builder()
        .flags(&["--files-dir", files.to_str().expect("a UTF-8 temp path")])
        .start()
}

/// Starts one agent per name and writes them into the inventory.
pub fn fleet_of(names: &[&'static str]) -> (Fleet, Vec<Host>) {
    let fleet = Fleet::new();
    let hosts: Vec<Host> = names.iter().map(|name| start_host(&fleet, name)).collect();
    let entries: Vec<(&str, SocketAddr)> = hosts
        .iter()
        .map(|host| (host.name, host.agent.addr()))
        .collect();
    fleet.write_inventory(&entries, &[]);
    (fleet, hosts)
}

/// A temp path as a command-line argument.
pub fn text(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// SHA-256 of a file's content, lowercase hex (as `common::digest` writes it); panics naming
/// the file if it cannot be read.
pub fn sha256_file(path: &Path) -> String {
    common::digest::sha256_file(path)
        .unwrap_or_else(|err| panic!("cannot hash {}: {err}", path.display()))
}

/// A file's permission bits (not following a link).
pub fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()))
        .mode()
        & 0o7777
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("can chmod");
}

/// The temporary files directly in `folder` and below it.
pub fn temps_in(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(folder) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            found.extend(temps_in(&path));
        } else if entry
            .file_name()
            .to_string_lossy()
            .starts_with(common::atomic_file::TEMP_PREFIX)
        {
            found.push(path);
        }
    }
    found
}

/// Waits until the agent has started writing the temporary file of `dest_dir`.
pub fn wait_for_temp(dest_dir: &Path, ctl: &mut RunningCtl) -> PathBuf {
    let mut temps = Vec::new();
    wait_until(
        "the agent writes a temporary file",
        Duration::from_secs(120),
        || {
            temps = temps_in(dest_dir);
            !temps.is_empty() || !ctl.is_running()
        },
    );
    assert!(ctl.is_running(), "ctl ended before any data was written");
    assert_eq!(temps.len(), 1, "temps: {temps:?}");
    temps.remove(0)
}

/// What a tree holds, by `/`-separated path below its root: enough to compare two trees.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, sha256: String },
    Link { target: PathBuf },
}

/// Every folder, file and link below `root` (and `root` itself, under "").
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(path: &Path, rel: String, nodes: &mut BTreeMap<String, Node>) {
        let meta = fs::symlink_metadata(path)
            .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
        let node = if meta.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(path).expect("can read the link"),
            }
        } else if meta.is_dir() {
            for entry in fs::read_dir(path).expect("can list the folder").flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                walk(&entry.path(), child, nodes);
            }
            Node::Dir {
                mode: meta.mode() & 0o7777,
            }
        } else {
            Node::File {
                mode: meta.mode() & 0o7777,
                sha256: sha256_file(path),
            }
        };
        nodes.insert(rel, node);
    }
    let mut nodes = BTreeMap::new();
    walk(root, String::new(), &mut nodes);
    nodes
}

/// Every file (not folder) below `root`, for "nothing was written here" checks.
pub fn files_below(root: &Path) -> Vec<PathBuf> {
    snapshot(root)
        .into_iter()
        .filter(|(_, node)| !matches!(node, Node::Dir { .. }))
        .map(|(rel, _)| root.join(rel))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ctl

/// One `ctl` invocation being put together.
pub struct Ctl {
    cmd: Command,
    stdout: Option<Stdio>,
}

impl Ctl {
    /// Adds arguments (flags, then the remote command words).
    pub fn args(mut self, args: &[&str]) -> Ctl {
        self.cmd.args(args);
        self
    }

    /// Adds one path argument.
    pub fn arg_path(mut self, path: &Path) -> Ctl {
        self.cmd.arg(path);
        self
    }

    /// Sets an environment variable of ctl (e.g. one of the `CTL_*` the harness removes).
    pub fn env(mut self, name: &str, value: &str) -> Ctl {
        self.cmd.env(name, value);
        self
    }

    /// Sends ctl's stdout to `stdout` instead of the harness (which then sees none of it).
    pub fn with_stdout(mut self, stdout: impl Into<Stdio>) -> Ctl {
        self.stdout = Some(stdout.into());
        self
    }

    /// Runs `ctl` to its end (within [`CTL_DEADLINE`]).
    pub fn output(self) -> CtlOutput {
        self.spawn().wait(CTL_DEADLINE)
    }

    /// Starts `ctl` and returns at once, to watch its output while it runs.
    pub fn spawn(mut self) -> RunningCtl {
        let mut child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(self.stdout.unwrap_or_else(Stdio::piped))
            .stderr(Stdio::piped())
            .spawn()
            .expect("can start ctl");
        let (tx, lines) = mpsc::channel();
        let stdout_bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout_bytes.clone();
        let Some(stdout) = child.stdout.take() else {
            drop(sink);
            drop(tx);
            let stderr = collect(child.stderr.take().expect("piped"));
            return RunningCtl {
                child,
                lines,
                stdout: stdout_bytes,
                stderr,
            };
        };
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while let Ok(1..) = reader.read_until(b'\n', &mut line) {
                sink.lock().unwrap().extend_from_slice(&line);
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
        });
        let stderr = collect(child.stderr.take().expect("piped"));
        RunningCtl {
            child,
            lines,
            stdout: stdout_bytes,
            stderr,
        }
    }
}

/// A `ctl` process that may still be running.
pub struct RunningCtl {
    child: Child,
    lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl RunningCtl {
    /// ctl's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// True while ctl has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for ctl to end within `timeout`, reading its peak resident set while it runs
    /// (the last reading before it exits is its peak over its whole life).
    pub fn wait_sampling_rss(mut self, timeout: Duration) -> (CtlOutput, u64) {
        let pid = self.pid().as_raw();
        let mut peak = 0;
        let deadline = Instant::now() + timeout;
        while self.is_running() && Instant::now() < deadline {
            if let Some(kib) = peak_rss_kib(pid) {
                peak = peak.max(kib);
            }
            // A sampling pace, not a wait for an event: VmHWM keeps the peak, so any
            // reading taken late enough is right, and 10 ms keeps the last one close to
            // the exit.
            thread::sleep(Duration::from_millis(10));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        (self.wait(left.max(Duration::from_secs(1))), peak)
    }

    /// Waits for the next stdout line that `want` accepts and returns it.
    pub fn wait_for_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(line.trim_end_matches('\n')) => {
                    return line.trim_end_matches('\n').to_owned()
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let seen = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
                    let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
                    panic!(
                        "no wanted stdout line from ctl within {timeout:?}\n\
                         stdout so far:\n{seen}\nstderr so far:\n{stderr}"
                    );
                }
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    pub fn interrupt(&self) {
        kill(self.pid(), Signal::SIGINT).expect("can signal ctl");
    }

    /// Waits for ctl to exit; kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> CtlOutput {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("can wait for ctl") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "ctl did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&self.stdout.lock().unwrap()),
                    String::from_utf8_lossy(&self.stderr.lock().unwrap())
                );
            }
            thread::sleep(POLL_INTERVAL);
        };
        // The reader threads end at EOF, which follows the exit unless ctl left a child
        // holding the pipes (it does not start any).
        wait_until("ctl's pipes are drained", Duration::from_secs(10), || {
            Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1
        });
        let take = |buf: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *buf.lock().unwrap());
        CtlOutput {
            status,
            stdout_bytes: take(&self.stdout),
            stderr: String::from_utf8_lossy(&take(&self.stderr)).into_owned(),
        }
    }
}

impl Drop for RunningCtl {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished `ctl` left behind.
pub struct CtlOutput {
    pub status: ExitStatus,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl CtlOutput {
    /// stdout as text (invalid UTF-8 would show as U+FFFD, which ctl should never print).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout_bytes).into_owned()
    }

    /// stdout's lines, sorted, for output whose host order is not defined.
    pub fn sorted_stdout_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.stdout().lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    /// Panics, showing everything, unless ctl exited with `code`.
    pub fn assert_code(&self, code: i32) -> &CtlOutput {
        assert_eq!(
            self.status.code(),
            Some(code),
            "ctl exit status: expected {code}, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout(),
            self.stderr
        );
        self
    }

    /// Panics, showing stdout and stderr, unless stdout contains `needle`.
    pub fn assert_stdout_has(&self, needle: &str) -> &CtlOutput {
        assert!(
            self.stdout().contains(needle),
            "ctl stdout: expected to contain {needle:?}, got:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr
        );
        self
    }

    /// Panics, showing stderr, unless stderr contains `needle`.
    pub fn assert_stderr_has(&self, needle: &str) -> &CtlOutput {
        assert!(
            self.stderr.contains(needle),
            "ctl stderr: expected to contain {needle:?}, got:\n{}",
            self.stderr
        );
        self
    }

    /// The `--json` objects, by host name; panics on a line that is not a JSON object.
    pub fn json_by_host(&self) -> HashMap<String, Value> {
        self.stdout()
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap_or_else(|err| {
                    panic!("not JSON ({err}): {line:?}\nstderr:\n{}", self.stderr)
                });
                let host = value["host"].as_str().expect("host is a string").to_owned();
                (host, value)
            })
            .collect()
    }
}

/// `host`'s object in `by_host`; panics with ctl's output if there is none.
pub fn json_of<'a>(
    out: &'a CtlOutput,
    by_host: &'a BTreeMap<String, Value>,
    host: &str,
) -> &'a Value {
    by_host.get(host).unwrap_or_else(|| {
        panic!(
            "no JSON object for {host}\nstdout:\n{}\nstderr:\n{}",
            out.stdout(),
            out.stderr
        )
    })
}

/// The `--json` objects by host name, in name order.
pub fn json_sorted(out: &CtlOutput) -> BTreeMap<String, Value> {
    out.json_by_host().into_iter().collect()
}

/// Copies the folder `from`, with everything in it, to `to` (created), e.g. to tamper with a
/// copy of a log folder and leave the original as it was.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|err| panic!("cannot create {}: {err}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|err| panic!("cannot list {}: {err}", from.display()));
    for entry in entries {
        let entry = entry.expect("can read a folder entry");
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("can stat a folder entry").is_dir() {
            copy_dir(&source, &target);
        } else {
            fs::copy(&source, &target).unwrap_or_else(|err| {
                panic!(
                    "cannot copy {} to {}: {err}",
                    source.display(),
                    target.display()
                )
            });
        }
    }
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("can bind");
    listener.local_addr().expect("bound")
}

/// Writes `bytes` to a fresh connection to `addr` and returns the stream.
pub fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).expect("can connect to the agent");
    stream.write_all(bytes).expect("can write to the agent");
    stream
}

/// A TCP relay to one address that can be told to go silent, or to hold back what the
/// client sends after its first bytes. After [`Relay::cut`] it keeps both connections open
/// but drops every byte, like a network path that died without a FIN or RST reaching either
/// end. A relay made by [`Relay::holding`] stops forwarding the client's bytes at a limit
/// until [`Relay::release`], so a test can act while the agent is surely mid-transfer.
pub struct Relay {
    addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    gate: Arc<Gate>,
}

/// How many of the client's bytes may pass before the relay holds the rest, and whether
/// the test has let them through.
struct Gate {
    limit: u64,
    released: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    /// Blocks until `passed + wanted` bytes may pass; returns how many of `wanted` may go now.
    fn admit(&self, passed: u64, wanted: usize) -> usize {
        let mut released = self.released.lock().unwrap();
        loop {
            if *released {
                return wanted;
            }
            let room = self.limit.saturating_sub(passed);
            if room > 0 {
                return wanted.min(usize::try_from(room).unwrap_or(usize::MAX));
            }
            released = self.opened.wait(released).unwrap();
        }
    }
}

impl Relay {
    /// Listens on 127.0.0.1 and relays the first connection it accepts to `target`.
    pub fn start(target: SocketAddr) -> Relay {
        Relay::holding(target, u64::MAX)
    }

    /// Like [`Relay::start`], but forwards only the first `limit` bytes the client sends
    /// until [`Relay::release`]; the agent's bytes to the client always pass.
    pub fn holding(target: SocketAddr, limit: u64) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("can bind");
        let addr = listener.local_addr().expect("bound");
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gate = Arc::new(Gate {
            limit,
            released: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
        });
        let (relay_cut, relay_gate) = (cut.clone(), gate.clone());
        thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = std::net::TcpStream::connect(target) else {
                return;
            };
            let pipes = [
                (client.try_clone(), server.try_clone(), Some(relay_gate)),
                (server.try_clone(), client.try_clone(), None),
            ];
            for (src, dst, gate) in pipes {
                let (Ok(src), Ok(dst)) = (src, dst) else {
                    return;
                };
                let cut = relay_cut.clone();
                thread::spawn(move || pump(src, dst, &cut, gate.as_deref()));
            }
            // Keep both ends open for as long as the relay threads run.
            let _keep = (client, server);
            thread::park();
        });
        Relay { addr, cut, gate }
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on, drop every byte in both directions.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets the client's held bytes, and all that follow, through.
    pub fn release(&self) {
        *self.gate.released.lock().unwrap() = true;
        self.gate.opened.notify_all();
    }
}

fn pump(
    mut src: std::net::TcpStream,
    mut dst: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
    gate: Option<&Gate>,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut passed = 0u64;
    loop {
        let wanted = buf.len();
        let admitted = gate.map_or(wanted, |gate| gate.admit(passed, wanted));
        let n = match src.read(&mut buf[..admitted]) {
            Ok(n @ 1..) => n,
            _ => return,
        };
        passed += n as u64;
        if !cut.load(std::sync::atomic::Ordering::SeqCst) && dst.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
