//! The mutual HMAC-SHA256 handshake that opens every connection.
//!
//! Both sides prove they hold the shared key without sending it, each over fresh randomness
//! of both sides, so a recorded handshake cannot be replayed and a proof made for one
//! direction cannot be reflected into the other. Four frames, client first:
//!
//! ```text
//! client -> agent   ClientHello  "MSTR" | version: u8 | client nonce: 32 bytes
//! agent  -> client  ServerHello  "MSTR" | version: u8 | server nonce: 32 bytes | server proof: 32
//! client -> agent   ClientProof  client proof: 32 bytes
//! agent  -> client  Verdict      0x00 accepted | 0x01 rejected
//!
//! proof(label) = HMAC-SHA256(key, label || 0x00 || version || client nonce || server nonce)
//! server proof = proof("muster server proof")      client proof = proof("muster client proof")
//! client-to-agent session key = proof("muster c2s session key")
//! agent-to-client session key = proof("muster s2c session key")
//! ```
//!
//! The client checks the server's proof before it sends its own, so a fake agent learns
//! nothing it could use. It may send its first channel frame right behind its proof, without
//! waiting for the verdict; the agent reads that frame only after accepting the proof.
//! Proofs are compared in constant time (`Mac::verify_slice`). After an accepted verdict
//! the stream becomes a [`Channel`] keyed with the two session keys. This module holds pure
//! functions for the computations and one driver per side; timeouts are the caller's (see
//! docs/PROTOCOL.md, "Handshake").

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::channel::{Channel, ChannelError};
use crate::frame::Frames;
use crate::key::Key;
use crate::message::{Packet, Request};
use crate::PROTOCOL_VERSION;

/// Length of each side's random nonce.
pub const NONCE_LEN: usize = 32;
/// Length of a proof (an HMAC-SHA256 digest).
pub const PROOF_LEN: usize = 32;
/// The four bytes that start both hellos.
pub const MAGIC: &[u8; 4] = b"MSTR";

const SERVER_PROOF: &[u8] = b"muster server proof";
const CLIENT_PROOF: &[u8] = b"muster client proof";
const C2S_KEY: &[u8] = b"muster c2s session key";
const S2C_KEY: &[u8] = b"muster s2c session key";
const ACCEPTED: u8 = 0x00;
const REJECTED: u8 = 0x01;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed. Nothing of the peer's is acted upon after any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The peer closed the connection before the handshake was done.
    #[error("connection closed during the handshake")]
    Closed,
    /// The connection failed during the handshake.
    #[error("handshake: {0}")]
    Transport(ChannelError),
    /// A handshake frame of the wrong size or magic: not a muster peer.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: peer speaks {theirs}, we speak {ours}")]
    VersionMismatch {
        /// Our version.
        ours: u8,
        /// The peer's version.
        theirs: u8,
    },
    /// The peer's proof did not match: it does not hold our key.
    #[error("authentication failed: the peer did not prove it holds the shared key")]
    PeerProofInvalid,
    /// The agent checked our proof and refused it.
    #[error("authentication failed: the agent refused our key")]
    Rejected,
}

impl AuthError {
    /// True when the failure means the two sides hold different keys, as opposed to a broken
    /// connection or a peer that is not muster.
    pub fn is_key_mismatch(&self) -> bool {
        matches!(self, AuthError::PeerProofInvalid | AuthError::Rejected)
    }
}

/// Both nonces of one handshake, in the order every computation uses them.
#[derive(Clone, Copy)]
struct Nonces {
    client: [u8; NONCE_LEN],
    server: [u8; NONCE_LEN],
}

/// Runs the client side: proves our key to the agent and checks the agent's proof.
///
/// `first`, when given, is the connection's first request, sent right behind our proof in
/// the same write instead of after the verdict: the agent has proved the key by then, so
/// the request goes encrypted to the right peer, and the agent reads it only once it has
/// accepted our proof. That saves a round trip and a write per connection, which is most of
/// what a short `ctl run` costs per host. This function is the only place that knows about
/// it (docs/PROTOCOL.md 3.2): callers hand over the request, and the channel they get back
/// has sent it as its frame 0.
///
/// # Errors
/// [`AuthError`]; [`AuthError::is_key_mismatch`] tells a wrong key from other failures.
pub async fn client_handshake<T: AsyncRead + AsyncWrite + Unpin>(
    mut framed: Frames<T>,
    key: &Key,
    first: Option<&Packet<Request>>,
) -> Result<Channel<T>, AuthError> {
    framed.set_max_frame_length(MAX_HANDSHAKE_FRAME);
    let client_nonce = fresh_nonce();
    send(&mut framed, hello(&client_nonce, &[])).await?;

    let server_hello = recv(&mut framed).await?;
    let (server_nonce, server_proof) = parse_server_hello(&server_hello)?;
    let nonces = Nonces {
        client: client_nonce,
        server: server_nonce,
    };
    verify_proof(key, SERVER_PROOF, &nonces, server_proof)?;
    // The agent has proved it holds the key: from here its frames may be full size.
    let mut channel = Channel::new(
        with_full_frames(framed),
        &proof(key, C2S_KEY, &nonces),
        &proof(key, S2C_KEY, &nonces),
    );
    let client_proof = Bytes::copy_from_slice(&proof(key, CLIENT_PROOF, &nonces));
    match first {
        Some(first) => channel
            .send_behind(client_proof, first)
            .await
            .map_err(AuthError::Transport)?,
        None => send(channel.framed_mut(), client_proof).await?,
    }

    match recv(channel.framed_mut()).await?.as_ref() {
        [ACCEPTED] => Ok(channel),
        [REJECTED] => Err(AuthError::Rejected),
        _ => Err(AuthError::Malformed("verdict is not one byte of 0 or 1")),
    }
}

/// Runs the agent side: proves our key to the client and checks the client's proof. On a
/// wrong proof the client is told so (a rejected verdict) before the error is returned.
///
/// # Errors
/// [`AuthError`]; the caller should log it and close the connection.
pub async fn server_handshake<T: AsyncRead + AsyncWrite + Unpin>(
    mut framed: Frames<T>,
    key: &Key,
) -> Result<Channel<T>, AuthError> {
    // Until the peer has proved the key, it may not make us reserve more than a handshake
    // frame needs (the codec reserves the announced length as soon as it reads it).
    framed.set_max_frame_length(MAX_HANDSHAKE_FRAME);
    let client_hello = recv(&mut framed).await?;
    let client_nonce = match parse_client_hello(&client_hello) {
        Ok(nonce) => nonce,
        Err(err @ AuthError::VersionMismatch { .. }) => {
            // Answer with our version so the client can name the mismatch; the all-zero
            // nonce and proof are never checked because the client stops at the version.
            let _ = send(&mut framed, hello(&[0; NONCE_LEN], &[0; PROOF_LEN])).await;
            return Err(err);
        }
        Err(err) => return Err(err),
    };
    let nonces = Nonces {
        client: client_nonce,
        server: fresh_nonce(),
    };
    let server_proof = proof(key, SERVER_PROOF, &nonces);
    send(&mut framed, hello(&nonces.server, &server_proof)).await?;

    let client_proof = recv(&mut framed).await?;
    if let Err(err) = verify_proof(key, CLIENT_PROOF, &nonces, &client_proof) {
        // Best effort: the client learns why, then the connection closes either way.
        let _ = send(&mut framed, Bytes::from_static(&[REJECTED])).await;
        return Err(err);
    }
    send(&mut framed, Bytes::from_static(&[ACCEPTED])).await?;
    Ok(Channel::new(
        with_full_frames(framed),
        &proof(key, S2C_KEY, &nonces),
        &proof(key, C2S_KEY, &nonces),
    ))
}

/// The largest handshake frame (a ServerHello is 69 bytes), with room to spare.
const MAX_HANDSHAKE_FRAME: usize = 128;

/// Lifts the handshake's frame limit back to the channel's, once the peer is authenticated.
fn with_full_frames<T>(mut framed: Frames<T>) -> Frames<T> {
    framed.set_max_frame_length(crate::frame::MAX_FRAME_LEN);
    framed
}

fn proof(key: &Key, label: &[u8], nonces: &Nonces) -> [u8; PROOF_LEN] {
    proof_mac(key, label, nonces).finalize().into_bytes().into()
}

fn proof_mac(key: &Key, label: &[u8], nonces: &Nonces) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(&[0x00, PROTOCOL_VERSION]);
    mac.update(&nonces.client);
    mac.update(&nonces.server);
    mac
}

/// Compares a received proof with the expected one in constant time.
fn verify_proof(key: &Key, label: &[u8], nonces: &Nonces, got: &[u8]) -> Result<(), AuthError> {
    proof_mac(key, label, nonces)
        .verify_slice(got)
        .map_err(|_| AuthError::PeerProofInvalid)
}

fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the operating system random source works");
    nonce
}

fn hello(nonce: &[u8; NONCE_LEN], proof: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(MAGIC.len() + 1 + NONCE_LEN + proof.len());
    buf.put_slice(MAGIC);
    buf.put_u8(PROTOCOL_VERSION);
    buf.put_slice(nonce);
    buf.put_slice(proof);
    buf.freeze()
}

/// Checks magic and version of a hello and returns what follows them.
fn parse_hello(frame: &[u8], rest_len: usize) -> Result<&[u8], AuthError> {
    let Some(rest) = frame.strip_prefix(MAGIC.as_slice()) else {
        return Err(AuthError::Malformed("hello does not start with MSTR"));
    };
    let Some((&version, rest)) = rest.split_first() else {
        return Err(AuthError::Malformed("hello has no version"));
    };
    if version != PROTOCOL_VERSION {
        return Err(AuthError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    if rest.len() != rest_len {
        return Err(AuthError::Malformed("hello has the wrong length"));
    }
    Ok(rest)
}

fn parse_client_hello(frame: &[u8]) -> Result<[u8; NONCE_LEN], AuthError> {
    let rest = parse_hello(frame, NONCE_LEN)?;
    Ok(rest.try_into().expect("length checked"))
}

fn parse_server_hello(frame: &[u8]) -> Result<([u8; NONCE_LEN], &[u8]), AuthError> {
    let rest = parse_hello(frame, NONCE_LEN + PROOF_LEN)?;
    let (nonce, proof) = rest.split_at(NONCE_LEN);
    Ok((nonce.try_into().expect("length checked"), proof))
}

async fn send<T: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Frames<T>,
    frame: Bytes,
) -> Result<(), AuthError> {
    framed.send(frame).await.map_err(write_failed)
}

fn write_failed(err: std::io::Error) -> AuthError {
    AuthError::Transport(ChannelError::Transport(err))
}

async fn recv<T: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Frames<T>,
) -> Result<BytesMut, AuthError> {
    match framed.next().await {
        Ok(None) => Err(AuthError::Closed),
        Err(err) => Err(AuthError::Transport(err.into())),
        Ok(Some(frame)) => Ok(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::framed;
    use crate::message::{Packet, Request};

    fn key(byte: u8) -> Key {
        Key::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    async fn handshake_with(
        client_key: Key,
        server_key: Key,
    ) -> (
        Result<Channel<tokio::io::DuplexStream>, AuthError>,
        Result<Channel<tokio::io::DuplexStream>, AuthError>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { server_handshake(framed(b), &server_key).await });
        let client = client_handshake(framed(a), &client_key, None).await;
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn the_same_key_opens_a_channel_both_ways() {
        let (client, server) = handshake_with(key(1), key(1)).await;
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        client.send(&Packet::Control(Request::Ping)).await.unwrap();
        let got: Packet<Request> = server.recv().await.unwrap().unwrap();
        assert_eq!(got, Packet::Control(Request::Ping));
        server
            .send(&Packet::Control(Request::Cancel))
            .await
            .unwrap();
        let got: Packet<Request> = client.recv().await.unwrap().unwrap();
        assert_eq!(got, Packet::Control(Request::Cancel));
    }

    #[tokio::test]
    async fn a_first_request_sent_with_the_proof_is_read_after_the_verdict() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut channel = server_handshake(framed(b), &key(1)).await.unwrap();
            channel.recv::<Request>().await.unwrap()
        });
        let first = Packet::Control(Request::Ping);
        let client = client_handshake(framed(a), &key(1), Some(&first)).await;
        assert!(client.is_ok(), "the client sees the accepted verdict");
        assert_eq!(server.await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn a_wrong_key_fails_on_both_sides() {
        let (client, server) = handshake_with(key(1), key(2)).await;
        let client_err = client.err().expect("client must fail");
        assert!(client_err.is_key_mismatch(), "{client_err}");
        // The client stops at the agent's proof, so the agent sees the connection close.
        assert!(server.is_err());
    }

    #[tokio::test]
    async fn an_agent_refuses_a_client_proof_made_with_another_key() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { server_handshake(framed(b), &key(1)).await });
        let mut raw = framed(a);
        let client_nonce = [7u8; NONCE_LEN];
        raw.send(hello(&client_nonce, &[])).await.unwrap();
        let server_hello = raw.next().await.unwrap().unwrap();
        let (server_nonce, _) = parse_server_hello(&server_hello).unwrap();
        let nonces = Nonces {
            client: client_nonce,
            server: server_nonce,
        };
        let forged = proof(&key(2), CLIENT_PROOF, &nonces);
        raw.send(Bytes::copy_from_slice(&forged)).await.unwrap();
        let verdict = raw.next().await.unwrap().unwrap();
        assert_eq!(&verdict[..], &[REJECTED]);
        let err = server.await.unwrap().err().expect("agent must refuse");
        assert!(matches!(err, AuthError::PeerProofInvalid), "{err}");
    }

    #[tokio::test]
    async fn the_server_proof_cannot_be_replayed_as_a_client_proof() {
        let k = key(1);
        let nonces = Nonces {
            client: [1; NONCE_LEN],
            server: [2; NONCE_LEN],
        };
        let server_proof = proof(&k, SERVER_PROOF, &nonces);
        assert!(verify_proof(&k, CLIENT_PROOF, &nonces, &server_proof).is_err());
        assert!(verify_proof(&k, SERVER_PROOF, &nonces, &server_proof).is_ok());
    }

    #[tokio::test]
    async fn before_authentication_a_large_frame_is_refused_from_its_header() {
        use tokio::io::AsyncWriteExt;
        // Tried: an unauthenticated peer announcing a 1 MiB frame, to make the agent
        // reserve that much before anyone proved anything.
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { server_handshake(framed(a), &key(1)).await });
        b.write_all(&(1024u32 * 1024).to_be_bytes()).await.unwrap();
        let err = server.await.unwrap().err().unwrap();
        assert!(
            matches!(err, AuthError::Transport(ChannelError::Oversized { .. })),
            "{err}"
        );
    }

    #[tokio::test]
    async fn garbage_instead_of_a_hello_is_malformed() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { server_handshake(framed(b), &key(1)).await });
        let mut raw = framed(a);
        raw.send(Bytes::from_static(b"GET / HTTP/1.1"))
            .await
            .unwrap();
        let err = server.await.unwrap().err().unwrap();
        assert!(matches!(err, AuthError::Malformed(_)), "{err}");
    }

    #[tokio::test]
    async fn a_client_of_another_version_is_told_the_agent_version() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { server_handshake(framed(b), &key(1)).await });
        let mut raw = framed(a);
        let mut frame = hello(&[0; NONCE_LEN], &[]).to_vec();
        let theirs = PROTOCOL_VERSION + 1;
        frame[4] = theirs;
        raw.send(Bytes::from(frame)).await.unwrap();
        let answer = raw.next().await.unwrap().unwrap();
        assert_eq!(answer[4], PROTOCOL_VERSION);
        let err = server.await.unwrap().err().unwrap();
        assert!(
            matches!(err, AuthError::VersionMismatch { theirs: t, .. } if t == theirs),
            "{err}"
        );
    }

    #[tokio::test]
    async fn another_protocol_version_is_named_in_the_error() {
        let mut frame = hello(&[0; NONCE_LEN], &[]).to_vec();
        frame[4] = 99;
        let err = parse_client_hello(&frame).unwrap_err();
        assert!(
            matches!(err, AuthError::VersionMismatch { theirs: 99, .. }),
            "{err}"
        );
    }
}

/// Property tests of what a peer sends before it has proved anything: the hellos, parsed
/// alone, and whole handshakes against arbitrary bytes (the fuzz targets `handshake_agent`
/// and `handshake_ctl` check the same on nightly).
#[cfg(test)]
mod properties {
    use super::*;
    use crate::frame::framed;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    fn key() -> Key {
        Key::from_hex(&"5a".repeat(32)).unwrap()
    }

    /// A hello-shaped frame: usually the magic and our version, then any bytes.
    fn hello_like() -> impl Strategy<Value = Vec<u8>> {
        let magic = prop_oneof![
            Just(MAGIC.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..5)
        ];
        let version = prop_oneof![Just(PROTOCOL_VERSION), any::<u8>()];
        let rest = proptest::collection::vec(any::<u8>(), 0..80);
        (magic, version, rest)
            .prop_map(|(magic, version, rest)| [magic, vec![version], rest].concat())
    }

    /// What a peer sends: hello-shaped and arbitrary frames, framed as the codec frames
    /// them, sometimes followed by loose bytes.
    fn peer_stream() -> impl Strategy<Value = Vec<u8>> {
        let frame = prop_oneof![hello_like(), proptest::collection::vec(any::<u8>(), 0..40)];
        let frames = proptest::collection::vec(frame, 0..4);
        let tail = proptest::collection::vec(any::<u8>(), 0..8);
        (frames, tail).prop_map(|(frames, tail)| {
            let mut out = Vec::new();
            for frame in frames {
                out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                out.extend_from_slice(&frame);
            }
            out.extend_from_slice(&tail);
            out
        })
    }

    /// Runs one side against a peer that sends `peer` and closes its sending half.
    fn against(peer: &[u8], agent_side: bool) -> Result<(), AuthError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (ours, mut theirs) = tokio::io::duplex(1 << 16);
            theirs.write_all(peer).await.unwrap();
            theirs.shutdown().await.unwrap();
            let key = key();
            let got = if agent_side {
                server_handshake(framed(ours), &key).await.map(drop)
            } else {
                let first = Packet::Control(Request::Ping);
                client_handshake(framed(ours), &key, Some(&first))
                    .await
                    .map(drop)
            };
            drop(theirs);
            got
        })
    }

    proptest! {
        #[test]
        fn a_hello_parses_only_with_the_magic_our_version_and_its_exact_length(frame in hello_like()) {
            let well_formed = |rest_len: usize| {
                frame.len() == MAGIC.len() + 1 + rest_len
                    && frame.starts_with(MAGIC)
                    && frame[MAGIC.len()] == PROTOCOL_VERSION
            };
            prop_assert_eq!(parse_client_hello(&frame).is_ok(), well_formed(NONCE_LEN));
            prop_assert_eq!(parse_server_hello(&frame).is_ok(), well_formed(NONCE_LEN + PROOF_LEN));
        }

        #[test]
        fn an_agent_never_accepts_a_client_that_did_not_see_its_nonce(peer in peer_stream()) {
            prop_assert!(against(&peer, true).is_err());
        }

        #[test]
        fn ctl_never_accepts_an_agent_that_did_not_see_its_nonce(peer in peer_stream()) {
            prop_assert!(against(&peer, false).is_err());
        }
    }
}
