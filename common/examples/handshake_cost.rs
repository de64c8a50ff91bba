//! What one TLS handshake costs each side in CPU, with muster's own TLS settings, and what
//! the alternatives would save: one client config shared by every connection, and TLS 1.3
//! resumption with tickets. Both sides run in this one thread over in-memory buffers, so
//! the figures are CPU only (no network, no scheduler), per handshake, from the thread's
//! CPU clock around each side's calls. BENCHMARKS.md has the figures; bench/README.md says
//! how to run it:
//!
//! ```sh
//! cargo run --release -p muster-common --example handshake_cost [HANDSHAKES]
//! ```

use std::sync::Arc;
use std::time::Duration;

#[path = "support/thread_cpu.rs"]
mod support;

use common::identity::keys::Identity;
use common::tls::{client_config, server_config, Credentials, PresentedKey};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use support::thread_cpu;

/// CPU used by each side in one handshake.
#[derive(Default, Clone, Copy)]
struct Split {
    client: Duration,
    server: Duration,
}

/// Runs `f`, adding the CPU it used to `total`.
fn timed<T>(total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = thread_cpu();
    let got = f();
    *total += thread_cpu() - start;
    got
}

/// One full exchange until both sides are done; `make_client` is timed on the client's
/// side (ctl makes a config per connection).
fn handshake(make_client: impl FnOnce() -> Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Split {
    let mut split = Split::default();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut client = timed(&mut split.client, || {
        ClientConnection::new(make_client(), name).expect("a client")
    });
    let mut server = timed(&mut split.server, || {
        ServerConnection::new(Arc::clone(server)).expect("a server")
    });
    let mut wire = Vec::new();
    while client.is_handshaking() || server.is_handshaking() || client.wants_write() {
        wire.clear();
        timed(&mut split.client, || {
            while client.wants_write() {
                client.write_tls(&mut wire).expect("to memory");
            }
        });
        timed(&mut split.server, || {
            let mut sent = &wire[..];
            while !sent.is_empty() {
                server.read_tls(&mut sent).expect("from memory");
                server.process_new_packets().expect("the client's flight");
            }
        });
        wire.clear();
        timed(&mut split.server, || {
            while server.wants_write() {
                server.write_tls(&mut wire).expect("to memory");
            }
        });
        timed(&mut split.client, || {
            let mut sent = &wire[..];
            while !sent.is_empty() {
                client.read_tls(&mut sent).expect("from memory");
                client.process_new_packets().expect("the server's flight");
            }
        });
    }
    split
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(what: &str, splits: &[Split]) {
    let client = median(splits.iter().map(|s| s.client).collect());
    let server = median(splits.iter().map(|s| s.server).collect());
    println!(
        "| {what} | {} | {:.0} µs | {:.0} µs |",
        splits.len(),
        client.as_secs_f64() * 1e6,
        server.as_secs_f64() * 1e6
    );
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(2000, |n| n.parse().expect("HANDSHAKES is a number"));
    let operator = Credentials::new(Arc::new(Identity::generate("operator"))).expect("signs");
    let host = Credentials::new(Arc::new(Identity::generate("host"))).expect("signs");
    let shipped_server = server_config(&host).expect("a server config");
    let new_client = || {
        client_config(&operator, Arc::new(|_: &_| true), PresentedKey::default())
            .expect("a client config")
    };

    // Resumption (not shipped): tickets from the server, a session cache in the client.
    let mut ticketing = (*server_config(&host).expect("a server config")).clone();
    ticketing.ticketer = rustls::crypto::ring::Ticketer::new().expect("a ticketer");
    ticketing.send_tls13_tickets = 1;
    let ticketing = Arc::new(ticketing);
    let mut resuming = (*new_client()).clone();
    resuming.resumption = rustls::client::Resumption::in_memory_sessions(256);
    let resuming = Arc::new(resuming);
    handshake(|| Arc::clone(&resuming), &ticketing);
    let shared = new_client();

    // The variants take turns, so that a slower stretch of the machine hits all of them.
    let (mut cold, mut reused, mut resumed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..count {
        // As shipped: a client config per connection, full handshake, no tickets.
        cold.push(handshake(new_client, &shipped_server));
        // One client config for every connection.
        reused.push(handshake(|| Arc::clone(&shared), &shipped_server));
        resumed.push(handshake(|| Arc::clone(&resuming), &ticketing));
    }

    println!("| handshake | count | client (ctl) CPU, median | server (agent) CPU, median |");
    println!("|---|---|---|---|");
    report("full, a client config per connection (as shipped)", &cold);
    report("full, one client config shared", &reused);
    report("resumed with a ticket (not shipped)", &resumed);
}
