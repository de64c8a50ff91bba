//! The agent and ctl as processes on their hosts: what a signal does to the agent and its
//! commands, what a command inherits from the agent (environment variables, open
//! descriptors), the modes of the files and folders both write their logs to, and how ctl
//! shows control characters that hosts print.

use std::time::Duration;

use crate::util::{wait_until, Fleet};

#[test]
fn sighup_is_logged_and_the_running_command_finishes() {
    // Tried: SIGHUP to the agent while `ctl run` waits on a command that finishes only
    // when told to (a file appears). The README says the agent logs the signal and keeps
    // serving; the command runs to its own end and the host is ok.
    let fleet = Fleet::new();
    let mut web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
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
