//! What receiving bulk data through TLS costs the receiver in CPU, per GiB, with muster's
//! TLS settings: through rustls's buffered connection as tokio-rustls drives it (records
//! read in 4–18 KiB pieces, decrypted, queued, then copied into our frame: what the agent
//! did for a push until bba00c1), against rustls's unbuffered connection (records
//! decrypted in place in our own buffer, read in 256 KiB pieces, as `tls_stream.rs` does). Both receivers get the same kind of
//! stream, 256 KiB frames as `ctl push` sends them, already encrypted in memory, so only
//! the receiving side is timed, from the thread's CPU clock. No network. BENCHMARKS.md has
//! the figures; bench/README.md says how to run it:
//!
//! ```sh
//! cargo run --release -p muster-common --example record_cost [MIB]
//! ```

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

#[path = "support/thread_cpu.rs"]
mod support;

use common::identity::keys::Identity;
use common::tls::{client_config, server_config, Credentials, PresentedKey};
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::ConnectionState;
use rustls::{ClientConnection, ServerConnection};
use support::thread_cpu;

/// The frame payload `ctl push` sends: a type byte and 256 KiB of file data.
const FRAME: usize = 256 * 1024 + 1;
/// How much the unbuffered receiver asks of the socket at once.
const BIG_READ: usize = 256 * 1024;

fn credentials() -> (Credentials, Credentials) {
    (
        Credentials::new(Arc::new(Identity::generate("operator"))).expect("signs"),
        Credentials::new(Arc::new(Identity::generate("host"))).expect("signs"),
    )
}

fn new_client(operator: &Credentials) -> ClientConnection {
    let config = client_config(operator, Arc::new(|_: &_| true), PresentedKey::default())
        .expect("a client config");
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut client = ClientConnection::new(config, name).expect("a client");
    // The whole frame is queued at once, then drained.
    client.set_buffer_limit(None);
    client
}

/// Everything `client` has to send, drained.
fn drain(client: &mut ClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).expect("to memory");
    }
    wire
}

/// `mib` MiB of frames, encrypted by `client` (whose handshake is done).
fn encrypted_frames(client: &mut ClientConnection, mib: usize) -> Vec<u8> {
    let payload = vec![0x5a; FRAME];
    let mut wire = Vec::new();
    for _ in 0..mib * 4 {
        client
            .writer()
            .write_all(&(FRAME as u32).to_be_bytes())
            .unwrap();
        client.writer().write_all(&payload).unwrap();
        wire.extend(drain(client));
    }
    wire
}

/// The buffered receiver, as tokio-rustls drives it under our frame reader.
fn buffered(operator: &Credentials, host: &Credentials, mib: usize) -> Duration {
    let mut client = new_client(operator);
    let mut server = ServerConnection::new(server_config(host).unwrap()).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        let wire = drain(&mut client);
        server.read_tls(&mut &wire[..]).unwrap();
        server.process_new_packets().unwrap();
        let mut back = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut back).unwrap();
        }
        client.read_tls(&mut &back[..]).unwrap();
        client.process_new_packets().unwrap();
    }
    let wire = encrypted_frames(&mut client, mib);
    let start = thread_cpu();
    let mut input = &wire[..];
    let mut frame = vec![0u8; FRAME];
    let (mut header, mut filled, mut got) = ([0u8; 4], 0usize, 0usize);
    while !input.is_empty() || got > 0 {
        if server.read_tls(&mut input).unwrap() == 0 && input.is_empty() {
            break;
        }
        server.process_new_packets().unwrap();
        loop {
            // The header, then the payload straight into the frame, as Frames reads them.
            let n = if filled < 4 {
                server.reader().read(&mut header[filled..])
            } else {
                server.reader().read(&mut frame[got..])
            };
            let n = match n {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            if filled < 4 {
                filled += n;
            } else {
                got += n;
                if got == FRAME {
                    (filled, got) = (0, 0);
                }
            }
        }
    }
    let spent = thread_cpu() - start;
    assert_eq!(frame[FRAME - 1], 0x5a);
    spent
}

/// The unbuffered receiver: large reads into our buffer, records decrypted in place, and
/// the plaintext copied once, into the frame.
fn unbuffered(operator: &Credentials, host: &Credentials, mib: usize) -> Duration {
    let mut client = new_client(operator);
    let mut server = UnbufferedServerConnection::new(server_config(host).unwrap()).unwrap();
    let mut incoming = vec![0u8; 1 << 20];
    let mut used = 0;
    let mut outgoing = vec![0u8; 1 << 16];
    let mut out_used = 0;
    // The handshake, driven by hand.
    let mut pending = drain(&mut client);
    loop {
        let take = pending.len().min(incoming.len() - used);
        incoming[used..used + take].copy_from_slice(&pending[..take]);
        pending.drain(..take);
        used += take;
        let status = server.process_tls_records(&mut incoming[..used]);
        let discard = status.discard;
        let mut done = false;
        match status.state.unwrap() {
            ConnectionState::EncodeTlsData(mut encode) => {
                out_used += encode.encode(&mut outgoing[out_used..]).unwrap();
            }
            ConnectionState::TransmitTlsData(transmit) => {
                client.read_tls(&mut &outgoing[..out_used]).unwrap();
                client.process_new_packets().unwrap();
                out_used = 0;
                transmit.done();
                pending.extend(drain(&mut client));
            }
            ConnectionState::BlockedHandshake => {
                pending.extend(drain(&mut client));
            }
            ConnectionState::WriteTraffic(_) => done = true,
            other => panic!("unexpected in the handshake: {other:?}"),
        }
        incoming.copy_within(discard..used, 0);
        used -= discard;
        if done {
            break;
        }
    }
    let wire = encrypted_frames(&mut client, mib);
    let start = thread_cpu();
    let mut input = &wire[..];
    let mut frame = vec![0u8; FRAME];
    let (mut header, mut filled, mut got) = ([0u8; 4], 0usize, 0usize);
    // Processed records are dropped by moving `begin`; the unread tail is moved to the
    // front only before a read, once per 256 KiB, not once per record.
    let mut begin = 0;
    loop {
        if begin > 0 {
            incoming.copy_within(begin..used, 0);
            (used, begin) = (used - begin, 0);
        }
        let room = (incoming.len() - used).min(BIG_READ);
        let n = input.read(&mut incoming[used..used + room]).unwrap();
        used += n;
        loop {
            let status = server.process_tls_records(&mut incoming[begin..used]);
            let mut discard = status.discard;
            let progressed = match status.state.unwrap() {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.unwrap();
                        discard += record.discard;
                        let mut data: &[u8] = record.payload;
                        while !data.is_empty() {
                            if filled < 4 {
                                let n = (4 - filled).min(data.len());
                                header[filled..filled + n].copy_from_slice(&data[..n]);
                                (filled, data) = (filled + n, &data[n..]);
                            } else {
                                let n = (FRAME - got).min(data.len());
                                frame[got..got + n].copy_from_slice(&data[..n]);
                                (got, data) = (got + n, &data[n..]);
                                if got == FRAME {
                                    (filled, got) = (0, 0);
                                }
                            }
                        }
                    }
                    true
                }
                ConnectionState::WriteTraffic(_) => false,
                other => panic!("unexpected while reading: {other:?}"),
            };
            begin += discard;
            if !progressed {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let spent = thread_cpu() - start;
    assert_eq!(frame[FRAME - 1], 0x5a);
    spent
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(256, |n| n.parse().expect("MIB is a number"));
    let (operator, host) = credentials();
    let per_gib = |spent: Duration| spent.as_secs_f64() * 1e3 * 1024.0 / mib as f64;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(per_gib(buffered(&operator, &host, mib)));
        b.push(per_gib(unbuffered(&operator, &host, mib)));
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    println!("| receiver | CPU per GiB received, median of 5 (min–max) |");
    println!("|---|---|");
    println!(
        "| rustls buffered, as tokio-rustls reads it (before bba00c1) | {:.0} ms ({:.0}–{:.0}) |",
        a[2], a[0], a[4]
    );
    println!(
        "| rustls unbuffered, 256 KiB reads, decrypted in place (as common::tls_stream) | {:.0} ms ({:.0}–{:.0}) |",
        b[2], b[0], b[4]
    );
}
