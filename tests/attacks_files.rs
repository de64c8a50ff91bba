//! A local user on an agent host against the root agent's file requests: links planted at or
//! on the way to a destination, a temporary file or folder swapped mid-push, stale
//! temporary files under a reused pid. Each test repeats one attack against real agents and
//! shows that nothing outside what was asked for is read, written or chmodded.
//!
//! The tests run as root (as the agent does); the attacker's moves are made directly on the
//! files, as an unprivileged user with write access to the folder could make them. To swap
//! something mid-push, ctl reaches the agent through a relay that holds back all but the
//! first MiB it sends, so the agent is surely waiting for data while the swap is made; then
//! the relay lets the rest through.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    fleet_of, json_sorted, mode_of, set_mode, start_host, temps_in, text, wait_for_temp, Fleet,
    Host, Relay,
};

/// A source larger (sparse, so instant to make) than what the relay lets through before
/// the test releases it.
fn big_source(fleet: &Fleet) -> PathBuf {
    let source = fleet.path("big.bin");
    let file = fs::File::create(&source).unwrap();
    file.set_len(256 * 1024 * 1024).unwrap();
    source
}

/// One host, web1, that ctl reaches through a relay holding back all but the first MiB ctl
/// sends: enough for the handshake, the request and the start of the data, far from all of
/// [`big_source`].
fn host_behind_a_holding_relay() -> (Fleet, Host, Relay) {
    let fleet = Fleet::new();
    let host = start_host(&fleet, "web1");
    let relay = Relay::holding(host.agent.addr(), 1 << 20);
    // The relay only forwards bytes: the key ctl meets behind it is web1's.
    let key = fleet.host_keys().of(host.agent.addr()).expect("web1's key");
    fleet.host_keys().record(relay.addr(), key);
    fleet.write_inventory(&[("web1", relay.addr())], &[]);
    (fleet, host, relay)
}

/// A file outside what any push names, as an attacker would point a link at: private.
fn victim(fleet: &Fleet) -> PathBuf {
    let victim = fleet.path("victim");
    fs::write(&victim, "secret\n").unwrap();
    set_mode(&victim, 0o600);
    victim
}

fn assert_victim_untouched(victim: &Path) {
    assert_eq!(fs::read_to_string(victim).unwrap(), "secret\n");
    assert_eq!(mode_of(victim), 0o600, "the victim's mode changed");
}

#[test]
fn a_link_planted_at_an_unchanged_destination_is_replaced_and_its_target_keeps_its_mode() {
    // Tried: the destination notes.txt is a link to a private file holding exactly what
    // is pushed; push it with --mode 0644. An agent that looked through the link would
    // answer "unchanged" and chmod the private file. The link is not hashed, so the data is
    // sent and the link itself is replaced by the pushed file.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let victim = victim(&fleet);
    let dest = files.join("notes.txt");
    symlink(&victim, &dest).unwrap();
    let source = fleet.path("notes.txt");
    fs::write(&source, "secret\n").unwrap();

    let out = fleet
        .ctl("push")
        .args(&[
            "-H",
            "web1",
            "--json",
            "-m",
            "0644",
            "-d",
            ".",
            text(&source),
        ])
        .output();
    out.assert_code(0);
    let result = &json_sorted(&out)["web1"];
    assert_eq!(
        result["status"], "ok",
        "not kept through the link: {result}"
    );
    assert_victim_untouched(&victim);
    assert!(!fs::symlink_metadata(&dest).unwrap().is_symlink());
    assert_eq!(mode_of(&dest), 0o644);
}

#[test]
fn a_temporary_file_swapped_for_a_link_mid_push_is_not_put_in_place() {
    // Tried: once the agent's temporary file exists, move it away and put a link to a
    // private file at its name, then let the push finish with --mode 4755. The agent's
    // rename moves the link; its check sees the destination is not the file it wrote,
    // undoes the rename and fails the host. The private file keeps its content and mode,
    // and no link is left at the destination.
    let (fleet, host, relay) = host_behind_a_holding_relay();
    let files = &host.files;
    let victim = victim(&fleet);
    let source = big_source(&fleet);
    let mut ctl = fleet
        .ctl("push")
        .args(&["-H", "web1", "--json", "-m", "4755", text(&source)])
        .spawn();
    let temp = wait_for_temp(files, &mut ctl);
    fs::rename(&temp, files.join("moved-away")).unwrap();
    symlink(&victim, &temp).unwrap();
    relay.release();

    let out = ctl.wait(Duration::from_secs(120));
    out.assert_code(1);
    let result = &json_sorted(&out)["web1"];
    assert_eq!(result["status"], "failed", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("replaced by something else"), "{error:?}");
    assert_victim_untouched(&victim);
    let dest = files.join("big.bin");
    assert!(
        fs::symlink_metadata(&dest).is_err(),
        "nothing may be left at the destination"
    );
    assert_eq!(temps_in(files), Vec::<PathBuf>::new());
}

#[test]
fn a_folder_swapped_for_a_link_mid_push_still_receives_into_the_folder_opened() {
    // Tried: push into sub/; once the temporary file exists, move sub away and put a link
    // to another folder at its name. The push lands in the folder the agent opened (now
    // called moved), and nothing is written where the link points.
    let (fleet, host, relay) = host_behind_a_holding_relay();
    let files = &host.files;
    let (sub, moved, elsewhere) = (files.join("sub"), files.join("moved"), fleet.path("else"));
    fs::create_dir(&sub).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    let source = big_source(&fleet);
    let mut ctl = fleet
        .ctl("push")
        .args(&["-H", "web1", "--json", "-d", "sub", text(&source)])
        .spawn();
    wait_for_temp(&sub, &mut ctl);
    fs::rename(&sub, &moved).unwrap();
    symlink(&elsewhere, &sub).unwrap();
    relay.release();

    let out = ctl.wait(Duration::from_secs(120));
    out.assert_code(0);
    assert_eq!(json_sorted(&out)["web1"]["status"], "ok");
    assert_eq!(
        fs::metadata(moved.join("big.bin")).unwrap().len(),
        256 << 20
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn a_tree_push_into_a_planted_folder_link_is_refused_and_the_private_folder_is_untouched() {
    // Tried: the tree's root folder, and then a folder inside the tree, are links to a
    // private 0700 folder; push a 0777 tree. Each push fails naming the link; the private
    // folder keeps its mode and gets nothing new.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let private = fleet.path("private");
    fs::create_dir(&private).unwrap();
    set_mode(&private, 0o700);
    let tree = fleet.path("site");
    fs::create_dir_all(tree.join("inner")).unwrap();
    fs::write(tree.join("inner").join("page.html"), "<p>\n").unwrap();
    set_mode(&tree, 0o777);
    set_mode(&tree.join("inner"), 0o777);

    // The root: `site` on the host is a link.
    symlink(&private, files.join("site")).unwrap();
    // Inside: the tree lands in the folder `out` as `out/site`, whose `inner` is a link.
    fs::create_dir_all(files.join("out").join("site")).unwrap();
    symlink(&private, files.join("out").join("site").join("inner")).unwrap();

    for dest in ["site", "out"] {
        let out = fleet
            .ctl("push")
            .args(&["-H", "web1", "--json", "-r", "-d", dest, text(&tree)])
            .output();
        out.assert_code(1);
        let result = &json_sorted(&out)["web1"];
        assert_eq!(result["status"], "failed", "{dest}: {result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("is a symbolic link") && error.contains(text(&private)),
            "{dest}: expected the link and its target named, got {error:?}"
        );
        assert_eq!(mode_of(&private), 0o700, "{dest}");
        assert_eq!(fs::read_dir(&private).unwrap().count(), 0, "{dest}");
    }
}

#[test]
fn a_pull_of_a_link_or_through_one_is_refused_naming_it_and_with_r_it_stays_a_link() {
    // Tried: pull a path that is a link to a private file, and a file through a link to a
    // folder: both fail naming the link and its target, and nothing is written locally.
    // With -r the link itself is pulled, as a link.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let victim = victim(&fleet);
    symlink(&victim, files.join("innocent.log")).unwrap();
    let real = fleet.path("real");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("x.log"), "x\n").unwrap();
    symlink(&real, files.join("logs")).unwrap();

    for (remote, link) in [("innocent.log", "innocent.log"), ("logs/x.log", "logs")] {
        let out = fleet
            .ctl("pull")
            .args(&["-H", "web1", "--json", "-d", "collected", remote])
            .output();
        out.assert_code(1);
        let result = &json_sorted(&out)["web1"];
        assert_eq!(result["status"], "failed", "{remote}: {result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{link} is a symbolic link (to ")),
            "{remote}: {error:?}"
        );
        assert!(!fleet.path("collected").join("web1").exists(), "{remote}");
    }

    let out = fleet
        .ctl("pull")
        .args(&[
            "-H",
            "web1",
            "--json",
            "-r",
            "-d",
            "collected",
            "innocent.log",
        ])
        .output();
    out.assert_code(0);
    let pulled = fleet.path("collected").join("web1").join("innocent.log");
    assert_eq!(fs::read_link(&pulled).unwrap(), victim);
}

#[test]
fn stale_temporaries_are_told_by_their_lock_not_by_a_reused_pid() {
    // Tried: two temporary files in the destination folder, both named with the pid of a
    // running process (the agent's own, as a reused pid would be); the test holds a lock on
    // one, as a live writer does. A push into the folder removes the unlocked one and keeps
    // the locked one.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let pid = hosts[0].agent.pid();
    let prefix = common::atomic_file::TEMP_PREFIX;
    let stale = files.join(format!("{prefix}{pid}.0000000000000000.old"));
    let live = files.join(format!("{prefix}{pid}.0000000000000001.new"));
    fs::write(&stale, "left by a killed agent").unwrap();
    fs::write(&live, "being written").unwrap();
    let lock = nix::fcntl::Flock::lock(
        fs::File::open(&live).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, errno)| errno)
    .expect("can lock");

    let source = fleet.path("notes.txt");
    fs::write(&source, "hello\n").unwrap();
    let out = fleet
        .ctl("push")
        .args(&["-H", "web1", "--json", text(&source)])
        .output();
    out.assert_code(0);
    assert!(!stale.exists(), "the unlocked temporary is stale");
    assert!(live.exists(), "the locked temporary is live");
    drop(lock);
}

#[test]
fn mkdir_does_not_create_folders_through_a_planted_link() {
    // Tried: push with --mkdir to link/new/notes.txt, where link points to a private
    // folder. The agent would have made new/ inside it; it refuses, naming the link.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let private = fleet.path("private");
    fs::create_dir(&private).unwrap();
    set_mode(&private, 0o700);
    symlink(&private, files.join("link")).unwrap();
    let source = fleet.path("notes.txt");
    fs::write(&source, "hello\n").unwrap();

    let out = fleet
        .ctl("push")
        .args(&[
            "-H",
            "web1",
            "--json",
            "--mkdir",
            "-d",
            "link/new/notes.txt",
        ])
        .arg_path(&source)
        .output();
    out.assert_code(1);
    let result = &json_sorted(&out)["web1"];
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("link is a symbolic link"), "{error:?}");
    assert_eq!(fs::read_dir(&private).unwrap().count(), 0);
}

#[test]
fn a_setuid_push_is_never_kept_and_the_log_says_it_asked_for_setuid() {
    // Tried: the host holds a world-writable file with exactly the content pushed (so a
    // local user could change it between the agent's hash and its chmod); push it with
    // --mode 4755. The agent does not offer to keep it: the data is written afresh, as a
    // new file only root could write, and the push's log records name the setuid file.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = &hosts[0].files;
    let dest = files.join("tool");
    fs::write(&dest, "#!/bin/sh\n").unwrap();
    set_mode(&dest, 0o666);
    let source = fleet.path("tool");
    fs::write(&source, "#!/bin/sh\n").unwrap();

    let out = fleet
        .ctl("push")
        .args(&["-H", "web1", "--json", "-m", "4755"])
        .arg_path(&source)
        .output();
    out.assert_code(0);
    let result = &json_sorted(&out)["web1"];
    assert_eq!(result["status"], "ok", "written, not kept: {result}");
    assert_eq!(mode_of(&dest), 0o4755);
    let records = fleet.audit_records();
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!(
            record["transfer"]["setid"],
            serde_json::json!(["tool"]),
            "{record}"
        );
    }
}
