//! Rollouts against real agents: `--batch`, `--canary`, `--max-fail`, `--order`. Every
//! agent tells its commands which host they run on (`--command-env HOST=...`), and each
//! command that starts appends that name to one file, so a test sees exactly which hosts
//! started, in which order, and how many ran at once.

use std::fs;

use crate::util::{Agent, Fleet};

/// A fleet of `names`, each agent setting `$HOST` for its commands.
fn fleet_of(names: &[&str]) -> (Fleet, Vec<Agent>) {
    let fleet = Fleet::new();
    let agents: Vec<Agent> = names
        .iter()
        .map(|name| fleet.agent_builder().env("HOST", name).start())
        .collect();
    let entries: Vec<_> = names
        .iter()
        .zip(&agents)
        .map(|(n, a)| (*n, a.addr()))
        .collect();
    fleet.write_inventory(&entries, &[]);
    (fleet, agents)
}

/// The hosts that started, in the order they started.
fn started(fleet: &Fleet) -> Vec<String> {
    fs::read_to_string(fleet.path("started"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A command that records its start, then fails on the hosts in `failing`.
fn command(fleet: &Fleet, failing: &[&str]) -> String {
    let fail: String = failing
        .iter()
        .map(|name| format!("[ \"$HOST\" = {name} ] && exit 3; "))
        .collect();
    format!(
        "echo \"$HOST\" >> '{}'; {fail}echo fine",
        fleet.path("started").display()
    )
}

#[test]
fn max_fail_0_with_batch_1_starts_no_host_after_the_first_failure() {
    let names = ["h1", "h2", "h3", "h4", "h5"];
    let (fleet, _agents) = fleet_of(&names);
    let cmd = command(&fleet, &["h2"]);
    // Tried: one host at a time, no failure allowed, the second host fails.
    let out = fleet
        .ctl("run")
        .args(&[
            "-g",
            "all",
            "--batch",
            "1",
            "--max-fail",
            "0",
            "--json",
            &cmd,
        ])
        .output();
    out.assert_code(1);
    assert_eq!(
        started(&fleet),
        ["h1", "h2"],
        "a host started after the failure"
    );
    let lines = out.json_by_host();
    assert_eq!(lines["h1"]["status"], "ok");
    assert_eq!(lines["h2"]["status"], "failed");
    for name in ["h3", "h4", "h5"] {
        assert_eq!(lines[name]["status"], "skipped", "{}", lines[name]);
    }
    assert!(out.stderr.contains("3 skipped"), "{}", out.stderr);
    // The log says so too.
    let end = fleet
        .audit_records()
        .into_iter()
        .find(|record| record["event"] == "end")
        .unwrap();
    assert_eq!(end["results"][4]["status"], "skipped");

    // A budget of 1 lets the rollout go past one failure, and stops it at the second.
    fs::remove_file(fleet.path("started")).unwrap();
    let cmd = command(&fleet, &["h2", "h3"]);
    let out = fleet
        .ctl("run")
        .args(&["-g", "all", "--batch", "1", "--max-fail", "1", &cmd])
        .output();
    out.assert_code(1);
    assert_eq!(started(&fleet), ["h1", "h2", "h3"]);
}

#[test]
fn a_failed_canary_stops_the_rollout_and_a_good_one_lets_it_go_on() {
    let names = ["c1", "c2", "h3", "h4"];
    let (fleet, _agents) = fleet_of(&names);
    let cmd = command(&fleet, &["c2"]);
    let out = fleet
        .ctl("run")
        .args(&["-g", "all", "--canary", "2", "--json", &cmd])
        .output();
    out.assert_code(1);
    let mut first = started(&fleet);
    first.sort();
    assert_eq!(first, ["c1", "c2"], "only the canaries may start");
    let lines = out.json_by_host();
    assert_eq!(lines["h3"]["status"], "skipped");
    assert!(
        lines["h4"]["error"].as_str().unwrap().contains("canary"),
        "{}",
        lines["h4"]
    );

    fs::remove_file(fleet.path("started")).unwrap();
    let cmd = command(&fleet, &[]);
    fleet
        .ctl("run")
        .args(&["-g", "all", "--canary", "2", &cmd])
        .output()
        .assert_code(0);
    let order = started(&fleet);
    assert_eq!(order.len(), 4);
    let mut canaries = order[..2].to_vec();
    canaries.sort();
    assert_eq!(canaries, ["c1", "c2"], "the canaries ran first: {order:?}");
}

#[test]
fn batch_2_keeps_at_most_two_hosts_in_flight() {
    let names = ["h1", "h2", "h3", "h4", "h5", "h6"];
    let (fleet, _agents) = fleet_of(&names);
    let running = fleet.path("running");
    fs::create_dir(&running).unwrap();
    // Each command marks itself running, counts the marks, and stays a while.
    let cmd = format!(
        "touch '{r}/'\"$HOST\"; ls '{r}' | wc -l >> '{c}'; sleep 0.3; rm '{r}/'\"$HOST\"",
        r = running.display(),
        c = fleet.path("counts").display()
    );
    fleet
        .ctl("run")
        .args(&["-g", "all", "--batch", "2", &cmd])
        .output()
        .assert_code(0);
    let counts: Vec<usize> = fs::read_to_string(fleet.path("counts"))
        .unwrap()
        .lines()
        .map(|line| line.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 6);
    assert!(
        counts.iter().all(|&n| n <= 2),
        "more than 2 at once: {counts:?}"
    );
    assert!(counts.contains(&2), "the window was never full: {counts:?}");
}

#[test]
fn a_seeded_random_order_is_repeatable() {
    let names = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"];
    let (fleet, _agents) = fleet_of(&names);
    let cmd = command(&fleet, &[]);
    let mut orders = Vec::new();
    for _ in 0..2 {
        let _ = fs::remove_file(fleet.path("started"));
        fleet
            .ctl("run")
            .args(&["-g", "all", "--batch", "1", "--order", "random:42", &cmd])
            .output()
            .assert_code(0);
        orders.push(started(&fleet));
    }
    assert_eq!(orders[0], orders[1], "the same seed, another order");
    assert_ne!(
        orders[0], names,
        "random:42 left the inventory order as it was"
    );
    // Tried: an order that is not one.
    fleet
        .ctl("run")
        .args(&["-g", "all", "--order", "shuffled", "true"])
        .output()
        .assert_code(2);
}

#[test]
fn rerun_repeats_an_operation_on_its_hosts_that_were_not_ok() {
    let names = ["h1", "h2", "h3"];
    let (fleet, _agents) = fleet_of(&names);
    let fixed = fleet.path("fixed");
    // h2 fails until the file `fixed` exists.
    let cmd = format!(
        "echo \"$HOST\" >> '{}'; [ \"$HOST\" != h2 ] || [ -f '{}' ]",
        fleet.path("started").display(),
        fixed.display()
    );
    let first = fleet.ctl("run").args(&["-g", "all", &cmd]).output();
    first.assert_code(1);
    let first_id = fleet.audit_records()[0]["op_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        first.stderr.contains(&format!("ctl rerun {first_id}")),
        "the summary does not say how to retry: {}",
        first.stderr
    );

    // Still broken: the rerun fails again on h2 alone; a rerun of that rerun repeats the
    // same command, again on h2 alone.
    let _ = fs::remove_file(fleet.path("started"));
    fleet.ctl_plain().args(&["rerun"]).output().assert_code(1);
    assert_eq!(started(&fleet), ["h2"]);
    fs::write(&fixed, "").unwrap();
    let _ = fs::remove_file(fleet.path("started"));
    fleet
        .ctl_plain()
        .args(&["rerun", "last"])
        .output()
        .assert_code(0);
    assert_eq!(started(&fleet), ["h2"]);
    let records = fleet.audit_records();
    let last_start = records
        .iter()
        .rev()
        .find(|record| record["event"] == "start")
        .unwrap();
    assert!(last_start["reruns"].is_string(), "{last_start}");
    assert_eq!(last_start["command"], cmd.as_str());

    // Every host was ok in the last one: nothing to do.
    let out = fleet.ctl_plain().args(&["rerun"]).output();
    out.assert_code(0);
    assert!(out.stderr.contains("nothing to rerun"), "{}", out.stderr);
    // --all repeats the first operation on all its hosts.
    let _ = fs::remove_file(fleet.path("started"));
    fleet
        .ctl_plain()
        .args(&["rerun", &first_id[..10], "--all"])
        .output()
        .assert_code(0);
    let mut all = started(&fleet);
    all.sort();
    assert_eq!(all, names);
    // Tried: an id no operation has.
    fleet
        .ctl_plain()
        .args(&["rerun", "01ZZZZZZZZ"])
        .output()
        .assert_code(2);
}

#[test]
fn gather_diff_shows_how_the_odd_host_differs() {
    let (fleet, _agents) = fleet_of(&["h1", "h2", "h3"]);
    let cmd = "echo x=1; if [ \"$HOST\" = h2 ]; then echo y=3; else echo y=2; fi";
    let out = fleet
        .ctl("run")
        .args(&["-g", "all", "--gather", "--diff", cmd])
        .output();
    out.assert_code(0);
    let text = out.stdout();
    assert!(text.contains("h1,h3 (2)\n"), "{text}");
    assert!(
        text.contains("--- h1,h3\n+++ h2\n@@ -1,2 +1,2 @@\n x=1\n-y=2\n+y=3\n"),
        "{text}"
    );
    // Tried: --diff without --gather.
    fleet
        .ctl("run")
        .args(&["-g", "all", "--diff", "true"])
        .output()
        .assert_code(2);
}
