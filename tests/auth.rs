//! Keys: a controller with the wrong key is refused before the agent acts on anything, and
//! a key file that is missing or readable by others stops `ctl` before it contacts anyone.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::{write_key, Fleet, FLEET_KEY_SEED};

#[test]
fn a_wrong_key_is_auth_failed_and_the_command_does_not_run() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    let wrong_key = fleet.path("wrong.key");
    write_key(&wrong_key, FLEET_KEY_SEED + 1);
    let marker = fleet.path("marker");

    let out = fleet
        .ctl("run")
        .args(&["--json", "--key-file"])
        .arg_path(&wrong_key)
        .args(&["-H", "web1", &format!("touch '{}'", marker.display())])
        .output();

    out.assert_code(1);
    let web1_result = &out.json_by_host()["web1"];
    assert_eq!(web1_result["status"], "auth_failed", "got {web1_result}");
    assert!(!marker.exists(), "the command ran despite the wrong key");
    // The same agent still serves the right key.
    fleet
        .ctl("run")
        .args(&["-H", "web1", "true"])
        .output()
        .assert_code(0);
}

#[test]
fn a_key_file_readable_by_others_exits_2_and_says_chmod_600() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    fs::set_permissions(fleet.key(), fs::Permissions::from_mode(0o644)).unwrap();
    let marker = fleet.path("marker");

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", &format!("touch '{}'", marker.display())])
        .output();

    out.assert_code(2).assert_stderr_has("chmod 600");
    assert!(!marker.exists());
    assert!(
        !fleet.audit_path().exists(),
        "nothing ran, so nothing is logged"
    );
}

#[test]
fn a_missing_key_file_exits_2_before_contacting_anyone() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    fs::remove_file(fleet.key()).unwrap();

    let out = fleet.ctl("run").args(&["-H", "web1", "true"]).output();

    out.assert_code(2).assert_stderr_has("fleet.key");
    assert!(out.stdout().is_empty(), "stdout:\n{}", out.stdout());
    assert!(!fleet.audit_path().exists());
}
