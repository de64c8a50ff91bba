//! Running a step on a host through the operator's own `ssh` client, so that
//! `~/.ssh/config`, ssh-agent, jump hosts and ssh's `known_hosts` all work as they do for
//! the operator, and what ssh says when it fails becomes the host's outcome.
//!
//! Every step of one host goes over one SSH connection: [`SshHost::connect`] opens a master
//! connection (`ControlMaster`, in the background) with a socket in a folder of ctl's own,
//! and the steps are sessions inside it, with no new handshake. [`SshHost::close`] ends
//! the master.
//! ssh never prompts (`BatchMode=yes`): a host that would ask for a password or a host key
//! confirmation fails with ssh's own message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::inventory::SshTarget;
use crate::outcome::Status;

/// The most of a step's stdout, and of its stderr, that is kept; the rest is read and
/// dropped, so a host that floods cannot grow ctl's memory.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// How ctl calls ssh, the same for every host.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The ssh program (`ssh`, found in PATH).
    pub program: PathBuf,
    /// The login for hosts whose inventory entry names none (`--ssh-user`); ssh's own
    /// default (its config, else the local user) without either.
    pub user: Option<String>,
    /// `-o` options passed through as given (`--ssh-option`).
    pub options: Vec<String>,
    /// Run the remote steps through `sudo -n` (`--sudo`).
    pub sudo: bool,
    pub connect_timeout: Duration,
    /// Where the master connections' sockets live (a private folder of this run).
    pub control_dir: PathBuf,
}

/// One host as ssh reaches it.
pub struct SshHost<'a> {
    options: &'a SshOptions,
    target: SshTarget,
    control_path: PathBuf,
}

/// What a step printed on stdout (its stderr only matters when it fails).
#[derive(Debug)]
pub struct StepOutput {
    pub stdout: String,
}

/// Why a step failed: ssh could not run it (`status` from ssh's message), or the script
/// failed on the host (`error`).
#[derive(Debug)]
pub struct StepFailure {
    pub status: Status,
    pub message: String,
    /// What the script printed before it failed (how far it got).
    pub stdout: String,
}

impl<'a> SshHost<'a> {
    /// `target` is where ssh connects; `index` names its master connection's socket.
    pub fn new(options: &'a SshOptions, target: SshTarget, index: usize) -> SshHost<'a> {
        SshHost {
            control_path: options.control_dir.join(index.to_string()),
            options,
            target,
        }
    }

    /// `user@host:port` as ssh is given it (for messages and the log).
    pub fn describe(&self) -> String {
        let user = self.target.user.as_ref().or(self.options.user.as_ref());
        let mut text = match user {
            Some(user) => format!("{user}@{}", self.target.host),
            None => self.target.host.clone(),
        };
        if let Some(port) = self.target.port {
            text.push_str(&format!(":{port}"));
        }
        text
    }

    /// Opens the master connection: ssh logs in, then stays in the background for the
    /// steps. Its output goes to a file of its own, not to a pipe of ours, which it would
    /// hold open for as long as it lives.
    ///
    /// # Errors
    /// ssh could not connect or log in: its own message, and the status it means.
    pub async fn connect(&self) -> Result<(), StepFailure> {
        let log = self.control_path.with_extension("log");
        let failure = |message: String| StepFailure {
            status: Status::Error,
            message,
            stdout: String::new(),
        };
        let file = std::fs::File::create(&log)
            .map_err(|err| failure(format!("cannot create {}: {err}", log.display())))?;
        let mut command = self.command_with(&["-f", "-N", "-o", "ControlMaster=yes"]);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        let status = command.status().await.map_err(|err| {
            failure(format!(
                "cannot run {}: {err}",
                self.options.program.display()
            ))
        })?;
        if status.success() {
            return Ok(());
        }
        let said = std::fs::read(&log).unwrap_or_default();
        let said = String::from_utf8_lossy(&said[..said.len().min(OUTPUT_LIMIT)]).into_owned();
        Err(StepFailure {
            status: ssh_failure_status(&said),
            message: format!("ssh {}: {}", self.describe(), last_lines(&said)),
            stdout: String::new(),
        })
    }

    /// Runs `script` with `sh -c` on the host (through `sudo -n` with `--sudo`), feeding
    /// it `stdin` (a file's bytes) or nothing.
    ///
    /// # Errors
    /// ssh could not connect or authenticate, or the script exited non-zero: a
    /// [`StepFailure`] whose message is ssh's or the script's own stderr.
    pub async fn run(&self, script: &str, stdin: Option<&[u8]>) -> Result<StepOutput, StepFailure> {
        let wrapper = if self.options.sudo {
            "sudo -n sh -c"
        } else {
            "sh -c"
        };
        let remote = format!("{wrapper} {}", super::remote::quote(script));
        let mut command = self.command_with(&["-o", "ControlMaster=no"]);
        command
            .arg(&remote)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|err| StepFailure {
            status: Status::Error,
            message: format!("cannot run {}: {err}", self.options.program.display()),
            stdout: String::new(),
        })?;
        let feed = async {
            if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // A host that stops reading (its disk filled up) closes the pipe; its
                // stderr says why, so the write error itself is not the story.
                let _ = pipe.write_all(bytes).await;
                let _ = pipe.shutdown().await;
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let ((), stdout, stderr) = tokio::join!(feed, read_bounded(stdout), read_bounded(stderr));
        let status = match child.wait().await {
            Ok(status) => status,
            Err(err) => {
                return Err(StepFailure {
                    status: Status::Error,
                    message: format!("ssh did not end cleanly: {err}"),
                    stdout,
                })
            }
        };
        match status.code() {
            Some(0) => Ok(StepOutput { stdout }),
            // ssh's own failures are 255; the script's are its exit status.
            Some(255) => Err(StepFailure {
                status: ssh_failure_status(&stderr),
                message: format!("ssh {}: {}", self.describe(), last_lines(&stderr)),
                stdout,
            }),
            _ => Err(StepFailure {
                status: Status::Error,
                message: match last_lines(&stderr) {
                    text if text.is_empty() => format!("the step ended with {status}"),
                    text => text,
                },
                stdout,
            }),
        }
    }

    /// Ends the host's master connection (it would otherwise linger for
    /// `ControlPersist`).
    pub async fn close(&self) {
        let mut command = self.command_with(&["-O", "exit"]);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut child) = command.spawn() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }

    /// `ssh LEADING [options] [-l user] [-p port] -- host`, ready for the remote command.
    fn command_with(&self, leading: &[&str]) -> Command {
        let mut command = Command::new(&self.options.program);
        command.args(leading);
        let timeout = self.options.connect_timeout.as_secs().max(1);
        for option in [
            "BatchMode=yes".to_owned(),
            format!("ConnectTimeout={timeout}"),
            "ServerAliveInterval=10".to_owned(),
            "ServerAliveCountMax=3".to_owned(),
            format!("ControlPath={}", self.control_path.display()),
            "ControlPersist=60".to_owned(),
        ] {
            command.arg("-o").arg(option);
        }
        for option in &self.options.options {
            command.arg("-o").arg(option);
        }
        command.arg("-T");
        if let Some(user) = self.target.user.as_ref().or(self.options.user.as_ref()) {
            command.arg("-l").arg(user);
        }
        if let Some(port) = self.target.port {
            command.arg("-p").arg(port.to_string());
        }
        command.arg("--").arg(&self.target.host);
        command
    }
}

/// What ssh's complaint means for the host: it refused us (`auth_failed`: our key, its
/// host key), it could not be reached (`unreachable`), or something else (`error`).
fn ssh_failure_status(stderr: &str) -> Status {
    const AUTH: [&str; 4] = [
        "Permission denied",
        "Host key verification failed",
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "No such user",
    ];
    const UNREACHABLE: [&str; 7] = [
        "Connection refused",
        "Connection timed out",
        "timed out during banner exchange",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Connection closed by",
    ];
    if AUTH.iter().any(|needle| stderr.contains(needle)) {
        Status::AuthFailed
    } else if UNREACHABLE.iter().any(|needle| stderr.contains(needle)) {
        Status::Unreachable
    } else {
        Status::Error
    }
}

/// The last few non-empty lines of `text`, joined with `; ` (ssh's and a script's error
/// is at the end; what comes before is warnings).
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let from = lines.len().saturating_sub(3);
    lines[from..].join("; ")
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn read_bounded(mut pipe: impl AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut chunk = vec![0; 16 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// A private folder for the master connections' sockets, removed when dropped.
///
/// # Errors
/// The folder cannot be made.
pub fn control_dir() -> std::io::Result<tempfile::TempDir> {
    // A short path: a socket's path is limited to about 100 bytes.
    tempfile::Builder::new()
        .prefix("ctl-ssh-")
        .tempdir_in(Path::new("/tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_messages_become_statuses() {
        let status = |text| ssh_failure_status(text);
        assert_eq!(
            status("root@127.0.0.1: Permission denied (publickey)."),
            Status::AuthFailed
        );
        assert_eq!(status("Host key verification failed."), Status::AuthFailed);
        assert_eq!(
            status("ssh: connect to host 127.0.0.1 port 2222: Connection refused"),
            Status::Unreachable
        );
        assert_eq!(status("something else"), Status::Error);
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\n\nb\nc\nd\n"), "b; c; d");
        assert_eq!(last_lines(""), "");
    }
}
