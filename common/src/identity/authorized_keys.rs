//! `authorized_keys`: which operator keys an agent lets in, and for what.
//!
//! The file is OpenSSH's `authorized_keys` (sshd(8), "AUTHORIZED_KEYS FILE FORMAT"), one key
//! a line: `[options] ssh-ed25519 AAAA... [comment]`, so operators can paste the `.pub` line
//! `ssh-keygen -t ed25519` made. Two options are honoured:
//!
//! - `from="PATTERN,..."`: the addresses the key may connect from, matched as sshd matches
//!   `from=` against the client's address (`addr_match_list` and `match_hostname` in
//!   OpenSSH's `addrmatch.c` and `match.c`): `*`/`?` wildcards on the address as text,
//!   `a.b.c.d/nn` and `x::/nn` networks, and a `!pattern` that matches denies even if another
//!   pattern matches. An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`) is matched as IPv4, as sshd
//!   does. There is no DNS: a host-name pattern could never match an address, so it is
//!   refused (see below) rather than silently never matching.
//! - `permit="run,push,pull,ping"`: muster's own, the actions the key may ask for (default:
//!   all four).
//!
//! The file fails closed. sshd refuses a key line with an option it does not know; so do
//! we, for every option other than those two (`command=`, `restrict`, `no-pty`, ...): an
//! option written to restrict a key must never be silently ignored. A skipped line is
//! reported as a [`Warning`] naming its line and the rest of the file keeps working, so a
//! typo locks out one key, not the fleet's operators. Where we are stricter than sshd, it is
//! for the same reason: sshd takes `from="10.0.0.0/8, !10.0.0.5"` with the space as the
//! literal pattern ` !10.0.0.5`, which never matches, so the negation is lost; we trim the
//! space. And sshd takes a malformed network (`10.0.0.0/x`) or a host name as a literal
//! that never matches, which after a `!` also loses the negation; we skip the line.
//!
//! The options are parsed by hand rather than with `ssh_key::authorized_keys::Entry`: that
//! splits options from the key at the first space, so a quoted space (`from="a, b"`,
//! `command="echo hi"`) breaks the line, and it hands the options back as raw text, so the
//! dequoting and the per-option errors would be ours anyway.
//!
//! [`AuthorizedKeysFile`] keeps the parsed file for a running agent and re-reads it when it
//! changes, so removing a line revokes that key for the next connection. Proving that the
//! peer holds the private key is not this module's business (the TLS handshake does that);
//! what each action does is the agent's.
//!
//! Three things here are shared with [`super::known_hosts`], which reads the same kind of
//! patterns and reports its lines the same way: [`Warning`], the wildcard matcher
//! `match_glob` and `is_key_type`. They live here because this module came first; they
//! belong in the `identity` module root once it has room for them.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::keys::{KeyError, PublicKey, KEY_TYPE};

/// What an operator asks an agent to do; `permit=` names a subset of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Check that the agent is there and answers.
    Ping,
    /// Run a command.
    Run,
    /// Send a file to the host.
    Push,
    /// Fetch a file from the host.
    Pull,
}

impl Action {
    /// Every action, in the order `permitted()` lists them.
    pub const ALL: [Action; 4] = [Action::Ping, Action::Run, Action::Push, Action::Pull];

    /// The action's name in `permit=` and in messages: `ping`, `run`, `push` or `pull`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Ping => "ping",
            Action::Run => "run",
            Action::Push => "push",
            Action::Pull => "pull",
        }
    }

    /// This action's bit in an [`Entry`]'s set of permitted actions.
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the [`Action`]s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown action \"{0}\" (the actions are ping, run, push and pull)")]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    /// Reads an action's [`name`](Action::name), exactly as written there (lowercase).
    fn from_str(name: &str) -> Result<Action, UnknownAction> {
        Action::ALL
            .into_iter()
            .find(|action| action.name() == name)
            .ok_or_else(|| UnknownAction(name.to_owned()))
    }
}

/// A line of `authorized_keys` or `known_hosts` that was skipped or is ignored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The line's number, from 1.
    pub line: usize,
    /// What is wrong with it, for an operator.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One key line that was understood: the key, where it may connect from, and what it may do.
#[derive(Clone, Debug)]
pub struct Entry {
    key: PublicKey,
    line: usize,
    /// `None` without `from=`: any address.
    from: Option<Vec<AddrPattern>>,
    /// A set of [`Action::bit`]s.
    permits: u8,
}

impl Entry {
    /// The key, with the comment written after it on the line.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The line's number in the file, from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// True if the line lets this key ask for `action`.
    pub fn permits(&self, action: Action) -> bool {
        self.permits & action.bit() != 0
    }

    /// The actions this line lets the key ask for, in the order of [`Action::ALL`].
    pub fn permitted(&self) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|action| self.permits(*action))
            .collect()
    }

    /// True if the line's `from=` (if any) lets `peer` in. `peer` is canonical: an
    /// IPv4-mapped IPv6 address has been turned into IPv4.
    fn admits(&self, peer: IpAddr) -> bool {
        let Some(patterns) = &self.from else {
            return true;
        };
        let text = peer.to_string();
        let mut admitted = false;
        for pattern in patterns {
            if pattern.matches(peer, &text) {
                // As in sshd, a negated pattern that matches denies whatever else matches.
                if pattern.negated {
                    return false;
                }
                admitted = true;
            }
        }
        admitted
    }
}

/// Why a key was not let in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// No usable line has the key.
    #[error("key {fingerprint} is not in authorized_keys")]
    NotListed {
        /// The key's fingerprint, `SHA256:...`.
        fingerprint: String,
    },
    /// Lines have the key, but the `from=` of each of them refuses the peer's address.
    #[error(
        "key {fingerprint} is not allowed from {peer} (from= on {})",
        line_list(lines)
    )]
    From {
        /// The key's fingerprint, `SHA256:...`.
        fingerprint: String,
        /// The address the connection came from, as it was matched (IPv4 for a mapped one).
        peer: IpAddr,
        /// The lines with that key, from 1.
        lines: Vec<usize>,
    },
}

/// The operator keys an agent accepts: the usable lines of an `authorized_keys` file.
#[derive(Clone, Debug, Default)]
pub struct AuthorizedKeys {
    entries: Vec<Entry>,
}

impl AuthorizedKeys {
    /// Reads the text of an `authorized_keys` file. Lines that cannot be used exactly as
    /// written (malformed, another key type than `ssh-ed25519`, an option muster does not
    /// honour, an invalid `from=` or `permit=`) are left out and reported, one [`Warning`]
    /// each; the other lines are used.
    pub fn parse(text: &str) -> (AuthorizedKeys, Vec<Warning>) {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for (index, line_text) in text.lines().enumerate() {
            let line = index + 1;
            match parse_line(line_text, line) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(message) => warnings.push(Warning { line, message }),
            }
        }
        (AuthorizedKeys { entries }, warnings)
    }

    /// The first line with `key` whose `from=` (if any) lets `peer` in: what that line
    /// permits is what the connection may do.
    ///
    /// # Errors
    /// [`Denied::NotListed`] if no line has the key, [`Denied::From`] if every line with it
    /// refuses `peer`.
    pub fn authorize(&self, key: &PublicKey, peer: IpAddr) -> Result<&Entry, Denied> {
        let peer = peer.to_canonical();
        let mut refused = Vec::new();
        for entry in self.entries.iter().filter(|entry| entry.key == *key) {
            if entry.admits(peer) {
                return Ok(entry);
            }
            refused.push(entry.line);
        }
        let fingerprint = key.fingerprint();
        if refused.is_empty() {
            return Err(Denied::NotListed { fingerprint });
        }
        Err(Denied::From {
            fingerprint,
            peer,
            lines: refused,
        })
    }

    /// The usable lines, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many usable lines there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no line is usable: nobody gets in.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An `authorized_keys` file as a running agent sees it: parsed once, and parsed again
/// whenever it has changed on disk, so that removing a line refuses that key from the next
/// connection on, without a restart.
///
/// Each [`current`](AuthorizedKeysFile::current) call looks at the file's metadata (one
/// `stat` of the path: device, inode, length, and modification and change times to the
/// nanosecond) and reads the file again if any of them differ from the last read. File
/// times tick coarsely (a few milliseconds on Linux, more on some file systems), so a file
/// rewritten in place to the same length within one tick would keep all of them; while the
/// file's times are less than [`SETTLE_TIME`] old, it is read on every call and its text
/// compared (the "racy clean" problem of git's index).
///
/// It fails closed: a missing, unreadable or non-regular file, or one that users other than
/// its owner may write (which would let them add their own key to a root daemon, the
/// reason sshd's `StrictModes` refuses one), means no key is accepted. Each change of that
/// state is logged once with `tracing::warn!`, and so is each line skipped in a newly read
/// file.
#[derive(Debug)]
pub struct AuthorizedKeysFile {
    path: PathBuf,
    cache: Mutex<Cache>,
}

/// How long after a change to the file its metadata alone is trusted to show the next
/// change: well over the timestamp granularity of the file systems we run on.
pub const SETTLE_TIME: Duration = Duration::from_secs(2);

impl AuthorizedKeysFile {
    /// Reads the file at `path` now (logging what is wrong with it), and again on each
    /// [`current`](AuthorizedKeysFile::current) once it has changed.
    pub fn open(path: PathBuf) -> AuthorizedKeysFile {
        let file = AuthorizedKeysFile {
            path,
            cache: Mutex::new(Cache {
                keys: Arc::new(AuthorizedKeys::default()),
                state: State::Unread,
            }),
        };
        file.current();
        file
    }

    /// The keys as the file holds them now; empty if it cannot be used (see the type's
    /// docs). Cheap when the file has not changed: one `stat` and an `Arc` clone.
    pub fn current(&self) -> Arc<AuthorizedKeys> {
        // A panic while the lock was held left the cache as it was before or after a
        // complete refresh (the fields are assigned last), so its contents are still valid.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.refresh(&self.path);
        Arc::clone(&cache.keys)
    }

    /// The file's path, as given to [`open`](AuthorizedKeysFile::open).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug)]
struct Cache {
    keys: Arc<AuthorizedKeys>,
    state: State,
}

#[derive(Debug)]
enum State {
    Unread,
    /// `keys` were parsed from `text`, read just after the file had metadata `stamp`.
    Loaded {
        stamp: Stamp,
        text: String,
        /// The file's times were at least [`SETTLE_TIME`] old when it was looked at, so a
        /// later change will show in its metadata.
        settled: bool,
    },
    /// `keys` is empty because of this.
    Failed(Failure),
}

/// What a change of the file shows in its metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// True if the later of the two times is at least [`SETTLE_TIME`] before `now`. A time
    /// before 1970 or in the future (a clock set back) is not settled: re-reading is safe.
    fn is_settled(&self, now: SystemTime) -> bool {
        let latest = self.mtime.max(self.ctime);
        let (Ok(secs), Ok(nanos)) = (u64::try_from(latest.0), u32::try_from(latest.1)) else {
            return false;
        };
        let Some(changed) = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)) else {
            return false;
        };
        now.duration_since(changed)
            .is_ok_and(|age| age >= SETTLE_TIME)
    }
}

/// Why the file gives no keys.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum Failure {
    #[error("the file does not exist")]
    Missing,
    #[error("not a regular file")]
    NotAFile,
    #[error("users other than its owner may write it (mode {mode:o}): chmod go-w")]
    Writable { mode: u32 },
    #[error("cannot read it: {message}")]
    Unreadable { message: String },
}

impl Failure {
    fn from_io(err: &io::Error) -> Failure {
        if err.kind() == io::ErrorKind::NotFound {
            return Failure::Missing;
        }
        Failure::Unreadable {
            message: err.to_string(),
        }
    }

    /// What makes an existing file unusable, if anything.
    fn of_metadata(meta: &fs::Metadata) -> Option<Failure> {
        if !meta.is_file() {
            // A FIFO would also block the reading thread for as long as nobody writes it.
            return Some(Failure::NotAFile);
        }
        let mode = meta.mode() & 0o7777;
        (mode & 0o022 != 0).then_some(Failure::Writable { mode })
    }
}

impl Cache {
    fn refresh(&mut self, path: &Path) {
        // Taken before the stat, so that a change in the same clock tick as the stat
        // counts as recent.
        let now = SystemTime::now();
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) => return self.fail(path, Failure::from_io(&err)),
        };
        if let Some(failure) = Failure::of_metadata(&meta) {
            return self.fail(path, failure);
        }
        let stamp = Stamp::of(&meta);
        if let State::Loaded {
            stamp: known,
            settled: true,
            ..
        } = &self.state
        {
            if *known == stamp {
                return;
            }
        }
        // Read after the stat: a change in between makes the next stat differ (or fall in
        // the unsettled window), so the worst case is one extra read, never a stale list.
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => return self.fail(path, Failure::from_io(&err)),
        };
        let settled = stamp.is_settled(now);
        if let State::Loaded { text: known, .. } = &self.state {
            if *known == text {
                self.state = State::Loaded {
                    stamp,
                    text,
                    settled,
                };
                return;
            }
        }
        self.load(path, stamp, text, settled);
    }

    fn load(&mut self, path: &Path, stamp: Stamp, text: String, settled: bool) {
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        for warning in &warnings {
            tracing::warn!(
                path = %path.display(),
                line = warning.line,
                problem = %warning.message,
                "authorized_keys line skipped"
            );
        }
        tracing::info!(path = %path.display(), keys = keys.len(), "authorized_keys read");
        self.keys = Arc::new(keys);
        self.state = State::Loaded {
            stamp,
            text,
            settled,
        };
    }

    fn fail(&mut self, path: &Path, failure: Failure) {
        let repeated = matches!(&self.state, State::Failed(known) if *known == failure);
        if !repeated {
            tracing::warn!(
                path = %path.display(),
                problem = %failure,
                "authorized_keys unusable: no operator key is accepted"
            );
        }
        self.keys = Arc::new(AuthorizedKeys::default());
        self.state = State::Failed(failure);
    }
}

/// One `from=` pattern, `!` taken off.
#[derive(Clone, Debug)]
struct AddrPattern {
    negated: bool,
    kind: PatternKind,
}

#[derive(Clone, Debug)]
enum PatternKind {
    /// An address (prefix length = all bits) or `address/prefix`, host bits zero.
    Network { addr: IpAddr, prefix: u8 },
    /// `*`/`?` wildcards on the address as `IpAddr` prints it.
    Glob(String),
}

impl AddrPattern {
    fn matches(&self, peer: IpAddr, text: &str) -> bool {
        match &self.kind {
            PatternKind::Network { addr, prefix } => in_network(peer, *addr, *prefix),
            PatternKind::Glob(glob) => match_glob(glob, text),
        }
    }
}

/// Reads one line; `Ok(None)` for a blank line or a comment, `Err` with the reason a line
/// is skipped.
fn parse_line(text: &str, line: usize) -> Result<Option<Entry>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    // As sshd does: a line that does not start with a key type starts with options.
    let (options, key_text) = match first_word(text) {
        word if is_key_type(word) => ("", text),
        _ => split_options(text)?,
    };
    let key = parse_key(key_text)?;
    let options = parse_options(options)?;
    Ok(Some(Entry {
        key,
        line,
        from: options.from,
        permits: options.permits.unwrap_or(ALL_ACTIONS),
    }))
}

/// Every action's bit.
const ALL_ACTIONS: u8 = (1 << Action::ALL.len()) - 1;

fn first_word(text: &str) -> &str {
    text.split([' ', '\t']).next().unwrap_or("")
}

/// True for a word that names a key type (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`,
/// `sk-ssh-ed25519@openssh.com`, ...) rather than starting the options. Shared with
/// [`super::known_hosts`].
pub(crate) fn is_key_type(word: &str) -> bool {
    word == KEY_TYPE
        || word.starts_with("ssh-")
        || word.starts_with("ecdsa-")
        || word.starts_with("sk-")
}

/// Splits `options key...` at the first space or tab outside double quotes (where a `\"`
/// does not end the quote), as sshd's `sshkey_advance_past_options` does.
fn split_options(text: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&text[..at], text[at..].trim_start())),
            _ => {}
        }
    }
    if quoted {
        return Err("malformed options: a double quote is not closed".to_owned());
    }
    Err(format!(
        "malformed line: expected [options] {KEY_TYPE} AAAA... [comment]"
    ))
}

fn parse_key(text: &str) -> Result<PublicKey, String> {
    let kind = first_word(text);
    if !is_key_type(kind) {
        return Err(format!(
            "malformed line: expected [options] {KEY_TYPE} AAAA... [comment]"
        ));
    }
    if kind != KEY_TYPE {
        return Err(format!(
            "{kind} key skipped: muster accepts {KEY_TYPE} keys only (ssh-keygen -t ed25519)"
        ));
    }
    PublicKey::from_openssh(text).map_err(|err| match err {
        KeyError::Malformed(why) => format!("malformed {KEY_TYPE} key: {why}"),
        other => other.to_string(),
    })
}

/// The options muster honours, as read from one line.
#[derive(Default)]
struct Options {
    from: Option<Vec<AddrPattern>>,
    permits: Option<u8>,
}

/// Reads `name[="value"],...` (names in any case, as sshd takes them; `\"` is a quote
/// inside a value). Any option but `from=` and `permit=` fails the line.
fn parse_options(mut rest: &str) -> Result<Options, String> {
    let mut options = Options::default();
    while !rest.is_empty() {
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..name_len].to_ascii_lowercase();
        if name.is_empty() {
            return Err("malformed options: expected name or name=\"value\"".to_owned());
        }
        rest = &rest[name_len..];
        let value = match rest.strip_prefix('=') {
            Some(quoted) => {
                let (value, after) = take_quoted(quoted, &name)?;
                rest = after;
                Some(value)
            }
            None => None,
        };
        match rest.strip_prefix(',') {
            Some(after) if !after.is_empty() => rest = after,
            None if rest.is_empty() => {}
            _ => return Err(format!("malformed options after {name}")),
        }
        apply_option(&mut options, &name, value)?;
    }
    Ok(options)
}

/// Reads `"value"` from the start of `text`, returning the value with `\"` unescaped and
/// what follows the closing quote.
fn take_quoted<'a>(text: &'a str, name: &str) -> Result<(String, &'a str), String> {
    let Some(inner) = text.strip_prefix('"') else {
        return Err(format!("option {name}= needs a value in double quotes"));
    };
    let mut value = String::new();
    let mut chars = inner.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &inner[at + 1..])),
            '\\' if inner[at + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            _ => value.push(c),
        }
    }
    Err(format!("option {name}= has no closing double quote"))
}

fn apply_option(options: &mut Options, name: &str, value: Option<String>) -> Result<(), String> {
    match (name, value) {
        ("from", Some(value)) => {
            if options.from.is_some() {
                return Err("from= is given twice".to_owned());
            }
            options.from = Some(parse_from(&value)?);
        }
        ("permit", Some(value)) => {
            if options.permits.is_some() {
                return Err("permit= is given twice".to_owned());
            }
            options.permits = Some(parse_permit(&value)?);
        }
        ("from" | "permit", None) => {
            return Err(format!("option {name}= needs a value in double quotes"))
        }
        (other, _) => {
            return Err(format!(
                "option \"{other}\" is not supported (muster honours from= and permit= only); \
                 the line is skipped rather than the option ignored"
            ))
        }
    }
    Ok(())
}

fn parse_permit(value: &str) -> Result<u8, String> {
    let mut permits = 0;
    for name in value.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!(
                "permit=\"{value}\" has an empty action (name some of ping, run, push, pull)"
            ));
        }
        let action = name
            .parse::<Action>()
            .map_err(|err| format!("permit=: {err}"))?;
        permits |= action.bit();
    }
    Ok(permits)
}

fn parse_from(value: &str) -> Result<Vec<AddrPattern>, String> {
    value
        .split(',')
        .map(|pattern| {
            parse_addr_pattern(pattern.trim())
                .map_err(|why| format!("from= pattern \"{}\": {why}", pattern.trim()))
        })
        .collect()
}

fn parse_addr_pattern(text: &str) -> Result<AddrPattern, String> {
    let (negated, body) = match text.strip_prefix('!') {
        Some(body) => (true, body),
        None => (false, text),
    };
    if body.is_empty() {
        return Err("empty pattern".to_owned());
    }
    let kind = if body.contains('/') {
        let (addr, prefix) = parse_network(body)?;
        PatternKind::Network { addr, prefix }
    } else if let Ok(addr) = body.parse::<IpAddr>() {
        // Compared as an address, so that `2001:DB8:0::5` matches `2001:db8::5`.
        PatternKind::Network {
            addr,
            prefix: max_prefix(addr),
        }
    } else if body
        .chars()
        .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*' | '?'))
    {
        PatternKind::Glob(body.to_owned())
    } else {
        return Err(
            "not an address, network or address wildcard (muster does no DNS: host names never match)"
                .to_owned(),
        );
    };
    Ok(AddrPattern { negated, kind })
}

/// Reads `address/prefix` as sshd's `addr_pton_cidr` does: the prefix in range and the
/// address's bits beyond it zero.
fn parse_network(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| "invalid network: not an address before the /".to_owned())?;
    let max = max_prefix(addr);
    // Digits only: `u8::from_str` would also take `+8`.
    let digits = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
    let prefix = match prefix.parse::<u8>() {
        Ok(prefix) if digits && prefix <= max => prefix,
        _ => {
            return Err(format!(
                "invalid network: the prefix length must be 0 to {max}"
            ))
        }
    };
    let network = mask(addr, prefix);
    if network != addr {
        return Err(format!(
            "invalid network: bits are set after the first {prefix} (did you mean {network}/{prefix}?)"
        ));
    }
    Ok((addr, prefix))
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit after the first `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// True if `peer` is in `network/prefix`; an address of the other family never is.
fn in_network(peer: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let same_family = matches!(
        (peer, network),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
    );
    same_family && mask(peer, prefix) == network
}

/// `3`, `3 and 7`, `3, 7 and 9`: lines for a message.
fn line_list(lines: &[usize]) -> String {
    let numbers: Vec<String> = lines.iter().map(usize::to_string).collect();
    match numbers.split_last() {
        None => "no line".to_owned(),
        Some((last, [])) => format!("line {last}"),
        Some((last, rest)) => format!("lines {} and {last}", rest.join(", ")),
    }
}

/// True if `text` matches `pattern`, where `*` stands for any run of characters and `?` for
/// any one, ignoring ASCII case: OpenSSH's `match_pattern` as `match_hostname` uses it
/// (host names are compared in lowercase there). Works on bytes; the texts matched are
/// host names and addresses.
///
/// Greedy with one backtrack point, the last `*`: time is at most the product of the
/// lengths, never exponential, whatever the pattern.
pub(crate) fn match_glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the text it has eaten up to.
    let mut resume: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(&want) if want == b'?' || want.eq_ignore_ascii_case(&c) => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, eaten)) => {
                    resume = Some((after_star, eaten + 1));
                    p = after_star;
                    t = eaten + 1;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    //! Tried here: every option form and position (quoted commas and spaces, `\"`, names in
    //! capitals, options before and after each other), `from=` with IPv4, IPv6 and mapped
    //! peers, networks, wildcards and negation winning, `permit=` subsets and unknown names,
    //! each kind of skipped line with its number (unknown options, RSA, malformed, invalid
    //! networks, host names), two lines with one key, a key `ssh-keygen` wrote, and the file
    //! on disk replaced, rewritten in place, removed, made writable by others.

    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::unix::fs::PermissionsExt;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    /// `ssh-ed25519 AAAA...` for test key `n`.
    fn k(n: u8) -> String {
        key(n).to_openssh()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn parse_clean(text: &str) -> AuthorizedKeys {
        let (keys, warnings) = AuthorizedKeys::parse(text);
        assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
        keys
    }

    /// The line that lets key `n` in from `peer`, or the denial as text.
    fn line_for(keys: &AuthorizedKeys, n: u8, peer: &str) -> Result<usize, String> {
        keys.authorize(&key(n), ip(peer))
            .map(Entry::line)
            .map_err(|denied| denied.to_string())
    }

    fn assert_one_warning(text: &str, line: usize, needle: &str) {
        let (_, warnings) = AuthorizedKeys::parse(text);
        assert_eq!(warnings.len(), 1, "{text:?} gave {warnings:?}");
        assert_eq!(warnings[0].line, line, "{:?}", warnings[0]);
        assert!(
            warnings[0].message.contains(needle),
            "expected {needle:?} in {:?}",
            warnings[0].message
        );
    }

    #[test]
    fn a_plain_line_lets_its_key_in_from_anywhere_for_every_action() {
        let keys = parse_clean(&format!("{} alice@ws1\n", k(1)));
        let entry = keys.authorize(&key(1), ip("192.0.2.7")).unwrap();
        assert_eq!(entry.line(), 1);
        assert_eq!(entry.key().comment(), "alice@ws1");
        assert_eq!(entry.permitted(), Action::ALL.to_vec());
        assert_eq!(keys.len(), 1);
        assert!(!keys.is_empty());
        assert_eq!(
            keys.authorize(&key(2), ip("192.0.2.7")).unwrap_err(),
            Denied::NotListed {
                fingerprint: key(2).fingerprint()
            }
        );
    }

    #[test]
    fn blank_lines_comments_and_surrounding_space_are_not_lines_of_keys() {
        let text = format!("\n# the operators\n   \n\t{}  \r\n  # {}\n", k(1), k(2));
        let keys = parse_clean(&text);
        assert_eq!(keys.len(), 1);
        assert_eq!(line_for(&keys, 1, "10.0.0.1"), Ok(4));
        assert!(line_for(&keys, 2, "10.0.0.1").is_err());
    }

    #[test]
    fn negated_address_wins_over_the_network_it_is_in() {
        let keys = parse_clean(&format!("from=\"10.0.0.0/8,!10.0.0.5\" {} a", k(1)));
        assert_eq!(line_for(&keys, 1, "10.200.3.4"), Ok(1));
        assert_eq!(line_for(&keys, 1, "10.0.0.6"), Ok(1));
        let refused = format!(
            "key {} is not allowed from 10.0.0.5 (from= on line 1)",
            key(1).fingerprint()
        );
        assert_eq!(line_for(&keys, 1, "10.0.0.5"), Err(refused));
        assert!(line_for(&keys, 1, "11.0.0.1").is_err());
        // The negation wins in any order.
        let keys = parse_clean(&format!("from=\"!10.0.0.5,10.0.0.0/8\" {}", k(1)));
        assert!(line_for(&keys, 1, "10.0.0.5").is_err());
        assert_eq!(line_for(&keys, 1, "10.0.0.4"), Ok(1));
    }

    #[test]
    fn options_are_read_in_any_order_case_and_quoting() {
        let text = [
            format!("permit=\"run\",from=\"192.168.1.*\" {}", k(1)),
            format!("FROM=\"10.1.2.3\",Permit=\"ping,pull\" {} bob", k(2)),
            // Quoted commas and spaces; the spaces around patterns are trimmed.
            format!("from=\"10.0.0.1, 10.0.0.2 , !10.0.0.3\"\t{}", k(3)),
            format!("permit=\" run , push \" {} with a long comment", k(4)),
        ]
        .join("\n");
        let keys = parse_clean(&text);
        let one = keys.authorize(&key(1), ip("192.168.1.77")).unwrap();
        assert_eq!(one.permitted(), vec![Action::Run]);
        assert!(line_for(&keys, 1, "192.168.2.1").is_err());
        let two = keys.authorize(&key(2), ip("10.1.2.3")).unwrap();
        assert_eq!(two.permitted(), vec![Action::Ping, Action::Pull]);
        assert!(!two.permits(Action::Run));
        assert_eq!(line_for(&keys, 3, "10.0.0.2"), Ok(3));
        assert!(line_for(&keys, 3, "10.0.0.3").is_err());
        let four = keys.authorize(&key(4), ip("203.0.113.1")).unwrap();
        assert_eq!(four.permitted(), vec![Action::Run, Action::Push]);
        assert_eq!(four.key().comment(), "with a long comment");
    }

    #[test]
    fn an_escaped_quote_does_not_end_a_value() {
        // Only a line with an unsupported option can carry one usefully, but the quote
        // must not end the options early and make the key look malformed.
        assert_one_warning(
            &format!("environment=\"A=\\\"x y\\\"\",from=\"*\" {}", k(1)),
            1,
            "option \"environment\" is not supported",
        );
    }

    #[test]
    fn ipv6_networks_addresses_and_wildcards_match() {
        let text = [
            format!("from=\"2001:db8::/32,!2001:db8::bad\" {}", k(1)),
            format!("from=\"2001:DB8:0:0::5\" {}", k(2)),
            format!("from=\"fe80::*\" {}", k(3)),
        ]
        .join("\n");
        let keys = parse_clean(&text);
        assert_eq!(line_for(&keys, 1, "2001:db8:1::1"), Ok(1));
        assert!(line_for(&keys, 1, "2001:db8::bad").is_err());
        assert!(line_for(&keys, 1, "2001:db9::1").is_err());
        assert_eq!(line_for(&keys, 2, "2001:db8::5"), Ok(2));
        assert_eq!(line_for(&keys, 3, "fe80::1234"), Ok(3));
        assert!(line_for(&keys, 3, "fe81::1").is_err());
    }

    #[test]
    fn a_mapped_ipv6_peer_is_matched_as_ipv4() {
        let keys = parse_clean(&format!("from=\"10.0.0.0/8,!10.0.0.5,192.0.2.*\" {}", k(1)));
        let mapped = |v4: &str| IpAddr::V6(v4.parse::<Ipv4Addr>().unwrap().to_ipv6_mapped());
        assert!(keys.authorize(&key(1), mapped("10.1.1.1")).is_ok());
        assert!(keys.authorize(&key(1), mapped("192.0.2.9")).is_ok());
        let denied = keys.authorize(&key(1), mapped("10.0.0.5")).unwrap_err();
        assert!(denied.to_string().contains("from 10.0.0.5 "), "{denied}");
        // An IPv4 network does not take a plain IPv6 peer.
        assert!(keys
            .authorize(&key(1), IpAddr::V6(Ipv6Addr::LOCALHOST))
            .is_err());
    }

    #[test]
    fn zero_prefix_takes_the_whole_family_only() {
        let keys = parse_clean(&format!(
            "from=\"0.0.0.0/0\" {}\nfrom=\"::/0\" {}",
            k(1),
            k(2)
        ));
        assert_eq!(line_for(&keys, 1, "198.51.100.1"), Ok(1));
        assert!(line_for(&keys, 1, "2001:db8::1").is_err());
        assert_eq!(line_for(&keys, 2, "2001:db8::1"), Ok(2));
        assert!(line_for(&keys, 2, "198.51.100.1").is_err());
    }

    #[test]
    fn permit_names_a_subset_and_an_unknown_action_skips_the_line() {
        let text = format!(
            "permit=\"ping\" {}\npermit=\"run,reboot\" {}\npermit=\"\" {}\npermit=\"pull,push,run,ping\" {}",
            k(1),
            k(2),
            k(3),
            k(4)
        );
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert_eq!(keys.len(), 2);
        let one = keys.authorize(&key(1), ip("10.0.0.1")).unwrap();
        assert!(one.permits(Action::Ping) && !one.permits(Action::Push));
        let four = keys.authorize(&key(4), ip("10.0.0.1")).unwrap();
        assert_eq!(four.permitted(), Action::ALL.to_vec());
        let got: Vec<String> = warnings.iter().map(Warning::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("line 2: permit=: unknown action \"reboot\""),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("line 3: permit=\"\" has an empty action"),
            "{got:?}"
        );
        assert!(keys.authorize(&key(2), ip("10.0.0.1")).is_err());
    }

    #[test]
    fn unknown_options_skip_only_their_own_line() {
        let unknown = [
            ("command=\"uptime\"", "command"),
            ("no-pty", "no-pty"),
            ("restrict", "restrict"),
            ("environment=\"PATH=/bin\"", "environment"),
            (
                "from=\"10.0.0.0/8\",no-agent-forwarding",
                "no-agent-forwarding",
            ),
            ("permit=\"run\",expiry-time=\"20300101\"", "expiry-time"),
        ];
        let mut lines = vec![format!("{} kept", k(100))];
        lines.extend(
            unknown
                .iter()
                .enumerate()
                .map(|(n, (option, _))| format!("{option} {}", k(n as u8 + 1))),
        );
        let (keys, warnings) = AuthorizedKeys::parse(&lines.join("\n"));
        assert_eq!(keys.len(), 1);
        assert!(keys.authorize(&key(100), ip("10.0.0.1")).is_ok());
        assert_eq!(warnings.len(), unknown.len(), "{warnings:?}");
        for (n, ((_, name), warning)) in unknown.iter().zip(&warnings).enumerate() {
            assert_eq!(warning.line, n + 2);
            assert!(
                warning
                    .message
                    .contains(&format!("option \"{name}\" is not supported")),
                "{warning}"
            );
            assert!(keys.authorize(&key(n as u8 + 1), ip("10.0.0.1")).is_err());
        }
    }

    #[test]
    fn other_key_types_are_skipped_naming_the_type() {
        let text = format!(
            "{}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@ws2\nfrom=\"10.0.0.1\" ecdsa-sha2-nistp256 AAAAE2VjZHNh carol",
            k(1)
        );
        let (keys, warnings) = AuthorizedKeys::parse(&text);
        assert_eq!(keys.len(), 1);
        let got: Vec<String> = warnings.iter().map(Warning::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("line 2: ssh-rsa key skipped"), "{got:?}");
        assert!(
            got[1].starts_with("line 3: ecdsa-sha2-nistp256 key skipped"),
            "{got:?}"
        );
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_numbers() {
        let cases = [
            ("garbage".to_owned(), "malformed line"),
            ("two words".to_owned(), "malformed line"),
            (
                "ssh-ed25519 not-base64!".to_owned(),
                "malformed ssh-ed25519 key",
            ),
            ("ssh-ed25519".to_owned(), "malformed ssh-ed25519 key"),
            (format!("from=\"10.0.0.1 {}", k(1)), "not closed"),
            (
                format!("from=10.0.0.1 {}", k(1)),
                "needs a value in double quotes",
            ),
            (format!("from {}", k(1)), "needs a value in double quotes"),
            (
                format!("from=\"10.0.0.1\"permit=\"run\" {}", k(1)),
                "malformed options",
            ),
            (format!("from=\"10.0.0.1\", {}", k(1)), "malformed options"),
            (format!(",from=\"10.0.0.1\" {}", k(1)), "malformed options"),
            (
                format!("from=\"1.2.3.4\",from=\"5.6.7.8\" {}", k(1)),
                "given twice",
            ),
        ];
        let mut lines = vec![k(100)];
        lines.extend(cases.iter().map(|(line, _)| line.clone()));
        lines.push(k(101));
        let (keys, warnings) = AuthorizedKeys::parse(&lines.join("\n"));
        assert_eq!(keys.len(), 2, "{warnings:?}");
        assert_eq!(warnings.len(), cases.len(), "{warnings:?}");
        for (n, ((line, needle), warning)) in cases.iter().zip(&warnings).enumerate() {
            assert_eq!(warning.line, n + 2, "{line:?}: {warning}");
            assert!(warning.message.contains(needle), "{line:?}: {warning}");
        }
        assert_eq!(line_for(&keys, 101, "10.0.0.1"), Ok(cases.len() + 2));
    }

    #[test]
    fn invalid_networks_and_host_names_skip_the_line() {
        let cases = [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
            ("2001:db8::/129", "prefix length must be 0 to 128"),
            ("nothere/8", "not an address"),
            ("!*.example.com", "host names never match"),
            ("10.0.0.1,", "empty pattern"),
            ("!", "empty pattern"),
        ];
        for (pattern, needle) in cases {
            assert_one_warning(&format!("{}\nfrom=\"{pattern}\" {}", k(1), k(2)), 2, needle);
        }
    }

    #[test]
    fn the_first_line_whose_from_matches_wins() {
        let text = format!(
            "from=\"10.0.0.0/8\",permit=\"ping\" {k}\nfrom=\"192.0.2.0/24\" {k}\n{k}",
            k = k(1)
        );
        let keys = parse_clean(&text);
        assert_eq!(line_for(&keys, 1, "10.9.9.9"), Ok(1));
        assert_eq!(line_for(&keys, 1, "192.0.2.1"), Ok(2));
        assert_eq!(line_for(&keys, 1, "198.51.100.1"), Ok(3));
        let keys = parse_clean(&format!(
            "from=\"10.0.0.0/8\" {k}\nfrom=\"192.0.2.0/24\" {k}\nfrom=\"172.16.0.0/12\" {k}",
            k = k(1)
        ));
        let denied = keys.authorize(&key(1), ip("198.51.100.1")).unwrap_err();
        assert_eq!(
            denied.to_string(),
            format!(
                "key {} is not allowed from 198.51.100.1 (from= on lines 1, 2 and 3)",
                key(1).fingerprint()
            )
        );
    }

    #[test]
    fn a_key_written_by_ssh_keygen_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("id_ed25519");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@ws1", "-f"])
            .arg(&id)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        let line = fs::read_to_string(id.with_extension("pub")).unwrap();
        let (keys, warnings) =
            AuthorizedKeys::parse(&format!("from=\"127.0.0.1\",permit=\"ping,run\" {line}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let pasted = PublicKey::from_openssh(&line).unwrap();
        let entry = keys.authorize(&pasted, ip("127.0.0.1")).unwrap();
        assert_eq!(entry.key().comment(), "alice@ws1");
        assert_eq!(entry.permitted(), vec![Action::Ping, Action::Run]);
    }

    #[test]
    fn action_names_read_back() {
        for action in Action::ALL {
            assert_eq!(action.name().parse::<Action>(), Ok(action));
            assert_eq!(action.to_string(), action.name());
        }
        assert_eq!(
            "Run".parse::<Action>(),
            Err(UnknownAction("Run".to_owned()))
        );
    }

    #[test]
    fn globs_match_like_openssh() {
        let cases = [
            ("*", "", true),
            ("10.0.0.*", "10.0.0.17", true),
            ("10.0.0.*", "10.0.1.17", false),
            ("10.0.0.?", "10.0.0.1", true),
            ("10.0.0.?", "10.0.0.12", false),
            ("*.1", "10.0.0.1", true),
            ("*1*1", "10.0.0.1", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("WEB*", "web01", true),
            ("[10.0.0.*]:7001", "[10.0.0.5]:7001", true),
            ("[10.0.0.*]:7001", "[10.0.0.5]:7002", false),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(match_glob(pattern, text), want, "{pattern:?} on {text:?}");
        }
        // Backtracking stays polynomial.
        let text = "a".repeat(5000);
        assert!(!match_glob(&format!("{}b", "*a".repeat(50)), &text));
    }

    /// Writes `text` to a new file and renames it over `path`, as editors and config tools do.
    fn replace_file(path: &Path, text: &str) {
        let temp = path.with_extension("new");
        fs::write(&temp, text).unwrap();
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o600)).unwrap();
        fs::rename(&temp, path).unwrap();
    }

    fn authorized_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_line_removed_by_renaming_a_new_file_over_is_refused_next_time() {
        let (_dir, path) = authorized_file(&format!("{}\n{}\n", k(1), k(2)));
        let file = AuthorizedKeysFile::open(path.clone());
        assert_eq!(file.path(), path);
        assert!(file.current().authorize(&key(2), ip("10.0.0.1")).is_ok());
        replace_file(&path, &format!("{}\n", k(1)));
        let keys = file.current();
        assert!(keys.authorize(&key(1), ip("10.0.0.1")).is_ok());
        assert!(keys.authorize(&key(2), ip("10.0.0.1")).is_err());
    }

    #[test]
    fn a_line_removed_by_rewriting_in_place_is_refused_next_time() {
        let (_dir, path) = authorized_file(&format!("{}\n{}\n", k(1), k(2)));
        let file = AuthorizedKeysFile::open(path.clone());
        assert!(file.current().authorize(&key(2), ip("10.0.0.1")).is_ok());
        let inode = fs::metadata(&path).unwrap().ino();
        fs::write(&path, format!("{}\n", k(1))).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            inode,
            "rewritten in place"
        );
        assert!(file.current().authorize(&key(2), ip("10.0.0.1")).is_err());
    }

    #[test]
    fn a_key_swapped_in_place_for_one_of_the_same_length_is_refused_next_time() {
        // Same inode and length: only the times (or, within one tick, the re-read while
        // unsettled) can show this.
        let (_dir, path) = authorized_file(&format!("{}\n", k(1)));
        let file = AuthorizedKeysFile::open(path.clone());
        assert!(file.current().authorize(&key(1), ip("10.0.0.1")).is_ok());
        fs::write(&path, format!("{}\n", k(2))).unwrap();
        let keys = file.current();
        assert!(keys.authorize(&key(1), ip("10.0.0.1")).is_err());
        assert!(keys.authorize(&key(2), ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_change_the_metadata_misses_is_seen_while_the_file_is_unsettled() {
        // The test's file system may have fine timestamps; make the rewrite look as it would
        // with coarse ones, in the same tick as the last read: the metadata is unchanged.
        let (_dir, path) = authorized_file(&format!("{}\n", k(1)));
        let file = AuthorizedKeysFile::open(path.clone());
        fs::write(&path, format!("{}\n", k(2))).unwrap();
        {
            let mut cache = file.cache.lock().unwrap();
            let State::Loaded { stamp, settled, .. } = &mut cache.state else {
                panic!("the file was read: {:?}", cache.state);
            };
            assert!(!*settled, "a file written just now is not settled");
            *stamp = Stamp::of(&fs::metadata(&path).unwrap());
        }
        assert!(file.current().authorize(&key(2), ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn metadata_is_trusted_once_the_file_times_are_old_enough() {
        let stamp = |mtime: i64, ctime: i64| Stamp {
            dev: 1,
            ino: 1,
            len: 1,
            mtime: (mtime, 0),
            ctime: (ctime, 500),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(stamp(999_990, 999_990).is_settled(now));
        assert!(!stamp(999_990, 999_999).is_settled(now), "a recent ctime");
        assert!(!stamp(999_999, 999_990).is_settled(now), "a recent mtime");
        assert!(
            !stamp(1_000_005, 1_000_005).is_settled(now),
            "times in the future"
        );
        assert!(!stamp(-5, -5).is_settled(now), "times before 1970");
    }

    #[test]
    fn an_unchanged_file_gives_the_same_keys_without_parsing_again() {
        let (_dir, path) = authorized_file(&format!("{}\n", k(1)));
        let file = AuthorizedKeysFile::open(path.clone());
        let first = file.current();
        assert!(Arc::ptr_eq(&first, &file.current()));
        // Rewriting the same text (a `touch`, a config tool) keeps them too.
        fs::write(&path, format!("{}\n", k(1))).unwrap();
        assert!(Arc::ptr_eq(&first, &file.current()));
    }

    #[test]
    fn a_missing_file_gives_no_keys_until_it_is_back() {
        let (_dir, path) = authorized_file(&format!("{}\n", k(1)));
        let file = AuthorizedKeysFile::open(path.with_extension("absent"));
        assert!(file.current().is_empty());
        let file = AuthorizedKeysFile::open(path.clone());
        assert_eq!(file.current().len(), 1);
        fs::remove_file(&path).unwrap();
        assert!(file.current().is_empty());
        assert!(file.current().is_empty());
        replace_file(&path, &format!("{}\n", k(2)));
        assert!(file.current().authorize(&key(2), ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_file_others_may_write_or_a_folder_gives_no_keys() {
        let (dir, path) = authorized_file(&format!("{}\n", k(1)));
        let file = AuthorizedKeysFile::open(path.clone());
        assert_eq!(file.current().len(), 1);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(file.current().is_empty());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o602)).unwrap();
        assert!(file.current().is_empty());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(file.current().len(), 1);
        let folder = AuthorizedKeysFile::open(dir.path().to_owned());
        assert!(folder.current().is_empty());
    }

    #[test]
    fn the_file_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<AuthorizedKeysFile>();
        shareable::<Arc<AuthorizedKeys>>();
    }
}
