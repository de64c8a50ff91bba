//! The harness for `ctl bootstrap`: fake hosts that are real `sshd` processes, each on its
//! own loopback address and in its own mount namespace, so that the paths the agent is
//! installed to (`/usr/local/bin`, `/etc/muster`, `/var/lib`, `/var/log`, `/run`) are
//! folders of that host alone, visible to the test from outside. `/etc` is an overlay:
//! the machine's files show through (sshd and the shell need them), and what the host
//! writes or removes there lands in its own folder.
//!
//! sshd runs as root (a root login needs it) and so does the test: `.ci/run` runs the tests
//! as root. The operator logs in as root with the fleet's identity, which is an OpenSSH key.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::util::{is_process_alive, wait_until, Fleet};

/// The sshd binary; `.ci/run` installs openssh-server for it.
const SSHD: &str = "/usr/sbin/sshd";

/// The folders of a fake host that hide the machine's own, inside its mount namespace;
/// `/etc` is an overlay on the machine's.
const PRIVATE_DIRS: [&str; 5] = ["/usr/local/bin", "/etc", "/var/lib", "/var/log", "/run"];

/// One fake host: an sshd in a mount namespace of its own.
pub struct SshHost {
    pub name: String,
    pub address: Ipv4Addr,
    pub ssh_port: u16,
    /// The port the inventory gives for its agent.
    pub agent_port: u16,
    /// Its private folders, by the path they hide (`root.join("etc/muster")`).
    root: PathBuf,
    sshd: Child,
}

/// How a fake host is set up.
#[derive(Default)]
pub struct SshHostOptions {
    /// Its sshd accepts the fleet's identity (else no key at all).
    pub refuse_operator: bool,
    /// `/usr/local/bin` is a tmpfs of this many KiB instead of a folder.
    pub bin_tmpfs_kib: Option<u64>,
}

impl SshHost {
    /// Starts host `name` of `fleet`: its ssh host key in `fleet`'s ssh known_hosts, the
    /// fleet's identity in its root's authorized_keys.
    pub fn start(fleet: &Fleet, name: &str, options: SshHostOptions) -> SshHost {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the bootstrap tests run sshd as root (a root login needs it): run them as root, \
             as .ci/run does"
        );
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (.ci/run does)"
        );
        let address = unique_loopback();
        let [ssh_port, agent_port] = free_ports(address);
        let root = fleet.path(&format!("hosts/{name}"));
        for dir in PRIVATE_DIRS {
            fs::create_dir_all(root.join(&dir[1..])).expect("can make the host's folders");
        }
        // sshd's privilege separation folder, root's and not writable by others.
        let privsep = root.join("run/sshd");
        fs::create_dir_all(&privsep).unwrap();
        fs::set_permissions(&privsep, fs::Permissions::from_mode(0o755)).unwrap();
        let overlay_work = root.join("etc-work");
        fs::create_dir_all(&overlay_work).unwrap();

        let sshd_dir = root.join("sshd");
        fs::create_dir_all(&sshd_dir).unwrap();
        let host_key = sshd_dir.join("ssh_host_ed25519_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&host_key)
            .status()
            .expect("can run ssh-keygen");
        assert!(status.success(), "ssh-keygen failed");
        let authorized = sshd_dir.join("authorized_keys");
        let operator = match options.refuse_operator {
            true => String::new(),
            false => fs::read_to_string(fleet.identity().with_extension("pub")).unwrap(),
        };
        fs::write(&authorized, operator).unwrap();
        let config = sshd_dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress {address}:{ssh_port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
                 PidFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PrintMotd no\nPrintLastLog no\nUseDNS no\nMaxStartups 100\n",
                host_key.display(),
                authorized.display(),
            ),
        )
        .unwrap();
        // ssh on the workstation trusts this sshd's key, as an operator's would.
        let public = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        let mut known = fs::read_to_string(ssh_known_hosts(fleet)).unwrap_or_default();
        known.push_str(&format!("[{address}]:{ssh_port} {}\n", public.join(" ")));
        fs::write(ssh_known_hosts(fleet), known).unwrap();

        let mut mounts = String::from("set -e\nmount --make-rprivate /\n");
        for dir in PRIVATE_DIRS {
            let private = root.join(&dir[1..]);
            match (dir, options.bin_tmpfs_kib) {
                ("/usr/local/bin", Some(kib)) => {
                    mounts.push_str(&format!("mount -t tmpfs -o size={kib}k tmpfs {dir}\n"))
                }
                ("/etc", _) => mounts.push_str(&format!(
                    "mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc\n",
                    private.display(),
                    overlay_work.display()
                )),
                _ => mounts.push_str(&format!("mount --bind {} {dir}\n", private.display())),
            }
        }
        mounts.push_str(&format!("exec {SSHD} -D -e -f {}\n", config.display()));
        let sshd = Command::new("unshare")
            .args(["-m", "sh", "-c", &mounts])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(sshd_dir.join("sshd.log")).expect("can create sshd.log"))
            .spawn()
            .expect("can start unshare and sshd");
        let host = SshHost {
            name: name.to_owned(),
            address,
            ssh_port,
            agent_port,
            root,
            sshd,
        };
        let listening = SocketAddr::from((address, ssh_port));
        wait_until(
            &format!("sshd of {name} listens on {listening}"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(listening).is_ok(),
        );
        host
    }

    /// A path on the host (`/etc/muster/host_key.pub`), as the test sees it from outside.
    pub fn path(&self, on_host: &str) -> PathBuf {
        let on_host = on_host.trim_start_matches('/');
        for dir in PRIVATE_DIRS {
            let dir = &dir[1..];
            if let Some(rest) = on_host.strip_prefix(dir) {
                return self.root.join(dir).join(rest.trim_start_matches('/'));
            }
        }
        panic!("/{on_host} is not in a folder of the fake host's own");
    }

    /// The inventory entry of this host: its agent's address and port, and its sshd.
    pub fn inventory_entry(&self) -> String {
        format!(
            "  {}: {{ address: {}, port: {}, ssh: \"root@{}:{}\" }}\n",
            self.name, self.address, self.agent_port, self.address, self.ssh_port
        )
    }

    /// The process id of the detached agent (`--service none`), if one runs.
    pub fn agent_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.path("/run/muster/agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_process_alive(pid).then_some(pid)
    }

    /// The agent's public host key line (`ssh-ed25519 AAAA...`, without its comment).
    pub fn agent_host_key(&self) -> String {
        let text = fs::read_to_string(self.path("/etc/muster/host_key.pub"))
            .expect("the agent made its host key");
        let words: Vec<&str> = text.split_whitespace().take(2).collect();
        words.join(" ")
    }

    /// Puts an executable script named `name` in the host's `/usr/local/bin`, which comes
    /// before `/usr/bin` and `/bin` in a root login's PATH: how a test steers what the
    /// probe finds (`uname`, `getconf`).
    pub fn shadow_command(&self, name: &str, script: &str) {
        let path = self.path(&format!("/usr/local/bin/{name}"));
        fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        // The detached agent outlives sshd: stop it by its pid file.
        if let Some(pid) = self.agent_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// The ssh client's known_hosts for the fleet's fake hosts.
pub fn ssh_known_hosts(fleet: &Fleet) -> PathBuf {
    fleet.path("ssh_known_hosts")
}

/// The `--ssh-option`s that point ssh at the fleet's identity and known hosts, and away
/// from the user's own configuration.
pub fn ssh_flags(fleet: &Fleet) -> Vec<String> {
    let options = [
        format!("IdentityFile={}", fleet.identity().display()),
        "IdentitiesOnly=yes".to_owned(),
        format!("UserKnownHostsFile={}", ssh_known_hosts(fleet).display()),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        "LogLevel=ERROR".to_owned(),
    ];
    options
        .into_iter()
        .flat_map(|option| ["--ssh-option".to_owned(), option])
        .collect()
}

/// A loopback address no other fake host of this test run has: 127.77.X.Y, from this
/// process's id and a counter, so that parallel test binaries do not meet either.
fn unique_loopback() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        77 + (pid % 100) as u8,
        (n / 250) as u8,
        (n % 250 + 1) as u8,
    )
}

/// Two ports free on `address` now (the kernel's picks, held together so they differ;
/// sshd and the agent bind them soon after).
fn free_ports(address: Ipv4Addr) -> [u16; 2] {
    let bind = || TcpListener::bind((address, 0)).expect("can bind a loopback port");
    let (first, second) = (bind(), bind());
    let port = |listener: &TcpListener| listener.local_addr().expect("bound").port();
    [port(&first), port(&second)]
}
