//! Identities: which operator keys an agent lets in and for what (authorized_keys with
//! `from=` and `permit=`), which agents `ctl` trusts (known_hosts, `ctl trust`), and keys
//! made by OpenSSH's own tools. Every refusal is checked to have run nothing: the command
//! would have created a marker file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{write_identity, Fleet};

/// A command that creates `marker` when it runs.
fn touch(marker: &std::path::Path) -> String {
    format!("touch '{}'", marker.display())
}

fn run_json(fleet: &Fleet, command: &str) -> crate::util::CtlOutput {
    fleet
        .ctl("run")
        .args(&["--json", "-H", "web1", command])
        .output()
}

/// One agent named web1 in the inventory and known_hosts.
fn one_host() -> (Fleet, crate::util::Agent) {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    (fleet, web1)
}

fn ssh_keygen(args: &[&str]) {
    let status = Command::new("ssh-keygen")
        .args(args)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen {args:?} failed");
}

#[test]
fn an_operator_key_not_in_authorized_keys_is_auth_failed_and_nothing_runs() {
    // Tried: a second operator identity, never added to the agent's authorized_keys.
    let (fleet, _web1) = one_host();
    let stranger = fleet.path("keys/stranger");
    write_identity(&stranger, "stranger@elsewhere");
    let marker = fleet.path("marker");

    let out = fleet
        .ctl("run")
        .args(&["--json", "--identity"])
        .arg_path(&stranger)
        .args(&["-H", "web1", &touch(&marker)])
        .output();

    out.assert_code(1);
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "auth_failed", "{web1}");
    let error = web1["error"].as_str().unwrap_or_default();
    assert!(error.contains("not in authorized_keys"), "{error}");
    assert!(
        !marker.exists(),
        "the command ran for a key the agent does not know"
    );
    // The same agent still serves the operator it knows.
    run_json(&fleet, "true").assert_code(0);
}

#[test]
fn a_key_removed_from_authorized_keys_is_refused_on_the_next_connection() {
    // Tried: run once; empty authorized_keys (a new file renamed over it, as editors and
    // config management do) while the agent runs; run again.
    let (fleet, _web1) = one_host();
    run_json(&fleet, "true").assert_code(0);
    let fresh = fleet.path("authorized_keys.new");
    fs::write(&fresh, "# nobody\n").unwrap();
    fs::rename(&fresh, fleet.authorized_keys()).unwrap();
    let marker = fleet.path("marker");

    let out = run_json(&fleet, &touch(&marker));

    out.assert_code(1);
    assert_eq!(out.json_by_host()["web1"]["status"], "auth_failed");
    assert!(!marker.exists());
}

#[test]
fn permit_limits_what_a_key_may_do() {
    // Tried: permit="ping,pull" on the operator's line: ping works; run and push are
    // refused with a message naming the line, and neither the command nor the file lands.
    let (fleet, _web1) = one_host();
    let line = fs::read_to_string(fleet.authorized_keys()).unwrap();
    fs::write(
        fleet.authorized_keys(),
        format!("permit=\"ping,pull\" {line}"),
    )
    .unwrap();
    let marker = fleet.path("marker");

    fleet
        .ctl("ping")
        .args(&["-H", "web1"])
        .output()
        .assert_code(0);
    let out = run_json(&fleet, &touch(&marker));
    out.assert_code(1);
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "auth_failed", "{web1}");
    let error = web1["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("may not run") && error.contains("line 1"),
        "{error}"
    );
    assert!(!marker.exists());

    let source = fleet.path("pushed.txt");
    fs::write(&source, "x").unwrap();
    let dest = fleet.path("landed.txt");
    let out = fleet
        .ctl("push")
        .args(&["--log-dir", fleet.log_dir().to_str().unwrap(), "-H", "web1"])
        .arg_path(&source)
        .args(&["--dest", dest.to_str().unwrap()])
        .output();
    out.assert_code(1).assert_stderr_has("auth_failed");
    assert!(!dest.exists(), "a push went through permit=\"ping,pull\"");
}

#[test]
fn from_that_does_not_match_the_source_address_refuses_the_key() {
    // Tried: from="10.0.0.0/8" on the operator's line; ctl connects from 127.0.0.1.
    let (fleet, _web1) = one_host();
    let line = fs::read_to_string(fleet.authorized_keys()).unwrap();
    fs::write(
        fleet.authorized_keys(),
        format!("from=\"10.0.0.0/8\" {line}"),
    )
    .unwrap();
    let marker = fleet.path("marker");

    let out = run_json(&fleet, &touch(&marker));

    out.assert_code(1);
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "auth_failed", "{web1}");
    assert!(
        web1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{web1}"
    );
    assert!(!marker.exists());
}

#[test]
fn an_unknown_host_key_is_refused_with_its_fingerprint_and_the_trust_command() {
    // Tried: an empty known_hosts: the agent proves a key nobody recorded.
    let (fleet, web1) = one_host();
    fs::write(fleet.path("known_hosts"), "").unwrap();
    let marker = fleet.path("marker");

    let out = run_json(&fleet, &touch(&marker));

    out.assert_code(1);
    let result = &out.json_by_host()["web1"];
    assert_eq!(result["status"], "auth_failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    let key = fleet.host_keys().of(web1.addr()).unwrap();
    assert!(error.contains("unknown host key SHA256:"), "{error}");
    assert!(error.contains("ctl trust -H web1"), "{error}");
    assert!(!key.is_empty());
    assert!(!marker.exists());
}

#[test]
fn a_changed_host_key_or_a_relay_with_its_own_key_is_refused_as_a_possible_attack() {
    // Tried: known_hosts holds web1's key, but the inventory's address for web1 now leads
    // to another agent with a key of its own (a relay in the middle, or a reinstall).
    let fleet = Fleet::new();
    let real = fleet.agent();
    let relay = fleet.agent();
    fleet.write_inventory(&[("web1", relay.addr())], &[]);
    let real_key = fleet.host_keys().of(real.addr()).unwrap();
    fs::write(
        fleet.path("known_hosts"),
        format!(
            "[{}]:{},web1 {real_key}\n",
            relay.addr().ip(),
            relay.addr().port()
        ),
    )
    .unwrap();
    let marker = fleet.path("marker");

    let out = run_json(&fleet, &touch(&marker));

    out.assert_code(1);
    let result = &out.json_by_host()["web1"];
    assert_eq!(result["status"], "auth_failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("CHANGED") && error.contains("attack"),
        "{error}"
    );
    assert_eq!(
        error.matches("SHA256:").count(),
        2,
        "both fingerprints: {error}"
    );
    assert!(!marker.exists());
}

#[test]
fn ctl_trust_records_new_keys_and_replaces_a_changed_one_only_when_told() {
    // Tried: trust with an empty known_hosts (recorded), again (already trusted), then
    // the agent's address taken by another agent: without --replace nothing changes and
    // the exit status is 1; with --replace the new key is recorded and the old line kept
    // as a comment; then run works. Each trust ends with the summary line and is in the
    // operation log with the key each host proved and what became of it.
    let fleet = Fleet::new();
    let first = fleet.agent();
    fleet.write_inventory(&[("web1", first.addr())], &[]);
    fs::write(fleet.path("known_hosts"), "").unwrap();

    let out = fleet.ctl("trust").args(&["-H", "web1"]).output();
    out.assert_code(0)
        .assert_stdout_has("added")
        .assert_stderr_has("ctl: 1 host in ");
    let known = fs::read_to_string(fleet.path("known_hosts")).unwrap();
    let first_key = fleet.host_keys().of(first.addr()).unwrap();
    assert!(
        known.contains(&first_key) && known.contains(",web1 "),
        "{known}"
    );
    let first_fingerprint = common::identity::keys::PublicKey::from_openssh(&first_key)
        .unwrap()
        .fingerprint();
    let end = fleet.audit_records().pop().expect("trust is logged");
    assert_eq!(
        (&end["kind"], &end["event"]),
        (&"trust".into(), &"end".into())
    );
    assert_eq!(end["results"][0]["known_hosts"], "added", "{end}");
    assert_eq!(end["results"][0]["host_key"], first_fingerprint.as_str());
    fleet
        .ctl("trust")
        .args(&["-H", "web1"])
        .output()
        .assert_code(0)
        .assert_stdout_has("already trusted");
    run_json(&fleet, "true").assert_code(0);

    let second = fleet.agent();
    let second_key = fleet.host_keys().of(second.addr()).unwrap();
    // The inventory moves web1 to the new agent; known_hosts keeps the first key for it.
    fleet.write_inventory_text(&format!(
        "defaults:\n  identity: keys/operator\nhosts:\n  web1: {}\n",
        second.addr()
    ));
    fs::write(
        fleet.path("known_hosts"),
        format!(
            "[{}]:{},web1 {first_key}\n",
            second.addr().ip(),
            second.addr().port()
        ),
    )
    .unwrap();
    let before = fs::read_to_string(fleet.path("known_hosts")).unwrap();
    let out = fleet.ctl("trust").args(&["-H", "web1"]).output();
    out.assert_code(1)
        .assert_stdout_has("CHANGED")
        .assert_stderr_has("ctl: not ok: web1");
    assert_eq!(
        fs::read_to_string(fleet.path("known_hosts")).unwrap(),
        before
    );
    let out = fleet.ctl("trust").args(&["--json", "-H", "web1"]).output();
    out.assert_code(1);
    let web1 = &out.json_by_host()["web1"];
    assert_eq!(web1["status"], "auth_failed", "{web1}");
    assert_eq!(web1["known_hosts"], "changed", "{web1}");
    assert_eq!(web1["key"], second_key.as_str(), "{web1}");
    let error = web1["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&first_fingerprint),
        "the recorded key: {error}"
    );
    let end = fleet.audit_records().pop().expect("trust is logged");
    assert_eq!(end["results"][0]["known_hosts"], "changed", "{end}");
    assert_eq!(end["results"][0]["status"], "auth_failed", "{end}");

    fleet
        .ctl("trust")
        .args(&["--replace", "-H", "web1"])
        .output()
        .assert_code(0)
        .assert_stdout_has("REPLACED");
    let known = fs::read_to_string(fleet.path("known_hosts")).unwrap();
    assert!(known.contains(&second_key), "{known}");
    assert!(known.contains("# replaced "), "{known}");
    run_json(&fleet, "true").assert_code(0);
}

#[test]
fn keys_made_by_ssh_keygen_work_on_both_sides() {
    // Tried: the operator's key and the agent's host key both made by `ssh-keygen -t
    // ed25519`, the host key handed to the agent, known_hosts written by ctl trust.
    let fleet = Fleet::new();
    let operator = fleet.path("keys/id_ed25519");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "alice@ws1",
        "-f",
        operator.to_str().unwrap(),
    ]);
    let host_key = fleet.path("ssh_host_key");
    ssh_keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        host_key.to_str().unwrap(),
    ]);
    let public = fs::read_to_string(operator.with_extension("pub")).unwrap();
    fs::write(fleet.authorized_keys(), public).unwrap();
    let web1 = fleet.agent_builder().host_key(&host_key).start();
    fleet.write_inventory_text(&format!(
        "defaults:\n  identity: keys/id_ed25519\nhosts:\n  web1: {}\n",
        web1.addr()
    ));
    fleet
        .ctl("trust")
        .args(&["-H", "web1"])
        .output()
        .assert_code(0);
    let known = fs::read_to_string(fleet.path("known_hosts")).unwrap();
    let host_public = fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let host_public: Vec<&str> = host_public.split_whitespace().take(2).collect();
    assert!(known.contains(&host_public.join(" ")), "{known}");

    run_json(&fleet, "echo hi").assert_code(0);
}

#[test]
fn a_passphrase_key_is_used_through_ssh_agent() {
    // Tried: the operator's key protected by a passphrase: without an agent ctl says to
    // ssh-add it (exit 2, nothing logged); with the key in a real ssh-agent, run works.
    let (fleet, _web1) = one_host();
    let plain = fleet.identity();
    let locked = fleet.path("keys/locked");
    fs::copy(&plain, &locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o600)).unwrap();
    ssh_keygen(&[
        "-q",
        "-p",
        "-N",
        "secret words",
        "-P",
        "",
        "-f",
        locked.to_str().unwrap(),
    ]);

    let out = fleet
        .ctl("run")
        .args(&["--identity", locked.to_str().unwrap(), "-H", "web1", "true"])
        .output();
    out.assert_code(2).assert_stderr_has("ssh-add");
    assert!(!fleet.audit_path().exists());

    let socket = fleet.path("agent.sock");
    let mut ssh_agent = Command::new("ssh-agent")
        .args(["-D", "-a", socket.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent starts");
    crate::util::wait_until(
        "ssh-agent listens",
        std::time::Duration::from_secs(10),
        || socket.exists(),
    );
    // The unlocked copy is the same key: the agent holds it, the locked file names it.
    let added = Command::new("ssh-add")
        .arg(&plain)
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(added.success());
    let out = fleet
        .ctl("run")
        .env("SSH_AUTH_SOCK", socket.to_str().unwrap())
        .args(&[
            "--json",
            "--identity",
            locked.to_str().unwrap(),
            "-H",
            "web1",
            "echo via-agent",
        ])
        .output();
    let _ = ssh_agent.kill();
    let _ = ssh_agent.wait();
    out.assert_code(0);
    assert_eq!(out.json_by_host()["web1"]["stdout"], "via-agent\n");
}

#[test]
fn unusable_identities_exit_2_with_a_clear_error() {
    // Tried: an identity readable by others (ssh refuses those too), an RSA key, and a
    // missing file: each exits 2 naming the problem, contacts no one, logs nothing.
    let (fleet, _web1) = one_host();
    fs::set_permissions(fleet.identity(), fs::Permissions::from_mode(0o644)).unwrap();
    let out = fleet.ctl("run").args(&["-H", "web1", "true"]).output();
    out.assert_code(2).assert_stderr_has("chmod 600");
    fs::set_permissions(fleet.identity(), fs::Permissions::from_mode(0o600)).unwrap();

    let rsa = fleet.path("keys/rsa");
    ssh_keygen(&[
        "-q",
        "-t",
        "rsa",
        "-b",
        "2048",
        "-N",
        "",
        "-f",
        rsa.to_str().unwrap(),
    ]);
    let out = fleet
        .ctl("run")
        .args(&["--identity", rsa.to_str().unwrap(), "-H", "web1", "true"])
        .output();
    out.assert_code(2)
        .assert_stderr_has("ssh-rsa")
        .assert_stderr_has("Ed25519");

    let out = fleet
        .ctl("run")
        .args(&["--identity", "/nonexistent/key", "-H", "web1", "true"])
        .output();
    out.assert_code(2).assert_stderr_has("/nonexistent/key");
    assert!(
        !fleet.audit_path().exists(),
        "nothing ran, so nothing is logged"
    );
}

#[test]
fn bad_lines_in_authorized_keys_and_known_hosts_are_named_and_the_rest_works() {
    // Tried: a garbage line, an RSA line and an unknown option before the operator's line
    // in authorized_keys; a garbage line before the host's line in known_hosts. The run
    // works; ctl warns naming the known_hosts line; the agent logs the three lines.
    let (fleet, mut web1) = one_host();
    let line = fs::read_to_string(fleet.authorized_keys()).unwrap();
    fs::write(
        fleet.authorized_keys(),
        format!(
            "this is not a key\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob\n\
             no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4P8JT4PsFQjAk+lSvSRzhAHQteqJpW08QIB5DQPGsO x\n{line}"
        ),
    )
    .unwrap();
    let known = fs::read_to_string(fleet.path("known_hosts")).unwrap();
    fs::write(fleet.path("known_hosts"), format!("garbage here\n{known}")).unwrap();

    let out = fleet
        .ctl("run")
        .args(&["-v", "--json", "-H", "web1", "true"])
        .output();
    out.assert_code(0).assert_stderr_has("line 1");
    crate::util::wait_until(
        "the agent logs the bad lines",
        crate::util::CTL_DEADLINE,
        || {
            let log = web1.stderr();
            ["line=1", "line=2", "line=3"]
                .iter()
                .all(|line| log.contains(line))
        },
    );
    web1.assert_running();
}

#[test]
fn ctl_keygen_writes_an_openssh_identity_and_never_overwrites() {
    // Tried: keygen into a new path (ssh-keygen reads it and prints the same
    // fingerprint), then again onto the same path.
    let fleet = Fleet::new();
    let path = fleet.path("keys/new_operator");
    let out = fleet
        .ctl_plain()
        .args(&["keygen", "-C", "bob@ws2"])
        .arg_path(&path)
        .output();
    out.assert_code(0);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let fingerprint = listed
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{listed}");
    assert!(out.stderr.contains(&fingerprint), "{}", out.stderr);
    let before = fs::read(&path).unwrap();
    fleet
        .ctl_plain()
        .args(&["keygen"])
        .arg_path(&path)
        .output()
        .assert_code(2);
    assert_eq!(fs::read(&path).unwrap(), before, "keygen overwrote a key");
}

#[test]
fn the_log_names_the_host_key_each_agent_proved() {
    // Tried: one run against a trusted agent, one against an agent whose key nobody
    // recorded: both end records give the fingerprint the agent presented.
    let (fleet, web1) = one_host();
    run_json(&fleet, "true").assert_code(0);
    let line = fleet.host_keys().of(web1.addr()).unwrap();
    let fingerprint = common::identity::keys::PublicKey::from_openssh(&line)
        .unwrap()
        .fingerprint();
    fs::write(fleet.path("known_hosts"), "").unwrap();
    run_json(&fleet, "true").assert_code(1);

    let ends: Vec<_> = fleet
        .audit_records()
        .into_iter()
        .filter(|record| record["event"] == "end")
        .collect();
    assert_eq!(ends.len(), 2);
    for end in &ends {
        assert_eq!(end["results"][0]["host_key"], fingerprint.as_str(), "{end}");
    }
    assert_eq!(ends[1]["results"][0]["status"], "auth_failed");
}
