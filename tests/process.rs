//! The agent and ctl as processes on their hosts: what a signal does to the agent and its
//! commands, what a command inherits from the agent (environment variables, open
//! descriptors), the modes of the files and folders both write their logs to, and how ctl
//! shows control characters that hosts print.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{mode_of, text, wait_until, Agent, AgentBuilder, Fleet};

/// A fleet of one host, `web1`, whose agent `configure` sets up before it starts.
fn fleet_of_web1(configure: impl FnOnce(&Fleet, AgentBuilder) -> AgentBuilder) -> (Fleet, Agent) {
    let fleet = Fleet::new();
    let web1 = configure(&fleet, fleet.agent_builder()).start();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    (fleet, web1)
}

#[test]
fn sighup_is_logged_and_the_running_command_finishes() {
    // Tried: SIGHUP to the agent while `ctl run` waits on a command that finishes only
    // when told to (a file appears). The README says the agent logs the signal and keeps
    // serving; the command runs to its own end and the host is ok.
    let (fleet, mut web1) = fleet_of_web1(|_, agent| agent);
    let go = fleet.path("go");
    let command = format!(
        "echo started; while [ ! -e '{}' ]; do sleep 0.05; done; echo finished",
        go.display()
    );
    let mut ctl = fleet.ctl("run").args(&["-H", "web1", &command]).spawn();
    ctl.wait_for_line(Duration::from_secs(20), |line| line == "web1: started");

    web1.hang_up();
    wait_until("the agent logs the SIGHUP", Duration::from_secs(20), || {
        web1.stderr().contains("SIGHUP")
    });
    web1.assert_running();
    std::fs::write(&go, "").unwrap();
    let out = ctl.wait(Duration::from_secs(30));

    out.assert_code(0);
    assert_eq!(out.stdout(), "web1: started\nweb1: finished\n");
    assert!(
        web1.stderr().contains("signal ignored"),
        "agent stderr:\n{}",
        web1.stderr()
    );
    web1.assert_running();
    let again = fleet
        .ctl("run")
        .args(&["-H", "web1", "echo again"])
        .output();
    again.assert_code(0);
    assert_eq!(again.stdout(), "web1: again\n");
}

/// The one file in `dir` whose name starts with `prefix`.
fn file_starting_with(dir: &Path, prefix: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
        })
}

#[test]
fn logs_and_kept_output_are_readable_by_their_owner_only() {
    // Tried: a `ctl run` into a log folder that does not exist yet, against an agent whose
    // --log-dir does not exist yet either (two levels deep), under the test's usual umask;
    // a SIGHUP makes the agent write a line to its file.
    let (fleet, web1) = fleet_of_web1(|fleet, agent| {
        agent.flags(&["--log-dir", text(&fleet.path("var/agent-logs"))])
    });
    let agent_logs = fleet.path("var/agent-logs");

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", "echo secret; echo secret >&2"])
        .output();
    out.assert_code(0);
    web1.hang_up();
    let mut agent_log = None;
    wait_until(
        "the agent writes its log file",
        Duration::from_secs(20),
        || {
            agent_log = file_starting_with(&agent_logs, "agent.log.");
            agent_log.is_some()
        },
    );

    let logs = fleet.log_dir();
    let op_id = fleet.audit_records()[0]["op_id"]
        .as_str()
        .expect("op_id is text")
        .to_owned();
    let op_output = logs.join("output").join(&op_id);
    let ctl_log = file_starting_with(&logs, "ctl.log.").expect("ctl writes ctl.log.*");
    let got: Vec<(String, String)> = [
        logs.clone(),
        logs.join("audit.jsonl"),
        logs.join("audit.lock"),
        ctl_log,
        logs.join("output"),
        op_output.clone(),
        op_output.join("web1.stdout"),
        op_output.join("web1.stderr"),
        agent_logs.parent().expect("nested").to_owned(),
        agent_logs.clone(),
        agent_log.expect("found above"),
    ]
    .into_iter()
    .map(|path| {
        (
            path.display().to_string(),
            format!("{:04o}", mode_of(&path)),
        )
    })
    .collect();
    let want: Vec<(String, String)> = got
        .iter()
        .map(|(path, _)| {
            let is_dir = Path::new(path).is_dir();
            let mode = if is_dir { "0700" } else { "0600" };
            (path.clone(), mode.to_owned())
        })
        .collect();
    assert_eq!(got, want, "modes of the log files and folders");
}

/// The `NAME=VALUE` lines `web1` printed, by name.
fn env_of_web1(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("web1: "))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn commands_get_the_documented_environment_not_the_agents() {
    // Tried: an agent whose own environment holds a secret and a PATH of its own, with one
    // --command-env; its command prints its whole environment.
    let (fleet, _web1) = fleet_of_web1(|_, agent| {
        agent
            .daemon_env("MUSTER_E2E_SECRET", "hunter2")
            .daemon_env("PATH", "/nonexistent/bin:/usr/bin:/bin")
            .env("MUSTER_E2E_ROLE", "web")
    });

    let out = fleet.ctl("run").args(&["-H", "web1", "env"]).output();

    out.assert_code(0);
    let env = env_of_web1(&out.stdout());
    assert!(
        !out.stdout().contains("hunter2"),
        "the agent's environment reached the command:\n{}",
        out.stdout()
    );
    let op_id = fleet.audit_records()[0]["op_id"].clone();
    assert_eq!(env.get("MUSTER_OP_ID").map(String::as_str), op_id.as_str());
    assert_eq!(
        env["PATH"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(env["SHELL"], "/bin/sh");
    assert_eq!(env["MUSTER_E2E_ROLE"], "web");
    assert!(env.contains_key("HOME"), "{env:?}");
    // PWD, SHLVL and _ are the shell's own (which depends on what `sh` is); LANG and
    // LC_ALL pass on only when the test's environment (and so the agent's) has them.
    let allowed = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LC_ALL",
        "MUSTER_OP_ID",
        "MUSTER_E2E_ROLE",
        "PWD",
        "SHLVL",
        "_",
    ];
    let unexpected: Vec<&String> = env
        .keys()
        .filter(|name| !allowed.contains(&name.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected variables {unexpected:?} in {env:?}"
    );
}

#[test]
fn commands_get_no_descriptor_but_0_1_2() {
    // Tried: an agent started by a shell that leaves descriptors 7 and 9 open (not
    // close-on-exec), serving a connection (its socket and listener are open too); the
    // command lists its own descriptors. `ls` itself opens the folder it lists, as 3.
    let leaky_shell = [
        "sh",
        "-c",
        "exec 7</dev/null 9</dev/null; exec \"$0\" \"$@\"",
    ];
    let (fleet, _web1) = fleet_of_web1(|_, agent| agent.wrapped_in(&leaky_shell));

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", "ls /proc/self/fd"])
        .output();

    out.assert_code(0);
    assert_eq!(
        out.sorted_stdout_lines(),
        ["web1: 0", "web1: 1", "web1: 2", "web1: 3"],
        "the command's descriptors"
    );
}

/// A remote command (a script in the fleet's folder, to keep quotes out of command lines)
/// that retitles the terminal and overwrites its own line on stdout, and clears the screen
/// on stderr.
fn forging_command(fleet: &Fleet) -> String {
    let script = fleet.path("forge.sh");
    fs::write(
        &script,
        "printf 'a\\033]0;pwned\\007b\\rweb2: fake\\n'; printf 'e\\033[2Jx\\n' >&2\n",
    )
    .unwrap();
    format!("sh {}", text(&script))
}

/// `ctl ARGS...` in the fleet's folder with its stdout and stderr on a pseudo-terminal
/// (through util-linux's `script`), without colours; what the terminal received, with each newline made
/// `\r\n` by the terminal turned back into `\n`, comes back as the output's stdout.
fn ctl_on_a_terminal(fleet: &Fleet, args: &[&str]) -> crate::util::CtlOutput {
    // `script -c` takes one command line: quote every argument (none holds a quote).
    let wrapper = [
        "sh",
        "-c",
        "exec script -qefc \"$(printf \"'%s' \" \"$0\" \"$@\")\" /dev/null",
    ];
    // NO_COLOR: ctl's own colours would be escape sequences too; every one seen must be a
    // host's.
    let mut out = fleet
        .ctl_wrapped_in(&wrapper)
        .args(args)
        .env("NO_COLOR", "1")
        .output();
    out.stdout_bytes = out.stdout().replace("\r\n", "\n").into_bytes();
    out
}

/// `ctl run ARGS...` on the fleet's inventory and log folder, on a pseudo-terminal.
fn ctl_run_on_a_terminal(fleet: &Fleet, args: &[&str]) -> crate::util::CtlOutput {
    let inventory = fleet.path("inventory.yaml");
    let logs = fleet.log_dir();
    let mut all = vec!["run", "-i", text(&inventory), "--log-dir", text(&logs)];
    all.extend_from_slice(args);
    ctl_on_a_terminal(fleet, &all)
}

#[test]
fn on_a_terminal_control_characters_from_hosts_are_shown_escaped() {
    // Tried: a host that retitles the terminal and returns to the start of its line to
    // print a fake `web2:` line, and clears the screen from stderr, with ctl on a terminal.
    let (fleet, _web1) = fleet_of_web1(|_, agent| agent);
    let command = forging_command(&fleet);

    let out = ctl_run_on_a_terminal(&fleet, &["-H", "web1", &command]);

    out.assert_code(0);
    let shown = out.stdout();
    assert!(
        shown.contains("web1: a\\x1b]0;pwned\\x07b\\rweb2: fake\n"),
        "got:\n{shown}"
    );
    assert!(shown.contains("web1: e\\x1b[2Jx\n"), "got:\n{shown}");
    assert!(
        !shown.contains(['\x1b', '\x07', '\r']),
        "a raw control character reached the terminal: {shown:?}"
    );

    // The same output kept with the operation log, shown by `ctl log show` on a terminal.
    let op_id = fleet.audit_records()[0]["op_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let show = ctl_on_a_terminal(&fleet, &["log", "show", &op_id]);
    show.assert_code(0);
    let shown = show.stdout();
    assert!(
        shown.contains("\na\\x1b]0;pwned\\x07b\\rweb2: fake\n"),
        "got:\n{shown}"
    );
    assert!(
        !shown.contains(['\x1b', '\x07', '\r']),
        "a raw control character reached the terminal: {shown:?}"
    );
}

#[test]
fn raw_or_a_pipe_keeps_the_bytes_hosts_print() {
    // Tried: the same host output with --raw on a terminal, and without it into pipes.
    let (fleet, _web1) = fleet_of_web1(|_, agent| agent);
    let command = forging_command(&fleet);

    let on_terminal = ctl_run_on_a_terminal(&fleet, &["--raw", "-H", "web1", &command]);
    let piped = fleet.ctl("run").args(&["-H", "web1", &command]).output();

    on_terminal.assert_code(0);
    assert!(
        on_terminal
            .stdout()
            .contains("web1: a\x1b]0;pwned\x07b\rweb2: fake\n"),
        "got: {:?}",
        on_terminal.stdout()
    );
    piped.assert_code(0);
    assert_eq!(piped.stdout(), "web1: a\x1b]0;pwned\x07b\rweb2: fake\n");
    piped.assert_stderr_has("web1: e\x1b[2Jx\n");
}
