//! The hash chain that makes the operation log tamper-evident.
//!
//! A sealed line is the record's JSON with one more member at its end:
//!
//! ```text
//! {"seq":7,"prev":"<MAC of line 6, hex>", ...the record...,"mac":"<64 hex digits>"}
//! mac = HMAC-SHA256(log key, "muster operation log v1" || 0x00 || content)
//! content = the line up to `,"mac":"`, with the closing `}` put back
//! ```
//!
//! The MAC is taken over the exact bytes written, not a re-serialisation, so reading never
//! depends on how JSON is formatted. Because each content holds the previous MAC and a
//! sequence number, a record cannot be edited (its MAC fails), forged without the key (same),
//! removed (the next `seq` jumps), reordered or replayed (`seq` goes back), or replaced
//! (`prev` does not match) without [`verify`] naming the line. Removing records from the
//! *end* of the log leaves a valid shorter chain: compare the head (`ctl log verify` prints
//! its seq and MAC) with a copy kept elsewhere to catch that.

use std::path::PathBuf;

use common::key::Key;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::record::Record;

/// The `prev` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const MAC_MEMBER: &str = ",\"mac\":\"";
const MAC_HEX_LEN: usize = 64;
const DOMAIN: &[u8] = b"muster operation log v1\0";

type HmacSha256 = Hmac<Sha256>;

/// The key that seals log records: derived from the fleet key, or a key file of its own.
#[derive(Clone)]
pub struct LogKey(HmacSha256);

impl LogKey {
    /// Derives the log key from the fleet key, so one key file serves both purposes.
    pub fn derived_from_fleet_key(fleet: &Key) -> LogKey {
        let mut derive = HmacSha256::new_from_slice(fleet.as_bytes()).expect("any key length");
        derive.update(b"muster operation log key");
        LogKey::from_bytes(&derive.finalize().into_bytes())
    }

    /// Uses a dedicated log key file's secret as it is.
    pub fn dedicated(key: &Key) -> LogKey {
        LogKey::from_bytes(key.as_bytes())
    }

    fn from_bytes(secret: &[u8]) -> LogKey {
        LogKey(HmacSha256::new_from_slice(secret).expect("any key length"))
    }

    fn mac(&self, content: &[u8]) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(DOMAIN);
        mac.update(content);
        mac
    }
}

/// Serialises `record` (whose `seq` and `prev` are set) and seals it. Returns the line
/// (without its newline) and its MAC in hex, which the next record's `prev` must hold.
pub fn seal(record: &Record, key: &LogKey) -> (String, String) {
    let content = serde_json::to_string(record).expect("records always serialize");
    let mac = hex::encode(key.mac(content.as_bytes()).finalize().into_bytes());
    let body = content
        .strip_suffix('}')
        .expect("a record serializes as an object");
    (format!("{body}{MAC_MEMBER}{mac}\"}}"), mac)
}

/// A line split into what the MAC covers and the MAC itself.
pub struct Sealed<'a> {
    content: String,
    /// The line's MAC, hex.
    pub mac: &'a str,
}

/// Splits a sealed line; `None` if the line does not end in a MAC member.
pub fn unseal(line: &str) -> Option<Sealed<'_>> {
    let rest = line.strip_suffix("\"}")?;
    let split = rest.len().checked_sub(MAC_HEX_LEN)?;
    let (body, mac) = (rest.get(..split)?, rest.get(split..)?);
    let body = body.strip_suffix(MAC_MEMBER)?;
    if !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Sealed {
        content: format!("{body}}}"),
        mac,
    })
}

impl Sealed<'_> {
    /// Checks the MAC against the content in constant time.
    pub fn is_authentic(&self, key: &LogKey) -> bool {
        let Ok(expected) = hex::decode(self.mac) else {
            return false;
        };
        key.mac(self.content.as_bytes())
            .verify_slice(&expected)
            .is_ok()
    }

    /// The chain position this line claims, if its content parses that far.
    pub fn link(&self) -> Option<Link> {
        serde_json::from_str(&self.content).ok()
    }
}

/// The chain fields of a record.
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub seq: u64,
    pub prev: String,
}

/// Where a line is: which file, which line (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub at: Location,
    pub problem: String,
}

/// An intact chain: how many records, and its head (for keeping elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    pub records: u64,
    pub head_seq: u64,
    pub head_mac: String,
}

/// What one line turned out to be, before the lines are compared with each other.
enum Checked {
    Authentic { link: Link, mac: String },
    Bad(String),
}

/// Walks the lines of every log file, in order, and reports the first break.
pub fn verify(key: &LogKey, lines: &[(Location, String)]) -> Result<Intact, Break> {
    let checked: Vec<Checked> = lines
        .iter()
        .map(|(_, text)| check_line(key, text))
        .collect();
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    for (index, ((at, _), line)) in lines.iter().zip(&checked).enumerate() {
        let broken = |problem: String| Break {
            at: at.clone(),
            problem,
        };
        let (link, mac) = match line {
            Checked::Bad(problem) => return Err(broken(problem.clone())),
            Checked::Authentic { link, mac } => (link, mac),
        };
        if link.seq == expected_seq && link.prev == prev {
            expected_seq += 1;
            prev = mac.clone();
            continue;
        }
        let seen_before = |seq| checked[..index].iter().any(|c| seq_of(c) == Some(seq));
        let seen_after = |seq| checked[index + 1..].iter().any(|c| seq_of(c) == Some(seq));
        let problem = if link.seq > expected_seq && seen_after(expected_seq) {
            format!(
                "record {} comes before record {expected_seq}: records were reordered",
                link.seq
            )
        } else if link.seq > expected_seq {
            let last_missing = link.seq - 1;
            format!(
                "records {expected_seq} to {last_missing} are missing: removed before this line"
            )
        } else if link.seq < expected_seq && seen_before(link.seq) {
            format!(
                "record {} appears twice: a copy was inserted here",
                link.seq
            )
        } else if link.seq < expected_seq {
            format!(
                "record {} comes after record {}: records were reordered",
                link.seq,
                expected_seq - 1
            )
        } else {
            "does not follow the record before it: a record was replaced or inserted".to_owned()
        };
        return Err(broken(problem));
    }
    Ok(Intact {
        records: expected_seq - 1,
        head_seq: expected_seq - 1,
        head_mac: prev,
    })
}

fn check_line(key: &LogKey, text: &str) -> Checked {
    let Some(sealed) = unseal(text) else {
        return Checked::Bad("not a sealed record (no MAC at the end): damaged or inserted".into());
    };
    if !sealed.is_authentic(key) {
        return Checked::Bad(
            "its MAC does not match its content: edited, or forged without the log key (or verified with the wrong key)".into(),
        );
    }
    match sealed.link() {
        Some(link) => Checked::Authentic {
            link,
            mac: sealed.mac.to_owned(),
        },
        None => Checked::Bad("authentic but without seq/prev: written by another tool".into()),
    }
}

fn seq_of(checked: &Checked) -> Option<u64> {
    match checked {
        Checked::Authentic { link, .. } => Some(link.seq),
        Checked::Bad(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Kind, Operation};

    fn key() -> LogKey {
        LogKey::derived_from_fleet_key(&Key::from_hex(&"11".repeat(32)).unwrap())
    }

    /// A chain of `n` sealed lines made the way the store makes them.
    fn chain(n: u64) -> Vec<(Location, String)> {
        let op = Operation::new(Kind::Run, Some("uptime".into()));
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut record = op.start_record(&[], &Default::default());
                record.seq = seq;
                record.prev = prev.clone();
                let (line, mac) = seal(&record, &key());
                prev = mac;
                (
                    Location {
                        file: "audit.jsonl".into(),
                        line: seq as usize,
                    },
                    line,
                )
            })
            .collect()
    }

    fn renumber(mut lines: Vec<(Location, String)>) -> Vec<(Location, String)> {
        for (i, (at, _)) in lines.iter_mut().enumerate() {
            at.line = i + 1;
        }
        lines
    }

    fn break_of(lines: &[(Location, String)]) -> Break {
        verify(&key(), lines).expect_err("the chain must be broken")
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let lines = chain(5);
        let intact = verify(&key(), &lines).unwrap();
        assert_eq!(intact.records, 5);
        assert_eq!(intact.head_mac, unseal(&lines[4].1).unwrap().mac);
    }

    #[test]
    fn an_edited_field_is_found_at_its_line() {
        let mut lines = chain(4);
        lines[2].1 = lines[2].1.replace("uptime", "uptimE");
        let found = break_of(&lines);
        assert_eq!(found.at.line, 3);
        assert!(found.problem.contains("edited"), "{}", found.problem);
    }

    #[test]
    fn a_deleted_line_is_found_at_the_line_after_it() {
        let mut lines = chain(4);
        lines.remove(1);
        let found = break_of(&renumber(lines));
        assert_eq!(found.at.line, 2);
        assert!(
            found.problem.contains("records 2 to 2 are missing"),
            "{}",
            found.problem
        );
    }

    #[test]
    fn swapped_lines_are_reported_as_reordered() {
        let mut lines = chain(4);
        lines.swap(1, 2);
        let found = break_of(&renumber(lines));
        assert_eq!(found.at.line, 2);
        assert!(found.problem.contains("reordered"), "{}", found.problem);
    }

    #[test]
    fn a_replayed_line_is_reported_as_a_copy() {
        let mut lines = chain(3);
        lines.push(lines[1].clone());
        let found = break_of(&renumber(lines));
        assert_eq!(found.at.line, 4);
        assert!(found.problem.contains("appears twice"), "{}", found.problem);
    }

    #[test]
    fn a_line_sealed_with_another_key_is_forged() {
        let mut lines = chain(2);
        let other = LogKey::derived_from_fleet_key(&Key::from_hex(&"22".repeat(32)).unwrap());
        let mut record: Record =
            serde_json::from_str(&unseal(&lines[1].1).unwrap().content).unwrap();
        record.seq = 3;
        record.prev = unseal(&lines[1].1).unwrap().mac.to_owned();
        lines.push((
            Location {
                file: "audit.jsonl".into(),
                line: 3,
            },
            seal(&record, &other).0,
        ));
        let found = break_of(&lines);
        assert_eq!(found.at.line, 3);
        assert!(found.problem.contains("forged"), "{}", found.problem);
    }

    #[test]
    fn a_plain_json_line_is_not_a_sealed_record() {
        let mut lines = chain(1);
        lines.push((
            Location {
                file: "audit.jsonl".into(),
                line: 2,
            },
            "{\"seq\":2}".into(),
        ));
        assert!(break_of(&lines).problem.contains("not a sealed record"));
    }
}
