//! `ctl log`: listing, filtering and showing operations made by real `ctl run`s, capping of
//! the kept output, and `ctl log verify` on untouched, tampered, forged, rotated and
//! concurrently written logs, with the public keys of one or two operators.
//!
//! Tampering is always done on a copy of the log folder ([`tampered_copy`]), so each check
//! starts from the same intact log and the failure names a file the test knows.

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::identity::keys::{Identity, PublicKey};
use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::{copy_dir, write_identity, Agent, CtlOutput, Fleet, CTL_DEADLINE};

/// The agent environment variable a command can branch on (all agents share this machine).
const WHO: &str = "MUSTER_E2E_WHO";

/// The first (header) line of the `ctl log` table.
const LIST_HEADER: &str = "ID";

// ---------------------------------------------------------------------------------------------
// Helpers

/// The comment of the fleet's operator key (`Fleet::new` writes it).
const OPERATOR: &str = "operator@test";

/// The namespace of the log's signatures, as the README gives it.
const NAMESPACE: &str = "muster-operation-log";

/// The local user `ctl` records, found independently of `ctl`.
fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").expect("the test knows its user"),
    }
}

/// Runs `ctl run ARGS`, checks its exit code and returns the new operation's id (the last
/// record's; runs made this way are one at a time).
fn run_op(fleet: &Fleet, code: i32, args: &[&str]) -> String {
    fleet.ctl("run").args(args).output().assert_code(code);
    last_op_id(fleet)
}

fn last_op_id(fleet: &Fleet) -> String {
    // Lines that are not JSON (a line cut short) are skipped, unlike `Fleet::audit_records`.
    let records = all_records(&fleet.log_dir());
    let last = records.last().expect("the run wrote records");
    last["op_id"]
        .as_str()
        .expect("op_id is a string")
        .to_owned()
}

/// `ctl --log-dir <dir> log ARGS...`, run to its end. (The global flag goes before `log`:
/// between `log` and `show`/`verify` it is refused, see
/// [`global_flags_between_log_and_its_subcommand_are_refused`].)
fn ctl_log_in(fleet: &Fleet, log_dir: &Path, args: &[&str]) -> CtlOutput {
    fleet
        .ctl_plain()
        .args(&["--log-dir"])
        .arg_path(log_dir)
        .args(&["log"])
        .args(args)
        .output()
}

/// `ctl log ARGS...` on the fleet's log; panics unless it exits 0.
fn ctl_log(fleet: &Fleet, args: &[&str]) -> CtlOutput {
    let out = ctl_log_in(fleet, &fleet.log_dir(), args);
    out.assert_code(0);
    out
}

/// The ids `ctl log ARGS...` lists, in its order. An empty listing prints no table at all,
/// and says so on stderr.
fn listed(fleet: &Fleet, args: &[&str]) -> Vec<String> {
    let out = ctl_log(fleet, args);
    let stdout = out.stdout();
    let mut lines = stdout.lines();
    let Some(header) = lines.next() else {
        out.assert_stderr_has("no operations match");
        return Vec::new();
    };
    assert!(
        header.starts_with(LIST_HEADER),
        "ctl log {args:?}: expected the table header first, got:\n{stdout}"
    );
    lines
        .map(|line| {
            line.split_whitespace()
                .next()
                .expect("a row starts with the id")
                .to_owned()
        })
        .collect()
}

/// The row of `ctl log`'s table for `op_id`.
fn listed_row(out: &CtlOutput, op_id: &str) -> String {
    out.stdout()
        .lines()
        .find(|line| line.starts_with(op_id))
        .unwrap_or_else(|| panic!("no row for {op_id} in:\n{}", out.stdout()))
        .to_owned()
}

/// `ctl log verify ARGS` on `log_dir`, in the fleet's folder: with no ARGS the operators'
/// keys are the fleet's `keys/operator.pub`, found through the inventory's identity.
fn verify(fleet: &Fleet, log_dir: &Path, args: &[&str]) -> CtlOutput {
    ctl_log_in(fleet, log_dir, &[&["verify"], args].concat())
}

/// The fleet's inventory as a `-i` argument for `ctl log verify`.
fn inventory_arg(fleet: &Fleet) -> String {
    fleet.path("inventory.yaml").display().to_string()
}

/// The public key of the identity at `path` (its `.pub`).
fn public_key_of(path: &Path) -> PublicKey {
    let public = format!("{}.pub", path.display());
    let line = fs::read_to_string(&public).unwrap_or_else(|err| panic!("{public}: {err}"));
    PublicKey::from_openssh(&line).expect("ctl keygen writes OpenSSH public keys")
}

/// Copies the fleet's log folder to `name`, lets `edit` change the lines of its
/// `audit.jsonl`, and returns the copy.
fn tampered_copy(fleet: &Fleet, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let copy = fleet.path(name);
    copy_dir(&fleet.log_dir(), &copy);
    let log = copy.join("audit.jsonl");
    let mut lines: Vec<String> = fs::read_to_string(&log)
        .expect("the copy has a log")
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(&log, text).expect("can write the tampered log");
    copy
}

/// Panics unless `out` is `ctl log verify` reporting a break at `file` line `line` whose
/// reason contains `reason`.
fn assert_broken_at(out: &CtlOutput, file: &Path, line: usize, reason: &str) {
    out.assert_code(1);
    let expected = format!("broken: {} line {line}: ", file.display());
    let stdout = out.stdout();
    assert!(
        stdout.starts_with(&expected) && stdout.contains(reason) && stdout.lines().count() == 1,
        "verify: expected one line starting {expected:?} and containing {reason:?}, got:\n\
         {stdout}\nstderr:\n{}",
        out.stderr
    );
}

/// What the next line's `prev` holds: the SHA-256 of `line`'s exact bytes, hex.
fn digest_of(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// The `sig` of a sealed line.
fn sig_of(line: &str) -> String {
    let record: Value = serde_json::from_str(line).expect("a log line is JSON");
    record["sig"]
        .as_str()
        .expect("a sealed line has a sig")
        .to_owned()
}

/// A second operator of `fleet`, `bob@test` (`keys/bob`), whom the agents authorize too.
/// Call it before starting agents.
fn add_operator_bob(fleet: &Fleet) -> PathBuf {
    let bob = fleet.path("keys/bob");
    let line = write_identity(&bob, "bob@test");
    let mut authorized = fs::read_to_string(fleet.authorized_keys()).unwrap();
    authorized.push_str(&format!("{line}\n"));
    fs::write(fleet.authorized_keys(), authorized).unwrap();
    bob
}

// ---------------------------------------------------------------------------------------------
// A log made by varied operations

/// A log of five operations on web1, web2 (group `web`) and db1 (group `db`), oldest first:
///
/// | op | selection | result |
/// |---|---|---|
/// | `web_ok` | `-g web` | web1, web2 ok |
/// | `db_failed` | `-H db1` | failed (exit 3) |
/// | `db_killed` | `-g db` | no end record: ctl got SIGKILL mid-run |
/// | `web2_ok` | `-H web2` | ok |
/// | `web1_moved` | `-H web1` | ok, after web1 moved from group `web` to `db` |
struct VariedLog {
    fleet: Fleet,
    _agents: [Agent; 3],
    web_ok: String,
    db_failed: String,
    db_killed: String,
    web2_ok: String,
    web1_moved: String,
}

impl VariedLog {
    fn new() -> VariedLog {
        let fleet = Fleet::new();
        let agents = [fleet.agent(), fleet.agent(), fleet.agent()];
        let hosts = [
            ("web1", agents[0].addr()),
            ("web2", agents[1].addr()),
            ("db1", agents[2].addr()),
        ];
        fleet.write_inventory(&hosts, &[("web", &["web1", "web2"]), ("db", &["db1"])]);

        let web_ok = run_op(&fleet, 0, &["-g", "web", "echo alpha"]);
        let db_failed = run_op(&fleet, 1, &["-H", "db1", "echo beta; exit 3"]);
        let db_killed = Self::killed_mid_run(&fleet);
        let web2_ok = run_op(&fleet, 0, &["-H", "web2", "echo delta"]);
        // web1 leaves `web`: the log must still say it was in `web` for `web_ok`.
        fleet.write_inventory(&hosts, &[("web", &["web2"]), ("db", &["db1", "web1"])]);
        let web1_moved = run_op(&fleet, 0, &["-H", "web1", "echo epsilon"]);

        VariedLog {
            fleet,
            _agents: agents,
            web_ok,
            db_failed,
            db_killed,
            web2_ok,
            web1_moved,
        }
    }

    /// `ctl run -g db` killed with SIGKILL once the remote command is running, so the
    /// operation has a start record and no end record.
    fn killed_mid_run(fleet: &Fleet) -> String {
        let mut running = fleet
            .ctl("run")
            .args(&["-g", "db", "echo gamma; sleep 30"])
            .spawn();
        running.wait_for_line(CTL_DEADLINE, |line| line == "db1: gamma");
        kill(running.pid(), Signal::SIGKILL).expect("can kill ctl");
        let out = running.wait(CTL_DEADLINE);
        assert_eq!(out.status.signal(), Some(9), "stderr:\n{}", out.stderr);
        let records = fleet.audit_records();
        let last = records.last().expect("the start record was written");
        assert_eq!(
            last["event"], "start",
            "the killed ctl wrote no end: {last}"
        );
        last["op_id"]
            .as_str()
            .expect("op_id is a string")
            .to_owned()
    }

    /// Every operation, newest first.
    fn all(&self) -> Vec<String> {
        self.ids(&[
            &self.web1_moved,
            &self.web2_ok,
            &self.db_killed,
            &self.db_failed,
            &self.web_ok,
        ])
    }

    fn ids(&self, ops: &[&String]) -> Vec<String> {
        ops.iter().map(|id| id.to_string()).collect()
    }

    /// `ctl log ARGS...`'s ids.
    fn listed(&self, args: &[&str]) -> Vec<String> {
        listed(&self.fleet, args)
    }

    /// The `time` of an operation's start record, as written.
    fn start_time(&self, op_id: &str) -> String {
        let records = self.fleet.audit_records();
        let start = records
            .iter()
            .find(|r| r["op_id"] == op_id && r["event"] == "start")
            .unwrap_or_else(|| panic!("no start record for {op_id}"));
        start["time"].as_str().expect("time is a string").to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Listing

#[test]
fn listing_shows_every_operation_newest_first_with_its_result() {
    let log = VariedLog::new();

    assert_eq!(log.listed(&[]), log.all());

    let out = ctl_log(&log.fleet, &[]);
    let user = current_user();
    let expected_cells = [
        (
            &log.web_ok,
            vec!["run", "2 hosts: web1,web2", "2 ok", "echo alpha"],
        ),
        (
            &log.db_failed,
            vec!["1 host: db1", "1 failed", "echo beta; exit 3"],
        ),
        (
            &log.db_killed,
            vec!["1 host: db1", "no end record", "echo gamma; sleep 30"],
        ),
        (
            &log.web1_moved,
            vec!["1 host: web1", "1 ok", "echo epsilon"],
        ),
    ];
    for (op_id, cells) in expected_cells {
        let row = listed_row(&out, op_id);
        for cell in cells.iter().chain([&user.as_str(), &OPERATOR]) {
            assert!(
                row.contains(cell),
                "row of {op_id}: expected {cell:?} in {row:?}"
            );
        }
    }
}

#[test]
fn host_filter_lists_the_operations_that_targeted_the_host() {
    let log = VariedLog::new();
    assert_eq!(
        log.listed(&["--host", "web1"]),
        log.ids(&[&log.web1_moved, &log.web_ok])
    );
    assert_eq!(
        log.listed(&["--host", "web2"]),
        log.ids(&[&log.web2_ok, &log.web_ok])
    );
    assert_eq!(
        log.listed(&["--host", "db1"]),
        log.ids(&[&log.db_killed, &log.db_failed])
    );
    assert_eq!(log.listed(&["--host", "nosuchhost"]), Vec::<String>::new());
}

#[test]
fn group_filter_uses_the_membership_at_the_time_of_the_operation() {
    let log = VariedLog::new();
    // web1 is no longer in `web`, yet `web_ok` (which ran on it while it was) is found, and
    // `web1_moved` (run after it left) is not.
    assert_eq!(
        log.listed(&["--group", "web", "--host", "web1"]),
        log.ids(&[&log.web_ok])
    );
    assert_eq!(
        log.listed(&["--group", "web"]),
        log.ids(&[&log.web2_ok, &log.web_ok])
    );
    assert_eq!(
        log.listed(&["--group", "db"]),
        log.ids(&[&log.web1_moved, &log.db_killed, &log.db_failed])
    );
}

#[test]
fn user_and_kind_filters_match_the_recorded_user_and_kind() {
    let log = VariedLog::new();
    let user = current_user();
    assert_eq!(log.listed(&["--user", &user]), log.all());
    assert_eq!(
        log.listed(&["--user", "someone-else-entirely"]),
        Vec::<String>::new()
    );
    assert_eq!(log.listed(&["--kind", "run"]), log.all());
    assert_eq!(
        log.listed(&["--kind", "run", "--user", &user, "--host", "web2"]),
        log.ids(&[&log.web2_ok, &log.web_ok])
    );
}

#[test]
fn status_filter_tells_ok_failed_and_incomplete_operations_apart() {
    let log = VariedLog::new();
    assert_eq!(
        log.listed(&["--status", "ok"]),
        log.ids(&[&log.web1_moved, &log.web2_ok, &log.web_ok])
    );
    assert_eq!(
        log.listed(&["--status", "failed"]),
        log.ids(&[&log.db_failed])
    );
    assert_eq!(
        log.listed(&["--status", "incomplete"]),
        log.ids(&[&log.db_killed])
    );
    assert_eq!(
        log.listed(&["--status", "ok", "--host", "web2"]),
        log.ids(&[&log.web2_ok, &log.web_ok])
    );
    assert_eq!(
        log.listed(&["--status", "failed", "--group", "web"]),
        Vec::<String>::new()
    );
}

#[test]
fn since_and_until_take_rfc3339_times_and_ages() {
    let log = VariedLog::new();
    let failed_at = log.start_time(&log.db_failed);
    let web2_at = log.start_time(&log.web2_ok);

    // Both bounds are inclusive: an operation's own start time finds it.
    assert_eq!(
        log.listed(&["--since", &failed_at]),
        log.ids(&[
            &log.web1_moved,
            &log.web2_ok,
            &log.db_killed,
            &log.db_failed
        ])
    );
    assert_eq!(
        log.listed(&["--until", &failed_at]),
        log.ids(&[&log.db_failed, &log.web_ok])
    );
    assert_eq!(
        log.listed(&["--since", &failed_at, "--until", &web2_at]),
        log.ids(&[&log.web2_ok, &log.db_killed, &log.db_failed])
    );

    assert_eq!(log.listed(&["--since", "1h"]), log.all());
    assert_eq!(log.listed(&["--since", "2w", "--until", "0s"]), log.all());
    let nothing = Vec::<String>::new();
    assert_eq!(log.listed(&["--since", "2999-01-01T00:00:00Z"]), nothing);
    assert_eq!(log.listed(&["--until", "2000-01-01T00:00:00Z"]), nothing);
    assert_eq!(log.listed(&["--until", "1h"]), nothing);

    let out = ctl_log_in(&log.fleet, &log.fleet.log_dir(), &["--since", "yesterday"]);
    out.assert_code(2).assert_stderr_has("RFC 3339");
}

#[test]
fn grep_and_limit_narrow_the_listing() {
    let log = VariedLog::new();
    assert_eq!(log.listed(&["--grep", "beta"]), log.ids(&[&log.db_failed]));
    assert_eq!(log.listed(&["--grep", "echo"]), log.all());
    assert_eq!(
        log.listed(&["--grep", "echo", "--status", "failed"]),
        log.ids(&[&log.db_failed])
    );
    assert_eq!(
        log.listed(&["--grep", "no such text"]),
        Vec::<String>::new()
    );

    assert_eq!(
        log.listed(&["-n", "2"]),
        log.ids(&[&log.web1_moved, &log.web2_ok])
    );
    // -n counts the matching operations, not all of them.
    assert_eq!(
        log.listed(&["-n", "1", "--group", "db", "--status", "failed"]),
        log.ids(&[&log.db_failed])
    );
}

#[test]
fn json_listing_prints_the_records_themselves_newest_operation_first() {
    let log = VariedLog::new();
    let out = ctl_log(&log.fleet, &["--json"]);
    let written = fs::read_to_string(log.fleet.audit_path()).unwrap();

    let mut seen = Vec::new();
    for line in out.stdout().lines() {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}"));
        assert!(
            record["sig"].as_str().is_some_and(|sig| sig.len() > 64),
            "no sig: {line}"
        );
        let fingerprint = public_key_of(&log.fleet.identity()).fingerprint();
        assert_eq!(
            record["operator"],
            serde_json::json!({"fingerprint": fingerprint, "comment": OPERATOR}),
            "operator of {line}"
        );
        assert!(record["seq"].is_u64(), "no seq: {line}");
        assert!(
            written.lines().any(|raw| raw == line),
            "not a line of the log, byte for byte: {line}"
        );
        seen.push((
            record["op_id"].as_str().unwrap().to_owned(),
            record["event"].as_str().unwrap().to_owned(),
        ));
    }
    let expected: Vec<(String, String)> = [
        (&log.web1_moved, "start"),
        (&log.web1_moved, "end"),
        (&log.web2_ok, "start"),
        (&log.web2_ok, "end"),
        (&log.db_killed, "start"),
        (&log.db_failed, "start"),
        (&log.db_failed, "end"),
        (&log.web_ok, "start"),
        (&log.web_ok, "end"),
    ]
    .iter()
    .map(|(id, event)| (id.to_string(), event.to_string()))
    .collect();
    assert_eq!(seen, expected);

    let failed = ctl_log(&log.fleet, &["--json", "--status", "failed"]);
    let ids: Vec<Value> = failed
        .stdout()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["op_id"].clone())
        .collect();
    assert_eq!(ids, [log.db_failed.as_str(), log.db_failed.as_str()]);
}

#[test]
fn listing_has_no_colour_codes_when_stdout_is_not_a_terminal() {
    let log = VariedLog::new();
    // ok, failed and incomplete rows would each be coloured on a terminal.
    let piped = ctl_log(&log.fleet, &[]);
    let no_color = log
        .fleet
        .ctl_plain()
        .env("NO_COLOR", "1")
        .args(&["log", "--log-dir"])
        .arg_path(&log.fleet.log_dir())
        .output();
    no_color.assert_code(0);
    let show = ctl_log(&log.fleet, &["show", &log.db_failed]);
    for out in [&piped, &no_color, &show] {
        assert!(
            !out.stdout().contains('\x1b'),
            "escape codes in:\n{:?}",
            out.stdout()
        );
    }
    assert_eq!(piped.stdout(), no_color.stdout());
}

// ---------------------------------------------------------------------------------------------
// Showing one operation

/// The shortest prefix of `id` that no other id starts with.
fn unique_prefix(id: &str, others: &[&str]) -> String {
    (1..=id.len())
        .map(|n| &id[..n])
        .find(|prefix| !others.iter().any(|other| other.starts_with(prefix)))
        .expect("ids differ")
        .to_owned()
}

#[test]
fn show_with_a_unique_prefix_gives_command_user_operator_statuses_and_kept_output() {
    let fleet = Fleet::new();
    let web1 = fleet.agent_builder().env(WHO, "web1").start();
    let web2 = fleet.agent_builder().env(WHO, "web2").start();
    fleet.write_inventory(
        &[("web1", web1.addr()), ("web2", web2.addr())],
        &[("web", &["web1", "web2"])],
    );
    let command = format!("echo \"out of ${WHO}\"; echo \"err of ${WHO}\" >&2; [ ${WHO} = web1 ]");
    let op = run_op(&fleet, 1, &["-g", "web", &command]);
    let other = run_op(&fleet, 0, &["-H", "web1", "echo other"]);

    // Lower case is accepted too: ids are shown in upper case, typed in either.
    let prefix = unique_prefix(&op, &[&other]).to_ascii_lowercase();
    let out = ctl_log(&fleet, &["show", &prefix]);
    let text = out.stdout();
    let host_row = |host: &str| {
        text.lines()
            .find(|line| line.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no row for {host} in:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let fingerprint = public_key_of(&fleet.identity()).fingerprint();
    let expected_lines = [
        format!("operation  {op}"),
        format!("command    {command}"),
        format!("operator   {fingerprint} {OPERATOR}"),
        "result     1 ok, 1 failed".to_owned(),
    ];
    for line in &expected_lines {
        assert!(
            text.lines().any(|got| got == line),
            "expected line {line:?} in:\n{text}"
        );
    }
    let user_line = format!("user       {} on ", current_user());
    assert!(
        text.contains(&user_line),
        "expected {user_line:?} in:\n{text}"
    );
    assert_eq!(host_row("web1")[1..3], ["ok", "0"], "in:\n{text}");
    assert_eq!(host_row("web2")[1..3], ["failed", "1"], "in:\n{text}");
    for (host, stream, body) in [
        ("web1", "stdout", "out of web1"),
        ("web1", "stderr", "err of web1"),
        ("web2", "stdout", "out of web2"),
        ("web2", "stderr", "err of web2"),
    ] {
        let section = format!("\n--- {host} {stream} ---\n{body}\n");
        assert!(text.contains(&section), "expected {section:?} in:\n{text}");
    }
    assert!(
        !text.contains("other"),
        "showed the other operation too:\n{text}"
    );

    // The whole id works, and --json gives the operation's two records.
    let json = ctl_log(&fleet, &["show", &op, "--json"]);
    let events: Vec<Value> = json
        .stdout()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|record| {
            assert_eq!(record["op_id"], op.as_str());
            record["event"].clone()
        })
        .collect();
    assert_eq!(events, ["start", "end"]);
}

#[test]
fn show_with_an_ambiguous_or_unknown_prefix_exits_2_and_says_why() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    let first = run_op(&fleet, 0, &["-H", "web1", "true"]);
    let second = run_op(&fleet, 0, &["-H", "web1", "true"]);
    let common: String = first
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    assert!(
        !common.is_empty(),
        "ULIDs of one day share their first digits"
    );

    let ambiguous = ctl_log_in(&fleet, &fleet.log_dir(), &["show", &common]);
    ambiguous
        .assert_code(2)
        .assert_stderr_has(&format!("2 operations have ids starting with {common:?}"))
        .assert_stderr_has("give more of the id");
    assert_eq!(ambiguous.stdout(), "");

    // Crockford base32 has no U, and a ULID never starts above 7: no id starts with "ZU".
    let unknown = ctl_log_in(&fleet, &fleet.log_dir(), &["show", "ZU"]);
    unknown
        .assert_code(2)
        .assert_stderr_has("no operation with an id starting with \"ZU\"");
    assert_eq!(unknown.stdout(), "");
}

// ---------------------------------------------------------------------------------------------
// Kept output

/// The bytes `seq 1 N` prints.
fn seq_output_len(n: u32) -> usize {
    (1..=n).map(|i| i.to_string().len() + 1).sum()
}

#[test]
fn kept_output_over_the_cap_keeps_the_first_and_last_lines_with_a_cut_marker() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    let op = run_op(
        &fleet,
        0,
        &["-H", "web1", "--keep-output", "100", "seq 1 10000"],
    );

    let text = ctl_log(&fleet, &["show", &op]).stdout();
    let total = seq_output_len(10000);
    let marker = format!(
        "[ctl: {} bytes cut here; kept the first 50 and the last 50 of {total} bytes]",
        total - 100
    );
    let section = text
        .split_once("--- web1 stdout ---\n")
        .unwrap_or_else(|| panic!("no stdout section in:\n{text}"))
        .1;
    assert!(
        section.starts_with("1\n2\n3\n4\n5\n"),
        "the first lines are kept:\n{section}"
    );
    assert!(
        section.contains(&format!("\n{marker}\n")),
        "expected {marker:?} on a line of its own in:\n{section}"
    );
    assert!(
        section.ends_with("9998\n9999\n10000\n"),
        "the last lines are kept:\n{section}"
    );
    assert!(
        !section.contains("\n5000\n"),
        "the middle is cut:\n{section}"
    );

    let end = fleet.audit_records().pop().unwrap();
    let kept = &end["results"][0]["kept_stdout"];
    assert_eq!(kept["cut"], true, "end: {end}");
    assert_eq!(end["results"][0]["stdout_bytes"], total, "end: {end}");
}

#[test]
fn keep_output_0_keeps_only_the_cut_marker() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    let op = run_op(
        &fleet,
        0,
        &["-H", "web1", "--keep-output", "0", "seq 1 10000"],
    );

    let total = seq_output_len(10000);
    let marker = format!(
        "\n[ctl: {total} bytes cut here; kept the first 0 and the last 0 of {total} bytes]\n"
    );
    let kept = fleet.log_dir().join("output").join(&op).join("web1.stdout");
    assert_eq!(fs::read_to_string(&kept).unwrap(), marker);
    let text = ctl_log(&fleet, &["show", &op]).stdout();
    assert!(
        text.ends_with(&format!("--- web1 stdout ---\n{marker}")),
        "expected only the marker under stdout:\n{text}"
    );
    assert!(!text.contains("\n1\n"), "no output line is kept:\n{text}");
}

// ---------------------------------------------------------------------------------------------
// verify

/// Three operations on web1 and web2, six records (one op per two lines, start then end):
/// lines 1-2 `-g all echo one` (ok), 3-4 `-H web1 exit 3` (failed), 5-6 `-H web2` (ok).
fn sealed_log() -> (Fleet, [String; 3]) {
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(&[("web1", web1.addr()), ("web2", web2.addr())], &[]);
    let ops = [
        run_op(&fleet, 0, &["-g", "all", "echo one"]),
        run_op(&fleet, 1, &["-H", "web1", "echo two; exit 3"]),
        run_op(&fleet, 0, &["-H", "web2", "echo three"]),
    ];
    (fleet, ops)
}

#[test]
fn verify_reports_an_untouched_log_intact_with_its_head() {
    let (fleet, _) = sealed_log();
    let out = verify(&fleet, &fleet.log_dir(), &[]);
    out.assert_code(0);
    let log = fs::read_to_string(fleet.audit_path()).unwrap();
    let head = digest_of(log.lines().last().unwrap());
    assert_eq!(
        out.stdout(),
        format!("intact: 6 records in 1 file; head seq 6 sha256 {head}\n")
    );
    // The same key named as the identity, or as the operators' file, and the inventory
    // named with -i, give the same answer.
    let identity = fleet.identity().display().to_string();
    let public = format!("{identity}.pub");
    for args in [
        vec!["--identity", &identity],
        vec!["--operators", &public],
        vec!["-i", &inventory_arg(&fleet)],
    ] {
        let again = verify(&fleet, &fleet.log_dir(), &args);
        again.assert_code(0);
        assert_eq!(again.stdout(), out.stdout(), "verify {args:?}");
    }
}

#[test]
fn verify_names_the_line_of_an_edited_record() {
    let (fleet, _) = sealed_log();

    let command_edited = tampered_copy(&fleet, "command-edited", |lines| {
        assert!(
            lines[2].contains("\"command\":\"echo two; exit 3\""),
            "{}",
            lines[2]
        );
        lines[2] = lines[2].replace("echo two; exit 3", "echo two; exit 0");
    });
    let out = verify(&fleet, &command_edited, &[]);
    assert_broken_at(
        &out,
        &command_edited.join("audit.jsonl"),
        3,
        "its signature does not match its content: edited, or forged",
    );

    let host_edited = tampered_copy(&fleet, "host-edited", |lines| {
        assert!(lines[2].contains("\"host\":\"web1\""), "{}", lines[2]);
        lines[2] = lines[2].replace("\"host\":\"web1\"", "\"host\":\"web9\"");
    });
    let out = verify(&fleet, &host_edited, &[]);
    assert_broken_at(
        &out,
        &host_edited.join("audit.jsonl"),
        3,
        "signature does not match its content",
    );

    let exit_edited = tampered_copy(&fleet, "exit-edited", |lines| {
        assert!(lines[3].contains("\"exit_code\":3"), "{}", lines[3]);
        lines[3] = lines[3]
            .replace("\"exit_code\":3", "\"exit_code\":0")
            .replace("\"status\":\"failed\"", "\"status\":\"ok\"");
    });
    let out = verify(&fleet, &exit_edited, &[]);
    assert_broken_at(
        &out,
        &exit_edited.join("audit.jsonl"),
        4,
        "signature does not match its content",
    );
}

#[test]
fn verify_names_the_line_after_a_deleted_record() {
    let (fleet, _) = sealed_log();
    let copy = tampered_copy(&fleet, "deleted", |lines| {
        lines.remove(1);
    });
    let out = verify(&fleet, &copy, &[]);
    assert_broken_at(
        &out,
        &copy.join("audit.jsonl"),
        2,
        "records 2 to 2 are missing",
    );
}

#[test]
fn verify_names_the_line_of_swapped_records() {
    let (fleet, _) = sealed_log();
    let copy = tampered_copy(&fleet, "swapped", |lines| lines.swap(2, 3));
    let out = verify(&fleet, &copy, &[]);
    assert_broken_at(
        &out,
        &copy.join("audit.jsonl"),
        3,
        "record 4 comes before record 3: records were reordered",
    );
}

/// The content of a copy of the last line made to follow it (seq 7, prev its digest), as
/// the signature covers it: everything but the `sig` member.
fn content_after_last(lines: &[String]) -> String {
    let last = lines.last().expect("the log has lines");
    let body = last
        .strip_suffix(&format!(",\"sig\":\"{}\"}}", sig_of(last)))
        .expect("the sig is the last member");
    let (_, rest) = body
        .split_once(",\"op_id\":")
        .expect("op_id follows seq and prev");
    format!(
        "{{\"seq\":7,\"prev\":\"{}\",\"op_id\":{rest}}}",
        digest_of(last)
    )
}

/// `content` sealed with `sig` as the log holds it.
fn sealed(content: &str, sig: &str) -> String {
    let body = content.strip_suffix('}').expect("content is an object");
    format!("{body},\"sig\":\"{sig}\"}}")
}

/// `content` signed by `identity` as ctl signs it: the armored signature's body, on one line.
fn signed_by(content: &str, identity: &Identity) -> String {
    let armored = identity
        .sshsig_sign(NAMESPACE, content.as_bytes())
        .expect("a key in memory signs");
    let sig: String = armored
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    sealed(content, &sig)
}

#[test]
fn verify_names_an_appended_forged_record() {
    let (fleet, _) = sealed_log();

    // Tried: the last record's own signature on a record made to follow it.
    let copied_sig = tampered_copy(&fleet, "forged", |lines| {
        let line = sealed(&content_after_last(lines), &sig_of(lines.last().unwrap()));
        lines.push(line);
    });
    let out = verify(&fleet, &copied_sig, &[]);
    assert_broken_at(
        &out,
        &copied_sig.join("audit.jsonl"),
        7,
        "its signature does not match its content: edited, or forged",
    );

    // Tried: no signature at all, a plausible record otherwise.
    let unsealed = tampered_copy(&fleet, "unsealed", |lines| {
        let line = content_after_last(lines);
        serde_json::from_str::<Value>(&line).expect("the forged line is plausible JSON");
        lines.push(line);
    });
    let out = verify(&fleet, &unsealed, &[]);
    assert_broken_at(
        &out,
        &unsealed.join("audit.jsonl"),
        7,
        "not a sealed record",
    );
}

#[test]
fn verify_names_a_record_forged_with_another_key_in_the_operators_name() {
    // Tried: a third key, not among the operators, signs a well-chained record that names
    // the fleet's operator (fingerprint and comment) as its writer.
    let (fleet, _) = sealed_log();
    let mallory = Identity::generate("mallory@elsewhere");
    let operator = public_key_of(&fleet.identity());
    let forged = tampered_copy(&fleet, "third-key", |lines| {
        let content = content_after_last(lines);
        assert!(
            content.contains(&format!(
                "\"operator\":{{\"fingerprint\":\"{}\",\"comment\":\"{OPERATOR}\"}}",
                operator.fingerprint()
            )),
            "the forged record names the operator: {content}"
        );
        lines.push(signed_by(&content, &mallory));
    });
    let out = verify(&fleet, &forged, &[]);
    assert_broken_at(
        &out,
        &forged.join("audit.jsonl"),
        7,
        &format!(
            "signed by {}, but in the name of {} ({OPERATOR}): forged in another operator's name",
            mallory.public_key().fingerprint(),
            operator.fingerprint()
        ),
    );
    // The same record, now naming its real signer, is still not the operators'.
    let unknown = tampered_copy(&fleet, "unknown-key", |lines| {
        let content = content_after_last(lines)
            .replace(&operator.fingerprint(), &mallory.public_key().fingerprint())
            .replace(OPERATOR, "mallory@elsewhere");
        lines.push(signed_by(&content, &mallory));
    });
    let out = verify(&fleet, &unknown, &[]);
    // The inventory's identity, relative to the inventory given as `inventory.yaml`.
    let operators = "keys/operator.pub";
    assert_broken_at(
        &out,
        &unknown.join("audit.jsonl"),
        7,
        &format!(
            "signed by {} (mallory@elsewhere), which is not among the operators in {operators}",
            mallory.public_key().fingerprint()
        ),
    );
}

#[test]
fn verify_names_a_kept_output_file_that_was_edited_or_removed() {
    let (fleet, ops) = sealed_log();

    let edited = tampered_copy(&fleet, "output-edited", |_| {});
    let kept = edited.join("output").join(&ops[0]).join("web2.stdout");
    assert_eq!(fs::read_to_string(&kept).unwrap(), "one\n");
    fs::write(&kept, "One\n").unwrap();
    let out = verify(&fleet, &edited, &[]);
    out.assert_code(1);
    let expected = format!(
        "broken: {} (kept output of web2 in the record at {} line 2) is missing or altered\n",
        kept.display(),
        edited.join("audit.jsonl").display()
    );
    assert_eq!(out.stdout(), expected);
    // `ctl log show` refuses to pass the altered copy off as the output.
    let show = ctl_log_in(&fleet, &edited, &["show", &ops[0]]);
    show.assert_code(0);
    assert!(
        show.stdout().contains("does not match its record: altered")
            && !show.stdout().contains("One"),
        "show:\n{}",
        show.stdout()
    );

    let removed = tampered_copy(&fleet, "output-removed", |_| {});
    let kept = removed.join("output").join(&ops[1]).join("web1.stdout");
    fs::remove_file(&kept).unwrap();
    let out = verify(&fleet, &removed, &[]);
    out.assert_code(1);
    let expected = format!(
        "broken: {} (kept output of web1 in the record at {} line 4) is missing or altered\n",
        kept.display(),
        removed.join("audit.jsonl").display()
    );
    assert_eq!(out.stdout(), expected);
}

#[test]
fn two_operators_write_one_log_and_each_is_named_unless_trusted() {
    let fleet = Fleet::new();
    let bob = add_operator_bob(&fleet);
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(&[("web1", web1.addr()), ("web2", web2.addr())], &[]);
    let bob_arg = bob.display().to_string();
    let ops = [
        run_op(&fleet, 0, &["-g", "all", "echo by operator"]),
        run_op(
            &fleet,
            0,
            &["--identity", &bob_arg, "-H", "web1", "echo by bob"],
        ),
        run_op(&fleet, 0, &["-H", "web2", "echo by operator again"]),
    ];

    // The records say who signed them, and so do the listing and `show`.
    let bob_key = public_key_of(&bob);
    let signers: Vec<Value> = fleet
        .audit_records()
        .iter()
        .map(|r| r["operator"]["comment"].clone())
        .collect();
    assert_eq!(
        signers,
        [OPERATOR, OPERATOR, "bob@test", "bob@test", OPERATOR, OPERATOR]
    );
    let listing = ctl_log(&fleet, &[]);
    assert!(
        listed_row(&listing, &ops[1]).contains("bob@test"),
        "{}",
        listing.stdout()
    );
    assert!(listed_row(&listing, &ops[0]).contains(OPERATOR));
    ctl_log(&fleet, &["show", &ops[1]])
        .assert_stdout_has(&format!("operator   {} bob@test", bob_key.fingerprint()));

    // Both keys in the file (the agents' authorized_keys will do): intact.
    let both = fleet.authorized_keys().display().to_string();
    let out = verify(&fleet, &fleet.log_dir(), &["--operators", &both]);
    out.assert_code(0);
    assert!(
        out.stdout()
            .starts_with("intact: 6 records in 1 file; head seq 6 "),
        "{}",
        out.stdout()
    );

    // Only the fleet's operator, named or by default (the inventory's identity, relative to
    // the inventory given as `inventory.yaml`): bob's first record is named, with his key.
    let operator_only = format!("{}.pub", fleet.identity().display());
    for (args, file) in [
        (vec!["--operators", &operator_only], operator_only.as_str()),
        (vec![], "keys/operator.pub"),
    ] {
        let out = verify(&fleet, &fleet.log_dir(), &args);
        assert_broken_at(
            &out,
            &fleet.audit_path(),
            3,
            &format!(
                "line 3: signed by {} (bob@test), which is not among the operators in {file}",
                bob_key.fingerprint()
            ),
        );
    }
    // Only bob: the fleet operator's first record is named.
    let bob_only = format!("{bob_arg}.pub");
    let out = verify(&fleet, &fleet.log_dir(), &["--operators", &bob_only]);
    assert_broken_at(
        &out,
        &fleet.audit_path(),
        1,
        &format!(
            "signed by {} ({OPERATOR}), which is not among the operators in {bob_only}",
            public_key_of(&fleet.identity()).fingerprint()
        ),
    );
}

#[test]
fn verify_needs_no_private_key_and_no_inventory() {
    let (fleet, _) = sealed_log();
    fs::remove_file(fleet.identity()).unwrap();
    assert!(fleet.path("keys/operator.pub").exists());

    // In the fleet's folder: the inventory's identity, of which only the .pub is left.
    let out = verify(&fleet, &fleet.log_dir(), &[]);
    out.assert_code(0);
    assert!(out.stdout().starts_with("intact: "), "got {}", out.stdout());

    // An auditor's folder with a copy of the log and the operators' public keys only.
    let auditor = tempfile::tempdir().unwrap();
    let logs = auditor.path().join("logs");
    copy_dir(&fleet.log_dir(), &logs);
    fs::copy(
        fleet.path("keys/operator.pub"),
        auditor.path().join("operators"),
    )
    .unwrap();
    let out = fleet
        .ctl_plain()
        .args(&["--log-dir"])
        .arg_path(&logs)
        .args(&["log", "verify", "--operators"])
        .arg_path(&auditor.path().join("operators"))
        .output();
    out.assert_code(0);
    assert!(out.stdout().starts_with("intact: "), "got {}", out.stdout());
}

#[test]
fn verify_without_the_operators_keys_exits_2_and_says_why() {
    let (fleet, _) = sealed_log();
    let missing = fleet.path("nobody.pub").display().to_string();
    verify(&fleet, &fleet.log_dir(), &["--operators", &missing])
        .assert_code(2)
        .assert_stderr_has(&format!("cannot read the operators' keys {missing}"));

    // A file with no usable key line: its lines are warned about, and nothing is trusted.
    let empty = fleet.path("no-keys");
    fs::write(
        &empty,
        "# nobody\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old@ws\n",
    )
    .unwrap();
    verify(
        &fleet,
        &fleet.log_dir(),
        &["--operators", &empty.display().to_string()],
    )
    .assert_code(2)
    .assert_stderr_has("line 2")
    .assert_stderr_has("holds no operator key");
}

// ---------------------------------------------------------------------------------------------
// Many writers, rotation

#[test]
fn fifty_concurrent_runs_log_fifty_whole_operations_and_an_intact_chain() {
    const RUNS: usize = 50;
    // 50 ctl processes on a 2-core machine: each waits its turn on the log lock twice.
    const DEADLINE: Duration = Duration::from_secs(240);
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(&[("web1", web1.addr()), ("web2", web2.addr())], &[]);

    let running: Vec<_> = (0..RUNS)
        .map(|n| {
            fleet
                .ctl("run")
                .args(&["-g", "all", &format!("echo run {n}")])
                .spawn()
        })
        .collect();
    for ctl in running {
        ctl.wait(DEADLINE).assert_code(0);
    }

    let records = fleet.audit_records();
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    for record in &records {
        events
            .entry(record["op_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(record["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(events.len(), RUNS, "distinct operations");
    for (op_id, seen) in &events {
        assert_eq!(seen, &["start", "end"], "records of {op_id}");
    }
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=2 * RUNS as u64).collect::<Vec<_>>());

    let out = verify(&fleet, &fleet.log_dir(), &[]);
    out.assert_code(0);
    assert!(
        out.stdout()
            .starts_with("intact: 100 records in 1 file; head seq 100 "),
        "{}",
        out.stdout()
    );
    assert_eq!(listed(&fleet, &["-n", "100", "--status", "ok"]).len(), RUNS);
}

/// The rotated files of a log folder (`audit-<seq>.jsonl`), in chain order.
fn rotated_files(log_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(log_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("audit-") && name.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn rotation_keeps_every_operation_listed_and_the_chain_verifiable() {
    const OPS: usize = 8;
    let fleet = Fleet::new();
    let (web1, web2) = (fleet.agent(), fleet.agent());
    fleet.write_inventory(&[("web1", web1.addr()), ("web2", web2.addr())], &[]);
    let mut ops = Vec::new();
    for n in 0..OPS {
        fleet
            .ctl("run")
            .env("CTL_LOG_ROTATE_BYTES", "2000")
            .args(&["-g", "all", &format!("echo rotation {n}")])
            .output()
            .assert_code(0);
        ops.push(last_op_id(&fleet));
    }

    let rotated = rotated_files(&fleet.log_dir());
    assert!(
        rotated.len() >= 2,
        "expected at least two rotated files, got {rotated:?}"
    );
    ops.reverse();
    assert_eq!(
        listed(&fleet, &["-n", "100"]),
        ops,
        "every operation, newest first"
    );
    let out = verify(&fleet, &fleet.log_dir(), &[]);
    out.assert_code(0);
    let files = rotated.len() + 1;
    assert!(
        out.stdout()
            .starts_with(&format!("intact: {} records in {files} files; ", 2 * OPS)),
        "{}",
        out.stdout()
    );

    // Remove a middle file: the next file's first line reports the records that are gone.
    let copy = tampered_copy(&fleet, "rotated-gap", |_| {});
    let copied = rotated_files(&copy);
    let gone = &copied[1];
    let seqs: Vec<u64> = fs::read_to_string(gone)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    fs::remove_file(gone).unwrap();
    let next = copied
        .get(2)
        .cloned()
        .unwrap_or_else(|| copy.join("audit.jsonl"));
    let out = verify(&fleet, &copy, &[]);
    assert_broken_at(
        &out,
        &next,
        1,
        &format!(
            "records {} to {} are missing",
            seqs[0],
            seqs.last().unwrap()
        ),
    );
}

#[test]
fn global_flags_work_anywhere_but_listing_filters_only_with_log_alone() {
    let (fleet, ops) = sealed_log();
    let log_dir = fleet.log_dir().display().to_string();
    let inventory = inventory_arg(&fleet);
    // After the subcommand, and before `log`, the global flags work.
    for args in [
        vec!["log", "verify", "--log-dir", &log_dir, "-i", &inventory],
        vec!["--log-dir", &log_dir, "log", "verify", "-i", &inventory],
        vec!["log", "show", &ops[0], "--log-dir", &log_dir],
    ] {
        fleet.ctl_plain().args(&args).output().assert_code(0);
    }
    // Between `log` and its subcommand, too (README: "before or after the subcommand").
    for args in [
        vec!["log", "--log-dir", &log_dir, "verify", "-i", &inventory],
        vec!["log", "--log-dir", &log_dir, "show", &ops[0]],
        vec![
            "log",
            "-v",
            "--log-dir",
            &log_dir,
            "verify",
            "-i",
            &inventory,
        ],
    ] {
        fleet.ctl_plain().args(&args).output().assert_code(0);
    }
    // A listing filter next to show/verify would be ignored; it is refused instead.
    fleet
        .ctl_plain()
        .args(&[
            "log",
            "--host",
            "web1",
            "--log-dir",
            &log_dir,
            "show",
            &ops[0],
        ])
        .output()
        .assert_code(2)
        .assert_stderr_has("go with `ctl log` alone");
}

/// Every record in every log file of `log_dir`, parsed, skipping lines that are not JSON.
fn all_records(log_dir: &Path) -> Vec<Value> {
    let mut files = rotated_files(log_dir);
    files.push(log_dir.join("audit.jsonl"));
    files
        .iter()
        .filter_map(|file| fs::read_to_string(file).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Appends the start of a record without its end, as a crash in the middle of a write would.
fn cut_a_line_short(fleet: &Fleet) {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(fleet.audit_path())
        .expect("the log exists");
    std::io::Write::write_all(&mut file, b"{\"seq\":3,\"prev\":\"ab").expect("can append");
}

#[test]
fn a_line_cut_short_by_a_crash_is_reported_and_logging_goes_on() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    let before = run_op(&fleet, 0, &["-H", "web1", "echo before"]);
    cut_a_line_short(&fleet);

    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", "echo after"])
        .output();
    out.assert_code(0).assert_stderr_has("is damaged");
    let after = last_op_id(&fleet);

    assert_eq!(listed(&fleet, &[]), [after.clone(), before]);
    let text = fs::read_to_string(fleet.audit_path()).unwrap();
    assert_eq!(
        text.lines().count(),
        5,
        "the cut line stays on its own:\n{text}"
    );
    let out = verify(&fleet, &fleet.log_dir(), &[]);
    assert_broken_at(&out, &fleet.audit_path(), 3, "not a sealed record");

    let seqs: Vec<u64> = all_records(&fleet.log_dir())
        .iter()
        .filter(|r| r["op_id"] == after.as_str())
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    // Numbering goes on from the last intact record: seq never repeats.
    assert_eq!(seqs, [3, 4]);
}

#[test]
fn after_a_line_cut_short_rotation_loses_no_record() {
    let fleet = Fleet::new();
    let web1 = fleet.agent();
    fleet.write_inventory(&[("web1", web1.addr())], &[]);
    // One record per file: audit-000000000001.jsonl holds `before`'s start.
    let run = |command: &str| {
        fleet
            .ctl("run")
            .env("CTL_LOG_ROTATE_BYTES", "1")
            .args(&["-H", "web1", command])
            .output()
            .assert_code(0);
        last_op_id(&fleet)
    };
    let before = run("echo before");
    let first_file = fleet.log_dir().join("audit-000000000001.jsonl");
    assert!(
        fs::read_to_string(&first_file).unwrap().contains(&before),
        "{} holds the first start record",
        first_file.display()
    );
    cut_a_line_short(&fleet);
    let after = run("echo after");

    let before_events: Vec<Value> = all_records(&fleet.log_dir())
        .iter()
        .filter(|r| r["op_id"] == before.as_str())
        .map(|r| r["event"].clone())
        .collect();
    // Nothing may remove a record: rotation never renames onto an existing file.
    assert_eq!(before_events, ["start", "end"]);
    assert!(fs::read_to_string(&first_file).unwrap().contains(&before));
    let after_events = all_records(&fleet.log_dir())
        .iter()
        .filter(|r| r["op_id"] == after.as_str())
        .count();
    assert_eq!(after_events, 2);
}
