//! The operation log's files: appending under a lock, rotating, and reading back.
//!
//! Files in the log folder:
//!
//! ```text
//! audit.jsonl                 the current file; new records are appended here
//! audit-000000000001.jsonl    rotated files, named by the seq of their first record
//! audit.lock                  held exclusively around read-last-line + sign + append + fsync
//! ```
//!
//! The lock is a file of its own, not the log, because rotation renames the log: a process
//! waiting on the old file's lock would otherwise append to the rotated file. The chain runs
//! on across rotated files (the first record of a new file holds the digest of the old
//! file's last line).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use common::identity::keys::Identity;
use common::private_file::{create_private_dir, FILE_MODE};

use super::record::{Operator, Record};
use super::seal::{self, Location, GENESIS};

/// The current operation-log file inside the log folder.
pub const CURRENT_FILE: &str = "audit.jsonl";
const LOCK_FILE: &str = "audit.lock";
/// Rotate the current file once it is this large, unless `CTL_LOG_ROTATE_BYTES` says otherwise.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// The operation log of one log folder.
pub struct AuditLog {
    dir: PathBuf,
    rotate_bytes: u64,
}

impl AuditLog {
    /// Uses `dir` for the operation log, creating it (mode 0700) if missing. Its files are
    /// made mode 0600: they say who ran what where, and the kept output beside them holds
    /// what the hosts printed.
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn open(dir: &Path) -> Result<AuditLog> {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
        let rotate_bytes = std::env::var("CTL_LOG_ROTATE_BYTES")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(DEFAULT_ROTATE_BYTES);
        Ok(AuditLog {
            dir: dir.to_owned(),
            rotate_bytes,
        })
    }

    /// The log folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Links `record` into the chain, names `identity` as its operator, signs it with
    /// `identity` and appends it as one line, synced to disk. Concurrent `ctl` processes take
    /// turns on the lock file.
    ///
    /// The signature is made under the lock, because it covers `prev`, which only the lock
    /// holder may read and extend: a key in an ssh-agent that asks for confirmation holds
    /// the other writers up until it is given.
    ///
    /// # Errors
    /// The lock, the read of the last record, the signature, the write or the sync failed.
    pub fn append(&self, record: &Record, identity: &Identity) -> Result<()> {
        let lock = self.lock()?;
        let current = self.dir.join(CURRENT_FILE);
        let (last_seq, last_digest) = self.chain_head()?;
        if fs::metadata(&current).is_ok_and(|meta| meta.len() >= self.rotate_bytes) {
            self.rotate(&current)?;
        }
        let mut record = record.clone();
        record.seq = last_seq + 1;
        record.prev = last_digest;
        record.operator = Operator::of(identity.public_key());
        let line = seal::seal(&record, identity).context("cannot sign the log record")?;

        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .read(true)
            .mode(FILE_MODE)
            .open(&current)
            .with_context(|| format!("cannot open the operation log {}", current.display()))?;
        let mut bytes = Vec::with_capacity(line.len() + 2);
        // A crash in the middle of an earlier write may have left a line without its end;
        // start on a fresh line so that damage stays confined to that one line.
        if !ends_with_newline(&mut file)? {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write to {}", current.display()))?;
        drop(lock);
        Ok(())
    }

    /// Every line of every log file, oldest first, with where it is.
    ///
    /// # Errors
    /// A log file cannot be read.
    pub fn read_lines(&self) -> Result<Vec<(Location, String)>> {
        let mut lines = Vec::new();
        for file in self.files()? {
            let reader = BufReader::new(
                File::open(&file).with_context(|| format!("cannot read {}", file.display()))?,
            );
            for (index, line) in reader.split(b'\n').enumerate() {
                let line = line.with_context(|| format!("cannot read {}", file.display()))?;
                let text = String::from_utf8_lossy(&line).into_owned();
                lines.push((
                    Location {
                        file: file.clone(),
                        line: index + 1,
                    },
                    text,
                ));
            }
        }
        Ok(lines)
    }

    /// The log files in chain order: rotated files by their first seq, then the current one.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut rotated = Vec::new();
        let entries = fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?;
        for entry in entries {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("audit-") && name.ends_with(".jsonl") {
                rotated.push(self.dir.join(name.as_ref()));
            }
        }
        rotated.sort();
        let current = self.dir.join(CURRENT_FILE);
        if current.exists() {
            rotated.push(current);
        }
        Ok(rotated)
    }

    fn lock(&self) -> Result<File> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    /// The seq of the newest record and the digest of the last line, or (0, GENESIS) for
    /// an empty log.
    fn chain_head(&self) -> Result<(u64, String)> {
        for file in self.files()?.iter().rev() {
            let Some(line) = last_line(file)? else {
                continue;
            };
            if let Some(seq) = seq_of(&line) {
                return Ok((seq, seal::digest(&line)));
            }
            // The last line is damaged (a crash mid-write, or tampering). Keep logging: the
            // line stays where it is and `ctl log verify` reports it. Number on from the
            // last record that can be read, so seq never repeats (rotated file names rely
            // on it), and chain from the damaged line as from any other.
            eprintln!(
                "ctl: warning: the last record of {} is damaged; `ctl log verify` will report it",
                file.display()
            );
            let last_seq = self.last_readable_seq()?;
            return Ok((last_seq, seal::digest(&line)));
        }
        Ok((0, GENESIS.to_owned()))
    }

    /// The highest seq of any readable record in any file (the slow path, after damage).
    fn last_readable_seq(&self) -> Result<u64> {
        let lines = self.read_lines()?;
        Ok(lines
            .iter()
            .filter_map(|(_, line)| seq_of(line))
            .max()
            .unwrap_or(0))
    }

    /// Renames the current file after the seq of its first record.
    fn rotate(&self, current: &Path) -> Result<()> {
        let mut first = String::new();
        BufReader::new(File::open(current)?).read_line(&mut first)?;
        let first_seq = seal::unseal(first.trim_end())
            .and_then(|sealed| sealed.link())
            .map_or(0, |link| link.seq);
        let mut rotated = self.dir.join(format!("audit-{first_seq:012}.jsonl"));
        if rotated.exists() {
            // Only a damaged log can get here; never replace a file of the log.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            rotated = self
                .dir
                .join(format!("audit-{first_seq:012}-{nanos}.jsonl"));
        }
        fs::rename(current, &rotated).with_context(|| {
            format!(
                "cannot rotate {} to {}",
                current.display(),
                rotated.display()
            )
        })?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync {}", self.dir.display()))?;
        Ok(())
    }
}

/// The seq of a sealed line, if it is one. (Whether its signature holds is for
/// `ctl log verify` to say; the writer only needs to number on.)
fn seq_of(line: &str) -> Option<u64> {
    Some(seal::unseal(line)?.link()?.seq)
}

fn ends_with_newline(file: &mut File) -> Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// The last non-empty line of a file, read backwards in chunks so a long log costs nothing.
fn last_line(path: &Path) -> Result<Option<String>> {
    const CHUNK: u64 = 64 * 1024;
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let trimmed = tail
            .iter()
            .rposition(|&b| b != b'\n')
            .map(|end| &tail[..=end]);
        if let Some(content) = trimmed {
            if let Some(newline) = content.iter().rposition(|&b| b == b'\n') {
                return Ok(Some(
                    String::from_utf8_lossy(&content[newline + 1..]).into_owned(),
                ));
            }
        }
        if start == 0 {
            return Ok(trimmed.map(|content| String::from_utf8_lossy(content).into_owned()));
        }
        let read_from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - read_from) as usize];
        file.seek(SeekFrom::Start(read_from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = read_from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Kind, Operation};
    use crate::audit::seal::Operators;

    fn append_n(log: &AuditLog, identity: &Identity, n: usize) {
        let op = Operation::new(Kind::Run, Some("true".into()));
        for _ in 0..n {
            log.append(&op.start_record(&[], &Default::default()), identity)
                .unwrap();
        }
    }

    fn operators(identity: &Identity) -> Operators {
        Operators::new(vec![identity.public_key().clone()], "operator.pub")
    }

    #[test]
    fn appended_records_form_a_verifiable_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let alice = Identity::generate("alice@ws1");
        append_n(&log, &alice, 3);
        let lines = log.read_lines().unwrap();
        let intact = seal::verify(&operators(&alice), &lines).unwrap();
        assert_eq!(intact.records, 3);
        let last: Record = serde_json::from_str(&lines[2].1).unwrap();
        assert_eq!(last.prev, seal::digest(&lines[1].1));
        assert_eq!(last.operator, Operator::of(alice.public_key()));
    }

    #[test]
    fn the_chain_runs_on_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        log.rotate_bytes = 1;
        let alice = Identity::generate("alice@ws1");
        append_n(&log, &alice, 4);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".jsonl"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "audit-000000000001.jsonl",
                "audit-000000000002.jsonl",
                "audit-000000000003.jsonl",
                "audit.jsonl"
            ]
        );
        let intact = seal::verify(&operators(&alice), &log.read_lines().unwrap()).unwrap();
        assert_eq!(intact.records, 4);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_stays_confined_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let alice = Identity::generate("alice@ws1");
        append_n(&log, &alice, 1);
        let current = dir.path().join(CURRENT_FILE);
        let mut file = OpenOptions::new().append(true).open(&current).unwrap();
        file.write_all(b"{\"seq\":2,\"prev\":\"ab").unwrap();
        append_n(&log, &alice, 1);
        let lines = log.read_lines().unwrap();
        assert_eq!(lines.len(), 3);
        let found = seal::verify(&operators(&alice), &lines).unwrap_err();
        assert_eq!(found.at.line, 2);
        // The record after the damage chains from the damaged line as it stands.
        let after: Record = serde_json::from_str(&lines[2].1).unwrap();
        assert_eq!((after.seq, after.prev), (2, seal::digest(&lines[1].1)));
    }

    #[test]
    fn the_last_line_is_found_in_a_long_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let long = "x".repeat(200_000);
        fs::write(&path, format!("first\n{long}\nlast\n\n")).unwrap();
        assert_eq!(last_line(&path).unwrap().as_deref(), Some("last"));
        fs::write(&path, &long).unwrap();
        assert_eq!(last_line(&path).unwrap().map(|l| l.len()), Some(200_000));
        fs::write(&path, "").unwrap();
        assert_eq!(last_line(&path).unwrap(), None);
    }
}
