//! The signed hash chain that makes the operation log tamper-evident and attributable.
//!
//! A sealed line is the record's JSON with one more member at its end:
//!
//! ```text
//! {"seq":7,"prev":"<SHA-256 of line 6, hex>", ...the record...,"sig":"<SSHSIG, base64>"}
//! content = the line up to `,"sig":"`, with the closing `}` put back
//! sig     = an OpenSSH signature (`ssh-keygen -Y sign`, SHA-512 inside) over the content,
//!           namespace "muster-operation-log", by the key the record's `operator` names;
//!           stored as the armored text's base64 body without its BEGIN/END lines and
//!           line breaks, so that it fits on the line
//! prev    = SHA-256 of the previous line's exact bytes (without its line break), hex;
//!           64 zeros for the first record
//! ```
//!
//! The signature is taken over the exact bytes written, not a re-serialisation, so reading
//! never depends on how JSON is formatted. It is made by the operator's identity (a key file,
//! or ssh-agent), and checking it needs only public keys: `ctl log verify --operators FILE`
//! takes an `authorized_keys` file. Because each content holds the previous line's digest
//! and a sequence number, a record cannot be edited (its signature fails), written in
//! another operator's name (the signature is by another key than the one it names),
//! removed (the next `seq` jumps), reordered or replayed (`seq` goes back), or replaced
//! (`prev` does not match) without [`verify`] naming the line. Someone with an operator's
//! private key can write records in that operator's name only; a record signed by a key
//! outside the operators given is named too. Removing records from the *end* of the log
//! leaves a valid shorter chain: compare the head (`ctl log verify` prints its seq and
//! SHA-256) with a copy kept elsewhere to catch that.
//!
//! To check one line with OpenSSH alone: put the `sig` value, in lines of 70 characters,
//! between `-----BEGIN SSH SIGNATURE-----` and `-----END SSH SIGNATURE-----` in a file
//! (what [`armor`] makes), and feed the content to
//! `ssh-keygen -Y check-novalidate -n muster-operation-log -s FILE`.

use std::fmt;
use std::path::PathBuf;

use common::digest::sha256_hex;
use common::identity::keys::{sshsig_verify, Identity, KeyError, PublicKey};
use serde::Deserialize;

use super::record::{Operator, Record};

/// The `prev` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// What log signatures are for, so that no signature made for anything else (a file signed
/// with `ssh-keygen -Y sign`, a login) can pass as a record's, nor the other way round.
pub const NAMESPACE: &str = "muster-operation-log";
const SIG_MEMBER: &str = ",\"sig\":\"";
const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const ARMOR_END: &str = "-----END SSH SIGNATURE-----";
/// OpenSSH writes the armored body in lines of this many characters, and reads only that.
const ARMOR_LINE: usize = 70;

/// The problem named for a line whose signature fails.
const MISMATCH: &str = "its signature does not match its content: edited, or forged";

/// Serialises `record` (whose `seq`, `prev` and `operator` are set) and signs it with
/// `identity`. Returns the line, without its newline.
///
/// # Errors
/// The identity cannot sign (e.g. its ssh-agent went away).
pub fn seal(record: &Record, identity: &Identity) -> Result<String, KeyError> {
    let content = serde_json::to_string(record).expect("records always serialize");
    let sig = dearmor(&identity.sshsig_sign(NAMESPACE, content.as_bytes())?);
    let body = content
        .strip_suffix('}')
        .expect("a record serializes as an object");
    Ok(format!("{body}{SIG_MEMBER}{sig}\"}}"))
}

/// What the next record's `prev` holds for `line` (the line's exact text, no line break).
pub fn digest(line: &str) -> String {
    sha256_hex(line.as_bytes())
}

/// The armored OpenSSH signature file for a line's `sig` value, as `ssh-keygen -Y sign`
/// writes it: what `ssh-keygen -Y check-novalidate -s FILE` reads.
pub fn armor(sig: &str) -> String {
    let mut armored = format!("{ARMOR_BEGIN}\n");
    for chunk in sig.as_bytes().chunks(ARMOR_LINE) {
        armored.push_str(&String::from_utf8_lossy(chunk));
        armored.push('\n');
    }
    armored.push_str(ARMOR_END);
    armored.push('\n');
    armored
}

/// The base64 body of an armored signature, on one line: a line's `sig` value.
fn dearmor(armored: &str) -> String {
    armored
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

/// A line split into what the signature covers and the signature itself.
pub struct Sealed<'a> {
    content: String,
    /// The line's `sig` value: base64, one line.
    pub sig: &'a str,
}

/// Splits a sealed line; `None` if the line does not end in a `sig` member.
pub fn unseal(line: &str) -> Option<Sealed<'_>> {
    let rest = line.strip_suffix("\"}")?;
    // A `"` inside a JSON string is escaped, and base64 has none: the last `,"sig":"` is
    // the member's.
    let split = rest.rfind(SIG_MEMBER)?;
    let (body, sig) = (&rest[..split], &rest[split + SIG_MEMBER.len()..]);
    let is_base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if sig.is_empty() || !sig.bytes().all(is_base64) {
        return None;
    }
    Some(Sealed {
        content: format!("{body}}}"),
        sig,
    })
}

impl Sealed<'_> {
    /// The key that made the signature, if the signature checks out against the content
    /// (made by that key, for [`NAMESPACE`], over these bytes).
    pub fn verified_signer(&self) -> Option<PublicKey> {
        let armored = armor(self.sig);
        let sshsig = ssh_key::SshSig::from_pem(&armored).ok()?;
        let key = ssh_key::PublicKey::from(sshsig.public_key().clone());
        let key = PublicKey::from_ssh_key(&key).ok()?;
        sshsig_verify(&key, NAMESPACE, self.content.as_bytes(), &armored).ok()?;
        Some(key)
    }

    /// The chain position this line claims, if its content parses that far.
    pub fn link(&self) -> Option<Link> {
        serde_json::from_str(&self.content).ok()
    }

    fn claim(&self) -> Option<Claim> {
        serde_json::from_str(&self.content).ok()
    }
}

/// The chain fields of a record.
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub seq: u64,
    pub prev: String,
}

/// What a record says about itself that the signature must back.
#[derive(Deserialize)]
struct Claim {
    #[serde(flatten)]
    link: Link,
    operator: Operator,
}

/// The public keys whose records are accepted, and where they came from (for messages).
pub struct Operators {
    keys: Vec<PublicKey>,
    source: String,
}

impl Operators {
    /// The keys of `source` (a file, as messages name it).
    pub fn new(keys: Vec<PublicKey>, source: impl fmt::Display) -> Operators {
        Operators {
            keys,
            source: source.to_string(),
        }
    }

    fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }
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
    /// The SHA-256 of the last line, hex: what the next record's `prev` will hold.
    pub head_sha256: String,
}

/// What one line turned out to be, before the lines are compared with each other.
enum Checked {
    Authentic { link: Link, digest: String },
    Bad(String),
}

/// Walks the lines of every log file, in order, and reports the first break: a line that
/// is not signed by one of `operators` in the name of its signer, or that does not follow
/// the line before it.
pub fn verify(operators: &Operators, lines: &[(Location, String)]) -> Result<Intact, Break> {
    let checked: Vec<Checked> = lines
        .iter()
        .map(|(_, text)| check_line(operators, text))
        .collect();
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    for (index, ((at, _), line)) in lines.iter().zip(&checked).enumerate() {
        let broken = |problem: String| Break {
            at: at.clone(),
            problem,
        };
        let (link, digest) = match line {
            Checked::Bad(problem) => return Err(broken(problem.clone())),
            Checked::Authentic { link, digest } => (link, digest),
        };
        if link.seq == expected_seq && link.prev == prev {
            expected_seq += 1;
            prev = digest.clone();
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
        head_sha256: prev,
    })
}

fn check_line(operators: &Operators, text: &str) -> Checked {
    let Some(sealed) = unseal(text) else {
        return Checked::Bad(
            "not a sealed record (no signature at the end): damaged or inserted".into(),
        );
    };
    let Some(signer) = sealed.verified_signer() else {
        return Checked::Bad(MISMATCH.into());
    };
    let Some(claim) = sealed.claim() else {
        return Checked::Bad(
            "signed, but without seq, prev or operator: not a record ctl wrote".into(),
        );
    };
    let fingerprint = signer.fingerprint();
    if claim.operator.fingerprint != fingerprint {
        return Checked::Bad(format!(
            "signed by {fingerprint}, but in the name of {}: forged in another operator's name",
            describe(&claim.operator.fingerprint, &claim.operator.comment)
        ));
    }
    if !operators.contains(&signer) {
        return Checked::Bad(format!(
            "signed by {}, which is not among the operators in {}",
            describe(&fingerprint, &claim.operator.comment),
            operators.source
        ));
    }
    Checked::Authentic {
        link: claim.link,
        digest: digest(text),
    }
}

/// `SHA256:... (comment)`, or the fingerprint alone for a key without a comment.
fn describe(fingerprint: &str, comment: &str) -> String {
    match comment.is_empty() {
        true => fingerprint.to_owned(),
        false => format!("{fingerprint} ({comment})"),
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
    use std::process::{Command, Stdio};

    use super::*;
    use crate::audit::record::{Kind, Operation};

    fn alice() -> Identity {
        Identity::generate("alice@ws1")
    }

    fn operators(keys: &[&Identity]) -> Operators {
        let keys = keys.iter().map(|id| id.public_key().clone()).collect();
        Operators::new(keys, "operators.pub")
    }

    fn at(line: usize) -> Location {
        Location {
            file: "audit.jsonl".into(),
            line,
        }
    }

    /// The record at `seq` that follows a line whose digest is `prev`, naming `operator`
    /// as its writer (not signed yet).
    fn record(seq: u64, prev: &str, operator: &PublicKey) -> Record {
        let op = Operation::new(Kind::Run, Some("uptime".into()));
        let mut record = op.start_record(&[], &Default::default());
        record.seq = seq;
        record.prev = prev.to_owned();
        record.operator = Operator::of(operator);
        record
    }

    /// A chain of `n` sealed lines made the way the store makes them, each signed by the
    /// identity `signers` gives for its seq.
    fn chain_by<'a>(n: u64, signers: impl Fn(u64) -> &'a Identity) -> Vec<(Location, String)> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let signer = signers(seq);
                let line = seal(&record(seq, &prev, signer.public_key()), signer).unwrap();
                prev = digest(&line);
                (at(seq as usize), line)
            })
            .collect()
    }

    fn chain(n: u64, identity: &Identity) -> Vec<(Location, String)> {
        chain_by(n, |_| identity)
    }

    fn renumber(mut lines: Vec<(Location, String)>) -> Vec<(Location, String)> {
        for (i, (at, _)) in lines.iter_mut().enumerate() {
            at.line = i + 1;
        }
        lines
    }

    fn break_of(operators: &Operators, lines: &[(Location, String)]) -> Break {
        verify(operators, lines).expect_err("the chain must be broken")
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let alice = alice();
        let lines = chain(5, &alice);
        let intact = verify(&operators(&[&alice]), &lines).unwrap();
        assert_eq!(intact.records, 5);
        assert_eq!(intact.head_seq, 5);
        assert_eq!(intact.head_sha256, digest(&lines[4].1));
        assert_eq!(intact.head_sha256, sha256_hex(lines[4].1.as_bytes()));
        let first: serde_json::Value = serde_json::from_str(&lines[0].1).unwrap();
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["operator"]["comment"], "alice@ws1");
        assert_eq!(
            first["operator"]["fingerprint"],
            alice.public_key().fingerprint()
        );
    }

    #[test]
    fn an_edited_field_is_found_at_its_line() {
        let alice = alice();
        let mut lines = chain(4, &alice);
        lines[2].1 = lines[2].1.replace("uptime", "uptimE");
        let found = break_of(&operators(&[&alice]), &lines);
        assert_eq!(found.at.line, 3);
        assert_eq!(found.problem, MISMATCH);
    }

    #[test]
    fn a_deleted_line_is_found_at_the_line_after_it() {
        let alice = alice();
        let mut lines = chain(4, &alice);
        lines.remove(1);
        let found = break_of(&operators(&[&alice]), &renumber(lines));
        assert_eq!(found.at.line, 2);
        assert!(
            found.problem.contains("records 2 to 2 are missing"),
            "{}",
            found.problem
        );
    }

    #[test]
    fn swapped_lines_are_reported_as_reordered() {
        let alice = alice();
        let mut lines = chain(4, &alice);
        lines.swap(1, 2);
        let found = break_of(&operators(&[&alice]), &renumber(lines));
        assert_eq!(found.at.line, 2);
        assert!(found.problem.contains("reordered"), "{}", found.problem);
    }

    #[test]
    fn a_replayed_line_is_reported_as_a_copy() {
        let alice = alice();
        let mut lines = chain(3, &alice);
        lines.push(lines[1].clone());
        let found = break_of(&operators(&[&alice]), &renumber(lines));
        assert_eq!(found.at.line, 4);
        assert!(found.problem.contains("appears twice"), "{}", found.problem);
    }

    #[test]
    fn a_line_that_follows_another_line_is_found() {
        // Tried: line 2 replaced by a line that is signed and numbered right, but chained to
        // another log's line 1.
        let alice = alice();
        let mut lines = chain(3, &alice);
        let other = chain(2, &alice);
        lines[1] = other[1].clone();
        let found = break_of(&operators(&[&alice]), &lines);
        assert_eq!(found.at.line, 2);
        assert!(found.problem.contains("replaced"), "{}", found.problem);
    }

    #[test]
    fn records_of_two_operators_verify_with_both_and_name_the_other_with_one() {
        let (alice, bob) = (alice(), Identity::generate("bob@ws2"));
        let lines = chain_by(4, |seq| match seq % 2 {
            1 => &alice,
            _ => &bob,
        });
        assert_eq!(
            verify(&operators(&[&alice, &bob]), &lines).unwrap().records,
            4
        );
        let found = break_of(&operators(&[&alice]), &lines);
        assert_eq!(found.at.line, 2);
        assert_eq!(
            found.problem,
            format!(
                "signed by {} (bob@ws2), which is not among the operators in operators.pub",
                bob.public_key().fingerprint()
            )
        );
    }

    #[test]
    fn a_record_signed_by_one_key_in_another_operators_name_is_forged() {
        let (alice, mallory) = (alice(), Identity::generate("mallory@ws3"));
        let mut lines = chain(2, &alice);
        let forged = record(3, &digest(&lines[1].1), alice.public_key());
        lines.push((at(3), seal(&forged, &mallory).unwrap()));
        let found = break_of(&operators(&[&alice, &mallory]), &lines);
        assert_eq!(found.at.line, 3);
        assert_eq!(
            found.problem,
            format!(
                "signed by {}, but in the name of {} (alice@ws1): forged in another operator's name",
                mallory.public_key().fingerprint(),
                alice.public_key().fingerprint()
            )
        );
    }

    #[test]
    fn a_signature_naming_the_operators_key_but_made_by_another_fails() {
        // Tried: an SSHSIG blob that carries alice's public key, with mallory's signature.
        let (alice, mallory) = (alice(), Identity::generate("mallory@ws3"));
        let mut lines = chain(1, &alice);
        let forged = record(2, &digest(&lines[0].1), alice.public_key());
        let content = serde_json::to_string(&forged).unwrap();
        let hash = ssh_key::HashAlg::Sha512;
        let signed = ssh_key::SshSig::signed_data(NAMESPACE, hash, content.as_bytes()).unwrap();
        let signature = ssh_key::Signature::new(
            ssh_key::Algorithm::Ed25519,
            mallory.sign(&signed).unwrap().to_vec(),
        )
        .unwrap();
        let alice_key = ssh_key::PublicKey::from_openssh(&alice.public_key().to_openssh())
            .unwrap()
            .key_data()
            .clone();
        let sshsig = ssh_key::SshSig::new(alice_key, NAMESPACE, hash, signature).unwrap();
        let sig = dearmor(&sshsig.to_pem(ssh_key::LineEnding::LF).unwrap());
        let body = content.strip_suffix('}').unwrap();
        lines.push((at(2), format!("{body}{SIG_MEMBER}{sig}\"}}")));
        let found = break_of(&operators(&[&alice]), &lines);
        assert_eq!(found.at.line, 2);
        assert_eq!(found.problem, MISMATCH);
    }

    #[test]
    fn a_plain_json_line_is_not_a_sealed_record() {
        let alice = alice();
        let mut lines = chain(1, &alice);
        lines.push((at(2), "{\"seq\":2}".into()));
        let found = break_of(&operators(&[&alice]), &lines);
        assert!(found.problem.contains("not a sealed record"), "{found:?}");
    }

    #[test]
    fn ssh_keygen_checks_a_line_rebuilt_as_the_module_docs_say() {
        let alice = alice();
        let lines = chain(1, &alice);
        let sealed = unseal(&lines[0].1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sig_file = dir.path().join("record.sig");
        std::fs::write(&sig_file, armor(sealed.sig)).unwrap();
        let check = |content: &str| {
            let mut child = Command::new("ssh-keygen")
                .args(["-Y", "check-novalidate", "-n", NAMESPACE, "-s"])
                .arg(&sig_file)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ssh-keygen (openssh-client) is installed");
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), content.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        let good = check(&sealed.content);
        assert!(
            good.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        let stdout = String::from_utf8_lossy(&good.stdout);
        assert!(
            stdout.contains(&alice.public_key().fingerprint()),
            "{stdout}"
        );
        let edited = check(&sealed.content.replace("uptime", "uptimE"));
        assert!(
            !edited.status.success(),
            "an edited record passed ssh-keygen"
        );
    }

    #[test]
    fn the_armor_is_rebuilt_exactly_from_the_line() {
        let armored = alice().sshsig_sign(NAMESPACE, b"record").unwrap();
        let sig = dearmor(&armored);
        assert!(!sig.contains('\n') && !sig.contains('-'), "{sig}");
        assert_eq!(armor(&sig), armored);
    }
}
