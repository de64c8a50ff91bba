//! TLS 1.3 for every connection, through rustls: both sides prove their Ed25519 keys in the
//! handshake, sent as raw public keys (RFC 7250) rather than certificates, and each side
//! pins the other's key: `ctl` against its `known_hosts`, the agent against its
//! `authorized_keys` once the handshake is done (it needs the peer's address for `from=`).
//!
//! What TLS gives here, and what we do not build ourselves: key exchange with forward
//! secrecy (X25519), the record layer (AES-GCM or ChaCha20-Poly1305), replay and reorder
//! protection, and the proof that each side holds its private key (CertificateVerify).
//! Sessions are never resumed: every connection authenticates both keys in full. The
//! protocol version travels as the ALPN name [`ALPN`]; a peer that does not offer it is
//! refused during the handshake.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureAlgorithm, SignatureScheme,
};

use crate::identity::keys::{Identity, PublicKey};

/// The ALPN protocol name both sides offer: the wire protocol and its version.
pub const ALPN: &[u8] = b"muster/3";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE {
/// OID 1.3.101.112 }, BIT STRING of 32 bytes }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The SubjectPublicKeyInfo of `key`, as a raw public key travels in TLS.
pub fn spki_der(key: &PublicKey) -> Vec<u8> {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    der
}

/// The Ed25519 key in a SubjectPublicKeyInfo, or `None` when it holds anything else.
pub fn key_of_spki(der: &[u8]) -> Option<PublicKey> {
    let bytes = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    Some(PublicKey::from_bytes(bytes.try_into().ok()?))
}

/// The key the peer proved in the handshake of `connection`, once it is done.
pub fn peer_key(connection: &rustls::CommonState) -> Option<PublicKey> {
    let presented = connection.peer_certificates()?;
    match presented {
        [only] => key_of_spki(only),
        _ => None,
    }
}

/// Which host keys `ctl` accepts from one agent: true for a key it trusts (its line in
/// `known_hosts`), or for any key when `ctl trust` is learning them (the handshake still
/// proves that the agent holds the key it presents).
pub type HostKeyCheck = Arc<dyn Fn(&PublicKey) -> bool + Send + Sync>;

/// Where the client's verifier puts the key an agent presented, accepted or not: what
/// `ctl` names in its message when the key is unknown or changed, and what `ctl trust`
/// records.
#[derive(Debug, Clone, Default)]
pub struct PresentedKey(Arc<Mutex<Option<PublicKey>>>);

impl PresentedKey {
    /// The key presented, if the handshake got that far.
    pub fn get(&self) -> Option<PublicKey> {
        self.0.lock().expect("never poisoned").clone()
    }

    fn set(&self, key: PublicKey) {
        *self.0.lock().expect("never poisoned") = Some(key);
    }
}

/// The client side's settings for one connection to one agent: our identity, and the
/// host keys `check` accepts; the key the agent presents is put into `presented`.
///
/// # Errors
/// None in practice: the provider always supports TLS 1.3.
pub fn client_config(
    identity: Arc<Identity>,
    check: HostKeyCheck,
    presented: PresentedKey,
) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let verifier = Arc::new(HostKeyVerifier {
        check,
        presented,
        provider: Arc::clone(&provider),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(certified(
            identity,
        ))));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    Ok(Arc::new(config))
}

/// The agent's settings for every connection: its host key, and any operator key that
/// proves itself in the handshake (which keys may do what is decided after it, against
/// `authorized_keys` and the peer's address).
///
/// # Errors
/// None in practice: the provider always supports TLS 1.3.
pub fn server_config(host_key: Arc<Identity>) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let verifier = Arc::new(OperatorKeyVerifier {
        provider: Arc::clone(&provider),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(certified(
            host_key,
        ))));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified(identity: Arc<Identity>) -> Arc<CertifiedKey> {
    let spki = spki_der(identity.public_key());
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        Arc::new(IdentityKey(identity)),
    ))
}

/// Checks a presented raw public key's signature over the handshake, with Ed25519 only.
fn verify_signature(
    provider: &CryptoProvider,
    message: &[u8],
    presented: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    let spki = SubjectPublicKeyInfoDer::from(presented.as_ref());
    verify_tls13_signature_with_raw_key(
        message,
        &spki,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The key of a presented raw public key, which must be Ed25519.
fn presented_key(presented: &CertificateDer<'_>) -> Result<PublicKey, Error> {
    key_of_spki(presented).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))
}

/// `ctl`'s check of an agent's host key.
struct HostKeyVerifier {
    check: HostKeyCheck,
    presented: PresentedKey,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for HostKeyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKeyVerifier")
            .field("presented", &self.presented)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for HostKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if !intermediates.is_empty() {
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        }
        let key = presented_key(end_entity)?;
        self.presented.set(key.clone());
        match (self.check)(&key) {
            true => Ok(ServerCertVerified::assertion()),
            false => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The agent's check during the handshake: any Ed25519 key that proves itself.
#[derive(Debug)]
struct OperatorKeyVerifier {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for OperatorKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if !intermediates.is_empty() {
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        }
        presented_key(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Our identity as rustls signs with it: through [`Identity::sign`], so a key held by
/// ssh-agent works as a key file does.
struct IdentityKey(Arc<Identity>);

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", self.0.public_key())
    }
}

impl SigningKey for IdentityKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(IdentitySigner(Arc::clone(&self.0))) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(spki_der(self.0.public_key())))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

struct IdentitySigner(Arc<Identity>);

impl fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentitySigner({})", self.0.public_key())
    }
}

impl Signer for IdentitySigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.0
            .sign(message)
            .map(|signature| signature.to_vec())
            .map_err(|err| Error::General(format!("cannot sign with our key: {err}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}
