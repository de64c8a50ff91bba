//! `ctl completions` and `ctl man`: made from the command line definition, for every
//! subcommand, and usable by the shells and `man` they are for.

use std::fs;
use std::process::{Command, Stdio};

use crate::util::Fleet;

/// Every subcommand an operator can run.
const SUBCOMMANDS: [&str; 11] = [
    "run",
    "push",
    "pull",
    "ping",
    "hosts",
    "trust",
    "bootstrap",
    "keygen",
    "log",
    "completions",
    "man",
];

#[test]
fn completions_cover_every_subcommand_and_parse_in_their_shell() {
    let fleet = Fleet::new();
    let bash = fleet.ctl_plain().args(&["completions", "bash"]).output();
    bash.assert_code(0);
    let script = bash.stdout();
    for sub in SUBCOMMANDS {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    assert!(script.contains("--max-output") && script.contains("--ssh-option"));
    // bash -n: the script parses (it is sourced by every interactive shell).
    let path = fleet.path("ctl.bash");
    fs::write(&path, &script).unwrap();
    let status = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .stderr(Stdio::inherit())
        .status()
        .expect("can run bash");
    assert!(status.success(), "bash -n rejected the completion script");

    let zsh = fleet.ctl_plain().args(&["completions", "zsh"]).output();
    zsh.assert_code(0);
    assert!(zsh.stdout().starts_with("#compdef ctl"), "{}", zsh.stdout());
    let fish = fleet.ctl_plain().args(&["completions", "fish"]).output();
    fish.assert_code(0);
    assert!(fish.stdout().contains("complete -c ctl"));

    // Tried: a shell clap does not know.
    fleet
        .ctl_plain()
        .args(&["completions", "tcsh"])
        .output()
        .assert_code(2);
}

#[test]
fn man_writes_a_page_per_subcommand() {
    let fleet = Fleet::new();
    let dir = fleet.path("share/man/man1");
    let out = fleet.ctl_plain().args(&["man"]).arg_path(&dir).output();
    out.assert_code(0);
    let mut expected = vec!["ctl.1".to_owned()];
    expected.extend(SUBCOMMANDS.iter().map(|sub| format!("ctl-{sub}.1")));
    for page in &expected {
        let text = fs::read_to_string(dir.join(page))
            .unwrap_or_else(|err| panic!("{page} not written: {err}"));
        assert!(text.contains(".TH"), "{page} is not a man page");
        assert!(out.stdout().contains(page.as_str()), "{page} not listed");
    }
    let run = fs::read_to_string(dir.join("ctl-run.1")).unwrap();
    assert!(run.contains("timeout"), "ctl-run.1 lacks its flags");

    // Tried: a folder that cannot be made (a file is in the way): exit 2, said why.
    let blocked = fleet.path("blocked");
    fs::write(&blocked, "").unwrap();
    let out = fleet
        .ctl_plain()
        .args(&["man"])
        .arg_path(&blocked.join("man1"))
        .output();
    out.assert_code(2);
    assert!(
        out.stderr.contains("cannot make the folder"),
        "{}",
        out.stderr
    );
}
