//! The Python controller of docs/PROTOCOL.md's appendix, run as the document prints it
//! against a real agent: proof that another peer can be written from the document with
//! nothing but Python's `ssl` module and `openssl` to make a key.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{text, Fleet};

/// The appendix's Python block, written to `dir/muster_client.py`.
fn appendix_client(dir: &Path) -> PathBuf {
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");
    let doc = fs::read_to_string(doc).expect("docs/PROTOCOL.md");
    let (_, appendix) = doc
        .split_once("## 12. Appendix")
        .expect("PROTOCOL.md has its appendix");
    let (_, from_block) = appendix
        .split_once("```python\n")
        .expect("the appendix has a Python block");
    let (code, _) = from_block.split_once("\n```").expect("the block ends");
    let path = dir.join("muster_client.py");
    fs::write(&path, code).expect("can write the client");
    path
}

/// Runs `command` and checks that it worked, naming it otherwise.
fn succeed(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An operator key and certificate made with `openssl` as the appendix says, named `name`
/// in `fleet`'s folder. Returns (key, cert).
fn openssl_operator(fleet: &Fleet, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        fleet.path(&format!("{name}.key")),
        fleet.path(&format!("{name}.crt")),
    );
    succeed(Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out", text(&key)]));
    succeed(Command::new("openssl").args([
        "req",
        "-new",
        "-x509",
        "-key",
        text(&key),
        "-subj",
        "/CN=muster",
        "-days",
        "36500",
        "-out",
        text(&cert),
    ]));
    (key, cert)
}

struct Client {
    script: PathBuf,
}

impl Client {
    fn authorized_key(&self, cert: &Path) -> String {
        let out = succeed(
            Command::new("python3")
                .arg(&self.script)
                .args(["--authorized-key", text(cert)]),
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    fn run(
        &self,
        agent: std::net::SocketAddr,
        operator: &(PathBuf, PathBuf),
        host_key: &Path,
        command: &str,
    ) -> Output {
        Command::new("python3")
            .arg(&self.script)
            .arg(agent.ip().to_string())
            .arg(agent.port().to_string())
            .args([
                text(&operator.0),
                text(&operator.1),
                text(host_key),
                command,
            ])
            .output()
            .expect("can run python3")
    }
}

#[test]
fn the_appendix_client_runs_a_command_and_pins_the_host_key() {
    // Tried, with the appendix's code as printed: an authorized openssl-made key runs a
    // command (output, stderr and exit status come back); the same key against a host key
    // it does not expect stops before sending anything; a key not in authorized_keys is
    // told so by the agent. Only the first may run anything.
    let fleet = Fleet::new();
    let client = Client {
        script: appendix_client(&fleet.path("")),
    };
    let authorized = openssl_operator(&fleet, "python-op");
    let stranger = openssl_operator(&fleet, "stranger");
    let line = client.authorized_key(&authorized.1);
    assert!(line.starts_with("ssh-ed25519 AAAA"), "{line:?}");
    OpenOptions::new()
        .append(true)
        .open(fleet.authorized_keys())
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .expect("can authorize the key");
    let agent = fleet.agent();
    let host_key = fleet.path("web1.pub");
    let key = fleet.host_keys().of(agent.addr()).expect("the agent's key");
    fs::write(&host_key, format!("{key}\n")).unwrap();
    let marker = fleet.path("ran");

    let out = client.run(
        agent.addr(),
        &authorized,
        &host_key,
        &format!("echo hi; echo oops >&2; touch {}; exit 3", text(&marker)),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(stderr.starts_with("agent "), "{stderr}");
    assert!(stderr.contains("oops\n"), "{stderr}");
    assert!(marker.exists());
    fs::remove_file(&marker).unwrap();

    let wrong = fleet.path("other.pub");
    let other = common::identity::keys::Identity::generate("not web1");
    fs::write(&wrong, format!("{}\n", other.public_key().to_openssh())).unwrap();
    let out = client.run(
        agent.addr(),
        &authorized,
        &wrong,
        &format!("touch {}", text(&marker)),
    );
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("host key mismatch"), "{stderr}");
    assert!(stderr.contains(&key), "names the key presented: {stderr}");

    let out = client.run(
        agent.addr(),
        &stranger,
        &host_key,
        &format!("touch {}", text(&marker)),
    );
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the agent refused"), "{stderr}");
    assert!(!marker.exists(), "a refused client ran something");
}
