//! `known_hosts`: which host keys ctl trusts, by address, port and name.
//!
//! The file is OpenSSH's `known_hosts` (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"), so operators
//! can read, edit and check it with the tools they know (`ssh-keygen -F`, `-R`, `-H`):
//! `[@revoked] PATTERNS ssh-ed25519 AAAA... [comment]`. muster writes its lines as
//! `[ADDRESS]:PORT,NAME ssh-ed25519 AAAA...`, NAME being the host's name in the inventory.
//!
//! A host is its inventory name, `[ADDRESS]:PORT`, and the bare ADDRESS when the port is
//! 22 (OpenSSH writes port 22 without brackets). A line applies to the host when one of its
//! patterns matches one of those and no `!pattern` matches any of them. OpenSSH looks the
//! name and the address up separately (`CheckHostIP`); muster has one host behind both, so
//! it takes them together, and a negation naming either keeps the line off the host.
//! Hashed names (`|1|salt|hash`, as `ssh-keygen -H` or `HashKnownHosts` write them: an
//! HMAC-SHA1 of the lowercase host string keyed with the salt) are matched against each of
//! those strings.
//!
//! Only `ssh-ed25519` lines take part in lookups. Lines with other key types, with
//! `@cert-authority` (muster pins keys and checks no certificates) or that cannot be read
//! are reported as [`Warning`]s and left alone: [`KnownHosts::save`] writes every line it
//! did not edit back byte for byte, so one tool's lines survive the other's edits.
//!
//! What to do with an unknown or changed key (ask, refuse, trust on first use) is ctl's
//! decision, not this module's.
//!
//! Lines are split into fields by hand; `ssh_key::known_hosts::Entry` is not used for them
//! because it separates fields by single spaces only (OpenSSH takes runs of spaces and
//! tabs), cuts every line at the first `#` even inside a comment, and fails on the first
//! bad line where we skip it. Its `HostPatterns` does decode hashed names.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ring::hmac;
use ssh_key::known_hosts::HostPatterns;

pub use super::authorized_keys::Warning;
use super::authorized_keys::{is_key_type, match_glob};
use super::keys::{KeyError, PublicKey, KEY_TYPE};

/// The mode of a `known_hosts` file [`KnownHosts::save`] creates, as `ssh` creates one.
pub const NEW_FILE_MODE: u32 = 0o644;

/// What `known_hosts` says about a host presenting a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A line for this host has this key.
    Known {
        /// The first such line, from 1.
        line: usize,
    },
    /// No line is about this host.
    Unknown,
    /// Lines are about this host, with other keys: the host key changed, or someone is in
    /// the middle.
    Changed {
        /// The lines about this host and the keys on them, in file order.
        recorded: Vec<(usize, PublicKey)>,
    },
    /// An `@revoked` line for this host has this key: refuse it, whatever else is recorded.
    Revoked {
        /// The first such line, from 1.
        line: usize,
    },
}

/// A host name that cannot be written into `known_hosts` as a plain name: it would be
/// read back as something else (a pattern, a negation, a marker, two names).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot record the host name \"{name}\" in known_hosts: {reason}")]
pub struct BadName {
    /// The name as given.
    pub name: String,
    /// What in it is the trouble.
    pub reason: &'static str,
}

/// A `known_hosts` file: every line as it was read, and the host keys of those that are
/// about ssh-ed25519 keys.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    lines: Vec<Line>,
    /// Whether the text ended with a newline, so that it is written back the same way.
    ends_with_newline: bool,
    index: Index,
}

/// Which lines can be about a host, so that a lookup reads those and not the whole file
/// (ctl looks up every target, and a fleet's file has a line per host). A line whose
/// patterns are all plain names is filed under each of them, in lowercase; every other
/// line (a wildcard, a negation, a hashed name) is read for every host. Lines commented
/// out by [`KnownHosts::replace`] stay filed and are skipped when read.
#[derive(Clone, Debug, Default)]
struct Index {
    /// Line indices (from 0) by plain name.
    by_name: HashMap<String, Vec<usize>>,
    /// Line indices (from 0) to read for every host.
    every_host: Vec<usize>,
}

impl Index {
    fn file(&mut self, index: usize, entry: &HostEntry) {
        let plain = match &entry.hosts {
            Hosts::Patterns(patterns) => patterns
                .iter()
                .all(|pattern| !pattern.negated && !pattern.glob.contains(['*', '?'])),
            Hosts::Hashed { .. } => false,
        };
        match (plain, &entry.hosts) {
            (true, Hosts::Patterns(patterns)) => {
                for pattern in patterns {
                    let lines = self
                        .by_name
                        .entry(pattern.glob.to_ascii_lowercase())
                        .or_default();
                    if lines.last() != Some(&index) {
                        lines.push(index);
                    }
                }
            }
            _ => self.every_host.push(index),
        }
    }

    /// The indices of the lines that may apply to `host`, in file order.
    fn candidates(&self, host: &Host) -> Vec<usize> {
        let mut lines = self.every_host.clone();
        for name in &host.names {
            if let Some(filed) = self.by_name.get(name) {
                lines.extend_from_slice(filed);
            }
        }
        lines.sort_unstable();
        lines.dedup();
        lines
    }
}

impl KnownHosts {
    /// Reads the file at `path`; a missing file is an empty one.
    ///
    /// # Errors
    /// The file exists but cannot be read, or is not UTF-8 (`InvalidData`); the error
    /// does not name the path.
    pub fn load(path: &Path) -> io::Result<(KnownHosts, Vec<Warning>)> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(KnownHosts::parse(&text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Ok((KnownHosts::default(), Vec::new()))
            }
            Err(err) => Err(err),
        }
    }

    /// Reads the text of a `known_hosts` file. Each line that takes no part in lookups but
    /// is neither blank nor a comment (unreadable, another key type, `@cert-authority`)
    /// gives a [`Warning`]; it is kept for [`save`](KnownHosts::save) all the same.
    pub fn parse(text: &str) -> (KnownHosts, Vec<Warning>) {
        let ends_with_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut hosts = KnownHosts {
            lines: Vec::new(),
            ends_with_newline,
            index: Index::default(),
        };
        let mut warnings = Vec::new();
        if text.is_empty() {
            return (hosts, warnings);
        }
        for (index, line_text) in body.split('\n').enumerate() {
            let entry = match parse_line(line_text) {
                Ok(entry) => entry,
                Err(message) => {
                    warnings.push(Warning {
                        line: index + 1,
                        message,
                    });
                    None
                }
            };
            if let Some(entry) = &entry {
                hosts.index.file(index, entry);
            }
            hosts.lines.push(Line {
                text: line_text.to_owned(),
                entry,
            });
        }
        (hosts, warnings)
    }

    /// What the file says about host `name` (its inventory name) at `addr` presenting
    /// `key`; see [`Lookup`] and the module docs for which lines are about a host.
    pub fn lookup(&self, name: &str, addr: SocketAddr, key: &PublicKey) -> Lookup {
        let host = Host::new(name, addr);
        let mut known = None;
        let mut recorded = Vec::new();
        for index in self.index.candidates(&host) {
            let Some(entry) = &self.lines[index].entry else {
                continue;
            };
            let line = index + 1;
            if !entry.hosts.apply_to(&host) {
                continue;
            }
            if entry.revoked {
                if entry.key == *key {
                    return Lookup::Revoked { line };
                }
                continue;
            }
            if entry.key == *key {
                known.get_or_insert(line);
            } else {
                recorded.push((line, entry.key.clone()));
            }
        }
        match known {
            Some(line) => Lookup::Known { line },
            None if recorded.is_empty() => Lookup::Unknown,
            None => Lookup::Changed { recorded },
        }
    }

    /// Appends `[ADDRESS]:PORT,NAME ssh-ed25519 AAAA...` for host `name` at `addr` and
    /// returns its line number (from 1). Nothing is written until [`save`](KnownHosts::save).
    ///
    /// # Errors
    /// [`BadName`] if `name` would not read back as that one name (see [`BadName`]);
    /// nothing is added then.
    pub fn add(&mut self, name: &str, addr: SocketAddr, key: &PublicKey) -> Result<usize, BadName> {
        check_name(name)?;
        let text = format!(
            "[{}]:{},{name} {}",
            addr.ip(),
            addr.port(),
            key.to_openssh()
        );
        let entry = parse_line(&text).expect("a line add writes reads back");
        if let Some(entry) = &entry {
            self.index.file(self.lines.len(), entry);
        }
        self.lines.push(Line { text, entry });
        self.ends_with_newline = true;
        Ok(self.lines.len())
    }

    /// Turns every line that is about host `name` at `addr` (except `@revoked` ones, which
    /// stay in force) into the comment `# replaced TODAY: <the old line>`, then
    /// [`add`](KnownHosts::add)s `key` for it. Returns the numbers of the lines turned into
    /// comments; the numbers of all lines stay as they were.
    ///
    /// A line shared with other hosts (`*.example.com`, two names) is commented out as a
    /// whole, so those hosts become [`Lookup::Unknown`] until trusted again: fail closed,
    /// as `ssh-keygen -R` does.
    ///
    /// # Errors
    /// [`BadName`], as for `add`; nothing is changed then.
    pub fn replace(
        &mut self,
        name: &str,
        addr: SocketAddr,
        key: &PublicKey,
        today: &str,
    ) -> Result<Vec<usize>, BadName> {
        check_name(name)?;
        let host = Host::new(name, addr);
        // A newline in the date would end the comment and start a line of its own.
        let today = today.replace(|c: char| c.is_control(), " ");
        let mut replaced = Vec::new();
        for (index, line) in self.lines.iter_mut().enumerate() {
            let Some(entry) = &line.entry else { continue };
            if entry.revoked || !entry.hosts.apply_to(&host) {
                continue;
            }
            line.text = format!("# replaced {today}: {}", line.text);
            line.entry = None;
            replaced.push(index + 1);
        }
        self.add(name, addr, key)?;
        Ok(replaced)
    }

    /// Deletes every line that is about host `name` at `addr` (its address and agent
    /// port) and returns their numbers as they were. `@revoked` lines stay in force. A
    /// line shared with other hosts goes as a whole, as with `ssh-keygen -R`: those hosts
    /// are unknown until trusted again.
    pub fn remove(&mut self, name: &str, addr: SocketAddr) -> Vec<usize> {
        let host = Host::new(name, addr);
        let about_host = |line: &Line| {
            line.entry
                .as_ref()
                .is_some_and(|entry| !entry.revoked && entry.hosts.apply_to(&host))
        };
        let removed: Vec<usize> = (0..self.lines.len())
            .filter(|&index| about_host(&self.lines[index]))
            .map(|index| index + 1)
            .collect();
        if !removed.is_empty() {
            self.lines.retain(|line| !about_host(line));
            // Parsed again, so the index points at the lines that are left.
            *self = match self.lines.is_empty() {
                true => KnownHosts::default(),
                false => KnownHosts::parse(&self.to_text()).0,
            };
        }
        removed
    }

    /// Writes the file to `path` so that it is replaced whole or not at all: a new file
    /// beside it (created with `O_EXCL`), written, synced, then renamed over it, and the
    /// folder synced. The new file gets the old one's permission bits, or
    /// [`NEW_FILE_MODE`]. A symbolic link at `path` is followed and stays a link, as a
    /// dotfile manager would want.
    ///
    /// # Errors
    /// Any step's I/O error (not naming the path); the old file is then as it was and no
    /// temporary file is left behind. A link pointing nowhere is an error.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let path = follow_link(path)?;
        let mode = match fs::metadata(&path) {
            Ok(meta) => meta.permissions().mode() & 0o777,
            Err(err) if err.kind() == io::ErrorKind::NotFound => NEW_FILE_MODE,
            Err(err) => return Err(err),
        };
        let folder = match path.parent() {
            Some(folder) if !folder.as_os_str().is_empty() => folder.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not the path of a file"))?;
        let (mut file, temp) = create_temp(&folder, name)?;
        let placed = write_synced(&mut file, self.to_text().as_bytes(), mode)
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(err) = placed {
            let _ = fs::remove_file(&temp);
            return Err(err);
        }
        // The rename itself is only durable once the folder is synced.
        File::open(&folder)?.sync_all()
    }

    /// The file's text: every line as read or edited.
    pub fn to_text(&self) -> String {
        let mut text = self
            .lines
            .iter()
            .map(|line| line.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if self.ends_with_newline {
            text.push('\n');
        }
        text
    }
}

/// One line as read (without its newline), and what it says if it takes part in lookups.
#[derive(Clone, Debug)]
struct Line {
    text: String,
    entry: Option<HostEntry>,
}

#[derive(Clone, Debug)]
struct HostEntry {
    revoked: bool,
    hosts: Hosts,
    key: PublicKey,
}

/// The first field of a line.
#[derive(Clone, Debug)]
enum Hosts {
    Patterns(Vec<HostPattern>),
    Hashed { salt: Vec<u8>, hash: [u8; 20] },
}

#[derive(Clone, Debug)]
struct HostPattern {
    negated: bool,
    glob: String,
}

/// The strings one host is known by (see the module docs), in lowercase as OpenSSH
/// compares and hashes them.
struct Host {
    names: Vec<String>,
}

impl Host {
    fn new(name: &str, addr: SocketAddr) -> Host {
        let mut names = vec![
            // ASCII only, as OpenSSH's `lowercase()` before hashing.
            name.to_ascii_lowercase(),
            format!("[{}]:{}", addr.ip(), addr.port()),
        ];
        if addr.port() == 22 {
            names.push(addr.ip().to_string());
        }
        Host { names }
    }
}

impl Hosts {
    fn apply_to(&self, host: &Host) -> bool {
        match self {
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    if host
                        .names
                        .iter()
                        .any(|name| match_glob(&pattern.glob, name))
                    {
                        if pattern.negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                matched
            }
            Hosts::Hashed { salt, hash } => {
                let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                host.names
                    .iter()
                    .any(|name| hmac::verify(&key, name.as_bytes(), hash).is_ok())
            }
        }
    }
}

/// Reads one line: `Ok(None)` for a blank line or a comment, `Err` with the reason a line
/// takes no part in lookups.
fn parse_line(text: &str) -> Result<Option<HostEntry>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    // Two markers, matched here rather than with `ssh_key`'s `Marker`, whose error would
    // not say which marker it was.
    let (revoked, rest) =
        match split_field(text) {
            ("@revoked", rest) => (true, rest),
            ("@cert-authority", _) => return Err(
                "@cert-authority line ignored: muster pins host keys and checks no certificates"
                    .to_owned(),
            ),
            (marker, _) if marker.starts_with('@') => {
                return Err(format!("unknown marker {marker}: line ignored"))
            }
            _ => (false, text),
        };
    let (patterns, key_text) = split_field(rest);
    let kind = split_field(key_text).0;
    if !is_key_type(kind) {
        return Err(format!(
            "malformed line: expected [@revoked] HOSTS {KEY_TYPE} AAAA... [comment]"
        ));
    }
    if kind != KEY_TYPE {
        return Err(format!(
            "{kind} key ignored: muster uses {KEY_TYPE} host keys only"
        ));
    }
    let key = PublicKey::from_openssh(key_text).map_err(|err| match err {
        KeyError::Malformed(why) => format!("malformed {KEY_TYPE} key: {why}"),
        other => other.to_string(),
    })?;
    let hosts = parse_hosts(patterns)?;
    Ok(Some(HostEntry {
        revoked,
        hosts,
        key,
    }))
}

/// The first field of `text` and the rest, fields being separated by spaces and tabs.
fn split_field(text: &str) -> (&str, &str) {
    match text.split_once([' ', '\t']) {
        Some((field, rest)) => (field, rest.trim_start_matches([' ', '\t'])),
        None => (text, ""),
    }
}

fn parse_hosts(field: &str) -> Result<Hosts, String> {
    if field.starts_with("|1|") {
        return match HostPatterns::from_str(field) {
            Ok(HostPatterns::HashedName { salt, hash }) => Ok(Hosts::Hashed { salt, hash }),
            _ => Err(format!("malformed hashed host name {field}")),
        };
    }
    // Split here rather than by `HostPatterns`, which drops a trailing empty pattern but
    // keeps others: an empty pattern is reported wherever it is.
    let mut patterns = Vec::new();
    for pattern in field.split(',') {
        let (negated, glob) = match pattern.strip_prefix('!') {
            Some(glob) => (true, glob),
            None => (false, pattern),
        };
        if glob.is_empty() {
            return Err(format!("empty host pattern in {field}"));
        }
        if glob.starts_with("|1|") {
            return Err(format!(
                "a hashed host name must be alone in its field: {field}"
            ));
        }
        patterns.push(HostPattern {
            negated,
            glob: glob.to_owned(),
        });
    }
    Ok(Hosts::Patterns(patterns))
}

/// Checks that `name` reads back from `[ADDRESS]:PORT,NAME` as exactly that host name.
fn check_name(name: &str) -> Result<(), BadName> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains white space or a control character")
    } else if name.contains(',') {
        Some("it contains a comma, which separates host patterns")
    } else if name.contains(['*', '?']) {
        Some("it contains a wildcard (* or ?)")
    } else if name.starts_with(['!', '|', '@', '#', '[']) {
        Some("its first character has a meaning of its own in known_hosts")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BadName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The file a link at `path` points to (through any chain of links), or `path` itself.
fn follow_link(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_owned()),
    }
}

/// Creates `.NAME.tmp.PID.RANDOM` in `folder`, new (`O_EXCL`: never an existing file or a
/// link someone put there) and private until it is complete.
fn create_temp(folder: &Path, name: &OsStr) -> io::Result<(File, PathBuf)> {
    let mut attempts = 0;
    loop {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the operating system random source works");
        let mut temp_name = OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(
            ".tmp.{}.{}",
            std::process::id(),
            hex::encode(random)
        ));
        let temp = folder.join(temp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => return Ok((file, temp)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                attempts += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

fn write_synced(file: &mut File, bytes: &[u8], mode: u32) -> io::Result<()> {
    // fchmod on our descriptor: the exact mode, which the umask would have trimmed at
    // creation.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    //! Tried here: each `Lookup` outcome, matching by name, by `[address]:port` and by bare
    //! address on port 22 only, IPv6, wildcards, negation and case, `@revoked` winning over
    //! a known line, `@cert-authority`, other key types and malformed lines reported by
    //! number while the rest works, hashed names as `ssh-keygen -H` writes them, `add` and
    //! `replace` keeping every other line byte for byte through `save`, the mode kept and
    //! a link followed on save, names refused, and `ssh-keygen -F` finding what we wrote.

    use super::*;
    use std::process::Command;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    /// `ssh-ed25519 AAAA...` for test key `n`.
    fn k(n: u8) -> String {
        key(n).to_openssh()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn parse_clean(text: &str) -> KnownHosts {
        let (hosts, warnings) = KnownHosts::parse(text);
        assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
        hosts
    }

    const RSA_LINE: &str = "web1 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 root@web1";

    #[test]
    fn each_lookup_outcome() {
        let hosts = parse_clean(&format!(
            "[10.0.0.1]:7001,web1 {}\n[10.0.0.2]:7001,web2 {}\n[10.0.0.2]:7001 {} second\n@revoked * {}\n",
            k(1),
            k(2),
            k(3),
            k(9)
        ));
        let web1 = addr("10.0.0.1:7001");
        let web2 = addr("10.0.0.2:7001");
        assert_eq!(
            hosts.lookup("web1", web1, &key(1)),
            Lookup::Known { line: 1 }
        );
        assert_eq!(
            hosts.lookup("web1", web1, &key(5)),
            Lookup::Changed {
                recorded: vec![(1, key(1))]
            }
        );
        assert_eq!(
            hosts.lookup("web2", web2, &key(4)),
            Lookup::Changed {
                recorded: vec![(2, key(2)), (3, key(3))]
            }
        );
        assert_eq!(
            hosts.lookup("web2", web2, &key(3)),
            Lookup::Known { line: 3 }
        );
        let new = addr("10.0.0.3:7001");
        assert_eq!(hosts.lookup("web3", new, &key(1)), Lookup::Unknown);
        assert_eq!(
            hosts.lookup("web3", new, &key(9)),
            Lookup::Revoked { line: 4 }
        );
        // The name alone or the address alone makes a line about the host.
        let moved = addr("10.9.9.9:7001");
        assert_eq!(
            hosts.lookup("web1", moved, &key(1)),
            Lookup::Known { line: 1 }
        );
        assert_eq!(
            hosts.lookup("renamed", web1, &key(1)),
            Lookup::Known { line: 1 }
        );
        // Another port is another host.
        let other_port = addr("10.0.0.1:7002");
        assert_eq!(hosts.lookup("x", other_port, &key(1)), Lookup::Unknown);
        // The recorded keys carry the comments of their lines.
        let Lookup::Changed { recorded } = hosts.lookup("web2", web2, &key(4)) else {
            panic!("web2 with another key is a changed host");
        };
        assert_eq!(recorded[1].1.comment(), "second");
    }

    #[test]
    fn a_large_file_answers_as_a_scan_would_in_file_order() {
        // Tried: 10,000 plain lines (one per host, in upper case for some), a wildcard
        // line in the middle, a line commented out by replace, and a line added after
        // loading. Each lookup finds the first line about the host, whichever kind it is.
        let mut text = String::new();
        for n in 0..10_000 {
            let name = if n % 2 == 0 {
                format!("WEB{n}")
            } else {
                format!("web{n}")
            };
            text.push_str(&format!(
                "[10.1.{}.{}]:7070,{name} {}\n",
                n / 250,
                n % 250,
                k(1)
            ));
            if n == 5_000 {
                text.push_str(&format!("web7* {}\n", k(2)));
            }
        }
        let mut hosts = parse_clean(&text);
        let at = |n: usize| addr(&format!("10.1.{}.{}:7070", n / 250, n % 250));
        assert_eq!(
            hosts.lookup("web42", at(42), &key(1)),
            Lookup::Known { line: 43 }
        );
        // web7000's own line comes after the wildcard line (line 5002).
        assert_eq!(
            hosts.lookup("web7000", at(7000), &key(1)),
            Lookup::Known { line: 7002 }
        );
        assert_eq!(
            hosts.lookup("web7000", at(7000), &key(2)),
            Lookup::Known { line: 5002 }
        );
        assert_eq!(
            hosts.lookup("web3", at(3), &key(2)),
            Lookup::Changed {
                recorded: vec![(4, key(1))]
            }
        );
        assert_eq!(
            hosts.lookup("db1", addr("10.9.9.9:7070"), &key(1)),
            Lookup::Unknown
        );
        hosts.replace("web3", at(3), &key(3), "2026-12-03").unwrap();
        assert_eq!(
            hosts.lookup("web3", at(3), &key(3)),
            Lookup::Known { line: 10_002 }
        );
        assert_eq!(
            hosts.lookup("web3", at(3), &key(1)),
            Lookup::Changed {
                recorded: vec![(10_002, key(3))]
            }
        );
    }

    #[test]
    fn revoked_wins_over_a_known_line_and_applies_to_its_hosts_only() {
        let hosts = parse_clean(&format!(
            "[10.0.0.1]:7001,web1 {k1}\n@revoked\tweb1 {k1}\n@revoked web1 {}\n",
            k(2),
            k1 = k(1)
        ));
        let at = addr("10.0.0.1:7001");
        assert_eq!(
            hosts.lookup("web1", at, &key(1)),
            Lookup::Revoked { line: 2 }
        );
        assert_eq!(
            hosts.lookup("other", at, &key(1)),
            Lookup::Known { line: 1 }
        );
        // A revoked key is no recorded key: a third key is changed from line 1 only.
        assert_eq!(
            hosts.lookup("web1", at, &key(3)),
            Lookup::Changed {
                recorded: vec![(1, key(1))]
            }
        );
        assert_eq!(
            hosts.lookup("db1", addr("10.0.0.9:7001"), &key(2)),
            Lookup::Unknown
        );
    }

    #[test]
    fn wildcards_negation_and_case() {
        let hosts = parse_clean(&format!(
            "[10.0.0.*]:7001,!web3 {}\nweb? {}\n*.example.com,!bad.example.com {}\n",
            k(1),
            k(2),
            k(3)
        ));
        assert_eq!(
            hosts.lookup("web1", addr("10.0.0.1:7001"), &key(1)),
            Lookup::Known { line: 1 }
        );
        // Line 1 is kept off web3 by its negation; line 2 is about it.
        assert_eq!(
            hosts.lookup("web3", addr("10.0.0.3:7001"), &key(1)),
            Lookup::Changed {
                recorded: vec![(2, key(2))]
            }
        );
        let elsewhere = addr("192.0.2.1:7001");
        assert_eq!(
            hosts.lookup("WEB4", elsewhere, &key(2)),
            Lookup::Known { line: 2 }
        );
        assert_eq!(hosts.lookup("web10", elsewhere, &key(2)), Lookup::Unknown);
        assert_eq!(
            hosts.lookup("a.example.com", elsewhere, &key(3)),
            Lookup::Known { line: 3 }
        );
        assert_eq!(
            hosts.lookup("bad.example.com", elsewhere, &key(3)),
            Lookup::Unknown
        );
        assert_eq!(
            hosts.lookup("x", addr("10.0.0.1:7002"), &key(1)),
            Lookup::Unknown
        );
    }

    #[test]
    fn a_bare_address_is_port_22_only() {
        let hosts = parse_clean(&format!(
            "10.0.0.1 {}\n2001:db8::5 {}\n[10.0.0.2]:22 {}\n",
            k(1),
            k(2),
            k(3)
        ));
        assert_eq!(
            hosts.lookup("h", addr("10.0.0.1:22"), &key(1)),
            Lookup::Known { line: 1 }
        );
        assert_eq!(
            hosts.lookup("h", addr("10.0.0.1:7001"), &key(1)),
            Lookup::Unknown
        );
        assert_eq!(
            hosts.lookup("h", addr("[2001:db8::5]:22"), &key(2)),
            Lookup::Known { line: 2 }
        );
        assert_eq!(
            hosts.lookup("h", addr("[2001:db8::5]:7070"), &key(2)),
            Lookup::Unknown
        );
        assert_eq!(
            hosts.lookup("h", addr("10.0.0.2:22"), &key(3)),
            Lookup::Known { line: 3 }
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_with_their_port() {
        let mut hosts = parse_clean(&format!("[2001:db8::5]:7070,db1 {}\n", k(1)));
        let db1 = addr("[2001:db8::5]:7070");
        assert_eq!(hosts.lookup("db1", db1, &key(1)), Lookup::Known { line: 1 });
        assert_eq!(hosts.lookup("x", db1, &key(1)), Lookup::Known { line: 1 });
        let db2 = addr("[2001:db8::6]:7070");
        assert_eq!(hosts.add("db2", db2, &key(2)), Ok(2));
        assert!(hosts
            .to_text()
            .ends_with(&format!("\n[2001:db8::6]:7070,db2 {}\n", k(2))));
        assert_eq!(hosts.lookup("x", db2, &key(2)), Lookup::Known { line: 2 });
    }

    #[test]
    fn unusable_lines_are_reported_by_number_and_the_rest_works() {
        let cases = [
            (
                format!("@cert-authority *.example.com {}", k(1)),
                "@cert-authority line ignored",
            ),
            ("garbage".to_owned(), "malformed line"),
            ("web1".to_owned(), "malformed line"),
            (k(1), "malformed line"),
            (
                "web1 ssh-ed25519 notbase64!".to_owned(),
                "malformed ssh-ed25519 key",
            ),
            (format!("@bogus web1 {}", k(1)), "unknown marker @bogus"),
            (RSA_LINE.to_owned(), "ssh-rsa key ignored"),
            (format!(",web1 {}", k(1)), "empty host pattern"),
            (format!("web1,! {}", k(1)), "empty host pattern"),
            (format!("|1|bad|bad {}", k(1)), "malformed hashed host name"),
            (format!("web1,|1|abc=|def= {}", k(1)), "alone in its field"),
        ];
        let mut lines = vec!["# operators' notes".to_owned()];
        lines.extend(cases.iter().map(|(line, _)| line.clone()));
        lines.push(format!("[10.0.0.1]:7001,web1 {}", k(2)));
        let text = lines.join("\n");
        let (hosts, warnings) = KnownHosts::parse(&text);
        assert_eq!(warnings.len(), cases.len(), "{warnings:?}");
        for (n, ((line, needle), warning)) in cases.iter().zip(&warnings).enumerate() {
            assert_eq!(warning.line, n + 2, "{line:?}: {warning}");
            assert!(warning.message.contains(needle), "{line:?}: {warning}");
        }
        let at = addr("10.0.0.1:7001");
        let last = cases.len() + 2;
        assert_eq!(
            hosts.lookup("web1", at, &key(2)),
            Lookup::Known { line: last }
        );
        // The @cert-authority key counts for nothing.
        assert_eq!(
            hosts.lookup("a.example.com", at, &key(1)),
            Lookup::Changed {
                recorded: vec![(last, key(2))]
            }
        );
        assert_eq!(hosts.to_text(), text);
    }

    #[test]
    fn add_appends_and_keeps_every_other_line_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        // Comments, blank lines, tabs, a CRLF line, an RSA line, and no final newline.
        let original = format!(
            "# muster's hosts\n\n{RSA_LINE}\n  [10.0.0.2]:7001,web2\t{}  note\r\n   \n# end",
            k(2)
        );
        let (mut hosts, warnings) = KnownHosts::parse(&original);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(hosts.to_text(), original);
        let at = addr("10.0.0.1:7001");
        assert_eq!(hosts.add("web1", at, &key(1)), Ok(7));
        let expected = format!("{original}\n[10.0.0.1]:7001,web1 {}\n", k(1));
        assert_eq!(hosts.to_text(), expected);
        assert_eq!(hosts.lookup("web1", at, &key(1)), Lookup::Known { line: 7 });
        hosts.save(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        let (again, _) = KnownHosts::load(&path).unwrap();
        assert_eq!(again.to_text(), expected);
        assert_eq!(again.lookup("web1", at, &key(1)), Lookup::Known { line: 7 });
        assert_eq!(
            again.lookup("web2", addr("10.0.0.2:7001"), &key(2)),
            Lookup::Known { line: 4 }
        );
    }

    #[test]
    fn remove_deletes_the_hosts_lines_and_keeps_the_rest() {
        let original = [
            "# keep me".to_owned(),
            format!("[10.0.0.1]:7001,web1 {}", k(1)),
            format!("web1 {} by name", k(2)),
            format!("@revoked web1 {}", k(3)),
            format!("[10.0.0.2]:7001,web2 {}", k(4)),
        ];
        let (mut hosts, _) = KnownHosts::parse(&(original.join("\n") + "\n"));
        let at = addr("10.0.0.1:7001");
        assert_eq!(hosts.remove("web1", at), vec![2, 3]);
        let expected = [&original[0], &original[3], &original[4]];
        assert_eq!(
            hosts.to_text(),
            expected.map(String::as_str).join("\n") + "\n"
        );
        assert_eq!(hosts.lookup("web1", at, &key(1)), Lookup::Unknown);
        assert_eq!(
            hosts.lookup("web2", addr("10.0.0.2:7001"), &key(4)),
            Lookup::Known { line: 3 }
        );
        assert_eq!(hosts.remove("web1", at), Vec::<usize>::new());
        assert_eq!(hosts.remove("web2", addr("10.0.0.2:7001")), vec![3]);
    }

    #[test]
    fn replace_comments_out_the_hosts_lines_and_adds_the_new_key() {
        let original = [
            "# keep me".to_owned(),
            format!("[10.0.0.1]:7001,web1 {}", k(1)),
            format!("web1 {} by name", k(2)),
            format!("@revoked web1 {}", k(3)),
            format!("[10.0.0.2]:7001,web2 {}", k(4)),
            RSA_LINE.to_owned(),
            String::new(),
        ];
        let (mut hosts, _) = KnownHosts::parse(&(original.join("\n") + "\n"));
        let at = addr("10.0.0.1:7001");
        let replaced = hosts.replace("web1", at, &key(5), "2025-01-31").unwrap();
        assert_eq!(replaced, vec![2, 3]);
        let mut expected = original.to_vec();
        expected[1] = format!("# replaced 2025-01-31: {}", original[1]);
        expected[2] = format!("# replaced 2025-01-31: {}", original[2]);
        expected.push(format!("[10.0.0.1]:7001,web1 {}", k(5)));
        let expected = expected.join("\n") + "\n";
        assert_eq!(hosts.to_text(), expected);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        hosts.save(&path).unwrap();
        let (hosts, _) = KnownHosts::load(&path).unwrap();
        assert_eq!(hosts.to_text(), expected);
        assert_eq!(hosts.lookup("web1", at, &key(5)), Lookup::Known { line: 8 });
        assert_eq!(
            hosts.lookup("web1", at, &key(1)),
            Lookup::Changed {
                recorded: vec![(8, key(5))]
            }
        );
        assert_eq!(
            hosts.lookup("web1", at, &key(3)),
            Lookup::Revoked { line: 4 }
        );
        assert_eq!(
            hosts.lookup("web2", addr("10.0.0.2:7001"), &key(4)),
            Lookup::Known { line: 5 }
        );
    }

    #[test]
    fn names_that_would_read_back_differently_are_refused() {
        let mut hosts = KnownHosts::default();
        let at = addr("10.0.0.1:7001");
        for name in [
            "", "web 1", "a,b", "web*", "web?", "!web", "|1|x", "@revoked", "#x", "[x]:1",
        ] {
            let err = hosts.add(name, at, &key(1)).unwrap_err();
            assert_eq!(err.name, name);
            assert!(hosts.replace(name, at, &key(1), "today").is_err());
        }
        assert_eq!(hosts.to_text(), "");
        assert_eq!(hosts.add("db-1.example.com", at, &key(1)), Ok(1));
    }

    #[test]
    fn save_keeps_the_mode_and_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut hosts = KnownHosts::default();
        hosts.add("web1", addr("10.0.0.1:7001"), &key(1)).unwrap();
        hosts.save(&path).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), NEW_FILE_MODE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        hosts.add("web2", addr("10.0.0.2:7001"), &key(2)).unwrap();
        hosts.save(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), hosts.to_text());

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        hosts.add("web3", addr("10.0.0.3:7001"), &key(3)).unwrap();
        hosts.save(&link).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&path).unwrap(), hosts.to_text());
        assert_eq!(mode(&path), 0o600);

        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["known_hosts", "link"], "no temporary file is left");
    }

    #[test]
    fn a_missing_file_is_empty_and_bad_bytes_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (hosts, warnings) = KnownHosts::load(&dir.path().join("absent")).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(hosts.to_text(), "");
        assert_eq!(
            hosts.lookup("web1", addr("10.0.0.1:7001"), &key(1)),
            Lookup::Unknown
        );
        let binary = dir.path().join("binary");
        fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
        let err = KnownHosts::load(&binary).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    fn ssh_keygen(args: &[&str], file: &Path) -> std::process::Output {
        let output = Command::new("ssh-keygen")
            .args(args)
            .arg("-f")
            .arg(file)
            .output()
            .expect("ssh-keygen runs");
        assert!(
            output.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    #[test]
    fn ssh_keygen_finds_the_lines_muster_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut hosts = KnownHosts::default();
        hosts.add("web1", addr("127.0.0.1:7001"), &key(1)).unwrap();
        hosts
            .add("db1", addr("[2001:db8::5]:7070"), &key(2))
            .unwrap();
        hosts.save(&path).unwrap();
        let found = ssh_keygen(&["-F", "[127.0.0.1]:7001"], &path);
        let stdout = String::from_utf8_lossy(&found.stdout);
        assert!(
            stdout.contains(&format!("[127.0.0.1]:7001,web1 {}", k(1))),
            "{stdout}"
        );
        for host in ["web1", "[2001:db8::5]:7070", "db1"] {
            ssh_keygen(&["-F", host], &path);
        }
    }

    #[test]
    fn hashed_names_from_ssh_keygen_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let mut hosts = KnownHosts::default();
        hosts.add("web1", addr("127.0.0.1:7001"), &key(1)).unwrap();
        hosts.save(&path).unwrap();
        ssh_keygen(&["-H"], &path);
        let (hashed, warnings) = KnownHosts::load(&path).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let text = hashed.to_text();
        assert!(text.starts_with("|1|") && !text.contains("web1"), "{text}");
        let at = addr("127.0.0.1:7001");
        assert!(matches!(
            hashed.lookup("web1", at, &key(1)),
            Lookup::Known { .. }
        ));
        assert!(matches!(
            hashed.lookup("WEB1", addr("127.0.0.2:7001"), &key(1)),
            Lookup::Known { .. }
        ));
        assert!(matches!(
            hashed.lookup("other", at, &key(2)),
            Lookup::Changed { .. }
        ));
        assert_eq!(
            hashed.lookup("web2", addr("127.0.0.2:7001"), &key(1)),
            Lookup::Unknown
        );
        // And a hashed line is replaced like any other.
        let mut hashed = hashed;
        // ssh-keygen -H wrote one line per name: both are about web1.
        let replaced = hashed.replace("web1", at, &key(3), "today").unwrap();
        assert_eq!(replaced, vec![1, 2]);
        assert_eq!(
            hashed.lookup("web1", at, &key(3)),
            Lookup::Known {
                line: hashed.to_text().lines().count()
            }
        );
    }
}
