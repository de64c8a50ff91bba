//! Each host's output, kept beside the operation log so `ctl log show` can display it.
//!
//! Output is capped per host and stream: the first and the last half of the cap are kept,
//! with a marker line where the middle was cut, because the start of an output says what
//! ran and the end usually says how it failed. The kept file's SHA-256 goes into the `end`
//! record, so the chain covers the kept output as well. Files live at
//! `<log dir>/output/<op_id>/<host>.stdout` and `.stderr`; they hold what hosts printed,
//! so the files are made mode 0600 and the folders 0700, as the log's own.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{Context, Result};
pub use common::digest::sha256_hex;
use common::message::Stream;
use common::private_file::{create_private_dir, FILE_MODE};
use serde::{Deserialize, Serialize};

use crate::stream_pair::StreamPair;

/// The default cap per host and stream, in bytes.
pub const DEFAULT_KEEP_BYTES: usize = 32 * 1024;

/// What the `end` record says about one kept file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Size of the kept file, marker included.
    pub bytes: u64,
    /// SHA-256 of the kept file, hex.
    pub sha256: String,
    /// True when the middle of the output was cut out.
    pub cut: bool,
}

/// A capped copy of one stream: the head, and a sliding window over the tail.
#[derive(Debug, Default)]
pub struct Capture {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Capture {
    pub fn new(cap: usize) -> Capture {
        Capture {
            cap,
            ..Capture::default()
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let head_cap = self.cap / 2;
        let to_head = head_cap.saturating_sub(self.head.len()).min(bytes.len());
        if to_head > 0 {
            let more = growth(self.head.len(), self.head.capacity(), to_head, head_cap);
            self.head.reserve_exact(more);
            self.head.extend_from_slice(&bytes[..to_head]);
            bytes = &bytes[to_head..];
        }
        let tail_cap = self.cap - head_cap;
        if bytes.is_empty() || tail_cap == 0 {
            return;
        }
        // A sliding window that never holds more than its size: of a chunk longer than the
        // window only the end is taken, and older bytes leave as newer ones come.
        if bytes.len() >= tail_cap {
            self.tail.clear();
            bytes = &bytes[bytes.len() - tail_cap..];
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(tail_cap);
            self.tail.drain(..overflow);
        }
        let more = growth(self.tail.len(), self.tail.capacity(), bytes.len(), tail_cap);
        self.tail.reserve_exact(more);
        self.tail.extend(bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Every byte the stream had, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The bytes to keep, with a marker where output was cut, and whether it was.
    fn into_kept_bytes(self) -> (Vec<u8>, bool) {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let cut = kept < self.total;
        let mut bytes = self.head;
        if cut {
            let marker = format!(
                "\n[ctl: {} bytes cut here; kept the first {} and the last {} of {} bytes]\n",
                self.total - kept,
                bytes.len(),
                self.tail.len(),
                self.total
            );
            bytes.extend_from_slice(marker.as_bytes());
        }
        bytes.extend(self.tail);
        (bytes, cut)
    }
}

/// How much more room a buffer of `len` bytes in `capacity` needs to take `add` more, growing
/// by doubling as `Vec` does but never past `limit`: a capture's buffers stay within its cap
/// however its output arrives.
fn growth(len: usize, capacity: usize, add: usize, limit: usize) -> usize {
    let needed = len + add;
    if needed <= capacity {
        return 0;
    }
    needed.max(2 * capacity).min(limit).max(needed) - len
}

/// The kept file of one host's stream.
pub fn kept_path(log_dir: &Path, op_id: &str, host: &str, stream: Stream) -> PathBuf {
    let ext = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    log_dir
        .join("output")
        .join(op_id)
        .join(format!("{host}.{ext}"))
}

/// Threads writing kept files at once, each file written, synced and closed in turn. Syncs
/// issued together share the disk's cache flushes (see BENCHMARKS.md), and the number of
/// threads is also the most kept files ctl holds open at once, far below any file limit.
const PARALLEL_WRITERS: usize = 16;

/// What was kept of one host's stream: `Ok(None)` when it printed nothing on that stream,
/// `Err` when its file could not be written.
pub type KeptStream = Result<Option<Kept>>;

/// Writes every host's captures (the result is in `hosts` order), [`PARALLEL_WRITERS`]
/// files at once, then syncs the folders that name them.
pub fn write_all_kept(
    log_dir: &Path,
    op_id: &str,
    hosts: Vec<(&str, StreamPair<Capture>)>,
) -> Vec<StreamPair<KeptStream>> {
    let per_writer = hosts.len().div_ceil(PARALLEL_WRITERS).max(1);
    let mut hosts = hosts.into_iter().peekable();
    let mut shares = Vec::new();
    while hosts.peek().is_some() {
        shares.push(hosts.by_ref().take(per_writer).collect::<Vec<_>>());
    }
    let kept: Vec<StreamPair<KeptStream>> = thread::scope(|scope| {
        let writers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(host, captures)| {
                            captures.map(|stream, capture| {
                                write_kept(log_dir, op_id, host, stream, capture)
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|writer| writer.join().expect("a kept-output writer does not panic"))
            .collect()
    });
    let wrote_any = kept.iter().any(|streams| {
        matches!(streams.stdout, Ok(Some(_))) || matches!(streams.stderr, Ok(Some(_)))
    });
    if wrote_any {
        sync_folders(log_dir, op_id);
    }
    kept
}

/// Writes one capture and syncs it (nothing if the host printed nothing on that stream).
fn write_kept(
    log_dir: &Path,
    op_id: &str,
    host: &str,
    stream: Stream,
    capture: Capture,
) -> Result<Option<Kept>> {
    if capture.is_empty() {
        return Ok(None);
    }
    let path = kept_path(log_dir, op_id, host, stream);
    let folder = path.parent().expect("kept paths have a folder");
    create_private_dir(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let (bytes, cut) = capture.into_kept_bytes();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(Kept {
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        cut,
    }))
}

/// Syncs the operation's output folder and the two above it (`output/` may be new too), so
/// that the kept files' names survive a crash as well as their data. A failure is only
/// reported: the files themselves are synced.
fn sync_folders(log_dir: &Path, op_id: &str) {
    let output = log_dir.join("output");
    for folder in [&output.join(op_id), &output, log_dir] {
        if let Err(err) = fs::File::open(folder).and_then(|dir| dir.sync_all()) {
            tracing::warn!(folder = %folder.display(), error = %err, "cannot sync the kept output's folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_under_the_cap_is_kept_whole() {
        let mut capture = Capture::new(16);
        capture.push(b"hello\n");
        assert_eq!(capture.into_kept_bytes(), (b"hello\n".to_vec(), false));
    }

    #[test]
    fn output_over_the_cap_keeps_head_and_tail_with_a_marker() {
        let mut capture = Capture::new(8);
        for chunk in [&b"0123"[..], b"456789", b"abcdefgh", b"XYZ!"] {
            capture.push(chunk);
        }
        let (bytes, cut) = capture.into_kept_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(cut);
        assert!(text.starts_with("0123\n[ctl: 14 bytes cut here"), "{text}");
        assert!(text.ends_with("of 22 bytes]\nXYZ!"), "{text}");
    }

    #[test]
    fn a_capture_holds_no_more_than_its_cap_however_output_arrives() {
        // Tried: chunks of 256 KiB (the largest the wire carries), of one byte, and of
        // sizes in between, into a 32 KiB capture; the head and the window together never
        // reserve more than the cap, and the last bytes are the window's.
        let mut capture = Capture::new(32 * 1024);
        let mut last = Vec::new();
        for (i, size) in [256 * 1024, 1, 7_000, 20_000, 1, 256 * 1024, 3]
            .into_iter()
            .enumerate()
        {
            let chunk = vec![b'a' + i as u8; size];
            capture.push(&chunk);
            last.extend_from_slice(&chunk);
            let held = capture.head.capacity() + capture.tail.capacity();
            assert!(
                held <= 32 * 1024,
                "after a chunk of {size}: {held} bytes reserved"
            );
        }
        let (bytes, cut) = capture.into_kept_bytes();
        assert!(cut);
        assert!(bytes.ends_with(&last[last.len() - 16 * 1024..]));
    }

    fn capture_of(text: &str) -> Capture {
        let mut capture = Capture::new(DEFAULT_KEEP_BYTES);
        capture.push(text.as_bytes());
        capture
    }

    #[test]
    fn every_host_is_kept_in_order_and_one_unwritable_file_fails_alone() {
        // Tried: 300 hosts (600 files, many per writer thread), one of which printed
        // nothing on stderr, and one whose stdout file cannot be created because a folder
        // stands at its path.
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..300).map(|i| format!("web{i}")).collect();
        let blocked = kept_path(dir.path(), "op1", "web7", Stream::Stdout);
        fs::create_dir_all(&blocked).unwrap();
        let hosts = names
            .iter()
            .map(|name| {
                let stderr = if name == "web3" {
                    Capture::new(16)
                } else {
                    capture_of("warn\n")
                };
                let stdout = capture_of(&format!("{name} out\n"));
                (name.as_str(), StreamPair { stdout, stderr })
            })
            .collect();

        let kept = write_all_kept(dir.path(), "op1", hosts);

        assert_eq!(kept.len(), names.len());
        for (name, StreamPair { stdout, stderr }) in names.iter().zip(&kept) {
            let path = kept_path(dir.path(), "op1", name, Stream::Stdout);
            if name == "web7" {
                assert!(stdout.is_err(), "{name}: {stdout:?}");
            } else {
                let want = format!("{name} out\n");
                let stdout = stdout.as_ref().unwrap().as_ref().expect("stdout kept");
                assert_eq!(fs::read_to_string(&path).unwrap(), want, "{name}");
                assert_eq!(stdout.sha256, sha256_hex(want.as_bytes()), "{name}");
            }
            let stderr = stderr.as_ref().unwrap();
            assert_eq!(stderr.is_none(), name == "web3", "{name}: {stderr:?}");
        }
    }

    #[test]
    fn a_zero_cap_keeps_nothing_but_the_marker() {
        let mut capture = Capture::new(0);
        capture.push(b"secret");
        let (bytes, cut) = capture.into_kept_bytes();
        assert!(cut);
        assert!(String::from_utf8(bytes).unwrap().contains("6 bytes cut"));
    }
}
