//! `ctl run` (and `ctl ping`) against real agents: which hosts are contacted, what is printed
//! and when, how hosts end (ok, failed, timeout, cancelled, unreachable, error) and the exit
//! status that follows.
//!
//! All agents share this machine, so a command tells its hosts apart by an environment
//! variable each agent gives its commands ([`ROLE`], through `--command-env`).

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::util::{
    closed_port_addr, is_process_alive, peak_rss_kib, read_pid_file, wait_until, Agent, Fleet,
    Relay,
};

/// The command environment variable a command can branch on.
const ROLE: &str = "MUSTER_E2E_ROLE";

/// A command that starts a long sleep in the background, records its pid in `pid_file`,
/// and waits for it: stopping it needs the whole process group, not just the shell.
fn background_sleep(pid_file: &std::path::Path) -> String {
    format!("sleep 300 & echo $! > '{}'; wait", pid_file.display())
}

/// One agent, `web1`, that escalates from SIGTERM to SIGKILL after 1 s, so the tests that
/// stop commands do not wait out the default grace.
fn fleet_with_quick_kill() -> (Fleet, Agent) {
    let fleet = Fleet::new();
    let web1 = fleet.agent_builder().flags(&["--kill-grace", "1"]).start();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    (fleet, web1)
}

fn assert_process_ends(pid: i32) {
    wait_until(
        &format!("the remote background process {pid} is gone"),
        Duration::from_secs(20),
        || !is_process_alive(pid),
    );
}

#[test]
fn host_in_two_selected_groups_is_contacted_once() {
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(
        &[("web1", web1.addr()), ("web2", web2.addr())],
        &[("web", &["web1"]), ("prod", &["web", "web2"])],
    );
    let counter = fleet.path("contacted");
    let command = format!("echo hit >> '{}'; echo done", counter.display());

    let out = fleet
        .ctl("run")
        .args(&["-g", "web,prod", &command])
        .output();

    out.assert_code(0);
    assert_eq!(out.sorted_stdout_lines(), ["web1: done", "web2: done"]);
    let hits = fs::read_to_string(&counter).unwrap();
    assert_eq!(hits, "hit\nhit\n", "one line per contacted host");
}

#[test]
fn a_target_expression_runs_on_exactly_the_hosts_it_names() {
    let fleet = Fleet::new();
    let agents: Vec<_> = (0..4).map(|_| fleet.agent()).collect();
    let names = ["web1", "web2", "db1", "db2"];
    let entries: Vec<_> = names
        .iter()
        .zip(&agents)
        .map(|(n, a)| (*n, a.addr()))
        .collect();
    fleet.write_inventory(
        &entries,
        &[
            ("web", &["web1", "web2"]),
            ("db", &["db1", "db2"]),
            ("prod", &["web1", "db1", "db2"]),
        ],
    );
    let run = |expression: &str| {
        let out = fleet
            .ctl("run")
            .args(&["-g", expression, "echo on"])
            .output();
        out.assert_code(0);
        out.sorted_stdout_lines()
    };
    // Tried: union, intersection, difference, a range, a regular expression, a file.
    assert_eq!(run("web:db:&prod:!db2"), ["db1: on", "web1: on"]);
    assert_eq!(run("!web"), ["db1: on", "db2: on"]);
    assert_eq!(run("web[1:2]:&~1$"), ["web1: on"]);
    let file = fleet.path("tonight");
    fs::write(&file, "# tonight's hosts\ndb\n!db1\nweb2\n").unwrap();
    assert_eq!(
        run(&format!("@{}", file.display())),
        ["db2: on", "web2: on"]
    );
    // `ctl hosts` shows the same selection without contacting anyone.
    let hosts = fleet
        .ctl("hosts")
        .args(&["-g", "web:db:&prod:!db2"])
        .output();
    hosts.assert_code(0);
    let listed: Vec<String> = hosts
        .stdout()
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(listed, ["web1", "db1"]);
}

#[test]
fn outdir_writes_each_hosts_streams_to_its_own_files() {
    let fleet = Fleet::new();
    let web1 = fleet.agent_builder().env("HOST", "web1").start();
    let web2 = fleet.agent_builder().env("HOST", "web2").start();
    fleet.write_inventory(&[("web1", web1.addr()), ("web2", web2.addr())], &[]);
    let outdir = fleet.path("out/today");
    // Each host prints 8 MiB on stdout (every byte must reach the file) and a line on
    // stderr; the folder does not exist yet.
    let cmd = "head -c 8388608 /dev/zero | tr '\\0' x; echo \"$HOST err\" >&2; exit 0";
    let out = fleet
        .ctl("run")
        .args(&[
            "-g",
            "all",
            "--outdir",
            outdir.to_str().unwrap(),
            "--json",
            cmd,
        ])
        .output();
    out.assert_code(0);
    for host in ["web1", "web2"] {
        let stdout = fs::read(outdir.join(format!("{host}.out"))).unwrap();
        assert_eq!(stdout.len(), 8 * 1024 * 1024, "{host}.out");
        assert!(stdout.iter().all(|&b| b == b'x'));
        let stderr = fs::read_to_string(outdir.join(format!("{host}.err"))).unwrap();
        assert_eq!(stderr, format!("{host} err\n"));
        assert_eq!(
            crate::util::mode_of(&outdir.join(format!("{host}.err"))),
            0o600
        );
    }
    // Tried: an --outdir that cannot be made (a file is in the way): exit 2, nothing run.
    let blocked = fleet.path("blocked");
    fs::write(&blocked, "").unwrap();
    let out = fleet
        .ctl("run")
        .args(&[
            "-g",
            "all",
            "--outdir",
            blocked.join("x").to_str().unwrap(),
            "true",
        ])
        .output();
    out.assert_code(2);
    assert!(out.stderr.contains("--outdir"), "{}", out.stderr);
}

#[test]
fn env_and_chdir_reach_the_command_and_a_missing_folder_runs_nothing() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    let dir = fleet.path("srv app");
    fs::create_dir(&dir).unwrap();
    let out = fleet
        .ctl("run")
        .args(&["-g", "all", "-e", "DEPLOY=blue green", "-e", "LANG=C", "-C"])
        .arg_path(&dir)
        .args(&["echo \"$DEPLOY|$LANG|$(pwd)\""])
        .output();
    out.assert_code(0);
    assert_eq!(
        out.stdout(),
        format!("web1: blue green|C|{}\n", dir.display())
    );

    // Tried: a folder that does not exist; the command must not run anywhere.
    let marker = fleet.path("ran");
    let out = fleet
        .ctl("run")
        .args(&["-g", "all", "--json", "-C", "/nonexistent/muster"])
        .args(&[&format!("touch '{}'", marker.display())])
        .output();
    out.assert_code(1);
    let line = &out.json_by_host()["web1"];
    assert_eq!(line["status"], "error", "{line}");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("cannot start the command in /nonexistent/muster"),
        "{line}"
    );
    assert!(!marker.exists(), "the command ran without its folder");

    // Tried: names a shell cannot hold, and the op id the agent sets: exit 2, nothing run.
    for bad in ["1BAD=x", "A-B=x", "MUSTER_OP_ID=forged", "NOVALUE"] {
        fleet
            .ctl("run")
            .args(&["-g", "all", "-e", bad, "true"])
            .output()
            .assert_code(2);
    }
}

#[test]
fn output_is_streamed_while_the_command_runs() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);

    let mut ctl = fleet
        .ctl("run")
        .args(&["-H", "web1", "echo first; sleep 30; echo second"])
        .spawn();

    let line = ctl.wait_for_line(Duration::from_secs(20), |line| line.starts_with("web1:"));
    assert_eq!(line, "web1: first");
    assert!(
        ctl.is_running(),
        "the first line must arrive before the command ends"
    );
    ctl.interrupt();
    let out = ctl.wait(Duration::from_secs(30));
    out.assert_code(130);
    assert!(!out.stdout().contains("second"), "got:\n{}", out.stdout());
}

#[test]
fn all_hosts_ok_exits_0_with_a_summary_and_no_notes() {
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(
        &[("web1", web1.addr()), ("web2", web2.addr())],
        &[("web", &["web1", "web2"])],
    );

    let out = fleet.ctl("run").args(&["-g", "web", "echo", "hi"]).output();

    out.assert_code(0);
    assert_eq!(out.sorted_stdout_lines(), ["web1: hi", "web2: hi"]);
    let summary = out.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("ctl: 2 hosts in ") && summary.ends_with("s: 2 ok"),
        "summary: expected `ctl: 2 hosts in X.XXs: 2 ok`, got stderr:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not ok"), "stderr:\n{}", out.stderr);
}

/// ctl's peak resident set while a command runs on ten hosts, operation log and diagnostics
/// file included, in a debug build: measured at 9.0-9.2 MiB before TLS, 12.0 MiB with it
/// (rustls's and ring's code and tables, about 2 MiB whatever the number of hosts); 12.4-12.7
/// MiB before TLS while the diagnostics file preallocated a 128,000-line queue. Memory at
/// scale is a benchmark figure; this bound catches a fixed cost that creeps into every run.
const RUN_RSS_BOUND_KIB: u64 = 14 * 1024;

#[test]
fn ctl_runs_a_command_on_ten_hosts_in_little_memory() {
    // Tried: `ctl run` of a command that prints and then waits on ten agents; once every
    // host's line has arrived (all ten sessions open), read ctl's peak RSS, then let it end.
    let fleet = Fleet::new();
    let agents: Vec<Agent> = (0..10).map(|_| fleet.agent()).collect();
    let names: Vec<String> = (1..=agents.len()).map(|i| format!("web{i}")).collect();
    let hosts: Vec<(&str, std::net::SocketAddr)> = names
        .iter()
        .zip(&agents)
        .map(|(name, agent)| (name.as_str(), agent.addr()))
        .collect();
    fleet.write_inventory(&hosts, &[]);

    let mut ctl = fleet
        .ctl("run")
        .args(&["-g", "all", "echo up; sleep 1"])
        .spawn();
    for _ in &names {
        ctl.wait_for_line(Duration::from_secs(20), |line| line.ends_with(": up"));
    }
    let peak_kib = peak_rss_kib(ctl.pid().as_raw()).expect("ctl is still running");
    eprintln!("ctl peak RSS on ten hosts: {peak_kib} KiB");
    ctl.wait(Duration::from_secs(20)).assert_code(0);

    assert!(
        peak_kib < RUN_RSS_BOUND_KIB,
        "ctl peaked at {peak_kib} KiB on ten hosts, expected below {RUN_RSS_BOUND_KIB} KiB"
    );
}

#[test]
fn a_failing_and_an_unreachable_host_exit_1_and_are_named() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    let web2 = fleet.agent_builder().env(ROLE, "bad").start();
    fleet.write_inventory(
        &[
            ("web1", web1.addr()),
            ("web2", web2.addr()),
            ("db1", closed_port_addr()),
        ],
        &[],
    );
    let command = format!("echo out; echo oops >&2; [ \"${ROLE}\" = bad ] && exit 3; true");

    let out = fleet.ctl("run").args(&["-g", "all", &command]).output();

    out.assert_code(1);
    assert_eq!(out.sorted_stdout_lines(), ["web1: out", "web2: out"]);
    out.assert_stderr_has("web1: oops\n")
        .assert_stderr_has("web2: oops\n")
        .assert_stderr_has("ctl: web2: failed: exited with code 3\n")
        .assert_stderr_has("ctl: db1: unreachable: connect to 127.0.0.1:")
        .assert_stderr_has("ctl: not ok: web2,db1\n");
    let summary = out
        .stderr
        .lines()
        .find(|line| line.starts_with("ctl: 3 hosts in "))
        .unwrap_or_else(|| panic!("no summary line in stderr:\n{}", out.stderr));
    assert!(
        summary.ends_with("s: 1 ok, 1 failed, 1 unreachable"),
        "summary: got {summary:?}"
    );
}

#[test]
fn json_gives_one_object_per_host_with_exactly_the_documented_keys() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    let web2 = fleet.agent_builder().env(ROLE, "bad").start();
    fleet.write_inventory(
        &[
            ("web1", web1.addr()),
            ("web2", web2.addr()),
            ("db1", closed_port_addr()),
        ],
        &[],
    );
    let command = format!("echo out; echo err >&2; [ \"${ROLE}\" = bad ] && exit 3; true");

    let out = fleet
        .ctl("run")
        .args(&["--json", "-g", "all", &command])
        .output();

    out.assert_code(1);
    let keys = [
        "host",
        "status",
        "exit_code",
        "stdout",
        "stderr",
        "duration_ms",
        "error",
        "stdout_cut",
        "stderr_cut",
    ];
    for line in out.stdout().lines() {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap();
        let got: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(got, BTreeSet::from(keys), "keys of {line}");
        // The documented order too: each key appears after the one before it.
        let positions: Vec<usize> = keys
            .iter()
            .map(|key| line.find(&format!("\"{key}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "key order in {line}");
    }
    let by_host = out.json_by_host();
    assert_eq!(by_host.len(), 3, "stdout:\n{}", out.stdout());
    let web1 = &by_host["web1"];
    assert_eq!(
        (&web1["status"], &web1["exit_code"], &web1["error"]),
        (&"ok".into(), &0.into(), &serde_json::Value::Null)
    );
    assert_eq!(
        (&web1["stdout"], &web1["stderr"]),
        (&"out\n".into(), &"err\n".into())
    );
    assert!(web1["duration_ms"].is_u64());
    let web2 = &by_host["web2"];
    assert_eq!(
        (&web2["status"], &web2["exit_code"]),
        (&"failed".into(), &3.into())
    );
    let db1 = &by_host["db1"];
    assert_eq!(
        (&db1["status"], &db1["exit_code"]),
        (&"unreachable".into(), &serde_json::Value::Null)
    );
    assert!(db1["error"].is_string());
}

#[test]
fn gather_prints_each_distinct_output_once_under_its_hosts() {
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    let web3 = fleet.agent_builder().env(ROLE, "other").start();
    fleet.write_inventory(
        &[
            ("web1", web1.addr()),
            ("web2", web2.addr()),
            ("web3", web3.addr()),
        ],
        &[("web", &["web1", "web2", "web3"])],
    );

    let out = fleet
        .ctl("run")
        .args(&["--gather", "-g", "web", &format!("echo ${{{ROLE}:-same}}")])
        .output();

    out.assert_code(0);
    let rule = "-".repeat(15);
    let expected =
        format!("{rule}\nweb1,web2 (2)\n{rule}\nsame\n{rule}\nweb3 (1)\n{rule}\nother\n");
    assert_eq!(out.stdout(), expected, "stderr:\n{}", out.stderr);
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let (fleet, _web1) = fleet_with_quick_kill(); // kept alive until the test ends
    let pid_file = fleet.path("sleep.pid");

    let started = Instant::now();
    let out = fleet
        .ctl("run")
        .args(&[
            "--json",
            "-t",
            "1",
            "-H",
            "web1",
            &background_sleep(&pid_file),
        ])
        .output();

    out.assert_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "timeout", "got {web1}");
    assert_process_ends(read_pid_file(&pid_file));
}

#[test]
fn ctrl_c_cancels_remote_commands_and_exits_130() {
    let (fleet, _web1) = fleet_with_quick_kill(); // kept alive until the test ends
    let pid_file = fleet.path("sleep.pid");

    let ctl = fleet
        .ctl("run")
        .args(&["--json", "-H", "web1", &background_sleep(&pid_file)])
        .spawn();
    let pid = read_pid_file(&pid_file);
    ctl.interrupt();
    let out = ctl.wait(Duration::from_secs(30));

    out.assert_code(130);
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "cancelled", "got {web1}");
    assert_process_ends(pid);
    let records = fleet.audit_records();
    let end = records.last().expect("an end record");
    assert_eq!(end["event"], "end");
    assert_eq!(end["interrupted"], true, "end record: {end}");
    assert_eq!(
        end["results"][0]["status"], "cancelled",
        "end record: {end}"
    );
}

#[test]
fn invalid_utf8_output_is_shown_lossily() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", r"printf 'a\377b\n'; printf 'c\376\n' >&2"])
        .output();

    out.assert_code(0);
    let stdout = String::from_utf8(out.stdout_bytes.clone()).expect("ctl prints UTF-8");
    assert_eq!(stdout, "web1: a\u{fffd}b\n");
    out.assert_stderr_has("web1: c\u{fffd}\n");
}

#[test]
fn closed_port_is_unreachable_and_the_other_host_still_runs() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr()), ("gone", closed_port_addr())], &[]);

    let out = fleet
        .ctl("run")
        .args(&["--json", "-g", "all", "echo", "up"])
        .output();

    out.assert_code(1);
    let by_host = out.json_by_host();
    assert_eq!(by_host["web1"]["status"], "ok");
    assert_eq!(by_host["web1"]["stdout"], "up\n");
    assert_eq!(by_host["gone"]["status"], "unreachable");
}

#[test]
fn a_host_that_accepts_and_never_speaks_ends_within_the_connect_timeout() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    // The kernel completes the TCP handshake from the listen queue; nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    fleet.write_inventory(&[("web1", web1.addr()), ("silent", silent_addr)], &[]);

    let started = Instant::now();
    let out = fleet
        .ctl("run")
        .args(&["--json", "--connect-timeout", "1", "-g", "all", "true"])
        .output();

    out.assert_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let by_host = out.json_by_host();
    assert_eq!(by_host["web1"]["status"], "ok");
    let silent_status = by_host["silent"]["status"].as_str().unwrap();
    assert!(
        ["error", "unreachable"].contains(&silent_status),
        "silent host: {}",
        by_host["silent"]
    );
    assert!(by_host["silent"]["duration_ms"].as_u64().unwrap() < 5_000);
    drop(silent);
}

#[test]
fn ping_reports_every_agent_with_its_version() {
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(
        &[("web1", web1.addr()), ("web2", web2.addr())],
        &[("web", &["web1", "web2"])],
    );

    let out = fleet.ctl("ping").args(&["-g", "web"]).output();

    out.assert_code(0);
    let lines: Vec<String> = out.stdout().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "stdout:\n{}", out.stdout());
    for (line, (name, agent)) in lines.iter().zip([("web1", &web1), ("web2", &web2)]) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 7, "line {line:?}");
        assert_eq!(words[..3], [name, &agent.addr().to_string(), "ok"]);
        assert!(words[3].parse::<f64>().is_ok(), "latency in {line:?}");
        assert_eq!(words[4..], ["ms", "agent", "0.1.0"]);
    }
}

#[test]
fn timeout_kills_group_members_that_ignore_sigterm() {
    let (fleet, _web1) = fleet_with_quick_kill(); // kept alive until the test ends
    let pid_file = fleet.path("stubborn.pid");
    // The shell dies of SIGTERM at once; the member ignores it and does not hold the
    // output pipes, so only the SIGKILL after the grace period can end it.
    let command = format!(
        "sh -c \"trap '' TERM; exec sleep 300\" >/dev/null 2>&1 & echo $! > '{}'; wait",
        pid_file.display()
    );

    let out = fleet
        .ctl("run")
        .args(&["--json", "-t", "1", "-H", "web1", &command])
        .output();

    out.assert_code(1);
    assert_eq!(out.json_by_host()["web1"]["status"], "timeout");
    assert_process_ends(read_pid_file(&pid_file));
}

#[test]
fn a_command_killed_by_a_signal_is_failed_without_an_exit_code() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);

    let out = fleet
        .ctl("run")
        .args(&["--json", "-H", "web1", "kill -9 $$"])
        .output();

    out.assert_code(1);
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "failed", "got {web1}");
    assert_eq!(web1["exit_code"], serde_json::Value::Null, "got {web1}");
    assert_eq!(web1["error"], "killed by signal 9", "got {web1}");
}

#[test]
fn long_output_arrives_whole_and_in_order() {
    const LINES: usize = 100_000;
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", &format!("seq 1 {LINES}; printf 'no newline'")])
        .output();

    out.assert_code(0);
    let stdout = out.stdout();
    let mut lines = stdout.lines();
    for n in 1..=LINES {
        assert_eq!(lines.next(), Some(format!("web1: {n}").as_str()));
    }
    assert_eq!(lines.next(), Some("web1: no newline"));
    assert_eq!(lines.next(), None);
}

#[test]
fn a_vanished_controller_gets_its_command_killed() {
    let (fleet, _web1) = fleet_with_quick_kill(); // kept alive until the test ends
    let pid_file = fleet.path("sleep.pid");

    let ctl = fleet
        .ctl("run")
        .args(&["-H", "web1", &background_sleep(&pid_file)])
        .spawn();
    let pid = read_pid_file(&pid_file);
    nix::sys::signal::kill(ctl.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();

    assert_process_ends(pid);
    drop(ctl);
}

#[test]
fn a_closed_stdout_does_not_stop_the_operation() {
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(&[("web1", web1.addr()), ("web2", web2.addr())], &[]);
    let done = fleet.path("done");
    let command = format!("seq 1 50000; sleep 0.2; echo >> '{}'", done.display());

    // `ctl run ... | true`: stdout is closed while the hosts still print.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = fleet
        .ctl("run")
        .args(&["-g", "all", &command])
        .with_stdout(writer)
        .output();

    out.assert_code(0);
    assert_eq!(fs::read_to_string(&done).unwrap(), "\n\n");
    let records = fleet.audit_records();
    assert_eq!(records.last().unwrap()["event"], "end");
}

#[test]
fn an_unusable_log_folder_exits_2_and_runs_nothing() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    // A file where the log folder should be.
    fs::write(fleet.path("logs"), "not a folder").unwrap();
    let marker = fleet.path("marker");

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", &format!("touch '{}'", marker.display())])
        .output();

    out.assert_code(2).assert_stderr_has("logs");
    assert!(!marker.exists(), "the command ran without an operation log");
}

#[test]
fn an_agent_stopped_mid_command_ends_the_host() {
    let (fleet, web1) = fleet_with_quick_kill();
    let pid_file = fleet.path("sleep.pid");

    let ctl = fleet
        .ctl("run")
        .args(&["--json", "-H", "web1", &background_sleep(&pid_file)])
        .spawn();
    let pid = read_pid_file(&pid_file);
    web1.terminate();
    let out = ctl.wait(Duration::from_secs(30));

    out.assert_code(1);
    // An agent that shuts down stops its commands; that is not an operator's cancel, so the
    // host is `error` and the reason says who stopped it.
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "error", "got {web1}");
    assert_eq!(
        web1["error"], "the agent shut down; process group killed",
        "got {web1}"
    );
    assert_process_ends(pid);
}

#[test]
fn a_path_that_goes_silent_mid_command_ends_the_host_after_the_silence_timeout() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    let relay = Relay::start(web1.addr());
    // The relay only forwards bytes: the key ctl meets behind it is web1's.
    let key = fleet.host_keys().of(web1.addr()).expect("web1's host key");
    fleet.host_keys().record(relay.addr(), key);
    fleet.write_inventory(&[("web1", relay.addr())], &[]);

    // Tried: the path to the agent loses every byte both ways, without a FIN or RST, while
    // a command runs. The agent's `exit` can never arrive and `-t` alone cannot help; the
    // missing heartbeats must end the host on ctl's side.
    let mut ctl = fleet
        .ctl("run")
        .args(&[
            "--silence-timeout",
            "6",
            "-H",
            "web1",
            "echo first; sleep 300",
        ])
        .spawn();
    // Cut once ctl has printed the first line, so we can see that what arrived is kept.
    ctl.wait_for_line(Duration::from_secs(20), |line| line == "web1: first");
    relay.cut();

    let out = ctl.wait(Duration::from_secs(30));
    out.assert_code(1);
    assert_eq!(out.stdout(), "web1: first\n");
    out.assert_stderr_has("not even a heartbeat");
    let end = fleet.audit_records().pop().expect("the log has records");
    let web1 = &end["results"][0];
    assert_eq!(web1["status"], "error", "got {end}");
    let error = web1["error"].as_str().unwrap_or_default();
    assert!(error.contains("not even a heartbeat"), "got {end}");
    assert_eq!(web1["stdout_bytes"], 6, "what arrived is counted: {end}");
}
