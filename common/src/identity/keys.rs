//! Ed25519 keys in OpenSSH's formats: public keys, fingerprints, and (to come) identities
//! that sign with a key file or through `ssh-agent`.

use std::fmt;

use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::HashAlg;

/// The one key type muster takes, as OpenSSH names it.
pub const KEY_TYPE: &str = "ssh-ed25519";

/// Why a key could not be read, made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not an OpenSSH public key.
    #[error("not an OpenSSH public key: {0}")]
    Malformed(String),
    /// A key of another type than Ed25519.
    #[error(
        "{found} keys are not supported: muster uses Ed25519 keys only (ssh-keygen -t ed25519)"
    )]
    Unsupported {
        /// The type found, as OpenSSH names it (`ssh-rsa`, `ecdsa-sha2-nistp256`, ...).
        found: String,
    },
}

/// An Ed25519 public key, with the comment it was written with (if any).
///
/// Two keys are equal when their key bytes are; the comment does not count.
#[derive(Clone)]
pub struct PublicKey {
    key: [u8; 32],
    comment: String,
}

impl PublicKey {
    /// Reads `ssh-ed25519 AAAA... [comment]`, one line as `id_ed25519.pub` holds it.
    ///
    /// # Errors
    /// [`KeyError::Malformed`], or [`KeyError::Unsupported`] for another key type.
    pub fn from_openssh(line: &str) -> Result<PublicKey, KeyError> {
        let line = line.trim();
        let parsed = ssh_key::PublicKey::from_openssh(line).map_err(|err| {
            match line.split_whitespace().next() {
                Some(kind)
                    if kind != KEY_TYPE
                        && !kind.starts_with("AAAA")
                        && looks_like_key_type(kind) =>
                {
                    KeyError::Unsupported {
                        found: kind.to_owned(),
                    }
                }
                _ => KeyError::Malformed(err.to_string()),
            }
        })?;
        PublicKey::from_ssh_key(&parsed)
    }

    /// The key of an `ssh_key` public key, which must be Ed25519.
    ///
    /// # Errors
    /// [`KeyError::Unsupported`] for another key type.
    pub fn from_ssh_key(key: &ssh_key::PublicKey) -> Result<PublicKey, KeyError> {
        match key.key_data() {
            KeyData::Ed25519(Ed25519PublicKey(bytes)) => Ok(PublicKey {
                key: *bytes,
                comment: key.comment().to_owned(),
            }),
            other => Err(KeyError::Unsupported {
                found: other.algorithm().to_string(),
            }),
        }
    }

    /// A key from its 32 bytes, without a comment.
    pub fn from_bytes(key: [u8; 32]) -> PublicKey {
        PublicKey {
            key,
            comment: String::new(),
        }
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The comment the key was written with (often `user@host`); empty if none.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The same key with another comment.
    pub fn with_comment(mut self, comment: &str) -> PublicKey {
        comment.clone_into(&mut self.comment);
        self
    }

    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.to_ssh_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// `ssh-ed25519 AAAA...`, without the comment: a line of `known_hosts` or
    /// `authorized_keys` after its host patterns or options.
    pub fn to_openssh(&self) -> String {
        let mut key = self.to_ssh_key();
        key.set_comment("");
        key.to_openssh()
            .expect("an Ed25519 key always encodes")
            .trim_end()
            .to_owned()
    }

    fn to_ssh_key(&self) -> ssh_key::PublicKey {
        ssh_key::PublicKey::new(
            KeyData::Ed25519(Ed25519PublicKey(self.key)),
            self.comment.clone(),
        )
    }
}

/// True for the first word of a line that names a key type other than ours
/// (`ssh-rsa`, `ecdsa-sha2-nistp256`, `sk-ssh-ed25519@openssh.com`, ...).
fn looks_like_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.key == other.key
    }
}

impl Eq for PublicKey {}

impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl fmt::Display for PublicKey {
    /// The fingerprint: what a person compares.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key `ssh-keygen -t ed25519 -C alice@ws1` wrote, and what `ssh-keygen -l` printed.
    const ALICE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4P8JT4PsFQjAk+lSvSRzhAHQteqJpW08QIB5DQPGsO alice@ws1";
    const ALICE_FINGERPRINT: &str = "SHA256:yoUXc9hzegtiFa0rtMSCNgiZ1fdfkOoybx+A19hBRpo";

    #[test]
    fn a_public_key_line_reads_with_its_comment_and_prints_back_without_it() {
        let key = PublicKey::from_openssh(ALICE).unwrap();
        assert_eq!(key.comment(), "alice@ws1");
        assert_eq!(
            key.to_openssh(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4P8JT4PsFQjAk+lSvSRzhAHQteqJpW08QIB5DQPGsO"
        );
        assert_eq!(key.fingerprint(), ALICE_FINGERPRINT);
        assert_eq!(key, PublicKey::from_bytes(*key.as_bytes()));
    }

    #[test]
    fn other_key_types_are_named_and_refused() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@ws2";
        let err = PublicKey::from_openssh(rsa).unwrap_err();
        assert!(
            err.to_string().contains("ssh-rsa keys are not supported"),
            "{err}"
        );
        let err = PublicKey::from_openssh("not a key").unwrap_err();
        assert!(matches!(err, KeyError::Malformed(_)), "{err}");
    }
}
