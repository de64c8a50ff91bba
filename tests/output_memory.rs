//! ctl's memory under output floods: hosts that print far more than ctl may hold, to a
//! reader that keeps up. Live lines, `--json` and `--gather` each run twice, with every
//! host printing 10 MB and then 200 MB, and ctl's peak resident set must stay under one
//! fixed bound both times: what ctl holds is set by its byte budget and `--max-output`,
//! never by how much the hosts print. Then the review's two floods: 1 GiB from one host,
//! and 5 MB from each of 500 hosts at once, where what ctl may hold per host in flight
//! (its kept copy for the log, a connection's read-ahead) is added to the bound.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Agent, Fleet};

/// ctl's peak resident set in a debug build while two hosts flood it. Before the byte
/// budget and `--max-output`, the same runs peaked at hundreds of MiB (ctl held up to 1,024
/// chunks in its queue, and all of `--json`'s and `--gather`'s output).
const FLOOD_RSS_BOUND_KIB: u64 = 20 * 1024;
/// Each flood must end well within this, even on a loaded machine.
const FLOOD_DEADLINE: Duration = Duration::from_secs(240);

/// What ctl may hold for each host in flight, on top of [`FLOOD_RSS_BOUND_KIB`]: the kept
/// copy of its output for the log (`--keep-output`, 32 KiB of stdout here), a connection's
/// 8 KiB read-ahead, its TLS state (rustls keeps up to a record of 16 KiB each way, and
/// its buffers), its task and socket, and room for the allocator.
const PER_HOST_KIB: u64 = 128;

const SMALL: u64 = 10_000_000;
const LARGE: u64 = 200_000_000;

/// Two agents, named web1 and web2.
fn two_hosts() -> (Fleet, Vec<Agent>) {
    let fleet = Fleet::new();
    let agents = vec![fleet.agent(), fleet.agent()];
    fleet.write_inventory(
        &[("web1", agents[0].addr()), ("web2", agents[1].addr())],
        &[],
    );
    (fleet, agents)
}

/// Base64 of `bytes` zero bytes: lines of 76 characters.
fn flood(bytes: u64) -> String {
    format!("head -c {bytes} /dev/zero | base64")
}

/// How many lines `base64` prints for `bytes` bytes.
fn base64_lines(bytes: u64) -> u64 {
    (bytes.div_ceil(3) * 4).div_ceil(76)
}

/// How many bytes `base64` prints for `bytes` bytes, newlines included.
fn base64_output_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(3) * 4 + base64_lines(bytes)
}

fn assert_within_bound(what: &str, peak_kib: u64) {
    assert_within(what, peak_kib, FLOOD_RSS_BOUND_KIB);
}

fn assert_within(what: &str, peak_kib: u64, bound_kib: u64) {
    eprintln!("ctl peak RSS, {what}: {peak_kib} KiB");
    assert!(
        peak_kib < bound_kib,
        "{what}: ctl peaked at {peak_kib} KiB, expected below {bound_kib} KiB"
    );
}

/// Runs `command` with `ctl run -g all` into a real `wc -l`; returns ctl's output, its peak
/// RSS and the lines `wc` counted.
fn run_into_wc(fleet: &Fleet, command: &str) -> (crate::util::CtlOutput, u64, Option<u64>) {
    let mut wc = Command::new("wc")
        .arg("-l")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("can start wc");
    let ctl = fleet
        .ctl("run")
        .args(&["-g", "all", command])
        .with_stdout(wc.stdin.take().expect("piped"))
        .spawn();
    let (out, peak_kib) = ctl.wait_sampling_rss(FLOOD_DEADLINE);
    let mut counted = String::new();
    wc.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut counted)
        .expect("wc prints its count");
    let _ = wc.wait();
    (out, peak_kib, counted.trim().parse().ok())
}

#[test]
fn a_gibibyte_from_one_host_passes_through_bounded_memory() {
    // Tried: one host printing 1 GiB of base64 lines into `wc -l`: every line arrives and
    // ctl's peak stays under the same bound as for 10 MB.
    let fleet = Fleet::new();
    let agent = fleet.agent();
    fleet.write_inventory(&[("web1", agent.addr())], &[]);
    let bytes = 1 << 30;
    let (out, peak_kib, lines) = run_into_wc(&fleet, &flood(bytes));
    out.assert_code(0);
    assert_eq!(lines, Some(base64_lines(bytes)), "stderr:\n{}", out.stderr);
    assert_within_bound("live lines, 1 GiB from one host", peak_kib);
}

#[test]
fn five_hundred_hosts_flooding_at_once_pass_through_bounded_memory() {
    // Tried: 500 hosts (10 agents, 50 host names each) each printing 5 MB of base64 lines
    // at once into `wc -l`: every line of every host arrives, and ctl's peak stays under
    // the fixed bound plus what it may hold per host in flight, never near the 2.5 GB the
    // hosts print. (Before frames were charged to the byte budget before being read, and
    // the kept copy's window was held to its size, this run peaked at 120 MiB in a
    // release build.)
    const HOSTS: usize = 500;
    const BYTES: u64 = 5_000_000;
    let fleet = Fleet::new();
    let agents: Vec<Agent> = (0..10).map(|_| fleet.agent()).collect();
    let names: Vec<String> = (0..HOSTS).map(|i| format!("h{i:03}")).collect();
    let hosts: Vec<(&str, std::net::SocketAddr)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), agents[i % agents.len()].addr()))
        .collect();
    fleet.write_inventory(&hosts, &[]);
    let (out, peak_kib, lines) = run_into_wc(&fleet, &flood(BYTES));
    out.assert_code(0);
    assert_eq!(
        lines,
        Some(HOSTS as u64 * base64_lines(BYTES)),
        "stderr ends:\n{}",
        &out.stderr[out.stderr.len().saturating_sub(2000)..]
    );
    assert_within(
        "live lines, 5 MB from each of 500 hosts",
        peak_kib,
        FLOOD_RSS_BOUND_KIB + HOSTS as u64 * PER_HOST_KIB,
    );
}

#[test]
fn live_lines_of_any_volume_pass_through_bounded_memory() {
    // Tried: two hosts each printing 10 MB, then 200 MB, of base64 lines into `wc -l`; every
    // line arrives, and ctl's peak stays under the bound both times.
    let (fleet, _agents) = two_hosts();
    for bytes in [SMALL, LARGE] {
        let (out, peak_kib, lines) = run_into_wc(&fleet, &flood(bytes));
        out.assert_code(0);
        assert_eq!(
            lines,
            Some(2 * base64_lines(bytes)),
            "lines printed for {bytes} bytes per host; stderr:\n{}",
            out.stderr
        );
        assert_within_bound(&format!("live lines, {bytes} bytes per host"), peak_kib);
    }
}

#[test]
fn json_holds_at_most_max_output_per_host_and_says_what_it_cut() {
    // Tried: two hosts each printing 10 MB, then 200 MB, with --json and the default
    // --max-output (1 MiB): each object holds the first 1 MiB and a marker, is flagged cut,
    // and ctl's peak stays under the bound both times.
    let (fleet, _agents) = two_hosts();
    for bytes in [SMALL, LARGE] {
        let ctl = fleet
            .ctl("run")
            .args(&["-g", "all", "--json", &flood(bytes)])
            .spawn();
        let (out, peak_kib) = ctl.wait_sampling_rss(FLOOD_DEADLINE);

        out.assert_code(0);
        let by_host = out.json_by_host();
        assert_eq!(by_host.len(), 2, "stdout:\n{}", out.stdout());
        for (host, object) in &by_host {
            let stdout = object["stdout"].as_str().unwrap_or_default();
            let marker = format!(
                "[ctl: output cut by --max-output: showed the first 1048576 of {} bytes]\n",
                base64_output_bytes(bytes)
            );
            assert!(
                stdout.ends_with(&marker),
                "{host}: ends {:?}",
                &stdout[stdout.len().saturating_sub(120)..]
            );
            assert!(
                stdout.len() < 1024 * 1024 + 200,
                "{host}: {} bytes",
                stdout.len()
            );
            assert_eq!(object["stdout_cut"], true, "{host}");
            assert_eq!(object["stderr_cut"], false, "{host}");
        }
        assert_within_bound(&format!("--json, {bytes} bytes per host"), peak_kib);
    }
}

#[test]
fn gather_holds_at_most_max_output_per_host() {
    // Tried: two hosts each printing 10 MB, then 200 MB, with --gather and --max-output
    // 65536: the two identical outputs are shown once, under both hosts, cut with a marker,
    // and ctl's peak stays under the bound both times.
    let (fleet, _agents) = two_hosts();
    for bytes in [SMALL, LARGE] {
        let ctl = fleet
            .ctl("run")
            .args(&[
                "-g",
                "all",
                "--gather",
                "--max-output",
                "65536",
                &flood(bytes),
            ])
            .spawn();
        let (out, peak_kib) = ctl.wait_sampling_rss(FLOOD_DEADLINE);

        out.assert_code(0);
        let stdout = out.stdout();
        assert!(
            stdout.contains("\nweb1,web2 (2)\n"),
            "stdout starts:\n{}",
            &stdout[..300.min(stdout.len())]
        );
        let marker = format!(
            "[ctl: output cut by --max-output: showed the first 65536 of {} bytes]\n",
            base64_output_bytes(bytes)
        );
        assert!(
            stdout.ends_with(&marker),
            "stdout ends:\n{}",
            &stdout[stdout.len().saturating_sub(200)..]
        );
        assert_within_bound(&format!("--gather, {bytes} bytes per host"), peak_kib);
    }
}
