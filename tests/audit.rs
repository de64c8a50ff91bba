//! The operation log (`<log dir>/audit.jsonl`): a start record before any host is
//! contacted and an end record after the last, even with many `ctl` processes at once.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::identity::keys::PublicKey;
use serde_json::Value;

use crate::util::{closed_port_addr, Fleet, CTL_DEADLINE};

fn keys(record: &Value) -> BTreeSet<&str> {
    record
        .as_object()
        .expect("a record is an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn a_run_writes_a_start_and_an_end_record() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    let gone = closed_port_addr();
    fleet.write_inventory(&[("web1", web1.addr()), ("db1", gone)], &[]);

    let out = fleet
        .ctl("run")
        .args(&["-g", "all", "echo", "hello;", "exit", "4"])
        .output();
    out.assert_code(1);

    let records = fleet.audit_records();
    assert_eq!(records.len(), 2, "records: {records:#?}");
    let operator = PublicKey::from_openssh(
        &std::fs::read_to_string(fleet.path("keys/operator.pub")).expect("the fleet has a .pub"),
    )
    .expect("an OpenSSH public key");
    let (start, end) = (&records[0], &records[1]);
    assert_eq!(start["event"], "start");
    assert_eq!(end["event"], "end");
    assert_eq!(start["op_id"], end["op_id"]);
    assert!(start["op_id"].as_str().is_some_and(|id| !id.is_empty()));
    for record in [start, end] {
        assert_eq!(record["kind"], "run");
        assert_eq!(record["command"], "echo hello; exit 4");
        assert!(record["time"].as_str().is_some_and(|t| t.contains('T')));
        assert!(record["user"].as_str().is_some_and(|u| !u.is_empty()));
        // Who signed it: the identity ctl used, by its key's fingerprint and comment.
        assert_eq!(
            record["operator"],
            serde_json::json!({"fingerprint": operator.fingerprint(), "comment": "operator@test"}),
            "record: {record}"
        );
        assert!(
            record["sig"].as_str().is_some_and(|sig| !sig.is_empty()),
            "record: {record}"
        );
        let argv = record["argv"].as_array().expect("argv is a list");
        assert_eq!(argv.last().unwrap(), "4", "argv: {argv:?}");
    }
    assert!(
        keys(start).is_superset(&BTreeSet::from(["targets"])),
        "start: {start}"
    );
    assert!(!keys(start).contains("results"), "start: {start}");
    assert_eq!(
        start["targets"],
        serde_json::json!([
            {"host": "web1", "address": web1.addr().to_string()},
            {"host": "db1", "address": gone.to_string()},
        ])
    );
    assert!(end["duration_ms"].is_u64(), "end: {end}");
    // `interrupted` is left out when false; absent and false mean the same.
    assert_ne!(end["interrupted"], true, "end: {end}");

    let results = end["results"].as_array().expect("results is a list");
    assert_eq!(results.len(), 2, "end: {end}");
    let result_keys = BTreeSet::from([
        "host",
        "status",
        "exit_code",
        "duration_ms",
        "stdout_bytes",
        "stderr_bytes",
        "error",
    ]);
    for result in results {
        // Later features add keys (e.g. `kept_stdout`); these are the ones readers rely on.
        // `signal` appears only when the command was killed by one.
        let got = keys(result);
        assert!(
            got.is_superset(&result_keys),
            "result: expected at least {result_keys:?}, got {result}"
        );
    }
    assert_eq!(results[0]["host"], "web1");
    assert_eq!(results[0]["status"], "failed");
    assert_eq!(results[0]["exit_code"], 4);
    assert_eq!(results[0]["stdout_bytes"], "hello\n".len());
    assert_eq!(results[0]["stderr_bytes"], 0);
    assert_eq!(results[1]["host"], "db1");
    assert_eq!(results[1]["status"], "unreachable");
    assert_eq!(results[1]["exit_code"], Value::Null);
    assert!(results[1]["error"].is_string());
}

#[test]
fn concurrent_runs_each_log_one_whole_start_and_end() {
    const RUNS: usize = 16;
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(
        &[("web1", web1.addr()), ("web2", web2.addr())],
        &[("web", &["web1", "web2"])],
    );

    let running: Vec<_> = (0..RUNS)
        .map(|n| {
            fleet
                .ctl("run")
                .args(&["-g", "web", &format!("echo run {n}")])
                .spawn()
        })
        .collect();
    for ctl in running {
        ctl.wait(CTL_DEADLINE + Duration::from_secs(30))
            .assert_code(0);
    }

    let records = fleet.audit_records();
    assert_eq!(records.len(), 2 * RUNS, "one start and one end per run");
    let mut events: HashMap<&str, Vec<&str>> = HashMap::new();
    for record in &records {
        let op_id = record["op_id"].as_str().expect("op_id is a string");
        let event = record["event"].as_str().expect("event is a string");
        events.entry(op_id).or_default().push(event);
    }
    assert_eq!(events.len(), RUNS, "distinct op_ids");
    for (op_id, seen) in &events {
        assert_eq!(seen, &["start", "end"], "events of {op_id}");
    }
    let commands: BTreeSet<&str> = records
        .iter()
        .map(|record| record["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands.len(), RUNS);
}
