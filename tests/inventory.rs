//! Broken inventories and selections stop `ctl` before it contacts anyone: exit 2, one clear
//! message on stderr naming the problem, nothing on stdout and no operation-log record.

use crate::util::{closed_port_addr, CtlOutput, Fleet};

/// Runs `ctl run ... -g GROUP true` and checks the "nothing happened" half of every test.
fn run_group(fleet: &Fleet, group: &str) -> CtlOutput {
    let out = fleet.ctl("run").args(&["-g", group, "true"]).output();
    out.assert_code(2);
    assert!(out.stdout().is_empty(), "stdout:\n{}", out.stdout());
    assert!(
        !fleet.audit_path().exists(),
        "an operation-log record was written for an operation that never started"
    );
    out
}

#[test]
fn an_unknown_group_exits_2_and_suggests_the_near_name() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[("web", &["web1"])]);

    let out = run_group(&fleet, "wbe");

    out.assert_stderr_has("unknown host or group \"wbe\"")
        .assert_stderr_has("did you mean \"web\"");
}

#[test]
fn a_group_cycle_exits_2_and_names_the_cycle() {
    let fleet = Fleet::new();
    fleet.write_inventory(
        &[("web1", closed_port_addr())],
        &[("a", &["web1", "b"]), ("b", &["a"])],
    );

    let out = run_group(&fleet, "a");

    out.assert_stderr_has("group cycle");
}

#[test]
fn a_duplicate_host_exits_2_and_names_it() {
    let fleet = Fleet::new();
    fleet.write_inventory_text(
        "defaults:\n  identity: keys/operator\n\
         hosts:\n  web1: 127.0.0.1:7001\n  web2: 127.0.0.1:7002\n  web1: 127.0.0.1:7003\n",
    );

    let out = run_group(&fleet, "all");

    out.assert_stderr_has("host \"web1\" is defined twice");
}

#[test]
fn a_yaml_syntax_error_exits_2_with_line_and_column() {
    let fleet = Fleet::new();
    fleet.write_inventory_text(
        "defaults:\n  identity: keys/operator\nhosts:\n  web1: 127.0.0.1:7001\n  web2: [oops\n",
    );

    let out = run_group(&fleet, "all");

    out.assert_stderr_has("inventory.yaml: line ")
        .assert_stderr_has(", column ");
}

#[test]
fn a_missing_inventory_exits_2_and_names_the_file() {
    let fleet = Fleet::new();

    let out = run_group(&fleet, "all");

    out.assert_stderr_has("inventory.yaml: cannot read inventory");
}

#[test]
fn hosts_lists_the_selection_without_contacting_it() {
    let fleet = Fleet::new();
    let (gone1, gone2) = (closed_port_addr(), closed_port_addr());
    fleet.write_inventory_text(&format!(
        "defaults:\n  identity: keys/operator\n\
         hosts:\n  web1: {gone1}\n  web2: {{ address: 127.0.0.1, port: {} }}\n  db1: {gone1}\n\
         groups:\n  web: [web1, web2]\n  prod: [web, db1]\n",
        gone2.port()
    ));

    let out = fleet
        .ctl("hosts")
        .args(&["-g", "prod", "-x", "web2"])
        .output();

    out.assert_code(0);
    assert_eq!(out.stdout(), format!("web1  {gone1}\ndb1   {gone1}\n"));
}

#[test]
fn hosts_into_a_pipe_nobody_reads_ends_quietly() {
    // Tried: `ctl hosts -g all | head -1` on a large inventory, taken to the extreme: the
    // reading end of stdout is closed before ctl writes anything.
    let fleet = Fleet::new();
    fleet.write_inventory_text(
        "defaults:\n  identity: keys/operator\nhosts:\n  n[1:20000]: 127.0.0.1\n",
    );
    let (reader, writer) = std::io::pipe().expect("can make a pipe");
    drop(reader);

    let out = fleet
        .ctl("hosts")
        .args(&["-g", "all"])
        .with_stdout(writer)
        .output();

    out.assert_code(0);
    assert!(!out.stderr.contains("panicked"), "stderr:\n{}", out.stderr);
}
