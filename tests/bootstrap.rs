//! `ctl bootstrap` against fake hosts that are real sshd processes (see `sshd`), with the
//! real agent binary installed and started on them: first install, a run again that
//! changes nothing, upgrades that work and one rolled back, removal, and hosts that cannot
//! take the agent (refused SSH key, no space, wrong architecture or glibc). Each test says
//! what it tried, and checks that what should not change did not.

use std::fs;

use serde_json::Value;

use crate::sshd::{ssh_flags, SshHost, SshHostOptions};
use crate::util::{agent_bin, heavy_test, sha256_file, write_identity, CtlOutput, Fleet};

/// The fleet's inventory for `hosts`, with its identity.
fn write_inventory(fleet: &Fleet, hosts: &[&SshHost]) {
    let mut yaml = String::from("defaults:\n  identity: keys/operator\nhosts:\n");
    for host in hosts {
        yaml.push_str(&host.inventory_entry());
    }
    fleet.write_inventory_text(&yaml);
}

/// `ctl bootstrap -g all --json` with the fake hosts' ssh settings and `extra` flags.
fn bootstrap(fleet: &Fleet, extra: &[&str]) -> CtlOutput {
    let ssh = ssh_flags(fleet);
    let mut args: Vec<&str> = vec![
        "-g",
        "all",
        "--json",
        "--service",
        "none",
        "--agent-address",
        "inventory",
    ];
    args.extend(ssh.iter().map(String::as_str));
    args.extend(extra);
    fleet.ctl("bootstrap").args(&args).output()
}

/// The `--json` line of each host, by name.
fn by_host(out: &CtlOutput) -> std::collections::HashMap<String, Value> {
    out.json_by_host()
}

fn known_hosts(fleet: &Fleet) -> String {
    fs::read_to_string(fleet.path("known_hosts")).unwrap_or_default()
}

/// Everything below a host's private folders, with each file's SHA-256: what "nothing
/// changed" is checked against.
fn host_state(host: &SshHost) -> Vec<(String, String)> {
    let mut state = Vec::new();
    for dir in ["/usr/local/bin", "/etc/muster"] {
        let root = host.path(dir);
        let mut entries: Vec<_> = fs::read_dir(&root)
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for path in entries {
            let sum = match path.is_file() {
                true => sha256_file(&path),
                false => "dir".to_owned(),
            };
            state.push((path.display().to_string(), sum));
        }
    }
    state
}

#[test]
fn first_install_trusts_the_agents_then_a_second_run_changes_nothing() {
    let _alone = heavy_test();
    let fleet = Fleet::new();
    let hosts = [
        SshHost::start(&fleet, "web1", SshHostOptions::default()),
        SshHost::start(&fleet, "web2", SshHostOptions::default()),
    ];
    write_inventory(&fleet, &hosts.iter().collect::<Vec<_>>());

    // Dry run first: it says what it would do and changes nothing anywhere.
    let out = bootstrap(&fleet, &["--dry-run"]);
    out.assert_code(0);
    for host in &hosts {
        let line = &by_host(&out)[&host.name];
        assert_eq!(line["status"], "ok", "{line}");
        let changes = line["changes"].to_string();
        assert!(changes.contains("would install agent"), "{changes}");
        assert!(host_state(host).is_empty(), "the dry run changed the host");
    }
    assert_eq!(known_hosts(&fleet), "");

    let out = bootstrap(&fleet, &[]);
    out.assert_code(0);
    let agent_sha = sha256_file(&agent_bin());
    for host in &hosts {
        let line = &by_host(&out)[&host.name];
        assert_eq!(line["status"], "ok", "{line}");
        assert_eq!(line["known_hosts"], "added", "{line}");
        assert_eq!(line["agent_sha256"], agent_sha.as_str());
        // The binary is the one sent, and the agent runs.
        assert_eq!(
            sha256_file(&host.path("/usr/local/bin/muster-agent")),
            agent_sha
        );
        assert!(host.agent_pid().is_some(), "{} runs no agent", host.name);
        // known_hosts holds the key the agent made and proved.
        let recorded = format!(
            "[{}]:{},{} {}",
            host.address,
            host.agent_port,
            host.name,
            host.agent_host_key()
        );
        assert!(
            known_hosts(&fleet).lines().any(|line| line == recorded),
            "{recorded} not in\n{}",
            known_hosts(&fleet)
        );
        let mode = fs::metadata(host.path("/etc/muster"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
    }

    // The fleet works through muster with what bootstrap recorded.
    fleet
        .ctl("run")
        .args(&["-g", "all", "echo hello"])
        .output()
        .assert_code(0)
        .assert_stdout_has("web1: hello")
        .assert_stdout_has("web2: hello");

    // Again: nothing to change, the same agents (same pids), known_hosts as it was.
    let pids: Vec<_> = hosts.iter().map(SshHost::agent_pid).collect();
    let known = known_hosts(&fleet);
    let out = bootstrap(&fleet, &[]);
    out.assert_code(0);
    for host in &hosts {
        let line = &by_host(&out)[&host.name];
        assert_eq!(line["status"], "unchanged", "{line}");
        assert_eq!(line["known_hosts"], "known", "{line}");
    }
    assert_eq!(
        hosts.iter().map(SshHost::agent_pid).collect::<Vec<_>>(),
        pids
    );
    assert_eq!(known_hosts(&fleet), known);

    // A second operator joins (--operators): only authorized_keys changes, and the agents
    // keep running (they re-read it), so the new key works at once.
    let other = write_identity(&fleet.path("keys/other"), "other@test");
    fs::write(fleet.path("operators"), format!("{other}\n")).unwrap();
    let operators = fleet.path("operators");
    let out = bootstrap(&fleet, &["--operators", operators.to_str().unwrap()]);
    out.assert_code(0);
    for host in &hosts {
        let line = &by_host(&out)[&host.name];
        assert_eq!(line["status"], "ok", "{line}");
        assert_eq!(
            line["changes"],
            serde_json::json!(["write authorized_keys (2 keys)"])
        );
        let keys = fs::read_to_string(host.path("/etc/muster/authorized_keys")).unwrap();
        assert!(keys.lines().any(|line| line == other), "{keys}");
    }
    assert_eq!(
        hosts.iter().map(SshHost::agent_pid).collect::<Vec<_>>(),
        pids
    );
    fleet
        .ctl("ping")
        .args(&["-g", "all", "--identity"])
        .arg_path(&fleet.path("keys/other"))
        .output()
        .assert_code(0);

    // Every run is in the operation log, with what each host got.
    let ends: Vec<Value> = fleet
        .audit_records()
        .into_iter()
        .filter(|record| record["kind"] == "bootstrap" && record["event"] == "end")
        .collect();
    assert_eq!(ends.len(), 4, "dry run, install, unchanged, operators");
    let install = &ends[1]["results"][0];
    assert_eq!(install["status"], "ok");
    assert!(install["changes"].to_string().contains("install agent"));
    let start = fleet
        .audit_records()
        .into_iter()
        .find(|record| record["kind"] == "bootstrap" && record["event"] == "start")
        .unwrap();
    assert_eq!(start["bootstrap"]["agent_sha256"], agent_sha.as_str());
}

#[test]
fn an_upgrade_whose_agent_does_not_start_is_rolled_back_and_a_good_one_lands() {
    let _alone = heavy_test();
    let fleet = Fleet::new();
    let host = SshHost::start(&fleet, "app1", SshHostOptions::default());
    write_inventory(&fleet, &[&host]);
    bootstrap(&fleet, &[]).assert_code(0);
    let installed = sha256_file(&host.path("/usr/local/bin/muster-agent"));
    let key = host.agent_host_key();

    // Tried: a "new agent" that is a valid binary for this machine but exits at once
    // (/bin/false). It must not stay: the old binary comes back and answers.
    let broken = fleet.path("broken-agent");
    fs::copy("/bin/false", &broken).unwrap();
    let out = bootstrap(&fleet, &["--agent-bin", broken.to_str().unwrap()]);
    out.assert_code(1);
    let line = &by_host(&out)["app1"];
    assert_eq!(line["status"], "failed", "{line}");
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains("rolled back to the previous agent, which answers"),
        "{error}"
    );
    assert_eq!(
        sha256_file(&host.path("/usr/local/bin/muster-agent")),
        installed
    );
    assert!(!host.path("/usr/local/bin/muster-agent.prev").exists());
    assert_eq!(host.agent_host_key(), key, "the host key must survive");
    fleet
        .ctl("ping")
        .args(&["-g", "all"])
        .output()
        .assert_code(0);

    // A real upgrade (the agent with bytes appended, which still runs): it lands, and
    // the kept previous binary is removed once the new agent answers.
    let newer = fleet.path("newer-agent");
    let mut bytes = fs::read(agent_bin()).unwrap();
    bytes.extend_from_slice(b"\0muster-upgrade-test");
    fs::write(&newer, &bytes).unwrap();
    let out = bootstrap(&fleet, &["--agent-bin", newer.to_str().unwrap()]);
    out.assert_code(0);
    let line = &by_host(&out)["app1"];
    assert!(
        line["changes"].to_string().contains("upgrade agent"),
        "{line}"
    );
    assert_eq!(
        sha256_file(&host.path("/usr/local/bin/muster-agent")),
        sha256_file(&newer)
    );
    assert!(!host.path("/usr/local/bin/muster-agent.prev").exists());
    assert_eq!(line["known_hosts"], "known", "same host key: {line}");
}

#[test]
fn remove_stops_the_agent_and_forgets_its_key() {
    let _alone = heavy_test();
    let fleet = Fleet::new();
    let host = SshHost::start(&fleet, "db1", SshHostOptions::default());
    write_inventory(&fleet, &[&host]);
    bootstrap(&fleet, &[]).assert_code(0);
    let pid = host.agent_pid().expect("the agent runs");
    assert!(known_hosts(&fleet).contains(",db1 "));

    let out = bootstrap(&fleet, &["--remove"]);
    out.assert_code(0);
    let line = &by_host(&out)["db1"];
    assert_eq!(line["status"], "ok", "{line}");
    assert_eq!(line["known_hosts"], "removed", "{line}");
    crate::util::wait_until(
        "the agent is gone",
        std::time::Duration::from_secs(20),
        || !crate::util::is_process_alive(pid),
    );
    assert!(!host.path("/usr/local/bin/muster-agent").exists());
    assert!(!host.path("/etc/muster").join("host_key").exists());
    assert!(
        !known_hosts(&fleet).contains(",db1 "),
        "{}",
        known_hosts(&fleet)
    );
    // The agent's logs stay: they are the operator's record.
    assert!(host.path("/var/log/muster").exists());

    let out = bootstrap(&fleet, &["--remove"]);
    out.assert_code(0);
    assert_eq!(by_host(&out)["db1"]["status"], "unchanged");
}

#[test]
fn hosts_that_cannot_take_the_agent_are_refused_and_left_as_they_were() {
    let _alone = heavy_test();
    let fleet = Fleet::new();
    // Tried, one host each: an sshd that does not know our key; a /usr/local/bin with
    // 512 KiB free; a host whose `uname -m` says aarch64; a host with an old glibc.
    let refusing = SshHost::start(
        &fleet,
        "refusing",
        SshHostOptions {
            refuse_operator: true,
            ..SshHostOptions::default()
        },
    );
    let full = SshHost::start(
        &fleet,
        "full",
        SshHostOptions {
            bin_tmpfs_kib: Some(512),
            ..SshHostOptions::default()
        },
    );
    let arm = SshHost::start(&fleet, "arm", SshHostOptions::default());
    arm.shadow_command(
        "uname",
        r#"if [ "$1" = -m ]; then echo aarch64; else exec /bin/uname "$@"; fi"#,
    );
    let old = SshHost::start(&fleet, "old", SshHostOptions::default());
    old.shadow_command("getconf", "echo glibc 2.3");
    let ok = SshHost::start(&fleet, "ok", SshHostOptions::default());
    let hosts = [&refusing, &full, &arm, &old, &ok];
    write_inventory(&fleet, &hosts);
    let before: Vec<_> = hosts.iter().map(|host| host_state(host)).collect();

    let out = bootstrap(&fleet, &[]);
    out.assert_code(1);
    let lines = by_host(&out);
    let expect = [
        ("refusing", "auth_failed", "Permission denied"),
        ("full", "failed", "not enough space"),
        ("arm", "failed", "\"aarch64\""),
        ("old", "failed", "needs glibc"),
    ];
    for (name, status, why) in expect {
        let line = &lines[name];
        assert_eq!(line["status"], status, "{line}");
        assert!(line["error"].as_str().unwrap().contains(why), "{line}");
    }
    assert_eq!(lines["ok"]["status"], "ok");
    for (host, before) in hosts.iter().zip(&before).take(4) {
        assert_eq!(&host_state(host), before, "{} changed", host.name);
        assert!(host.agent_pid().is_none());
    }
    let known = known_hosts(&fleet);
    assert_eq!(known.lines().count(), 1, "only the good host: {known}");
    assert!(known.contains(",ok "));
    assert!(
        out.stderr.contains("not ok: refusing,full,arm,old"),
        "{}",
        out.stderr
    );
}
