//! Writes the seed corpus in `fuzz/seeds/`: valid inputs made from the real types, so every
//! target starts from what a peer really sends and mutates from there.
//!
//! `cargo +nightly run --example seed_corpus` from `fuzz/` (run it again after a change to
//! the wire types; the files are small and committed).

use std::path::Path;

use bytes::Bytes;

use std::sync::Arc;

use common::identity::keys::Identity;
use common::message::{EndReason, EntryKind, Packet, PutFile, Reply, Request, Stream};

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, inputs) in [
        ("frame", frame_seeds()),
        ("handshake_agent", agent_handshake_seeds()),
        ("handshake_ctl", ctl_handshake_seeds()),
        ("request", requests().iter().map(encode).collect()),
        ("reply", replies().iter().map(encode).collect()),
        (
            "entry_path",
            texts(&["app/logs/x.log", "x", "link/x", "file/x", "../x", "a/./b"]),
        ),
        ("inventory", inventories()),
        (
            "range",
            texts(&["web[01:20]", "r[1:2]n[1:2]", "[::1]:7004", "127.0.1.[1:3]"]),
        ),
    ] {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (n, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{n:02}")), input).unwrap();
        }
    }
}

fn encode<C: serde::Serialize>(packet: &Packet<C>) -> Vec<u8> {
    packet.encode(0).to_vec()
}

fn texts(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Frames as peers write them (4-byte big-endian length, then the payload), one after the
/// other.
fn stream(frames: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::new();
    for frame in frames {
        buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        buf.extend_from_slice(frame);
    }
    buf
}

/// A ClientHello as `ctl` sends it, and the agent's first flight in answer to it, made by
/// the real TLS configurations.
fn tls_flights() -> (Vec<u8>, Vec<u8>) {
    let operator = Arc::new(Identity::generate("seed-operator"));
    let host = Arc::new(Identity::generate("seed-agent"));
    let client_config = common::tls::client_config(
        &common::tls::Credentials::new(operator).unwrap(),
        Arc::new(|_: &_| true),
        common::tls::PresentedKey::default(),
    )
    .unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut client = rustls::ClientConnection::new(client_config, name).unwrap();
    let mut client_hello = Vec::new();
    client.write_tls(&mut client_hello).unwrap();
    let mut server = rustls::ServerConnection::new(common::tls::server_config(&common::tls::Credentials::new(host).unwrap()).unwrap()).unwrap();
    server.read_tls(&mut &client_hello[..]).unwrap();
    server.process_new_packets().unwrap();
    let mut server_flight = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut server_flight).unwrap();
    }
    (client_hello, server_flight)
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let ping = encode(&Packet::Control(Request::Ping));
    [
        stream(&[b"hello"]),
        stream(&[&ping, b"", &[0x01; 40]]),
        stream(&[&ping]),
        (1024 * 1024 + 1u32).to_be_bytes().to_vec(),
    ]
    .into_iter()
    .enumerate()
    .map(|(cut, stream)| [vec![cut as u8 * 3], stream].concat())
    .collect()
}

fn agent_handshake_seeds() -> Vec<Vec<u8>> {
    let (hello, _) = tls_flights();
    vec![
        hello.clone(),
        [&hello[..], &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]].concat(),
        hello[..hello.len() / 2].to_vec(),
        stream(&[b"not TLS"]),
    ]
}

fn ctl_handshake_seeds() -> Vec<Vec<u8>> {
    let (_, flight) = tls_flights();
    vec![
        flight.clone(),
        flight[..flight.len() / 2].to_vec(),
        [&flight[..], &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]].concat(),
        stream(&[b"not TLS"]),
    ]
}

fn requests() -> Vec<Packet<Request>> {
    let put = PutFile {
        path: "etc/app.conf".into(),
        name: "app.conf".into(),
        size: 1234,
        mode: 0o644,
        mkdir: true,
    };
    let control = [
        Request::Ping,
        Request::Exec {
            command: "uptime".into(),
            timeout_ms: Some(5000),
            op_id: Some("01J0000000000000000000000".into()),
            env: vec![("DEPLOY".into(), "blue".into())],
            cwd: Some("/srv/app".into()),
        },
        Request::Cancel,
        Request::PutFile(put),
        Request::PutEnd {
            sha256: "ab".repeat(32),
        },
        Request::PutKeep {
            sha256: "cd".repeat(32),
        },
        Request::MakeDir {
            path: "srv/a".into(),
            name: String::new(),
            mode: 0o755,
            mkdir: false,
        },
        Request::MakeSymlink {
            path: "srv/l".into(),
            target: "../a".into(),
        },
        Request::Get {
            path: "/var/log".into(),
            recursive: true,
        },
    ];
    let mut packets: Vec<_> = control.into_iter().map(Packet::Control).collect();
    packets.push(Packet::FileData(Bytes::from_static(b"\x00data\xff")));
    packets
}

fn replies() -> Vec<Packet<Reply>> {
    let control = [
        Reply::Pong {
            agent_version: "0.1.0".into(),
        },
        Reply::Started { pid: 4242 },
        Reply::Heartbeat,
        Reply::Exit {
            code: Some(0),
            signal: None,
            reason: EndReason::Exited,
        },
        Reply::Exit {
            code: None,
            signal: Some(9),
            reason: EndReason::Timeout,
        },
        Reply::PutReady {
            path: "/srv/a".into(),
            held_sha256: Some("ef".repeat(32)),
        },
        Reply::PutDone {
            path: "/srv/a".into(),
            bytes: 10,
            sha256: "01".repeat(32),
            unchanged: false,
        },
        Reply::Made {
            path: "/srv/d".into(),
            created: true,
        },
        Reply::Entry {
            path: "log/x".into(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 3,
            target: None,
        },
        Reply::Entry {
            path: "log/l".into(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: 0,
            target: Some("x".into()),
        },
        Reply::EntryEnd {
            sha256: "23".repeat(32),
        },
        Reply::GetDone {
            entries: 2,
            bytes: 3,
        },
        Reply::Error {
            message: "no such file \"x\"".into(),
        },
    ];
    let mut packets: Vec<_> = control.into_iter().map(Packet::Control).collect();
    packets.push(Packet::Output(
        Stream::Stdout,
        Bytes::from_static(b"up 3 days\n"),
    ));
    packets.push(Packet::Output(
        Stream::Stderr,
        Bytes::from_static(b"\xffwarn\n"),
    ));
    packets.push(Packet::FileData(Bytes::from_static(b"abc")));
    packets
}

fn inventories() -> Vec<Vec<u8>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory.yaml");
    vec![
        std::fs::read(repo).unwrap(),
        b"hosts:\n  v6: \"[::1]:7004\"\n  r[1:2]n[01:02]: 10.0.[1:2].[1:2]\n\
groups:\n  rack: [\"r[1:2]n[01:02]\"]\n  both: [v6, rack]\n"
            .to_vec(),
        b"hosts:\n  a: h\ngroups:\n  g: [g]\n".to_vec(),
    ]
}
