//! Raw bytes at an agent over a plain `TcpStream`: garbage, an oversized length prefix, half
//! frames, silence and a forged proof. Each time the agent must drop that connection (we see
//! EOF or a reset within a deadline), stay alive, and still serve a normal `ctl run`.
//!
//! Frames are a 4-byte big-endian length and a payload; the client speaks first with
//! `"MSTR" | version | 32-byte nonce` (see common/src/auth.rs).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{connect_and_send, Agent, Fleet};

/// The agent's handshake timeout in these tests, in seconds.
const HANDSHAKE_TIMEOUT_S: &str = "1";
/// How long we give the agent to drop a connection it should drop.
const DROP_DEADLINE: Duration = Duration::from_secs(10);

/// A fleet with one agent whose handshake timeout is short, and `web1` pointing at it.
fn fleet_with_strict_agent() -> (Fleet, Agent) {
    let fleet = Fleet::new();
    let agent = Agent::builder(&fleet.key())
        .flags(&["--handshake-timeout", HANDSHAKE_TIMEOUT_S])
        .start();
    fleet.write_inventory(&[("web1", agent.addr())], &[]);
    (fleet, agent)
}

/// A frame: 4-byte big-endian length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// A well-formed ClientHello frame.
fn client_hello() -> Vec<u8> {
    let mut payload = b"MSTR".to_vec();
    payload.push(common::PROTOCOL_VERSION);
    payload.extend_from_slice(&[0x5a; 32]);
    frame(&payload)
}

/// Reads (and discards whatever the agent says) until the agent closes or resets the
/// connection; panics if it is still open after [`DROP_DEADLINE`]. Returns what was read.
fn expect_dropped(mut stream: TcpStream, what: &str) -> Vec<u8> {
    let deadline = Instant::now() + DROP_DEADLINE;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(
                    Instant::now() < deadline,
                    "the agent kept the connection open for {DROP_DEADLINE:?} after {what}"
                );
            }
            // A reset also means the agent dropped us.
            Err(_) => return received,
        }
    }
}

/// The agent is alive and a normal run through it still works.
fn assert_still_serves(fleet: &Fleet, agent: &mut Agent) {
    agent.assert_running();
    let out = fleet
        .ctl("run")
        .args(&["-H", "web1", "echo", "fine"])
        .output();
    out.assert_code(0);
    assert_eq!(
        out.stdout(),
        "web1: fine\n",
        "agent stderr:\n{}",
        agent.stderr()
    );
    agent.assert_running();
}

#[test]
fn garbage_bytes_are_dropped_and_the_agent_keeps_serving() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let http = connect_and_send(agent.addr(), b"GET / HTTP/1.1\r\nHost: web1\r\n\r\n");
    expect_dropped(http, "an HTTP request");
    let not_a_hello = connect_and_send(agent.addr(), &frame(b"hello, agent"));
    let answer = expect_dropped(not_a_hello, "a frame that is not a hello");
    assert!(answer.is_empty(), "the agent answered garbage: {answer:?}");

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn an_oversized_length_prefix_is_dropped_without_allocating() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let mut bytes = vec![0xff, 0xff, 0xff, 0xff];
    bytes.extend_from_slice(b"MSTR\x01");
    let stream = connect_and_send(agent.addr(), &bytes);
    expect_dropped(stream, "a length prefix of 0xFFFFFFFF");
    let just_over = connect_and_send(agent.addr(), &(1024 * 1024 + 1u32).to_be_bytes());
    expect_dropped(just_over, "a length prefix of 1 MiB + 1");

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_half_frame_then_close_is_dropped() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let hello = client_hello();
    let stream = connect_and_send(agent.addr(), &hello[..hello.len() / 2]);
    stream.shutdown(Shutdown::Write).unwrap();
    expect_dropped(stream, "half a frame and end of stream");

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_half_frame_then_silence_is_dropped_after_the_handshake_timeout() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let hello = client_hello();
    let stream = connect_and_send(agent.addr(), &hello[..hello.len() / 2]);
    expect_dropped(stream, "half a frame and silence");

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let stream = TcpStream::connect(agent.addr()).unwrap();
    let started = Instant::now();
    expect_dropped(stream, "connecting and sending nothing");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "dropped after {:?}, before the 1 s handshake timeout",
        started.elapsed()
    );

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_hello_then_silence_is_dropped_after_the_handshake_timeout() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let stream = connect_and_send(agent.addr(), &client_hello());
    let answer = expect_dropped(stream, "a hello and no proof");
    assert!(
        answer.starts_with(&(4u32 + 1 + 32 + 32).to_be_bytes()) && answer[4..8] == *b"MSTR",
        "expected a ServerHello frame first, got {answer:?}"
    );

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_forged_proof_is_rejected_and_dropped() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let mut stream = connect_and_send(agent.addr(), &client_hello());
    let mut server_hello = [0u8; 4 + 4 + 1 + 32 + 32];
    stream.read_exact(&mut server_hello).unwrap();
    stream.write_all(&frame(&[0u8; 32])).unwrap();
    let verdict = expect_dropped(stream, "a forged client proof");
    assert!(
        verdict.is_empty() || verdict == frame(&[0x01]),
        "expected a rejection (or nothing), got {verdict:?}"
    );

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn stalled_connections_do_not_block_a_normal_run() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let hello = client_hello();
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| connect_and_send(agent.addr(), &hello[..3]))
        .collect();
    let started = Instant::now();
    assert_still_serves(&fleet, &mut agent);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a run behind 50 stalled connections took {:?}",
        started.elapsed()
    );
    drop(stalled);
}
