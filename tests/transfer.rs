//! `ctl push` and `ctl pull` against real agents, each with its own files folder: large files
//! checked by SHA-256 on disk, memory that stays flat, trees with modes and links, the scp
//! rule, missing parents, interrupted pushes that leave the old destination intact, hosts
//! that lack the file, full disks, and the operation log.
//!
//! Every peer here is a real binary. Tests that fake an agent or a controller to break the
//! protocol on purpose are in `protocol_abuse`.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::digest::sha256_hex;
use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::{
    agent_on, files_below, fleet_of, json_of, json_sorted, mode_of, peak_rss_kib, set_mode,
    sha256_file, snapshot, temps_in, text, wait_for_temp, wait_until, Fleet, Node,
};

const MIB: u64 = 1024 * 1024;
/// The large file of the large-file tests.
const BIG_SIZE: u64 = 200 * MIB;
/// Three hosts each receiving 200 MiB from a debug build on a small CI machine: generous.
const BIG_DEADLINE: Duration = Duration::from_secs(240);
/// The peak resident memory `ctl` and an agent may reach while moving [`BIG_SIZE`] bytes:
/// a fraction of the file, so holding it (or a host's share of it) in memory would fail.
const RSS_BOUND_KIB: u64 = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Writes `size` bytes (a whole number of MiB) that are not all zeros and do not repeat
/// within the file: one random-looking MiB block whose first 8 bytes count the blocks.
/// Returns the SHA-256 of what was written, computed on the way.
fn write_big_file(path: &Path, size: u64) -> String {
    let mut block = vec![0u8; MIB as usize];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for word in block.chunks_mut(8) {
        // xorshift64: fast, and good enough to make the data incompressible-looking.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    let file = fs::File::create(path).expect("can create the big file");
    let mut out = BufWriter::with_capacity(MIB as usize, file);
    let mut hasher = Sha256::new();
    for index in 0..size / MIB {
        block[..8].copy_from_slice(&index.to_le_bytes());
        out.write_all(&block).expect("can write the big file");
        hasher.update(&block);
    }
    out.flush().expect("can write the big file");
    hex::encode(hasher.finalize())
}

// ---------------------------------------------------------------------------------------------
// Large files

#[test]
fn a_large_push_lands_verified_on_every_host_with_flat_memory_and_a_repeat_is_unchanged() {
    // Tried: push a 200 MiB generated file (mode 0640) to three agents, sampling the peak
    // RSS of ctl while it runs and of each agent afterwards; then the same push again, and
    // again with --mode 0600.
    let (fleet, hosts) = fleet_of(&["web1", "web2", "web3"]);
    let source = fleet.path("big.bin");
    let sha = write_big_file(&source, BIG_SIZE);
    set_mode(&source, 0o640);

    let ctl = fleet
        .ctl("push")
        .args(&["-g", "all", "--json", text(&source)])
        .spawn();
    let (out, ctl_peak_kib) = ctl.wait_sampling_rss(BIG_DEADLINE);
    out.assert_code(0);
    let results = json_sorted(&out);
    assert_eq!(results.len(), 3, "stdout:\n{}", out.stdout());
    for host in &hosts {
        let result = json_of(&out, &results, host.name);
        let dest = host.files.join("big.bin");
        assert_eq!(result["status"], "ok", "{}: {result}", host.name);
        assert_eq!(result["bytes"], BIG_SIZE, "{}: {result}", host.name);
        assert_eq!(result["sha256"], sha.as_str(), "{}: {result}", host.name);
        assert_eq!(result["path"], dest.to_str().unwrap(), "{}", host.name);
        assert!(result["error"].is_null(), "{}: {result}", host.name);
        assert!(result["duration_ms"].is_u64(), "{}: {result}", host.name);
        assert_eq!(sha256_file(&dest), sha, "{} holds other bytes", host.name);
        assert_eq!(mode_of(&dest), 0o640, "{}: the mode is kept", host.name);
        assert_eq!(
            temps_in(&host.files),
            Vec::<PathBuf>::new(),
            "{}",
            host.name
        );
    }

    // Memory: the file is 200 MiB and went to three hosts; neither side may hold it.
    let agent_peaks: Vec<(&str, u64)> = hosts
        .iter()
        .map(|host| {
            let peak = peak_rss_kib(host.agent.pid()).expect("the agent is running");
            (host.name, peak)
        })
        .collect();
    eprintln!(
        "peak RSS while pushing {} MiB to 3 hosts: ctl {ctl_peak_kib} KiB, agents {agent_peaks:?}",
        BIG_SIZE / MIB
    );
    assert!(ctl_peak_kib > 0, "ctl's memory was never sampled");
    assert!(
        ctl_peak_kib < RSS_BOUND_KIB,
        "ctl peaked at {ctl_peak_kib} KiB, expected below {RSS_BOUND_KIB} KiB"
    );
    for (name, peak) in &agent_peaks {
        assert!(
            *peak < RSS_BOUND_KIB,
            "the agent of {name} peaked at {peak} KiB, expected below {RSS_BOUND_KIB} KiB"
        );
    }

    // The same push again: every host already holds it, so nothing is sent.
    let again = fleet
        .ctl("push")
        .args(&["-g", "all", "--json", text(&source)])
        .spawn()
        .wait(BIG_DEADLINE);
    again.assert_code(0);
    let results = json_sorted(&again);
    for host in &hosts {
        let result = json_of(&again, &results, host.name);
        assert_eq!(result["status"], "unchanged", "{}: {result}", host.name);
        assert_eq!(
            result["bytes"], 0,
            "{}: nothing is sent: {result}",
            host.name
        );
        assert_eq!(mode_of(&host.files.join("big.bin")), 0o640);
    }

    // --mode overrides the file's own mode, even when the content is already there.
    let moded = fleet
        .ctl("push")
        .args(&["-g", "all", "--json", "--mode", "0600", text(&source)])
        .spawn()
        .wait(BIG_DEADLINE);
    moded.assert_code(0);
    let results = json_sorted(&moded);
    for host in &hosts {
        let result = json_of(&moded, &results, host.name);
        assert_eq!(result["status"], "unchanged", "{}: {result}", host.name);
        let dest = host.files.join("big.bin");
        assert_eq!(mode_of(&dest), 0o600, "{}: --mode 0600 applies", host.name);
        assert_eq!(sha256_file(&dest), sha, "{}", host.name);
    }
}

#[test]
fn a_large_pull_from_three_hosts_lands_in_one_folder_per_host_verified() {
    // Tried: the same 200 MiB file (mode 0640) in the files folder of three agents (hard
    // links of one generated file), pulled with --json into ./collected; ctl's peak RSS is
    // sampled while it runs.
    let (fleet, hosts) = fleet_of(&["web1", "web2", "web3"]);
    let source = fleet.path("big.bin");
    let sha = write_big_file(&source, BIG_SIZE);
    set_mode(&source, 0o640);
    for host in &hosts {
        fs::hard_link(&source, host.files.join("big.bin")).expect("can link into files");
    }

    let ctl = fleet
        .ctl("pull")
        .args(&["-g", "all", "--json", "-d", "collected", "big.bin"])
        .spawn();
    let (out, ctl_peak_kib) = ctl.wait_sampling_rss(BIG_DEADLINE);
    out.assert_code(0);
    let agent_peaks: Vec<(&str, Option<u64>)> = hosts
        .iter()
        .map(|host| (host.name, peak_rss_kib(host.agent.pid())))
        .collect();
    eprintln!(
        "peak RSS while pulling {} MiB from 3 hosts: ctl {ctl_peak_kib} KiB, agents {agent_peaks:?}",
        BIG_SIZE / MIB
    );
    let results = json_sorted(&out);
    assert_eq!(results.len(), 3, "stdout:\n{}", out.stdout());
    for host in &hosts {
        let result = json_of(&out, &results, host.name);
        let local = fleet.path("collected").join(host.name).join("big.bin");
        assert_eq!(result["status"], "ok", "{}: {result}", host.name);
        assert_eq!(result["bytes"], BIG_SIZE, "{}: {result}", host.name);
        assert_eq!(result["sha256"], sha.as_str(), "{}: {result}", host.name);
        assert_eq!(sha256_file(&local), sha, "{} pulled other bytes", host.name);
        assert_eq!(mode_of(&local), 0o640, "{}: the mode is kept", host.name);
        let folder = fleet.path("collected").join(host.name);
        assert_eq!(temps_in(&folder), Vec::<PathBuf>::new(), "{}", host.name);
    }
    assert!(
        ctl_peak_kib > 0 && ctl_peak_kib < RSS_BOUND_KIB,
        "ctl peaked at {ctl_peak_kib} KiB pulling, expected below {RSS_BOUND_KIB} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// Trees, the scp rule, --mode, missing parents

/// A tree with nested folders, an executable of mode 0750, a private folder and file, a
/// link to a sibling and a dangling absolute link.
fn make_site(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("data/deep/nested")).unwrap();
    fs::create_dir_all(root.join("private")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("index.html"), "<h1>hello</h1>\n").unwrap();
    fs::write(root.join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("data/deep/nested/blob.bin"), blob).unwrap();
    fs::write(root.join("private/secret"), "s3cret\n").unwrap();
    std::os::unix::fs::symlink("index.html", root.join("current")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/muster-target", root.join("dangling")).unwrap();
    for (rel, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("data", 0o755),
        ("data/deep", 0o755),
        ("data/deep/nested", 0o755),
        ("empty", 0o755),
        ("private", 0o700),
        ("index.html", 0o644),
        ("bin/run.sh", 0o750),
        ("data/deep/nested/blob.bin", 0o644),
        ("private/secret", 0o600),
    ] {
        set_mode(&root.join(rel), mode);
    }
}

#[test]
fn a_tree_pushed_with_r_into_an_existing_folder_and_pulled_back_keeps_modes_and_links() {
    // Tried: push -r of a tree (subfolders, a 0750 script, a 0700 folder, a relative and a
    // dangling absolute link) with --dest naming an existing folder on two hosts, so it
    // lands in www/site (scp's rule); then pull -r of www/site from both.
    let (fleet, hosts) = fleet_of(&["web1", "web2"]);
    let site = fleet.path("site");
    make_site(&site);
    let expected = snapshot(&site);
    assert!(matches!(expected.get("current"), Some(Node::Link { .. })));
    for host in &hosts {
        fs::create_dir(host.files.join("www")).unwrap();
    }

    let out = fleet
        .ctl("push")
        .args(&["-g", "all", "--json", "-r", "-d", "www", text(&site)])
        .output();
    out.assert_code(0);
    let results = json_sorted(&out);
    for host in &hosts {
        let result = json_of(&out, &results, host.name);
        let landed = host.files.join("www").join("site");
        assert_eq!(result["status"], "ok", "{}: {result}", host.name);
        assert_eq!(result["path"], landed.to_str().unwrap(), "{}", host.name);
        assert_eq!(
            snapshot(&landed),
            expected,
            "{}: the pushed tree",
            host.name
        );
        assert_eq!(
            temps_in(&host.files),
            Vec::<PathBuf>::new(),
            "{}",
            host.name
        );
    }

    let out = fleet
        .ctl("pull")
        .args(&["-g", "all", "--json", "-r", "-d", "collected", "www/site"])
        .output();
    out.assert_code(0);
    let results = json_sorted(&out);
    for host in &hosts {
        let result = json_of(&out, &results, host.name);
        assert_eq!(result["status"], "ok", "{}: {result}", host.name);
        let local = fleet.path("collected").join(host.name).join("site");
        assert_eq!(snapshot(&local), expected, "{}: the pulled tree", host.name);
    }

    // The same tree again: no file data is sent.
    let out = fleet
        .ctl("push")
        .args(&["-g", "all", "--json", "-r", "-d", "www", text(&site)])
        .output();
    out.assert_code(0);
    let results = json_sorted(&out);
    for host in &hosts {
        let result = json_of(&out, &results, host.name);
        assert_eq!(
            result["bytes"], 0,
            "{}: nothing is sent: {result}",
            host.name
        );
        // An identical tree is `unchanged`, as an identical file is: folders and links
        // that were there already count as no change.
        assert_eq!(result["status"], "unchanged", "{}: {result}", host.name);
    }
}

#[test]
fn a_file_pushed_to_an_existing_folder_lands_inside_it_and_mode_overrides_apply() {
    // Tried: push notes.txt (mode 0644) with --dest naming an existing folder and --mode
    // 0600, then with --dest naming a new file name in the files folder.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    fs::create_dir(files.join("etc")).unwrap();
    let source = fleet.path("notes.txt");
    fs::write(&source, "remember the milk\n").unwrap();
    set_mode(&source, 0o644);

    let out = fleet
        .ctl("push")
        .args(&[
            "-H",
            "web1",
            "--json",
            "-d",
            "etc",
            "--mode",
            "0600",
            text(&source),
        ])
        .output();
    out.assert_code(0);
    let inside = files.join("etc").join("notes.txt");
    assert_eq!(fs::read_to_string(&inside).unwrap(), "remember the milk\n");
    assert_eq!(mode_of(&inside), 0o600);
    assert_eq!(json_sorted(&out)["web1"]["path"], inside.to_str().unwrap());

    let out = fleet
        .ctl("push")
        .args(&["-H", "web1", "--json", "-d", "renamed.txt", text(&source)])
        .output();
    out.assert_code(0);
    let renamed = files.join("renamed.txt");
    assert_eq!(fs::read_to_string(&renamed).unwrap(), "remember the milk\n");
    assert_eq!(
        mode_of(&renamed),
        0o644,
        "the file's own mode without --mode"
    );
}

#[test]
fn a_push_into_a_folder_that_is_a_link_is_refused_and_writes_nothing_there() {
    // Tried: the destination's folder on the host is a symbolic link to another folder, as
    // a local user could plant one; push into it, by the link's name and by scp's rule
    // (the link named as the destination). The host fails with a message naming the link,
    // and nothing appears in the folder it points to.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let target = files.join("target");
    fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, files.join("link")).unwrap();
    let source = fleet.path("notes.txt");
    fs::write(&source, "hello\n").unwrap();

    for dest in ["link/notes.txt", "link"] {
        let out = fleet
            .ctl("push")
            .args(&["-H", "web1", "--json", "-d", dest, text(&source)])
            .output();
        out.assert_code(1);
        let result = &json_sorted(&out)["web1"];
        assert_eq!(result["status"], "failed", "{dest}: {result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("link is a symbolic link"),
            "{dest}: expected the link named in the error, got {error:?}"
        );
        let written: Vec<_> = fs::read_dir(&target).unwrap().collect();
        assert!(written.is_empty(), "{dest}: {written:?}");
    }
}

#[test]
fn a_missing_parent_fails_naming_the_folder_and_mkdir_creates_it() {
    // Tried: push to missing/sub/notes.txt without --mkdir, then with it.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let source = fleet.path("notes.txt");
    fs::write(&source, "hello\n").unwrap();

    let out = fleet
        .ctl("push")
        .args(&[
            "-H",
            "web1",
            "--json",
            "-d",
            "missing/sub/notes.txt",
            text(&source),
        ])
        .output();
    out.assert_code(1);
    let result = &json_sorted(&out)["web1"];
    assert_eq!(result["status"], "failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    let folder = files.join("missing").join("sub");
    assert!(
        error.contains(folder.to_str().unwrap()) && error.contains("--mkdir"),
        "expected the folder {} and --mkdir in the error, got {error:?}",
        folder.display()
    );
    assert!(!files.join("missing").exists(), "nothing may be created");

    let out = fleet
        .ctl("push")
        .args(&[
            "-H",
            "web1",
            "--json",
            "--mkdir",
            "-d",
            "missing/sub/notes.txt",
            text(&source),
        ])
        .output();
    out.assert_code(0);
    assert_eq!(json_sorted(&out)["web1"]["status"], "ok");
    assert_eq!(
        fs::read_to_string(folder.join("notes.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn usage_errors_exit_2_before_anyone_is_contacted_or_logged() {
    // Tried: push a directory without -r, push a missing source, push with a mode that is
    // not octal.
    let (fleet, hosts) = fleet_of(&["web1"]);
    fs::create_dir(fleet.path("folder")).unwrap();
    for (args, needle) in [
        (vec!["folder"], "-r"),
        (vec!["no-such-file"], "no-such-file"),
        (vec!["--mode", "999", "folder"], "octal"),
    ] {
        let mut all = vec!["-H", "web1"];
        all.extend(args);
        let out = fleet.ctl("push").args(&all).output();
        out.assert_code(2).assert_stderr_has(needle);
    }
    assert!(!fleet.audit_path().exists(), "nothing may be logged");
    assert_eq!(files_below(&hosts[0].files), Vec::<PathBuf>::new());
}

// ---------------------------------------------------------------------------------------------
// Interrupted pushes

/// A source for the interrupted pushes: 2 GiB of zeros in a sparse file, instant to make
/// and to read, and long enough to send that the push is surely still running when killed.
fn sparse_source(fleet: &Fleet) -> PathBuf {
    let source = fleet.path("huge.bin");
    let file = fs::File::create(&source).unwrap();
    file.set_len(2048 * MIB).unwrap();
    source
}

#[test]
fn killing_ctl_mid_push_leaves_the_old_destination_and_no_temporary() {
    // Tried: push a 2 GiB file over an existing huge.bin; SIGKILL ctl once the agent's
    // temporary file appears.
    let (fleet, mut hosts) = fleet_of(&["web1"]);
    let files = hosts[0].files.clone();
    let dest = files.join("huge.bin");
    fs::write(&dest, "old content\n").unwrap();
    let source = sparse_source(&fleet);

    let mut ctl = fleet
        .ctl("push")
        .args(&["-H", "web1", text(&source)])
        .spawn();
    let temp = wait_for_temp(&files, &mut ctl);
    kill(ctl.pid(), Signal::SIGKILL).expect("can kill ctl");
    let out = ctl.wait(Duration::from_secs(20));
    assert!(
        out.status.code().is_none(),
        "ctl was killed: {:?}",
        out.status
    );

    wait_until(
        "the agent removes the temporary file",
        Duration::from_secs(20),
        || temps_in(&files).is_empty(),
    );
    assert!(!temp.exists());
    assert_eq!(fs::read_to_string(&dest).unwrap(), "old content\n");
    hosts[0].agent.assert_running();
}

#[test]
fn killing_the_agent_mid_push_leaves_the_old_destination_and_a_restart_removes_the_temporary() {
    // Tried: push a 2 GiB file over an existing huge.bin; SIGKILL the agent once its
    // temporary file appears; then start a new agent on the same files folder.
    let (fleet, mut hosts) = fleet_of(&["web1"]);
    let host = hosts.remove(0);
    let files = host.files.clone();
    let dest = files.join("huge.bin");
    fs::write(&dest, "old content\n").unwrap();
    let source = sparse_source(&fleet);

    let mut ctl = fleet
        .ctl("push")
        .args(&["-H", "web1", "--json", text(&source)])
        .spawn();
    let temp = wait_for_temp(&files, &mut ctl);
    drop(host.agent); // SIGKILL, then reaped: its pid is gone.
    let out = ctl.wait(Duration::from_secs(60));
    out.assert_code(1);
    let result = &json_sorted(&out)["web1"];
    assert_eq!(result["status"], "error", "{result}");
    assert_eq!(fs::read_to_string(&dest).unwrap(), "old content\n");
    assert!(temp.exists(), "a killed agent cannot clean up after itself");

    let mut restarted = agent_on(&fleet, &files);
    wait_until(
        "the restarted agent removes the stale temporary file",
        Duration::from_secs(20),
        || !temp.exists(),
    );
    assert_eq!(temps_in(&files), Vec::<PathBuf>::new());
    assert_eq!(fs::read_to_string(&dest).unwrap(), "old content\n");
    restarted.assert_running();
}

// ---------------------------------------------------------------------------------------------
// Pull failures, full disks

#[test]
fn a_pull_where_one_host_lacks_the_file_fails_that_host_only() {
    // Tried: pull app.log from three hosts, one of which has no such file.
    let (fleet, hosts) = fleet_of(&["web1", "web2", "db1"]);
    for host in &hosts[..2] {
        fs::write(
            host.files.join("app.log"),
            format!("log of {}\n", host.name),
        )
        .unwrap();
    }

    let out = fleet
        .ctl("pull")
        .args(&["-g", "all", "--json", "-d", "collected", "app.log"])
        .output();
    out.assert_code(1);
    let results = json_sorted(&out);
    for host in &hosts[..2] {
        let result = json_of(&out, &results, host.name);
        assert_eq!(result["status"], "ok", "{}: {result}", host.name);
        let local = fleet.path("collected").join(host.name).join("app.log");
        assert_eq!(
            fs::read_to_string(local).unwrap(),
            format!("log of {}\n", host.name)
        );
    }
    let missing = json_of(&out, &results, "db1");
    assert_eq!(missing["status"], "failed", "{missing}");
    let error = missing["error"].as_str().unwrap_or_default();
    let remote = hosts[2].files.join("app.log");
    assert!(
        error.contains(remote.to_str().unwrap()) && error.contains("No such file"),
        "expected the remote path and 'No such file' in the error, got {error:?}"
    );
    // Nothing of db1's was written, not even an empty folder.
    assert!(!fleet.path("collected/db1").exists());
}

#[test]
fn a_push_that_does_not_fit_is_refused_before_any_data_and_the_old_file_stays() {
    // Tried: an agent in a mount namespace of its own (unshare, as a mapped root) whose
    // files folder is a 1 MiB tmpfs holding notes.txt; push a 2 MiB file over it.
    let fleet = Fleet::new();
    let files = fleet.path("small");
    fs::create_dir(&files).unwrap();
    let files = text(&files).to_owned();
    let mount_then_run = r#"mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@""#;
    let agent = fleet
        .agent_builder()
        .wrapped_in(&["unshare", "-rm", "sh", "-c", mount_then_run, "sh", &files])
        .flags(&["--files-dir", &files])
        .start();
    fleet.write_inventory(&[("small", agent.addr())], &[]);
    let old = fleet.path("notes.txt");
    fs::write(&old, "old notes\n").unwrap();
    fleet
        .ctl("push")
        .args(&["-g", "all", text(&old)])
        .output()
        .assert_code(0);
    let big = fleet.path("big.bin");
    write_big_file(&big, 2 * MIB);

    let out = fleet
        .ctl("push")
        .args(&["-g", "all", "--json", "-d", "notes.txt", text(&big)])
        .output();

    out.assert_code(1);
    let results = json_sorted(&out);
    let result = json_of(&out, &results, "small");
    assert_eq!(result["status"], "failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("not enough space"), "{error:?}");
    assert_eq!(result["bytes"], 0, "refused before any data: {result}");
    // The tmpfs is only visible inside the agent's namespace: look through the agent.
    let listing = fleet
        .ctl("run")
        .args(&[
            "-g",
            "all",
            &format!("ls -A {files}; cat {files}/notes.txt"),
        ])
        .output();
    listing.assert_code(0);
    assert_eq!(
        listing.stdout(),
        "small: notes.txt\nsmall: old notes\n",
        "only the old file, and no temporary file, is left"
    );
}

#[test]
fn a_pull_onto_a_full_disk_fails_clearly_and_keeps_the_previous_copy() {
    // Tried: ctl in a mount namespace of its own (unshare, as a mapped root) whose pull
    // destination is a 1 MiB tmpfs already holding web1/big.bin from an earlier pull; pull
    // a 2 MiB big.bin over it. The script prints what is left in the folder after ctl.
    let (fleet, hosts) = fleet_of(&["web1"]);
    write_big_file(&hosts[0].files.join("big.bin"), 2 * MIB);
    let dest = fleet.path("collected");
    fs::create_dir(&dest).unwrap();
    let dest = text(&dest).to_owned();
    let script = r#"dir=$1; shift
mount -t tmpfs -o size=1m tmpfs "$dir" && mkdir "$dir/web1" && echo earlier > "$dir/web1/big.bin" || exit 99
"$@"; code=$?
echo "left: $(ls -A "$dir/web1") $(cat "$dir/web1/big.bin")"
exit $code"#;
    let out = fleet
        .ctl_wrapped_in(&["unshare", "-rm", "sh", "-c", script, "sh", &dest])
        .args(&["pull", "-i", text(&fleet.path("inventory.yaml"))])
        .args(&["-g", "all", "--json", "-d", &dest, "big.bin"])
        .output();
    out.assert_code(1);
    let (json, left) = out
        .stdout()
        .split_once("left: ")
        .map(|(json, left)| (json.to_owned(), left.trim().to_owned()))
        .unwrap_or_else(|| panic!("the script did not report: {}", out.stdout()));
    let result: Value = serde_json::from_str(json.trim()).expect("one JSON result");
    assert_eq!(result["host"], "web1", "{result}");
    assert_eq!(result["status"], "failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot write") && error.contains("No space left"),
        "{error:?}"
    );
    assert_eq!(
        left, "big.bin earlier",
        "only the earlier copy, and no temporary file, is left"
    );
}

// ---------------------------------------------------------------------------------------------
// Operation log

#[test]
fn a_push_and_a_pull_are_logged_with_their_transfer_and_per_host_results() {
    // Tried: push notes.txt to two hosts as etc-notes, then pull it back; read the log.
    let (fleet, hosts) = fleet_of(&["web1", "web2"]);
    let source = fleet.path("notes.txt");
    fs::write(&source, "logged\n").unwrap();
    let sha = sha256_hex(b"logged\n");

    fleet
        .ctl("push")
        .args(&["-g", "all", "-d", "etc-notes", text(&source)])
        .output()
        .assert_code(0);
    fleet
        .ctl("pull")
        .args(&["-g", "all", "-d", "collected", "etc-notes"])
        .output()
        .assert_code(0);

    let records = fleet.audit_records();
    assert_eq!(records.len(), 4, "records: {records:#?}");
    let expected = [
        ("push", text(&source), "etc-notes"),
        ("pull", "etc-notes", "collected"),
    ];
    for (pair, (kind, from, to)) in records.chunks(2).zip(expected) {
        let (start, end) = (&pair[0], &pair[1]);
        assert_eq!(start["event"], "start", "{start}");
        assert_eq!(end["event"], "end", "{end}");
        assert_eq!(start["op_id"], end["op_id"]);
        for record in [start, end] {
            assert_eq!(record["kind"], kind, "{record}");
            assert_eq!(record["transfer"]["source"], from, "{record}");
            assert_eq!(record["transfer"]["destination"], to, "{record}");
        }
        let results = end["results"].as_array().expect("results is a list");
        assert_eq!(results.len(), hosts.len(), "{end}");
        for (result, host) in results.iter().zip(&hosts) {
            assert_eq!(result["host"], host.name, "{end}");
            assert_eq!(result["status"], "ok", "{end}");
            assert_eq!(result["bytes"], 7, "{kind}: {result}");
            assert_eq!(result["sha256"], sha.as_str(), "{kind}: {result}");
        }
    }
    assert_eq!(records[0]["transfer"]["bytes"], 7);
    // Hashed while it was sent: known at the end, not at the start.
    assert_eq!(records[0]["transfer"]["sha256"], serde_json::Value::Null);
    assert_eq!(records[1]["transfer"]["sha256"], sha.as_str());
}
