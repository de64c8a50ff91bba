//! TLS 1.3 for every connection, through rustls: both sides prove their Ed25519 keys in the
//! handshake, each inside a self-signed X.509 certificate made from the key when the
//! process starts, and each side pins the other's key, ignoring everything else in the
//! certificate: `ctl` against its `known_hosts`, the agent against its `authorized_keys`
//! once the handshake is done (it needs the peer's address for `from=`).
//!
//! Certificates rather than raw public keys (RFC 7250), which rustls also offers: every TLS
//! stack can present and read a certificate (Python's `ssl`, OpenSSL 3.0, Go), while raw
//! public keys need OpenSSL 3.2 and are not reachable from Python or Go at all, and another
//! peer must be writable with the tools people have. The pinning is the same either way:
//! names, dates, issuers and the certificate's own signature mean nothing here; the key and
//! the handshake signature made with it are all that is checked.
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
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ParsedCertificate, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureAlgorithm, SignatureScheme,
};

use sha2::{Digest, Sha256};

use crate::identity::keys::{Identity, PublicKey};

/// The ALPN protocol name both sides offer: the wire protocol and its version.
pub const ALPN: &[u8] = b"muster/3";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE {
/// OID 1.3.101.112 }, BIT STRING of 32 bytes }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The SubjectPublicKeyInfo of `key` (DER), as a certificate holds it.
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

/// The Ed25519 key in a certificate, or `None` when it cannot be parsed or holds another
/// kind of key.
pub fn key_of_certificate(certificate: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = ParsedCertificate::try_from(certificate).ok()?;
    key_of_spki(parsed.subject_public_key_info().as_ref())
}

/// The key the peer proved in the handshake of `connection`, once it is done.
pub fn peer_key(connection: &rustls::CommonState) -> Option<PublicKey> {
    match connection.peer_certificates()? {
        [only] => key_of_certificate(only),
        _ => None,
    }
}

/// Our identity as TLS presents it: a self-signed certificate for its key, made once (a key
/// held by ssh-agent signs it there), and the key that signs each handshake.
#[derive(Clone)]
pub struct Credentials(Arc<CertifiedKey>);

/// Why [`Credentials::new`] failed: the key could not sign its certificate.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the TLS certificate for our key: {0}")]
pub struct CredentialsError(String);

impl Credentials {
    /// Makes the certificate for `identity`'s key, signed with that key.
    ///
    /// # Errors
    /// The key cannot sign (an ssh-agent that went away or refused).
    pub fn new(identity: Arc<Identity>) -> Result<Credentials, CredentialsError> {
        let signer = CertificateSigner(&identity);
        let mut params = rcgen::CertificateParams::default();
        // X.509 wants a positive serial, unique per issuer; each key is its own issuer and
        // has one certificate, so one derived from the key will do.
        let mut serial: [u8; 16] = Sha256::digest(identity.public_key().as_bytes())[..16]
            .try_into()
            .expect("16 of 32 bytes");
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        // Nothing but the key is ever read from it; a fixed name says no more than that.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "muster");
        let certificate = params
            .self_signed(&signer)
            .map_err(|err| CredentialsError(err.to_string()))?;
        let certificate = CertificateDer::from(certificate.der().to_vec());
        Ok(Credentials(Arc::new(CertifiedKey::new(
            vec![certificate],
            Arc::new(IdentityKey(identity)),
        ))))
    }

    /// The certificate presented in every handshake (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.0.cert[0]
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Credentials").field(&self.0.key).finish()
    }
}

/// Our identity as rcgen signs a certificate with it.
struct CertificateSigner<'a>(&'a Identity);

impl rcgen::PublicKeyData for CertificateSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key().as_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for CertificateSigner<'_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0
            .sign(message)
            .map(|signature| signature.to_vec())
            .map_err(|_| rcgen::Error::RemoteKeyError)
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
    credentials: &Credentials,
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
        .with_client_cert_resolver(Arc::new(credentials.clone()));
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
pub fn server_config(host_key: &Credentials) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let verifier = Arc::new(OperatorKeyVerifier {
        provider: Arc::clone(&provider),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(host_key.clone()));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// ring's provider with the TLS 1.3 suites only, AES-128-GCM with SHA-256 first. Both are
/// the cheapest here: AES-128 takes 10 rounds to AES-256's 14, and SHA-256 (the key
/// schedule and transcript) runs on the CPU's SHA extensions where SHA-384 does not. The
/// server takes the client's order. 128-bit strength matches X25519's and Ed25519's.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

impl ResolvesClientCert for Credentials {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Credentials {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Checks the signature over the handshake made with a presented certificate's key, which
/// must be Ed25519.
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
    presented_key(presented)?;
    verify_tls13_signature(
        message,
        presented,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The key of a presented certificate, which must be Ed25519.
fn presented_key(presented: &CertificateDer<'_>) -> Result<PublicKey, Error> {
    key_of_certificate(presented).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_exactly_the_identity_key() {
        // Tried: read the key back from the certificate made for an identity, and from
        // bytes that are no certificate (a bare SubjectPublicKeyInfo, as a raw-public-key
        // peer would send, and garbage): only the first gives a key.
        let identity = Arc::new(Identity::generate("web1"));
        let credentials = Credentials::new(Arc::clone(&identity)).unwrap();
        assert_eq!(
            key_of_certificate(credentials.certificate()).as_ref(),
            Some(identity.public_key())
        );
        let bare = CertificateDer::from(spki_der(identity.public_key()));
        assert_eq!(key_of_certificate(&bare), None);
        assert_eq!(
            key_of_certificate(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }
}
