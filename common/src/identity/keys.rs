//! Ed25519 keys in OpenSSH's formats: public keys and their fingerprints, and identities (key
//! pairs that sign) from a key file or through `ssh-agent`, for TLS 1.3 and for the OpenSSH
//! signatures (`ssh-keygen -Y sign`) over the operation log.
//!
//! Operators already have Ed25519 keys made by `ssh-keygen`, often protected by a passphrase
//! and unlocked once per session with `ssh-add`. An [`Identity`] therefore reads the same files
//! with the same habits as ssh: a private key file that group or others may read or write is
//! refused, and an encrypted key is never decrypted here. Its public half is readable without
//! the passphrase, so it is looked up in `ssh-agent`, which then makes every signature. What the
//! agent returns is verified before it is used: a broken or hostile agent must not make us send
//! garbage, or sign with a key the operator did not choose.
//!
//! Not here: where keys live and who creates their folders (the binaries), which keys are
//! trusted ([`super::authorized_keys`], [`super::known_hosts`]), and the TLS glue that calls
//! [`Identity::sign`].

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::public::{Ed25519PublicKey, KeyData};
use ssh_key::{Algorithm, HashAlg, LineEnding, SshSig};
use zeroize::Zeroizing;

/// The one key type muster takes, as OpenSSH names it.
pub const KEY_TYPE: &str = "ssh-ed25519";

/// The largest private key file [`Identity::load`] reads. OpenSSH's largest keys (16384-bit
/// RSA) take a fraction of this; anything longer is surely the wrong file.
const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

/// How long one exchange with `ssh-agent` may take. Long enough for a person to answer the
/// confirmation an agent asks for keys added with `ssh-add -c`; short enough that a hung agent
/// fails the operation instead of hanging it for good.
const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The hash inside OpenSSH signatures, as `ssh-keygen -Y sign` picks it by default.
const SSHSIG_HASH: HashAlg = HashAlg::Sha512;

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
    /// A key file holds a key of another type than Ed25519.
    #[error("key file {path}: {found} keys are not supported: muster uses Ed25519 keys only (ssh-keygen -t ed25519)")]
    UnsupportedFile {
        /// The key file.
        path: PathBuf,
        /// The type found, as OpenSSH names it (`ssh-rsa`, `sk-ssh-ed25519@openssh.com`, ...).
        found: String,
    },
    /// A key file could not be opened, read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A private key file that group or others may read or write, which ssh refuses too.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The key file (as given, even when it is a link to the key).
        path: PathBuf,
        /// The permission bits of the file read.
        mode: u32,
    },
    /// The file is not a private key in OpenSSH's format.
    #[error("key file {path} is not an OpenSSH private key: {reason}")]
    NotPrivateKey {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The key file is protected by a passphrase, and no `ssh-agent` can sign with its key.
    #[error("key file {path} is protected by a passphrase and {reason}; run `ssh-add {path}` so muster can sign through ssh-agent")]
    Encrypted {
        /// The key file.
        path: PathBuf,
        /// Why the agent could not be used.
        reason: AgentError,
    },
    /// Signing through `ssh-agent` failed after the key was loaded.
    #[error("signing with {fingerprint} through ssh-agent: {reason}")]
    Agent {
        /// The key's fingerprint.
        fingerprint: String,
        /// What went wrong.
        reason: AgentError,
    },
    /// [`Identity::write_new`] would have replaced this file (or a link at its path).
    #[error("{path} already exists; remove it first to replace the key")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A comment that would break the `.pub` line it is written on.
    #[error("key comment {comment:?} holds a control character such as a line break")]
    BadComment {
        /// The comment given.
        comment: String,
    },
    /// An OpenSSH signature (`ssh-keygen -Y`) could not be made or does not verify.
    #[error("ssh signature: {0}")]
    SshSig(SshSigError),
}

/// Why `ssh-agent` could not find a key or sign with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// No agent socket is known: `SSH_AUTH_SOCK` is not set.
    #[error("no ssh-agent is running (SSH_AUTH_SOCK is not set)")]
    NoAgent,
    /// The socket cannot be reached, or the exchange broke off or timed out.
    #[error("the ssh-agent at {socket} cannot be reached: {source}")]
    Unreachable {
        /// The agent's socket.
        socket: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The agent answered something that is not its protocol.
    #[error("the ssh-agent at {socket} answered badly: {detail}")]
    Protocol {
        /// The agent's socket.
        socket: PathBuf,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The agent does not hold the key.
    #[error("the ssh-agent at {socket} does not hold it")]
    NotHeld {
        /// The agent's socket.
        socket: PathBuf,
    },
    /// The agent refused to sign: the key was removed, the agent locked, or a confirmation
    /// (`ssh-add -c`) denied.
    #[error(
        "the ssh-agent at {socket} refused to sign (was the key removed or the agent locked?)"
    )]
    Refused {
        /// The agent's socket.
        socket: PathBuf,
    },
    /// The agent answered with a signature of another algorithm.
    #[error("the ssh-agent at {socket} answered with a {found} signature, not {KEY_TYPE}")]
    WrongAlgorithm {
        /// The agent's socket.
        socket: PathBuf,
        /// The algorithm it named.
        found: String,
    },
    /// The agent's signature does not verify against the key.
    #[error("the ssh-agent at {socket} answered with a signature that does not verify")]
    BadSignature {
        /// The agent's socket.
        socket: PathBuf,
    },
}

/// Why an OpenSSH signature could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshSigError {
    /// OpenSSH signatures need a namespace (what the signature is for).
    #[error("the namespace is empty")]
    EmptyNamespace,
    /// The text is not an armored OpenSSH signature.
    #[error("not an OpenSSH signature: {0}")]
    Malformed(String),
    /// The signature was made with another key.
    #[error("made by another key ({signer}), not {expected}")]
    OtherKey {
        /// The fingerprint of the key that was expected.
        expected: String,
        /// The fingerprint of the key that signed.
        signer: String,
    },
    /// The signature was made for another namespace.
    #[error("made for namespace {found:?}, not {expected:?}")]
    OtherNamespace {
        /// The namespace that was expected.
        expected: String,
        /// The namespace signed.
        found: String,
    },
    /// The signature does not match the message.
    #[error("does not match the message")]
    Mismatch,
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
        ssh_key::PublicKey::new(self.key_data(), self.comment.clone())
    }

    fn key_data(&self) -> KeyData {
        KeyData::Ed25519(Ed25519PublicKey(self.key))
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

/// An Ed25519 key pair that signs: read from a key file, generated, or held by `ssh-agent`.
///
/// It is `Send` and `Sync`, and [`Identity::sign`] is synchronous and takes `&self`, as
/// rustls calls its signers. `Debug` shows the fingerprint and how it signs, never the key.
pub struct Identity {
    public: PublicKey,
    signer: Signer,
}

/// What makes the signatures.
enum Signer {
    /// The key pair itself, an unencrypted Ed25519 key.
    Key(Box<KeyPair>),
    /// The `ssh-agent` listening on this socket. Each signature opens a new connection: no
    /// state is shared between threads, and an agent restarted meanwhile is simply reached
    /// again (it must hold the key again, of course).
    Agent(PathBuf),
}

/// A key pair in memory, twice: as the file holds it (ssh-key, which clears it from memory
/// when dropped), to write it out again; and expanded once for ring, which signs. ssh-key
/// would expand the seed again for every signature, a second scalar multiplication per
/// TLS handshake.
struct KeyPair {
    file: ssh_key::PrivateKey,
    signing: ring::signature::Ed25519KeyPair,
}

impl Identity {
    /// Reads an OpenSSH private key file, as `ssh-keygen -t ed25519` writes it, looking for
    /// an encrypted key's public half in the `ssh-agent` at `$SSH_AUTH_SOCK`.
    ///
    /// See [`Identity::load_with_agent`].
    ///
    /// # Errors
    /// As [`Identity::load_with_agent`].
    pub fn load(path: &Path) -> Result<Identity, KeyError> {
        let agent = std::env::var_os("SSH_AUTH_SOCK")
            .filter(|socket| !socket.is_empty())
            .map(PathBuf::from);
        Identity::load_with_agent(path, agent.as_deref())
    }

    /// Reads an OpenSSH private key file, as `ssh-keygen -t ed25519` writes it.
    ///
    /// A link at `path` is followed (operators link their keys); the permissions checked are
    /// those of the file opened and read. An unencrypted key signs in this process. A key
    /// protected by a passphrase is not decrypted: its public half is looked up in the
    /// `ssh-agent` listening on `agent` (none if `None`), which then makes every signature.
    /// The identity's comment is the key file's, or, for an encrypted key (whose comment is
    /// encrypted too), the one the agent holds with the key.
    ///
    /// # Errors
    /// - [`KeyError::Io`]: the file cannot be opened or read.
    /// - [`KeyError::TooOpen`]: group or others may read or write the file.
    /// - [`KeyError::NotPrivateKey`]: not a private key in OpenSSH's format.
    /// - [`KeyError::UnsupportedFile`]: a key of another type than Ed25519.
    /// - [`KeyError::Encrypted`]: a key protected by a passphrase that no agent holds.
    pub fn load_with_agent(path: &Path, agent: Option<&Path>) -> Result<Identity, KeyError> {
        let text = read_private_file(path)?;
        let key = ssh_key::PrivateKey::from_openssh(text.as_bytes()).map_err(|err| {
            KeyError::NotPrivateKey {
                path: path.to_owned(),
                reason: why_not_private_key(&text, &err),
            }
        })?;
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(KeyError::UnsupportedFile {
                path: path.to_owned(),
                found: key.algorithm().to_string(),
            });
        }
        if key.is_encrypted() {
            return Identity::from_agent(path, key.public_key(), agent);
        }
        Identity::from_private_key(key)
    }

    /// A new key pair from the operating system's random source.
    ///
    /// # Panics
    /// If the operating system has no random source.
    pub fn generate(comment: &str) -> Identity {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the operating system random source works");
        let keypair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
        let key =
            ssh_key::PrivateKey::new(keypair, comment).expect("an Ed25519 key pair is complete");
        Identity::from_private_key(key).expect("an Ed25519 key makes an identity")
    }

    /// Makes a new key pair and writes it, unencrypted in OpenSSH's format, to a new file
    /// `path` with mode 0600, and its public line `ssh-ed25519 AAAA... comment` to a new file
    /// `path.pub` with mode 0644, as `ssh-keygen -t ed25519 -N ''` does.
    ///
    /// Neither file is ever replaced, nor a link at either path followed: both are created
    /// exclusively, `path.pub` first, so an existing `path.pub` fails the call before `path`
    /// is touched. The folder must exist. Both files and the folder are synced before
    /// returning, so a host key survives a crash right after it was made.
    ///
    /// # Errors
    /// - [`KeyError::BadComment`]: a comment with a line break or other control character.
    /// - [`KeyError::Exists`]: `path` or `path.pub` exists (links included).
    /// - [`KeyError::Io`]: a file cannot be created or written; what was created is removed.
    pub fn write_new(path: &Path, comment: &str) -> Result<Identity, KeyError> {
        if comment.chars().any(char::is_control) {
            return Err(KeyError::BadComment {
                comment: comment.to_owned(),
            });
        }
        let identity = Identity::generate(comment);
        let Signer::Key(pair) = &identity.signer else {
            unreachable!("a generated identity holds its key pair")
        };
        let private_text = pair
            .file
            .to_openssh(LineEnding::LF)
            .expect("a new Ed25519 key pair always encodes");
        let public_line = identity
            .public
            .to_ssh_key()
            .to_openssh()
            .expect("an Ed25519 key always encodes")
            + "\n";
        write_key_files(path, private_text.as_bytes(), public_line.as_bytes())?;
        Ok(identity)
    }

    /// Loads the key file at `path` as [`Identity::load`] does, or, if there is none, makes
    /// one as [`Identity::write_new`] does: an agent's host key. The `bool` is true when the
    /// key was created. The folder must exist.
    ///
    /// # Errors
    /// As [`Identity::load`] and [`Identity::write_new`]; [`KeyError::Exists`] when `path`
    /// is missing but `path.pub` is there (a key half deleted is not silently replaced).
    pub fn load_or_create(path: &Path, comment: &str) -> Result<(Identity, bool), KeyError> {
        match Identity::load(path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Identity::write_new(path, comment).map(|identity| (identity, true))
            }
            loaded => loaded.map(|identity| (identity, false)),
        }
    }

    /// The public half, with the key file's comment.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// A plain Ed25519 signature (RFC 8032) over `message` as it is, not hashed first: what
    /// TLS 1.3's `CertificateVerify` needs.
    ///
    /// Through `ssh-agent` this is one `SSH_AGENTC_SIGN_REQUEST` on a new connection; the
    /// answer is checked to be an Ed25519 signature that verifies against the key.
    ///
    /// # Errors
    /// [`KeyError::Agent`] when signing through the agent fails; a key pair held in this
    /// process always signs.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        match &self.signer {
            Signer::Key(pair) => Ok(pair
                .signing
                .sign(message)
                .as_ref()
                .try_into()
                .expect("an Ed25519 signature is 64 bytes")),
            Signer::Agent(socket) => {
                sign_through_agent(socket, &self.public, message).map_err(|reason| {
                    KeyError::Agent {
                        fingerprint: self.public.fingerprint(),
                        reason,
                    }
                })
            }
        }
    }

    /// An OpenSSH signature over `message`, as `ssh-keygen -Y sign -n NAMESPACE` makes it
    /// (SHA-512 inside): the armored `-----BEGIN SSH SIGNATURE-----` text, ending with a line
    /// break. `ssh-keygen -Y check-novalidate` and [`sshsig_verify`] check it.
    ///
    /// # Errors
    /// [`KeyError::SshSig`] with [`SshSigError::EmptyNamespace`], or as [`Identity::sign`].
    pub fn sshsig_sign(&self, namespace: &str, message: &[u8]) -> Result<String, KeyError> {
        if namespace.is_empty() {
            return Err(KeyError::SshSig(SshSigError::EmptyNamespace));
        }
        // The signature is over this blob, not over the message itself, so a signature made
        // for the log can never pass as a TLS or SSH authentication signature.
        let signed_data = SshSig::signed_data(namespace, SSHSIG_HASH, message)
            .expect("a non-empty namespace encodes");
        let signature = ssh_key::Signature::new(Algorithm::Ed25519, self.sign(&signed_data)?)
            .expect("64 bytes are an Ed25519 signature");
        let sshsig = SshSig::new(self.public.key_data(), namespace, SSHSIG_HASH, signature)
            .expect("a signature with a non-empty namespace is complete");
        let mut armored = sshsig
            .to_pem(LineEnding::LF)
            .expect("an OpenSSH signature always encodes");
        if !armored.ends_with('\n') {
            armored.push('\n');
        }
        Ok(armored)
    }

    /// An identity signing with `key`, which must be an unencrypted Ed25519 key.
    fn from_private_key(key: ssh_key::PrivateKey) -> Result<Identity, KeyError> {
        let public = PublicKey::from_ssh_key(key.public_key())?;
        let pair = key
            .key_data()
            .ed25519()
            .ok_or_else(|| KeyError::Malformed("not an Ed25519 key pair".into()))?;
        let signing = ring::signature::Ed25519KeyPair::from_seed_and_public_key(
            pair.private.as_ref(),
            pair.public.as_ref(),
        )
        .map_err(|err| KeyError::Malformed(format!("inconsistent Ed25519 key pair: {err}")))?;
        Ok(Identity {
            public,
            signer: Signer::Key(Box::new(KeyPair { file: key, signing })),
        })
    }

    fn from_agent(
        path: &Path,
        key: &ssh_key::PublicKey,
        agent: Option<&Path>,
    ) -> Result<Identity, KeyError> {
        let encrypted = |reason| KeyError::Encrypted {
            path: path.to_owned(),
            reason,
        };
        let socket = agent.ok_or(AgentError::NoAgent).map_err(encrypted)?;
        let comment = find_in_agent(socket, key).map_err(encrypted)?;
        Ok(Identity {
            public: PublicKey::from_ssh_key(key)?.with_comment(&comment),
            signer: Signer::Agent(socket.to_owned()),
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signer = match &self.signer {
            Signer::Key(_) => "key pair in memory".to_owned(),
            Signer::Agent(socket) => format!("ssh-agent at {}", socket.display()),
        };
        f.debug_struct("Identity")
            .field("key", &self.public.fingerprint())
            .field("comment", &self.public.comment())
            .field("signer", &signer)
            .finish()
    }
}

/// Checks an OpenSSH signature made by `key` for `namespace` over `message`, as
/// `ssh-keygen -Y check-novalidate -n NAMESPACE` does (SHA-256 or SHA-512 inside).
///
/// # Errors
/// [`KeyError::SshSig`]: the text is not an OpenSSH signature, or it was made by another key,
/// for another namespace, or over another message.
pub fn sshsig_verify(
    key: &PublicKey,
    namespace: &str,
    message: &[u8],
    armored: &str,
) -> Result<(), KeyError> {
    check_sshsig(key, namespace, message, armored).map_err(KeyError::SshSig)
}

fn check_sshsig(
    key: &PublicKey,
    namespace: &str,
    message: &[u8],
    armored: &str,
) -> Result<(), SshSigError> {
    if namespace.is_empty() {
        return Err(SshSigError::EmptyNamespace);
    }
    let sshsig = SshSig::from_pem(armored.trim()).map_err(|err| {
        SshSigError::Malformed(if armored.contains("-----BEGIN SSH SIGNATURE-----") {
            err.to_string()
        } else {
            "it has no -----BEGIN SSH SIGNATURE----- line".to_owned()
        })
    })?;
    if *sshsig.public_key() != key.key_data() {
        return Err(SshSigError::OtherKey {
            expected: key.fingerprint(),
            signer: sshsig.public_key().fingerprint(HashAlg::Sha256).to_string(),
        });
    }
    if sshsig.namespace() != namespace {
        return Err(SshSigError::OtherNamespace {
            expected: namespace.to_owned(),
            found: sshsig.namespace().to_owned(),
        });
    }
    key.to_ssh_key()
        .verify(namespace, message, &sshsig)
        .map_err(|_| SshSigError::Mismatch)
}

/// Opens `path` (following a link), checks the permissions of the file opened, then reads it.
///
/// The checks are on the open descriptor, not on the path, so the file checked is the file
/// read even if the path is changed in between.
fn read_private_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    // Non-blocking, so a FIFO at `path` is refused below instead of hanging the open; reads
    // of a regular file are not affected.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(KeyError::NotPrivateKey {
            path: path.to_owned(),
            reason: "it is not a regular file".to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    // Allocated once at full size: a buffer that grew would leave copies of the key behind
    // that nothing clears.
    let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_BYTES + 1));
    file.take(MAX_KEY_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::NotPrivateKey {
            path: path.to_owned(),
            reason: format!("it is larger than {MAX_KEY_FILE_BYTES} bytes"),
        });
    }
    Ok(text)
}

/// The reason to give for a file the OpenSSH parser refused: a hint for the usual mix-ups,
/// else the parser's own words.
fn why_not_private_key(text: &str, err: &ssh_key::Error) -> String {
    match text.split_whitespace().next() {
        Some(word) if looks_like_key_type(word) => {
            "it holds a public key; give the private key file (the one without .pub)".to_owned()
        }
        _ if !text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") => {
            "it has no -----BEGIN OPENSSH PRIVATE KEY----- line".to_owned()
        }
        _ => err.to_string(),
    }
}

/// One connection to the agent at `socket`, with [`AGENT_TIMEOUT`] on every read and write.
fn connect_agent(socket: &Path) -> Result<ssh_agent_client_rs::Client, AgentError> {
    let unreachable = |source| AgentError::Unreachable {
        socket: socket.to_owned(),
        source,
    };
    let stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(AGENT_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(AGENT_TIMEOUT)))
        .map_err(unreachable)?;
    Ok(ssh_agent_client_rs::Client::with_read_write(Box::new(
        stream,
    )))
}

/// The comment the agent at `socket` holds `key` with.
fn find_in_agent(socket: &Path, key: &ssh_key::PublicKey) -> Result<String, AgentError> {
    let identities = connect_agent(socket)?
        .list_all_identities()
        .map_err(|err| agent_failure(socket, err))?;
    identities
        .iter()
        .find_map(|identity| match identity {
            ssh_agent_client_rs::Identity::PublicKey(held) if held.key_data() == key.key_data() => {
                Some(held.comment().to_owned())
            }
            _ => None,
        })
        .ok_or_else(|| AgentError::NotHeld {
            socket: socket.to_owned(),
        })
}

/// Has the agent at `socket` sign `message` with `key`, and checks what it returns.
fn sign_through_agent(
    socket: &Path,
    key: &PublicKey,
    message: &[u8],
) -> Result<[u8; 64], AgentError> {
    // Flags 0: for an ssh-ed25519 key the agent signs the message as is, with no hash chosen.
    let signature = connect_agent(socket)?
        .sign(key.to_ssh_key(), message)
        .map_err(|err| agent_failure(socket, err))?;
    if signature.algorithm() != Algorithm::Ed25519 {
        return Err(AgentError::WrongAlgorithm {
            socket: socket.to_owned(),
            found: signature.algorithm().to_string(),
        });
    }
    let bad_signature = || AgentError::BadSignature {
        socket: socket.to_owned(),
    };
    let bytes: [u8; 64] = signature
        .as_bytes()
        .try_into()
        .map_err(|_| bad_signature())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.as_bytes())
        .verify(message, &bytes)
        .map_err(|_| bad_signature())?;
    Ok(bytes)
}

fn agent_failure(socket: &Path, err: ssh_agent_client_rs::Error) -> AgentError {
    let socket = socket.to_owned();
    match err {
        ssh_agent_client_rs::Error::AgentCommunicationError(source) => {
            AgentError::Unreachable { socket, source }
        }
        ssh_agent_client_rs::Error::RemoteFailure => AgentError::Refused { socket },
        other => AgentError::Protocol {
            socket,
            detail: other.to_string(),
        },
    }
}

/// Creates `path.pub`, then `path`, both exclusively, writes and syncs them, then syncs the
/// folder. On failure, removes what it created.
fn write_key_files(path: &Path, private_text: &[u8], public_line: &[u8]) -> Result<(), KeyError> {
    let public_path = public_path_of(path);
    let mut public_file = create_exclusive(&public_path, 0o644)?;
    let mut private_file = match create_exclusive(path, 0o600) {
        Ok(file) => file,
        Err(err) => {
            // Created empty by us an instant ago; nothing else can be lost by removing it.
            let _ = std::fs::remove_file(&public_path);
            return Err(err);
        }
    };
    let written = write_synced(&mut private_file, path, private_text)
        .and_then(|()| write_synced(&mut public_file, &public_path, public_line))
        .and_then(|()| sync_folder_of(path));
    if written.is_err() {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(&public_path);
    }
    written
}

/// `path` with `.pub` appended, as `ssh-keygen` names the public half.
fn public_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates a new file with exactly `mode`. `O_CREAT | O_EXCL` fails on anything at `path`,
/// a link included (even a dangling one), so nothing is replaced and no link is followed.
fn create_exclusive(path: &Path, mode: u32) -> Result<File, KeyError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_owned(),
            },
            _ => KeyError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    // The umask may have taken bits away at creation; set the mode on the descriptor so the
    // result is the same for every operator.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(file)
}

fn write_synced(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Syncs the folder holding `path`, so the new names survive a crash as well as the data.
fn sync_folder_of(path: &Path) -> Result<(), KeyError> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| KeyError::Io {
            path: folder.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;
    use std::process::{Child, Command, Output, Stdio};
    use std::time::Instant;

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

    // The tests below drive the real OpenSSH tools (/usr/bin/ssh-keygen, ssh-agent, ssh-add):
    // what they write must load, and what we write and sign they must accept.

    const MESSAGE: &[u8] = b"TLS 1.3, server CertificateVerify\0a transcript hash";
    const NAMESPACE: &str = "muster-oplog";

    /// Runs a command to completion, failing the test with its stderr if it fails.
    fn run(cmd: &mut Command) -> Output {
        let output = cmd.output().unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
        assert!(
            output.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `ssh-keygen -q -C alice@ws1 ARGS -f DIR/NAME`; the new key's path.
    fn ssh_keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let path = dir.join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-C", "alice@ws1"])
            .args(args)
            .arg("-f")
            .arg(&path));
        path
    }

    /// A new unencrypted Ed25519 key, as `ssh-keygen -t ed25519 -N ''` makes it.
    fn ssh_keygen_ed25519(dir: &Path, name: &str) -> PathBuf {
        ssh_keygen(dir, name, &["-t", "ed25519", "-N", ""])
    }

    /// A copy of `key` protected by the passphrase `secret`, rewritten by `ssh-keygen -p`:
    /// the same key pair, so an agent holding `key` holds the copy's key too.
    fn encrypted_copy(key: &Path, name: &str) -> PathBuf {
        let copy = key.with_file_name(name);
        std::fs::copy(key, &copy).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-p", "-P", "", "-N", "secret", "-f"])
            .arg(&copy));
        let text = std::fs::read_to_string(&copy).unwrap();
        assert!(ssh_key::PrivateKey::from_openssh(&text)
            .unwrap()
            .is_encrypted());
        copy
    }

    /// The second word of `ssh-keygen -lf PATH`: the fingerprint.
    fn ssh_keygen_fingerprint(path: &Path) -> String {
        let output = run(Command::new("ssh-keygen").arg("-lf").arg(path));
        let text = String::from_utf8(output.stdout).unwrap();
        text.split_whitespace().nth(1).unwrap().to_owned()
    }

    fn public_key_of(pub_path: &Path) -> PublicKey {
        PublicKey::from_openssh(&std::fs::read_to_string(pub_path).unwrap()).unwrap()
    }

    /// Verifies a plain Ed25519 signature with ring, which shares no code with the signer.
    fn ring_accepts(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.as_bytes())
            .verify(message, signature)
            .is_ok()
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    /// Whether `ssh-keygen -Y check-novalidate -n NAMESPACE -s SIGNATURE < MESSAGE` accepts.
    fn ssh_keygen_accepts_sshsig(
        dir: &Path,
        namespace: &str,
        message: &[u8],
        armored: &str,
    ) -> bool {
        let message_path = dir.join("checked-message");
        let signature_path = dir.join("checked-message.sig");
        std::fs::write(&message_path, message).unwrap();
        std::fs::write(&signature_path, armored).unwrap();
        let output = Command::new("ssh-keygen")
            .args(["-Y", "check-novalidate", "-n", namespace, "-s"])
            .arg(&signature_path)
            .stdin(File::open(&message_path).unwrap())
            .output()
            .unwrap();
        output.status.success()
    }

    /// A real `ssh-agent -D` on a socket of its own, killed when dropped.
    struct SshAgent {
        child: Child,
        socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl SshAgent {
        fn start() -> SshAgent {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("agent.sock");
            let child = Command::new("ssh-agent")
                .arg("-D")
                .arg("-a")
                .arg(&socket)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let agent = SshAgent {
                child,
                socket,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while UnixStream::connect(&agent.socket).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "ssh-agent did not listen on {}",
                    agent.socket.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            agent
        }

        /// `ssh-add ARGS` against this agent only, never prompting.
        fn ssh_add(&self, args: &[&OsStr]) {
            run(Command::new("ssh-add")
                .env("SSH_AUTH_SOCK", &self.socket)
                .env_remove("SSH_ASKPASS")
                .env_remove("DISPLAY")
                .args(args));
        }

        /// Kills the agent but keeps its socket file: connections are then refused.
        fn kill(&mut self) {
            self.child.kill().unwrap();
            self.child.wait().unwrap();
        }
    }

    impl Drop for SshAgent {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A stand-in for a broken or hostile agent on `DIR/fake-agent.sock`: it claims to hold
    /// `key` and answers every sign request with the signature blob (`algorithm`,
    /// `signature`), whatever it was asked to sign.
    fn start_fake_agent(dir: &Path, key: &PublicKey, algorithm: &str, signature: &[u8]) -> PathBuf {
        let socket = dir.join("fake-agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let mut key_blob = Vec::new();
        put_string(&mut key_blob, KEY_TYPE.as_bytes());
        put_string(&mut key_blob, key.as_bytes());
        // SSH_AGENT_IDENTITIES_ANSWER: one key, with a comment.
        let mut identities = vec![12];
        identities.extend(1u32.to_be_bytes());
        put_string(&mut identities, &key_blob);
        put_string(&mut identities, b"fake");
        // SSH_AGENT_SIGN_RESPONSE: a string holding the signature blob.
        let mut signature_blob = Vec::new();
        put_string(&mut signature_blob, algorithm.as_bytes());
        put_string(&mut signature_blob, signature);
        let mut sign_response = vec![14];
        put_string(&mut sign_response, &signature_blob);
        // The thread outlives the test, blocked in accept; the process ends it.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                while let Some(kind) = read_agent_request(&mut conn) {
                    let reply = match kind {
                        11 => identities.as_slice(),
                        13 => sign_response.as_slice(),
                        _ => &[5],
                    };
                    let mut frame = Vec::new();
                    put_string(&mut frame, reply);
                    if conn.write_all(&frame).is_err() {
                        break;
                    }
                }
            }
        });
        socket
    }

    /// The type byte of the next request, or `None` once the client hangs up.
    fn read_agent_request(conn: &mut UnixStream) -> Option<u8> {
        let mut len = [0u8; 4];
        conn.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).ok()?;
        body.first().copied()
    }

    fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend(u32::try_from(bytes.len()).unwrap().to_be_bytes());
        out.extend(bytes);
    }

    #[test]
    fn a_key_from_ssh_keygen_signs_and_ring_verifies_it_against_the_pub_file() {
        // Tried: `ssh-keygen -t ed25519 -N ''`, loaded, a message signed, the signature
        // checked by ring against the key read from the .pub file; and a changed message.
        let dir = tempfile::tempdir().unwrap();
        let path = ssh_keygen_ed25519(dir.path(), "id_ed25519");
        let identity = Identity::load_with_agent(&path, None).unwrap();
        let public = public_key_of(&path.with_extension("pub"));
        assert_eq!(*identity.public_key(), public);

        let signature = identity.sign(MESSAGE).unwrap();
        assert!(ring_accepts(&public, MESSAGE, &signature));
        assert!(!ring_accepts(&public, b"another message", &signature));
    }

    #[test]
    fn the_fingerprint_and_comment_are_those_ssh_keygen_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = ssh_keygen_ed25519(dir.path(), "id_ed25519");
        let identity = Identity::load_with_agent(&path, None).unwrap();
        assert_eq!(
            identity.public_key().fingerprint(),
            ssh_keygen_fingerprint(&path)
        );
        assert_eq!(identity.public_key().comment(), "alice@ws1");
    }

    #[test]
    fn a_key_group_or_others_can_access_is_refused_naming_path_and_mode() {
        // Tried: every mode with one group or other bit set, then 0400 (owner read only),
        // which loads.
        let dir = tempfile::tempdir().unwrap();
        let path = ssh_keygen_ed25519(dir.path(), "id_ed25519");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o660] {
            set_mode(&path, mode);
            let err = Identity::load_with_agent(&path, None).unwrap_err();
            assert!(
                matches!(err, KeyError::TooOpen { mode: found, .. } if found == mode),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&format!("(mode {mode:04o})")), "{text}");
            assert!(
                text.contains(&format!("run `chmod 600 {}`", path.display())),
                "{text}"
            );
        }
        set_mode(&path, 0o400);
        Identity::load_with_agent(&path, None).unwrap();
    }

    #[test]
    fn a_link_to_a_key_is_followed_and_the_mode_of_the_key_checked() {
        // Tried: a link (mode 0777 itself) to a 0600 key loads; once the key is 0644, the
        // load through the link is refused, naming the link and the key's mode.
        let dir = tempfile::tempdir().unwrap();
        let key = ssh_keygen_ed25519(dir.path(), "id_ed25519");
        let link = dir.path().join("muster_key");
        symlink(&key, &link).unwrap();
        let through_link = Identity::load_with_agent(&link, None).unwrap();
        assert_eq!(
            *through_link.public_key(),
            public_key_of(&key.with_extension("pub"))
        );

        set_mode(&key, 0o644);
        let err = Identity::load_with_agent(&link, None).unwrap_err();
        match err {
            KeyError::TooOpen { path, mode } => {
                assert_eq!((path, mode), (link, 0o644));
            }
            other => panic!("expected TooOpen, got {other:?}"),
        }
    }

    #[test]
    fn rsa_ecdsa_and_security_key_files_are_refused_naming_their_type() {
        // Tried: `ssh-keygen -t rsa -b 2048`, the same key behind a passphrase (its public
        // half is still read), `ssh-keygen -t ecdsa`, and an sk-ssh-ed25519 key file written
        // with ssh-key (making a real one needs a FIDO token).
        let dir = tempfile::tempdir().unwrap();
        let rsa = ssh_keygen(dir.path(), "id_rsa", &["-t", "rsa", "-b", "2048", "-N", ""]);
        let rsa_encrypted = encrypted_copy(&rsa, "id_rsa_encrypted");
        let ecdsa = ssh_keygen(dir.path(), "id_ecdsa", &["-t", "ecdsa", "-N", ""]);
        let sk = dir.path().join("id_ed25519_sk");
        let sk_public = ssh_key::public::SkEd25519::new(Ed25519PublicKey([9; 32]), "ssh:");
        let sk_private = ssh_key::private::SkEd25519::new(sk_public, 0x01, vec![7; 64]).unwrap();
        let sk_key = ssh_key::PrivateKey::new(KeypairData::SkEd25519(sk_private), "sk").unwrap();
        std::fs::write(&sk, sk_key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        set_mode(&sk, 0o600);

        for (path, found) in [
            (&rsa, "ssh-rsa"),
            (&rsa_encrypted, "ssh-rsa"),
            (&ecdsa, "ecdsa-sha2-nistp256"),
            (&sk, "sk-ssh-ed25519@openssh.com"),
        ] {
            let err = Identity::load_with_agent(path, None).unwrap_err();
            assert!(
                matches!(&err, KeyError::UnsupportedFile { found: f, .. } if f == found),
                "{}: {err:?}",
                path.display()
            );
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("{found} keys are not supported")),
                "{text}"
            );
        }
    }

    #[test]
    fn a_public_key_folder_missing_or_garbage_file_is_refused_naming_it() {
        // Tried: the .pub file given by mistake, a text file, a folder, a FIFO (which must not
        // hang the open), a missing file.
        let dir = tempfile::tempdir().unwrap();
        let key = ssh_keygen_ed25519(dir.path(), "id_ed25519");
        let public = key.with_extension("pub");
        set_mode(&public, 0o600);
        let err = Identity::load_with_agent(&public, None).unwrap_err();
        assert!(matches!(err, KeyError::NotPrivateKey { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("holds a public key; give the private key file"),
            "{err}"
        );

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "hello\n").unwrap();
        set_mode(&garbage, 0o600);
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        set_mode(&folder, 0o700);
        let fifo = dir.path().join("fifo");
        run(Command::new("mkfifo").args(["-m", "600"]).arg(&fifo));
        for (path, why) in [
            (
                &garbage,
                "it has no -----BEGIN OPENSSH PRIVATE KEY----- line",
            ),
            (&folder, "it is not a regular file"),
            (&fifo, "it is not a regular file"),
        ] {
            let err = Identity::load_with_agent(path, None).unwrap_err();
            assert!(matches!(err, KeyError::NotPrivateKey { .. }), "{err:?}");
            let expected = format!(
                "key file {} is not an OpenSSH private key: {why}",
                path.display()
            );
            assert_eq!(err.to_string(), expected);
        }

        let missing = dir.path().join("missing");
        let err = Identity::load_with_agent(&missing, None).unwrap_err();
        assert!(
            matches!(&err, KeyError::Io { path, source } if *path == missing && source.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
    }

    #[test]
    fn a_passphrase_key_no_agent_holds_is_refused_saying_to_ssh_add_it() {
        // Tried: no agent at all, a socket nobody listens on, and a real ssh-agent that holds
        // another key.
        let dir = tempfile::tempdir().unwrap();
        let plain = ssh_keygen_ed25519(dir.path(), "id_plain");
        let path = encrypted_copy(&plain, "id_ed25519");
        let other = ssh_keygen_ed25519(dir.path(), "id_other");
        let agent = SshAgent::start();
        agent.ssh_add(&[other.as_os_str()]);
        let nobody = dir.path().join("nobody.sock");

        for (socket, why) in [
            (
                None,
                "no ssh-agent is running (SSH_AUTH_SOCK is not set)".to_owned(),
            ),
            (
                Some(nobody.as_path()),
                format!("the ssh-agent at {} cannot be reached", nobody.display()),
            ),
            (
                Some(agent.socket.as_path()),
                format!(
                    "the ssh-agent at {} does not hold it",
                    agent.socket.display()
                ),
            ),
        ] {
            let err = Identity::load_with_agent(&path, socket).unwrap_err();
            assert!(matches!(err, KeyError::Encrypted { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "key file {} is protected by a passphrase and {why}",
                    path.display()
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!("run `ssh-add {}`", path.display())),
                "{text}"
            );
        }
    }

    #[test]
    fn a_passphrase_key_held_by_ssh_agent_signs_through_it_from_several_threads() {
        // Tried: the unencrypted copy added to a real ssh-agent with ssh-add, the encrypted
        // file loaded; plain signatures from four threads at once checked by ring, and an
        // OpenSSH signature made through the agent checked by `ssh-keygen -Y`.
        let dir = tempfile::tempdir().unwrap();
        let plain = ssh_keygen_ed25519(dir.path(), "id_plain");
        let path = encrypted_copy(&plain, "id_ed25519");
        let agent = SshAgent::start();
        agent.ssh_add(&[plain.as_os_str()]);

        let identity = Identity::load_with_agent(&path, Some(&agent.socket)).unwrap();
        let public = public_key_of(&plain.with_extension("pub"));
        assert_eq!(*identity.public_key(), public);
        // The file's comment is encrypted; the agent's is the one ssh-add read.
        assert_eq!(identity.public_key().comment(), "alice@ws1");
        assert!(
            format!("{identity:?}").contains("ssh-agent at"),
            "{identity:?}"
        );

        std::thread::scope(|scope| {
            for n in 0..4 {
                let (identity, public) = (&identity, &public);
                scope.spawn(move || {
                    let message = format!("message {n}");
                    let signature = identity.sign(message.as_bytes()).unwrap();
                    assert!(ring_accepts(public, message.as_bytes(), &signature));
                });
            }
        });

        let armored = identity.sshsig_sign(NAMESPACE, MESSAGE).unwrap();
        assert!(ssh_keygen_accepts_sshsig(
            dir.path(),
            NAMESPACE,
            MESSAGE,
            &armored
        ));
        sshsig_verify(&public, NAMESPACE, MESSAGE, &armored).unwrap();
    }

    #[test]
    fn signing_fails_with_a_clear_error_once_the_agent_drops_the_key_or_stops() {
        // Tried: `ssh-add -D` after the load (the agent then answers failure), and the agent
        // killed (its socket refuses connections).
        let dir = tempfile::tempdir().unwrap();
        let plain = ssh_keygen_ed25519(dir.path(), "id_plain");
        let path = encrypted_copy(&plain, "id_ed25519");
        let mut agent = SshAgent::start();
        agent.ssh_add(&[plain.as_os_str()]);
        let identity = Identity::load_with_agent(&path, Some(&agent.socket)).unwrap();

        agent.ssh_add(&[OsStr::new("-D")]);
        let err = identity.sign(MESSAGE).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Agent {
                    reason: AgentError::Refused { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "signing with {} through ssh-agent",
                identity.public_key().fingerprint()
            )),
            "{err}"
        );

        agent.kill();
        let err = identity.sign(MESSAGE).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::Agent {
                    reason: AgentError::Unreachable { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_signature_the_agent_forged_replayed_or_mislabelled_is_refused() {
        // Tried: a fake agent answering with 64 zero bytes, with a valid signature of the
        // same key over another message, and with an rsa-sha2-512 signature blob.
        let dir = tempfile::tempdir().unwrap();
        let plain = ssh_keygen_ed25519(dir.path(), "id_plain");
        let path = encrypted_copy(&plain, "id_ed25519");
        let key = Identity::load_with_agent(&plain, None).unwrap();
        let replayed = key.sign(b"something else").unwrap();

        for (name, algorithm, signature) in [
            ("zeros", KEY_TYPE, vec![0u8; 64]),
            ("replayed", KEY_TYPE, replayed.to_vec()),
            ("rsa", "rsa-sha2-512", vec![1u8; 256]),
        ] {
            let folder = dir.path().join(name);
            std::fs::create_dir(&folder).unwrap();
            let socket = start_fake_agent(&folder, key.public_key(), algorithm, &signature);
            let identity = Identity::load_with_agent(&path, Some(&socket)).unwrap();
            let err = identity.sign(MESSAGE).unwrap_err();
            let KeyError::Agent { reason, .. } = err else {
                panic!("{name}: expected an agent error, got {err:?}");
            };
            match (name, reason) {
                ("rsa", AgentError::WrongAlgorithm { found, .. }) => {
                    assert_eq!(found, "rsa-sha2-512");
                }
                ("zeros" | "replayed", AgentError::BadSignature { .. }) => {}
                (name, reason) => panic!("{name}: unexpected {reason:?}"),
            }
            assert!(identity.sshsig_sign(NAMESPACE, MESSAGE).is_err(), "{name}");
        }
    }

    #[test]
    fn write_new_makes_files_ssh_keygen_reads() {
        // Tried: `ssh-keygen -lf` on the key and on the .pub file, `ssh-keygen -y` (which
        // derives the public key from the private file), then our own load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        let identity = Identity::write_new(&path, "agent@web1").unwrap();
        let public_path = dir.path().join("host_ed25519.pub");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&public_path), 0o644);

        let fingerprint = identity.public_key().fingerprint();
        assert_eq!(ssh_keygen_fingerprint(&path), fingerprint);
        assert_eq!(ssh_keygen_fingerprint(&public_path), fingerprint);
        let line = format!("{} agent@web1\n", identity.public_key().to_openssh());
        assert_eq!(std::fs::read_to_string(&public_path).unwrap(), line);
        let derived = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path));
        let derived = String::from_utf8(derived.stdout).unwrap();
        assert!(
            derived.starts_with(&identity.public_key().to_openssh()),
            "{derived}"
        );

        let loaded = Identity::load_with_agent(&path, None).unwrap();
        assert_eq!(loaded.public_key(), identity.public_key());
        assert_eq!(loaded.public_key().comment(), "agent@web1");
        assert!(ring_accepts(
            loaded.public_key(),
            MESSAGE,
            &loaded.sign(MESSAGE).unwrap()
        ));
    }

    #[test]
    fn write_new_never_replaces_a_file_or_follows_a_link() {
        // Tried: an existing key file, an existing .pub file, a link at the key's path to an
        // existing file, a dangling link at the key's path, a dangling link at the .pub path.
        // Each time: the error names the path in the way, nothing existing changes, and no
        // file is left behind.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let public_path = dir.path().join("id.pub");
        let target = dir.path().join("target");
        let clear = || {
            for p in [&path, &public_path, &target] {
                let _ = std::fs::remove_file(p);
            }
        };

        std::fs::write(&path, "keep me").unwrap();
        assert_exists_error(Identity::write_new(&path, "c"), &path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        assert!(!public_path.exists());
        clear();

        std::fs::write(&public_path, "keep me").unwrap();
        assert_exists_error(Identity::write_new(&path, "c"), &public_path);
        assert_eq!(std::fs::read_to_string(&public_path).unwrap(), "keep me");
        assert!(!path.exists());
        clear();

        std::fs::write(&target, "keep me").unwrap();
        symlink(&target, &path).unwrap();
        assert_exists_error(Identity::write_new(&path, "c"), &path);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert!(!public_path.exists());
        clear();

        symlink(&target, &path).unwrap();
        assert_exists_error(Identity::write_new(&path, "c"), &path);
        assert!(!target.exists() && !public_path.exists());
        clear();

        symlink(&target, &public_path).unwrap();
        assert_exists_error(Identity::write_new(&path, "c"), &public_path);
        assert!(!target.exists() && !path.exists());
    }

    fn assert_exists_error(result: Result<Identity, KeyError>, expected: &Path) {
        match result {
            Err(KeyError::Exists { path }) => assert_eq!(path, expected),
            other => panic!("expected Exists for {}, got {other:?}", expected.display()),
        }
    }

    #[test]
    fn a_comment_with_a_line_break_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let err = Identity::write_new(&path, "agent@web1\nssh-ed25519 AAAA evil").unwrap_err();
        assert!(matches!(err, KeyError::BadComment { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn load_or_create_creates_the_key_once_then_loads_it() {
        // Tried: a missing key (created), the same path again (loaded, same key), and a key
        // whose .pub file survived its deletion (refused, not silently replaced).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        let (created, was_created) = Identity::load_or_create(&path, "agent@web1").unwrap();
        assert!(was_created);
        let (loaded, was_created) = Identity::load_or_create(&path, "ignored").unwrap();
        assert!(!was_created);
        assert_eq!(loaded.public_key(), created.public_key());
        assert_eq!(loaded.public_key().comment(), "agent@web1");

        std::fs::remove_file(&path).unwrap();
        let err = Identity::load_or_create(&path, "agent@web1").unwrap_err();
        assert!(
            matches!(&err, KeyError::Exists { path: p } if *p == dir.path().join("host_ed25519.pub")),
            "{err:?}"
        );
    }

    #[test]
    fn our_sshsig_passes_ssh_keygen_and_theirs_passes_ours() {
        // Tried: ours (key file from write_new) checked by `ssh-keygen -Y check-novalidate`;
        // theirs made by `ssh-keygen -Y sign` with that same key file checked by ours, and
        // theirs with a key ssh-keygen made.
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let identity = Identity::write_new(&ours, "ops@ws1").unwrap();
        let armored = identity.sshsig_sign(NAMESPACE, MESSAGE).unwrap();
        assert!(
            armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"),
            "{armored}"
        );
        assert!(
            armored.ends_with("-----END SSH SIGNATURE-----\n"),
            "{armored}"
        );
        assert!(ssh_keygen_accepts_sshsig(
            dir.path(),
            NAMESPACE,
            MESSAGE,
            &armored
        ));

        let theirs_key = ssh_keygen_ed25519(dir.path(), "theirs");
        for key_path in [&ours, &theirs_key] {
            let message_path = dir.path().join("oplog.jsonl");
            std::fs::write(&message_path, MESSAGE).unwrap();
            run(Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", NAMESPACE, "-f"])
                .arg(key_path)
                .arg(&message_path));
            let theirs = std::fs::read_to_string(dir.path().join("oplog.jsonl.sig")).unwrap();
            std::fs::remove_file(dir.path().join("oplog.jsonl.sig")).unwrap();
            let key = Identity::load_with_agent(key_path, None).unwrap();
            sshsig_verify(key.public_key(), NAMESPACE, MESSAGE, &theirs).unwrap();
        }
    }

    #[test]
    fn a_tampered_message_namespace_key_or_signature_fails_sshsig_verification() {
        // Tried against ours and, for the message, ssh-keygen too: one byte of the message
        // changed, another namespace, another key, a mangled signature, an empty namespace.
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate("ops@ws1");
        let key = identity.public_key();
        let armored = identity.sshsig_sign(NAMESPACE, MESSAGE).unwrap();
        sshsig_verify(key, NAMESPACE, MESSAGE, &armored).unwrap();

        let mut tampered = MESSAGE.to_vec();
        tampered[0] ^= 1;
        assert!(matches!(
            sshsig_verify(key, NAMESPACE, &tampered, &armored),
            Err(KeyError::SshSig(SshSigError::Mismatch))
        ));
        assert!(!ssh_keygen_accepts_sshsig(
            dir.path(),
            NAMESPACE,
            &tampered,
            &armored
        ));
        assert!(matches!(
            sshsig_verify(key, "file", MESSAGE, &armored),
            Err(KeyError::SshSig(SshSigError::OtherNamespace { .. }))
        ));
        let other = Identity::generate("other");
        let err = sshsig_verify(other.public_key(), NAMESPACE, MESSAGE, &armored).unwrap_err();
        assert!(
            matches!(&err, KeyError::SshSig(SshSigError::OtherKey { signer, .. }) if *signer == key.fingerprint()),
            "{err:?}"
        );
        let mangled = armored.replacen("U1NIU0lH", "U1NIU0lI", 1);
        assert!(matches!(
            sshsig_verify(key, NAMESPACE, MESSAGE, &mangled),
            Err(KeyError::SshSig(SshSigError::Malformed(_)))
        ));
        assert!(matches!(
            identity.sshsig_sign("", MESSAGE),
            Err(KeyError::SshSig(SshSigError::EmptyNamespace))
        ));
    }

    #[test]
    fn debug_shows_the_fingerprint_and_no_key_bytes() {
        // Tried: `{:?}` and `{:#?}` of a generated identity, searched for the private seed as
        // hex, base64 and a Rust byte list, and for the public key bytes.
        let identity = Identity::generate("ops@ws1");
        let Signer::Key(pair) = &identity.signer else {
            panic!("a generated identity holds its key pair")
        };
        let seed: &[u8; 32] = pair.file.key_data().ed25519().unwrap().private.as_ref();
        let public = identity.public_key().as_bytes();
        let forbidden = [
            hex::encode(seed),
            hex::encode_upper(seed),
            hex::encode(&seed[..4]),
            hex::encode(public),
            format!("{:?}", &seed[..3]).trim_end_matches(']').to_owned(),
            identity.public_key().to_openssh(),
        ];
        for shown in [format!("{identity:?}"), format!("{identity:#?}")] {
            assert!(
                shown.contains(&identity.public_key().fingerprint()),
                "{shown}"
            );
            for bytes in &forbidden {
                assert!(!shown.contains(bytes.as_str()), "{shown} shows {bytes}");
            }
        }
    }

    #[test]
    fn generated_identities_differ_sign_and_are_shared_across_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<Identity>();
        let one = Identity::generate("one");
        let two = Identity::generate("two");
        assert_ne!(one.public_key(), two.public_key());
        assert!(ring_accepts(
            one.public_key(),
            MESSAGE,
            &one.sign(MESSAGE).unwrap()
        ));
        assert!(!ring_accepts(
            two.public_key(),
            MESSAGE,
            &one.sign(MESSAGE).unwrap()
        ));
    }
}
