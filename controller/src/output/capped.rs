//! [`CappedOutput`]: the part of one host's stream that `--json` and `--gather` hold in
//! memory until they can show it, at most `--max-output` bytes.
//!
//! `--json` prints a host's whole output in one object when the host ends, and `--gather`
//! compares every host's stdout at the end, so both must hold output that live lines
//! print and forget. Holding it all would let one host that prints a gigabyte take the
//! workstation down, so only the first `cap` bytes are held; past them the output is
//! counted (and, for `--gather`, hashed, so that outputs that differ only after the cap are
//! not shown as one) and the shown text ends with a marker that says what was cut.

use sha2::{Digest, Sha256};

/// The default `--max-output`: bytes held per host and stream.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

/// The first `cap` bytes of a stream, and how many there were in all.
#[derive(Debug, Default)]
pub struct CappedOutput {
    cap: usize,
    head: Vec<u8>,
    total: u64,
    /// SHA-256 of the whole stream, cut part included; only where outputs are compared.
    digest: Option<Sha256>,
}

/// What makes two outputs the same for `--gather`: the held bytes, the full length, and
/// the hash of the whole stream when it was cut.
pub type OutputIdentity<'a> = (&'a [u8], u64, Option<[u8; 32]>);

impl CappedOutput {
    /// Holds at most `cap` bytes.
    pub fn new(cap: usize) -> CappedOutput {
        CappedOutput {
            cap,
            ..CappedOutput::default()
        }
    }

    /// Holds at most `cap` bytes and hashes the whole stream, for comparing outputs.
    pub fn with_digest(cap: usize) -> CappedOutput {
        CappedOutput {
            digest: Some(Sha256::new()),
            ..CappedOutput::new(cap)
        }
    }

    /// Adds the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if let Some(digest) = &mut self.digest {
            digest.update(bytes);
        }
        let room = self.cap.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// True when more arrived than was held.
    pub fn is_cut(&self) -> bool {
        self.total > self.head.len() as u64
    }

    /// The held bytes as text (invalid UTF-8 as U+FFFD), and when the stream was cut, a
    /// marker line saying how much was not held.
    pub fn to_text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.is_cut() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[ctl: output cut by --max-output: showed the first {} of {} bytes]\n",
                self.head.len(),
                self.total
            ));
        }
        text
    }

    /// What `--gather` groups hosts by.
    pub fn identity(&self) -> OutputIdentity<'_> {
        let digest = self
            .digest
            .as_ref()
            .filter(|_| self.is_cut())
            .map(|digest| digest.clone().finalize().into());
        (&self.head, self.total, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_under_the_cap_is_held_whole_without_a_marker() {
        let mut output = CappedOutput::new(8);
        output.push(b"abc\n");
        assert!(!output.is_cut());
        assert_eq!(output.to_text(), "abc\n");
    }

    #[test]
    fn output_over_the_cap_is_cut_and_says_so() {
        let mut output = CappedOutput::new(4);
        output.push(b"ab");
        output.push(b"cdefgh");
        assert!(output.is_cut());
        assert_eq!(
            output.to_text(),
            "abcd\n[ctl: output cut by --max-output: showed the first 4 of 8 bytes]\n"
        );
    }

    #[test]
    fn outputs_that_differ_only_past_the_cap_are_not_the_same() {
        let (mut a, mut b) = (CappedOutput::with_digest(2), CappedOutput::with_digest(2));
        a.push(b"same-x");
        b.push(b"same-y");
        assert_ne!(a.identity(), b.identity());
        let mut c = CappedOutput::with_digest(2);
        c.push(b"same-x");
        assert_eq!(a.identity(), c.identity());
    }

    #[test]
    fn a_zero_cap_holds_nothing_but_counts() {
        let mut output = CappedOutput::new(0);
        output.push(b"secret");
        assert_eq!(
            output.to_text(),
            "[ctl: output cut by --max-output: showed the first 0 of 6 bytes]\n"
        );
    }
}
