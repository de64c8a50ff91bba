//! What `ctl bootstrap` runs on a host over SSH: POSIX `sh` scripts, one per step, made
//! here with every value quoted, and the parser of what the probe prints.
//!
//! The scripts need nothing beyond what a Linux host has: `sh`, coreutils (`sha256sum`,
//! `ln`, `mv`, `df`), `setsid` (util-linux) for `--service none`, and `systemctl` for
//! `--service systemd`. The probe reports the tools that are missing, and the host is
//! refused before anything changes.
//!
//! Files land as they do from `install`: written beside their destination, then renamed
//! over it, so a host never has half a binary or half an authorized_keys. The folders
//! written (`/usr/local/bin`, `/etc/muster`, `/etc/systemd/system`, `/run/muster`) are
//! root's alone, so no other user can plant a link there between two steps.

use std::collections::BTreeMap;

/// Where the agent lives on a host. The shipped systemd unit names the same paths.
pub mod layout {
    pub const AGENT_BIN: &str = "/usr/local/bin/muster-agent";
    /// The binary the agent had before an upgrade, until the new one answers a ping.
    pub const AGENT_BIN_PREV: &str = "/usr/local/bin/muster-agent.prev";
    pub const CONFIG_DIR: &str = "/etc/muster";
    pub const HOST_KEY_PUB: &str = "/etc/muster/host_key.pub";
    pub const AUTHORIZED_KEYS: &str = "/etc/muster/authorized_keys";
    /// `MUSTER_LISTEN=ADDR:PORT`, read by the unit (`EnvironmentFile=`) and by the
    /// `--service none` start.
    pub const AGENT_ENV: &str = "/etc/muster/agent.env";
    pub const UNIT: &str = "/etc/systemd/system/muster-agent.service";
    pub const UNIT_NAME: &str = "muster-agent";
    /// `--service none`: the detached agent's process id.
    pub const PID_FILE: &str = "/run/muster/agent.pid";
}

use layout::*;

/// The shipped unit, installed as it is by `--service systemd`.
pub const UNIT_TEXT: &str = include_str!("../../../deploy/muster-agent.service");

/// How the agent is kept running on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// The shipped unit, enabled and started.
    Systemd,
    /// Started detached under `setsid`, with a pid file.
    None,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Systemd => "systemd",
            Service::None => "none",
        }
    }
}

/// `text` as one `sh` word: single-quoted, with each `'` written as `'\''`.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The agent's command line as the unit's `ExecStart=` gives it, so that both services
/// start the same agent.
fn exec_start() -> &'static str {
    UNIT_TEXT
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the shipped unit has an ExecStart line")
}

/// Shell functions every script but the probe starts with.
fn prelude() -> String {
    format!(
        r#"set -eu
umask 022
fail() {{ echo "$*" >&2; exit 1; }}
# put PATH MODE TEXT: TEXT becomes PATH whole or not at all.
put() {{ printf '%s' "$3" >"$1.new" && chmod "$2" "$1.new" && mv -f "$1.new" "$1"; }}
# ours PID: true if PID is a running muster agent (a stale pid file may name another).
ours() {{
  case "$1" in ''|*[!0-9]*) return 1 ;; esac
  case "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" in *muster-agent*) return 0 ;; esac
  return 1
}}
# stop_detached: stop the agent of --service none, if one runs (SIGTERM, then after 15 s
# SIGKILL: the agent gives its commands --kill-grace to end).
stop_detached() {{
  [ -f {pid} ] || return 0
  pid=$(cat {pid})
  if ours "$pid"; then
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null; do
      i=$((i + 1))
      if [ "$i" -ge 150 ]; then kill -9 "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
    done
  fi
  rm -f {pid}
}}
"#,
        pid = PID_FILE
    )
}

/// Prints what the host is and what of muster it has, one `name=value` per line (see
/// [`Facts`]). Changes nothing.
pub fn probe() -> String {
    format!(
        r#"set -u
say() {{ printf '%s=%s\n' "$1" "$2"; }}
sum() {{ if [ -f "$1" ]; then sha256sum "$1" 2>/dev/null | cut -c1-64; fi; }}
say probe 1
say kernel "$(uname -s 2>/dev/null)"
say arch "$(uname -m 2>/dev/null)"
say libc "$(getconf GNU_LIBC_VERSION 2>/dev/null)"
say uid "$(id -u)"
missing=""
for tool in sha256sum cut tr ln mv chmod mkdir df setsid; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
say missing "$missing"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  say systemd yes
else
  say systemd no
fi
d=/usr/local/bin
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
say free_kib "$(df -Pk "$d" 2>/dev/null | {{ read -r _; read -r _ _ _ avail _; echo "$avail"; }})"
say agent_sha256 "$(sum {bin})"
say keys_sha256 "$(sum {keys})"
say env_sha256 "$(sum {env})"
say unit_sha256 "$(sum {unit})"
running=no
if [ -f {pid} ]; then
  pid=$(cat {pid} 2>/dev/null)
  case "$pid" in ''|*[!0-9]*) ;; *)
    case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in *muster-agent*) running=none ;; esac ;;
  esac
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet {unit_name} 2>/dev/null; then
  running=systemd
fi
say running "$running"
say host_key "$(head -n 1 {host_key} 2>/dev/null)"
"#,
        bin = AGENT_BIN,
        keys = AUTHORIZED_KEYS,
        env = AGENT_ENV,
        unit = UNIT,
        pid = PID_FILE,
        unit_name = UNIT_NAME,
        host_key = HOST_KEY_PUB,
    )
}

/// What the install step is to change. Files left out are already right.
#[derive(Debug, Clone, Default)]
pub struct Install<'a> {
    /// The agent binary comes on the script's stdin; its SHA-256 (hex) is checked before
    /// it is renamed into place.
    pub binary_sha256: Option<&'a str>,
    pub authorized_keys: Option<&'a str>,
    pub agent_env: Option<&'a str>,
    /// Write the shipped unit (systemd only).
    pub unit: bool,
    /// Start the agent, or restart it when it runs: its binary, listen address or unit
    /// changed, or it is not running.
    pub restart: bool,
}

/// Installs what `install` lists, (re)starts the agent under `service`, waits for its host
/// key and prints it as `host_key=...`.
pub fn install(install: &Install, service: Service) -> String {
    let mut script = prelude();
    if let Some(sha256) = install.binary_sha256 {
        script.push_str(&format!(
            r#"mkdir -p /usr/local/bin
tmp=/usr/local/bin/.muster-agent.new
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" || fail "cannot write $tmp"
got=$(sha256sum "$tmp" | cut -c1-64)
[ "$got" = {sha} ] || fail "the agent binary arrived damaged: sha256 $got, sent {sha}"
chmod 0755 "$tmp"
if [ -f {bin} ]; then ln -f {bin} {prev}; fi
mv -f "$tmp" {bin}
trap - EXIT
echo binary=replaced
"#,
            sha = quote(sha256),
            bin = AGENT_BIN,
            prev = AGENT_BIN_PREV,
        ));
    }
    script.push_str(&format!("mkdir -p {CONFIG_DIR}\nchmod 0700 {CONFIG_DIR}\n"));
    if let Some(keys) = install.authorized_keys {
        script.push_str(&format!("put {AUTHORIZED_KEYS} 0600 {}\n", quote(keys)));
    }
    if let Some(env) = install.agent_env {
        script.push_str(&format!("put {AGENT_ENV} 0600 {}\n", quote(env)));
    }
    if install.unit {
        script.push_str(&format!("put {UNIT} 0644 {}\n", quote(UNIT_TEXT)));
    }
    if install.restart {
        script.push_str(&restart(service));
    }
    script.push_str(&wait_for_agent(service));
    script
}

/// Puts the previous binary back, restarts the agent and waits for it as `install` does.
pub fn roll_back(service: Service) -> String {
    format!(
        "{prelude}[ -f {prev} ] || fail \"no previous agent binary ({prev}) to roll back to\"\n\
         mv -f {prev} {bin}\n{restart}{wait}",
        prelude = prelude(),
        prev = AGENT_BIN_PREV,
        bin = AGENT_BIN,
        restart = restart(service),
        wait = wait_for_agent(service),
    )
}

/// Removes the binary kept for a rollback, once the new agent has answered.
pub fn commit() -> String {
    format!("rm -f {AGENT_BIN_PREV}\n")
}

/// Stops and removes the agent, its unit and `/etc/muster`; prints `removed=yes` or
/// `removed=no` (nothing was there). The agent's logs (`/var/log/muster`) and files
/// folder (`/var/lib/muster`) stay: they are the operator's records and data.
pub fn remove() -> String {
    format!(
        r#"{prelude}found=no
if [ -f {unit} ]; then
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now --quiet {unit_name} 2>/dev/null || true
  fi
  rm -f {unit}
  if command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload 2>/dev/null || true; fi
  found=yes
fi
if [ -f {pid} ]; then stop_detached; found=yes; fi
for f in {bin} {prev}; do
  if [ -e "$f" ]; then rm -f "$f"; found=yes; fi
done
if [ -d {config} ]; then rm -rf {config}; found=yes; fi
echo "removed=$found"
"#,
        prelude = prelude(),
        unit = UNIT,
        unit_name = UNIT_NAME,
        pid = PID_FILE,
        bin = AGENT_BIN,
        prev = AGENT_BIN_PREV,
        config = CONFIG_DIR,
    )
}

/// Stops the running agent (either service) and starts it under `service`.
fn restart(service: Service) -> String {
    match service {
        Service::Systemd => format!(
            "stop_detached\nsystemctl daemon-reload\nsystemctl enable --quiet {UNIT_NAME}\n\
             systemctl restart {UNIT_NAME}\n"
        ),
        // The subshell is not a process group leader, so setsid execs the agent in its
        // place: $! is the agent. Its output goes nowhere: it logs to /var/log/muster
        // (rotated, bounded by --log-max-bytes), which the wait below shows on failure.
        Service::None => format!(
            r#"if command -v systemctl >/dev/null 2>&1 && [ -f {unit} ]; then
  systemctl disable --now --quiet {unit_name} 2>/dev/null || true
fi
stop_detached
mkdir -p /run/muster /var/lib/muster/files /var/log/muster
chmod 0700 /var/log/muster
(
  set -a
  if [ -f {env} ]; then . {env}; fi
  set +a
  exec setsid {exec_start} </dev/null >/dev/null 2>&1
) &
echo "$!" >{pid}
"#,
            unit = UNIT,
            unit_name = UNIT_NAME,
            env = AGENT_ENV,
            exec_start = exec_start(),
            pid = PID_FILE,
        ),
    }
}

/// Waits up to 10 s for the agent to make (or find) its host key while it keeps running,
/// then prints the key as `host_key=...`. An agent that exits meanwhile fails the step,
/// with the end of its log.
fn wait_for_agent(service: Service) -> String {
    let alive = match service {
        Service::Systemd => format!("systemctl is-active --quiet {UNIT_NAME}"),
        Service::None => format!("ours \"$(cat {PID_FILE} 2>/dev/null)\""),
    };
    format!(
        r#"alive() {{ {alive}; }}
last_log() {{
  last=""
  for f in /var/log/muster/agent.log.*; do [ -f "$f" ] && last=$f; done
  if [ -n "$last" ]; then tail -n 3 "$last" >&2; fi
}}
i=0
while :; do
  if ! alive; then sleep 0.2; alive || {{ last_log; fail "the agent exited at start"; }}; fi
  if [ -s {host_key} ]; then break; fi
  i=$((i + 1))
  [ "$i" -lt 100 ] || fail "the agent made no host key ({host_key}) within 10 s"
  sleep 0.1
done
sleep 0.2
alive || {{ last_log; fail "the agent exited at start"; }}
echo "host_key=$(head -n 1 {host_key})"
"#,
        host_key = HOST_KEY_PUB,
    )
}

/// What the probe found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `uname -s`, e.g. `Linux`.
    pub kernel: String,
    /// `uname -m`, e.g. `x86_64`.
    pub arch: String,
    /// `getconf GNU_LIBC_VERSION`, e.g. `glibc 2.36`; empty without glibc.
    pub libc: String,
    /// The remote user's uid (after `sudo` with `--sudo`).
    pub uid: Option<u32>,
    /// Tools the scripts need that the host lacks.
    pub missing: Vec<String>,
    /// systemd is the running init and `systemctl` is there.
    pub systemd: bool,
    /// KiB free where the binary goes.
    pub free_kib: Option<u64>,
    /// SHA-256 (hex) of each file there now; `None` when it is missing.
    pub agent_sha256: Option<String>,
    pub keys_sha256: Option<String>,
    pub env_sha256: Option<String>,
    pub unit_sha256: Option<String>,
    /// Which service runs the agent now, if any.
    pub running: Option<Service>,
    /// The agent's public host key line, when it has made one.
    pub host_key: Option<String>,
}

/// Why the probe's output could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the host's answer to the probe is not what it prints: {0}")]
pub struct BadProbe(String);

impl Facts {
    /// Reads the probe's `name=value` lines from the line `probe=1` on; what comes before
    /// it (something a login shell's rc file printed) is skipped. Unknown names are
    /// ignored.
    ///
    /// # Errors
    /// There is no line `probe=1`: the host ran something else than the probe.
    pub fn parse(output: &str) -> Result<Facts, BadProbe> {
        let Some(start) = output.lines().position(|line| line == "probe=1") else {
            let first = output.lines().next().unwrap_or("nothing");
            return Err(BadProbe(format!("{first:?}")));
        };
        let values: BTreeMap<&str, &str> = output
            .lines()
            .skip(start)
            .filter_map(|line| line.split_once('='))
            .collect();
        let text = |name: &str| values.get(name).map(|value| value.trim().to_owned());
        let present = |name: &str| text(name).filter(|value| !value.is_empty());
        Ok(Facts {
            kernel: text("kernel").unwrap_or_default(),
            arch: text("arch").unwrap_or_default(),
            libc: text("libc").unwrap_or_default(),
            uid: text("uid").and_then(|uid| uid.parse().ok()),
            missing: text("missing")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            systemd: text("systemd").as_deref() == Some("yes"),
            free_kib: text("free_kib").and_then(|kib| kib.parse().ok()),
            agent_sha256: present("agent_sha256"),
            keys_sha256: present("keys_sha256"),
            env_sha256: present("env_sha256"),
            unit_sha256: present("unit_sha256"),
            running: match text("running").as_deref() {
                Some("systemd") => Some(Service::Systemd),
                Some("none") => Some(Service::None),
                _ => None,
            },
            host_key: present("host_key"),
        })
    }
}

/// The value of the last `name=...` line of a step's output.
pub fn value_of<'a>(output: &'a str, name: &str) -> Option<&'a str> {
    output
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_survives_any_quote() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn the_probe_output_is_read_and_a_stranger_is_caught() {
        let facts = Facts::parse(
            "probe=1\nkernel=Linux\narch=x86_64\nlibc=glibc 2.36\nuid=0\nmissing= setsid\n\
             systemd=no\nfree_kib=1024\nagent_sha256=\nkeys_sha256=ab\nrunning=none\n\
             host_key=ssh-ed25519 AAAA x\n",
        )
        .unwrap();
        assert_eq!(facts.arch, "x86_64");
        assert_eq!(facts.libc, "glibc 2.36");
        assert_eq!(facts.uid, Some(0));
        assert_eq!(facts.missing, ["setsid"]);
        assert_eq!(facts.free_kib, Some(1024));
        assert_eq!(facts.agent_sha256, None);
        assert_eq!(facts.keys_sha256.as_deref(), Some("ab"));
        assert_eq!(facts.running, Some(Service::None));
        assert_eq!(facts.host_key.as_deref(), Some("ssh-ed25519 AAAA x"));
        assert!(Facts::parse("Welcome\nuid=5\nprobe=1\n")
            .unwrap()
            .uid
            .is_none());
        assert!(Facts::parse("Welcome to host\n").is_err());
    }

    #[test]
    fn the_none_service_starts_what_the_unit_starts() {
        assert!(exec_start().starts_with(AGENT_BIN), "{}", exec_start());
        assert!(restart(Service::None).contains(exec_start()));
    }
}
