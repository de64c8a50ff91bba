//! Raw bytes at an agent over a plain `TcpStream`: garbage, a TLS record header announcing
//! more than TLS allows, half a ClientHello, silence, and a client that proves no key. Each
//! time the agent must drop that connection (we see EOF or a reset within a deadline), stay
//! alive, and still serve a normal `ctl run`. Floods of them: thousands of idle connections
//! must cost the agent a bounded number of sockets and memory and not delay a run; many
//! failed handshakes, a bounded number of log lines; and the log folder stays under its cap.
//!
//! Every connection is TLS 1.3 from its first byte (common/src/tls.rs); the ClientHellos
//! here are made by rustls itself, as `ctl` would send them.
//!
//! Then authenticated peers that lie, built from the `common` crate because the real binaries
//! cannot be made to misbehave. A fake agent answers a pull with `..`, an absolute path, or a
//! folder over a link it planted: ctl must refuse and write nothing outside its folder. A fake
//! controller closes a file with another file's SHA-256, asks to keep content the agent does
//! not hold, or closes a file before all of it arrived: the agent must refuse, keep the old
//! file and leave no temporary behind.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::digest::sha256_hex;
use common::message::{EntryKind, Packet, PutFile, Reply, Request};

use crate::util::{
    connect_and_send, files_below, fleet_of, json_of, json_sorted, mode_of, set_mode, temps_in,
    text, wait_until, Agent, Fleet,
};

// ---------------------------------------------------------------------------------------------
// Raw bytes at an agent

/// The agent's handshake timeout in these tests, in seconds.
const HANDSHAKE_TIMEOUT_S: &str = "1";
/// How long we give the agent to drop a connection it should drop.
const DROP_DEADLINE: Duration = Duration::from_secs(10);

/// A fleet with one agent whose handshake timeout is short, and `web1` pointing at it.
fn fleet_with_strict_agent() -> (Fleet, Agent) {
    let fleet = Fleet::new();
    let agent = fleet
        .agent_builder()
        .flags(&["--handshake-timeout", HANDSHAKE_TIMEOUT_S])
        .start();
    fleet.write_inventory(&[("web1", agent.addr())], &[]);
    (fleet, agent)
}

/// A frame: 4-byte big-endian length, then the payload (what muster sends inside TLS;
/// outside it, garbage).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// ctl's TLS settings with `fleet`'s operator identity, trusting whatever host key an agent
/// proves.
fn trusting_client_config(fleet: &Fleet) -> std::sync::Arc<rustls::ClientConfig> {
    let identity = common::identity::keys::Identity::load(&fleet.identity()).expect("loads");
    let credentials = common::tls::Credentials::new(std::sync::Arc::new(identity)).expect("signs");
    common::tls::client_config(
        &credentials,
        std::sync::Arc::new(|_: &_| true),
        common::tls::PresentedKey::default(),
    )
    .expect("a client config")
}

/// The ClientHello `ctl` would send (the first TLS record), made by rustls with `fleet`'s
/// identity.
fn client_hello(fleet: &Fleet) -> Vec<u8> {
    let config = trusting_client_config(fleet);
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut client = rustls::ClientConnection::new(config, name).expect("a client");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("a ClientHello");
    hello
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
    let answer = expect_dropped(not_a_hello, "a muster frame outside TLS");
    // At most a TLS alert record (content type 21), never data.
    assert!(
        answer.is_empty() || answer[0] == 21,
        "the agent answered garbage with {answer:?}"
    );

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_record_longer_than_tls_allows_is_dropped_without_waiting_for_it() {
    // Tried: a handshake record header announcing 65,535 bytes (TLS allows 16,384), then
    // nothing more; and our own frame header of 4 GiB where TLS is expected.
    let (fleet, mut agent) = fleet_with_strict_agent();

    let stream = connect_and_send(agent.addr(), &[0x16, 0x03, 0x01, 0xff, 0xff]);
    let started = Instant::now();
    expect_dropped(stream, "a record header of 65,535 bytes");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "dropped after {:?}: it waited for the record instead of refusing its length",
        started.elapsed()
    );
    let huge = connect_and_send(agent.addr(), &[0xff, 0xff, 0xff, 0xff]);
    expect_dropped(huge, "a length prefix of 0xFFFFFFFF");

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_half_frame_then_close_is_dropped() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let hello = client_hello(&fleet);
    let stream = connect_and_send(agent.addr(), &hello[..hello.len() / 2]);
    stream.shutdown(Shutdown::Write).unwrap();
    expect_dropped(stream, "half a frame and end of stream");

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_half_frame_then_silence_is_dropped_after_the_handshake_timeout() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let hello = client_hello(&fleet);
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
    // Tried: a whole ClientHello, then nothing (no certificate, no Finished).
    let (fleet, mut agent) = fleet_with_strict_agent();

    let stream = connect_and_send(agent.addr(), &client_hello(&fleet));
    let answer = expect_dropped(stream, "a ClientHello and nothing more");
    assert!(
        answer.first() == Some(&0x16),
        "expected the agent's TLS handshake records first, got {answer:?}"
    );

    assert_still_serves(&fleet, &mut agent);
}

#[test]
fn a_client_that_proves_no_key_is_refused_in_the_handshake() {
    // Tried: a TLS 1.3 client with muster's ALPN that trusts the agent but presents no key
    // of its own when the agent asks for one.
    let (fleet, mut agent) = fleet_with_strict_agent();

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServerKey))
        .with_no_client_auth();
    config.alpn_protocols = vec![common::tls::ALPN.to_vec()];
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(agent.addr()).unwrap();
    tcp.set_read_timeout(Some(DROP_DEADLINE)).unwrap();
    let mut tls = rustls::Stream::new(&mut client, &mut tcp);
    let sent = tls.write_all(b"\x00\x00\x00\x01\x00");
    let mut answer = [0u8; 64];
    let got = sent.and_then(|()| tls.read(&mut answer));
    assert!(
        !matches!(got, Ok(n) if n > 0),
        "a client without a key got data from the agent: {got:?}"
    );

    assert_still_serves(&fleet, &mut agent);
}

/// A server verifier for the test client above: it accepts any raw public key.
#[derive(Debug)]
struct AnyServerKey;

impl rustls::client::danger::ServerCertVerifier for AnyServerKey {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[test]
fn stalled_connections_do_not_block_a_normal_run() {
    let (fleet, mut agent) = fleet_with_strict_agent();

    let hello = client_hello(&fleet);
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

/// Raises this process's open-file limit to its hard limit and returns the new soft limit,
/// so a test can hold thousands of sockets.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("can read RLIMIT_NOFILE");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .expect("can raise RLIMIT_NOFILE to its hard limit");
    hard
}

/// How many files and sockets process `pid` has open.
fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count())
}

/// Runs `echo fine` on web1 and returns how long ctl took.
fn timed_run(fleet: &Fleet, agent: &mut Agent) -> Duration {
    let started = Instant::now();
    assert_still_serves(fleet, agent);
    started.elapsed()
}

/// The size of the flood that starved controllers before the agent had a separate pool for
/// handshakes (docs/SECURITY.md, finding 3).
const FLOOD_CONNECTIONS: usize = 5_000;
/// The agent's peak RSS bound behind such floods. The agent holds only a per-source
/// limit's worth of a flood's connections at once, so its peak stays close to an idle
/// agent's; the bound leaves room for noise above the peaks measured and is half of what
/// an agent holding every flood connection reached (docs/SECURITY.md, finding 3, "Measurements").
const FLOOD_PEAK_RSS_KIB: u64 = 32 * 1024;

#[test]
fn five_thousand_idle_connections_from_one_source_do_not_starve_a_run() {
    let _alone = crate::util::heavy_test();
    // Tried: 5,000 connections from 127.0.0.1 (ctl's own address) that send nothing or half
    // a hello and stay open, then a normal run from that address. The agent must drop the
    // older ones to make room, so it holds only a few sockets, stays small, and serves the
    // run at once instead of after a handshake timeout.
    let limit = raise_fd_limit();
    assert!(
        limit >= FLOOD_CONNECTIONS as u64 + 512,
        "RLIMIT_NOFILE hard limit {limit} is too low for {FLOOD_CONNECTIONS} sockets"
    );
    let fleet = Fleet::new();
    let mut agent = fleet.agent_builder().start();
    fleet.write_inventory(&[("web1", agent.addr())], &[]);
    let quiet = timed_run(&fleet, &mut agent);
    let fds_before = open_fds(agent.pid());
    let peak_before = crate::util::peak_rss_kib(agent.pid()).expect("the agent runs");

    let hello = client_hello(&fleet);
    let flood_started = Instant::now();
    let flood: Vec<TcpStream> = (0..FLOOD_CONNECTIONS)
        .map(|i| {
            let mut stream = TcpStream::connect(agent.addr()).expect("can connect to the agent");
            if i % 2 == 1 {
                // The agent may have dropped this one already; that is what we want.
                let _ = stream.write_all(&hello[..hello.len() / 2]);
            }
            stream
        })
        .collect();
    let flood_took = flood_started.elapsed();
    wait_until(
        "the agent has dropped all but a few of the flood's connections",
        DROP_DEADLINE,
        // The newest `--max-startups-per-source` (64) stay until their handshake timeout;
        // the margin is for ones being closed as we look.
        || open_fds(agent.pid()) <= fds_before + 70,
    );
    let flooded = timed_run(&fleet, &mut agent);
    let peak = crate::util::peak_rss_kib(agent.pid()).expect("the agent runs");
    eprintln!(
        "flood: {FLOOD_CONNECTIONS} connections opened in {flood_took:?}; ctl run took \
         {quiet:?} before and {flooded:?} behind them; agent peak RSS {peak} KiB \
         ({peak_before} KiB before), {} fds open ({fds_before} before)",
        open_fds(agent.pid())
    );
    assert!(
        peak < FLOOD_PEAK_RSS_KIB,
        "the agent's peak RSS was {peak} KiB behind {FLOOD_CONNECTIONS} connections, \
         expected under {FLOOD_PEAK_RSS_KIB} KiB"
    );
    drop(flood);
}

/// Connects to `agent` from `source` over and over until `stop` is set (or a bound of
/// connections or time is reached), keeping the newest `held` connections open. Returns
/// how many connections it made.
fn flood_from(
    source: std::net::IpAddr,
    agent: SocketAddr,
    held: usize,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<usize> {
    const MOST: usize = 200_000;
    const LONGEST: Duration = Duration::from_secs(120);
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let started = Instant::now();
            let mut open = std::collections::VecDeque::with_capacity(held);
            let mut made = 0;
            while made < MOST && started.elapsed() < LONGEST && !stop.load(Ordering::SeqCst) {
                let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
                socket
                    .bind(SocketAddr::new(source, 0))
                    .expect("can bind the source");
                let Ok(stream) = socket.connect(agent).await else {
                    continue;
                };
                made += 1;
                if open.len() == held {
                    open.pop_front();
                }
                open.push_back(stream);
            }
            made
        })
    })
}

#[test]
fn a_flood_from_another_address_never_drops_a_controller_mid_handshake() {
    let _alone = crate::util::heavy_test();
    // Tried: a thread connecting from 127.0.0.2 as fast as it can, holding its newest 1,000
    // connections, while ctl (from 127.0.0.1) runs five times. The flooder's source is the
    // one that gives up its oldest, so ctl's handshakes are never cut.
    let fleet = Fleet::new();
    let mut agent = fleet.agent_builder().start();
    fleet.write_inventory(&[("web1", agent.addr())], &[]);
    let quiet = timed_run(&fleet, &mut agent);

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood_from([127, 0, 0, 2].into(), agent.addr(), 1_000, stop.clone());
    let flood_started = Instant::now();
    wait_until("the flood is under way", DROP_DEADLINE, || {
        open_fds(agent.pid()) > 15 || flooder.is_finished()
    });
    let runs: Vec<Duration> = (0..5).map(|_| timed_run(&fleet, &mut agent)).collect();
    stop.store(true, Ordering::SeqCst);
    let made = flooder.join().expect("the flooder does not panic");
    let peak = crate::util::peak_rss_kib(agent.pid()).expect("the agent runs");
    eprintln!(
        "flood from 127.0.0.2: {made} connections in {:?}; ctl run took {quiet:?} before, \
         {runs:?} during; agent peak RSS {peak} KiB",
        flood_started.elapsed()
    );
    assert!(made > 0, "the flood made no connection");
    assert!(
        peak < FLOOD_PEAK_RSS_KIB,
        "the agent's peak RSS was {peak} KiB, expected under {FLOOD_PEAK_RSS_KIB} KiB"
    );
}

/// The interval of the agent's summaries of failed handshakes (agent/src/failure_report.rs).
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

#[test]
fn many_failed_handshakes_make_a_bounded_number_of_log_lines() {
    // Tried: 300 connections, one after the other, that each send a frame that is not a
    // hello and wait to be dropped; then SIGTERM. Every failure must be counted, but in at
    // most one line of its own and one summary line per interval.
    const FAILED: u64 = 300;
    let fleet = Fleet::new();
    let agent = fleet.agent_builder().start();
    let started = Instant::now();
    for _ in 0..FAILED {
        let stream = connect_and_send(agent.addr(), &frame(b"hello, agent"));
        expect_dropped(stream, "a frame that is not a hello");
    }
    agent.terminate();
    let (mut own_lines, mut summaries, mut counted) = (0, 0, 0);
    wait_until(
        "the agent's warnings account for every failed handshake",
        DROP_DEADLINE,
        || {
            let stderr = agent.stderr();
            own_lines = stderr
                .matches("handshake failed, dropping connection")
                .count();
            summaries = 0;
            counted = own_lines as u64;
            for line in stderr
                .lines()
                .filter(|line| line.contains("more handshakes failed"))
            {
                summaries += 1;
                counted += failed_count(line);
            }
            counted == FAILED
        },
    );
    let intervals = started.elapsed().as_secs() / SUMMARY_INTERVAL.as_secs() + 2;
    eprintln!(
        "{FAILED} failed handshakes in {:?}: {own_lines} lines of their own, {summaries} summaries",
        started.elapsed(),
    );
    assert!(
        own_lines as u64 <= intervals && summaries <= intervals,
        "{own_lines} lines of their own and {summaries} summaries for {FAILED} failures in \
         at most {intervals} intervals; stderr:\n{}",
        agent.stderr()
    );
}

#[test]
fn the_log_folder_cap_removes_the_oldest_files_and_keeps_writing() {
    // Tried: five old days of 1,000 bytes each in the log folder, an agent started with a
    // cap of 3,000 bytes, then a failed handshake so that it writes a line today.
    const CAP: u64 = 3_000;
    let fleet = Fleet::new();
    let logs = fleet.path("agent-logs");
    fs::create_dir(&logs).unwrap();
    for day in 1..=5 {
        fs::write(
            logs.join(format!("agent.log.2026-01-0{day}")),
            [b'o'; 1_000],
        )
        .unwrap();
    }
    fs::write(logs.join("notes.txt"), "not a log file").unwrap();
    let agent = fleet
        .agent_builder()
        .flags(&[
            "--log-dir",
            text(&logs),
            "--log-max-bytes",
            &CAP.to_string(),
        ])
        .start();

    let stream = connect_and_send(agent.addr(), &frame(b"hello, agent"));
    expect_dropped(stream, "a frame that is not a hello");
    let mut today = String::new();
    wait_until(
        "the agent logs the failure to today's file",
        DROP_DEADLINE,
        || {
            today = agent_log_files(&logs)
                .last()
                .map(|(name, _)| fs::read_to_string(logs.join(name)).unwrap_or_default())
                .unwrap_or_default();
            today.contains("handshake failed")
        },
    );

    let files = agent_log_files(&logs);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names[..2],
        ["agent.log.2026-01-04", "agent.log.2026-01-05"],
        "the three oldest days go to leave a part (an eighth of the cap) free: {files:?}"
    );
    assert_eq!(names.len(), 3, "{files:?}");
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    assert!(total <= CAP, "{total} bytes of logs, cap {CAP}: {files:?}");
    assert!(
        logs.join("notes.txt").exists(),
        "only log files are removed"
    );
}

/// The agent's log files in `dir` (name and size), oldest first.
fn agent_log_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let len = entry.metadata().ok()?.len();
            name.starts_with("agent.log.").then_some((name, len))
        })
        .collect();
    files.sort();
    files
}

/// The `failed=N` field of a summary line (0 when there is none), colours or not.
fn failed_count(line: &str) -> u64 {
    let mut plain = String::with_capacity(line.len());
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, c) => plain.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    plain
        .split_whitespace()
        .find_map(|field| field.strip_prefix("failed="))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Authenticated peers that lie

/// A fake agent with a host key of its own, recorded as trusted: it serves one connection,
/// answering the first `Get` with `replies`, whatever they say.
fn fake_agent_replying(fleet: &Fleet, replies: Vec<Packet<Reply>>) -> SocketAddr {
    fake_agent_answering_get(fleet, async move |channel| {
        for reply in &replies {
            if channel.send(reply).await.is_err() {
                return;
            }
        }
        // Let ctl read everything before the connection closes.
        let _ = channel.recv::<Request>().await;
    })
}

/// A fake agent that answers a pull with nothing but heartbeats, one every 200 ms, until
/// ctl goes away (or a minute has passed).
fn fake_agent_heartbeating(fleet: &Fleet) -> SocketAddr {
    fake_agent_answering_get(fleet, async |channel| {
        for _ in 0..300 {
            let heartbeat = Packet::Control(Reply::Heartbeat);
            if channel.send(&heartbeat).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The channel a fake agent speaks on.
type FakeAgentChannel =
    common::channel::Channel<common::handshake::ServerStream<tokio::net::TcpStream>>;

/// A fake agent with a host key of its own, which the fleet records as trusted (so
/// `write_inventory` puts it in known_hosts): it serves one connection, from any operator
/// key, and hands it to `answer` once the first `Get` has arrived.
fn fake_agent_answering_get(
    fleet: &Fleet,
    answer: impl AsyncFnOnce(&mut FakeAgentChannel) + Send + 'static,
) -> SocketAddr {
    let host_key = std::sync::Arc::new(common::identity::keys::Identity::generate("fake"));
    let credentials =
        common::tls::Credentials::new(std::sync::Arc::clone(&host_key)).expect("signs");
    let tls = common::tls::server_config(&credentials).expect("TLS");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("can bind");
    listener.set_nonblocking(true).expect("can make it async");
    let addr = listener.local_addr().expect("bound");
    fleet
        .host_keys()
        .record(addr, host_key.public_key().to_openssh());
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let Ok((mut channel, _operator)) = common::handshake::accept(stream, tls).await else {
                return;
            };
            let Ok(Some(Packet::Control(Request::Get { .. }))) = channel.recv::<Request>().await
            else {
                return;
            };
            answer(&mut channel).await;
        });
    });
    addr
}

/// A fake agent answering a pull with one file entry named `entry_path`.
fn fake_agent_sending(fleet: &Fleet, entry_path: String) -> SocketAddr {
    let data = b"written where it must not be\n";
    let replies = vec![
        Packet::Control(Reply::Entry {
            path: entry_path,
            kind: EntryKind::File,
            mode: 0o644,
            size: data.len() as u64,
            target: None,
        }),
        Packet::FileData(Bytes::from_static(data)),
        Packet::Control(Reply::EntryEnd {
            sha256: sha256_hex(data),
        }),
        Packet::Control(Reply::GetDone {
            entries: 1,
            bytes: data.len() as u64,
        }),
    ];
    fake_agent_replying(fleet, replies)
}

#[test]
fn a_pull_refuses_entry_paths_that_leave_the_host_folder() {
    // Tried: two fake agents answer a pull with an entry named `../escape` and one named
    // by an absolute path in the test's folder.
    let fleet = Fleet::new();
    let absolute = fleet.path("absolute-escape");
    let dotdot = fake_agent_sending(&fleet, "../escape".to_owned());
    let rooted = fake_agent_sending(&fleet, absolute.to_str().unwrap().to_owned());
    fleet.write_inventory(&[("dotdot", dotdot), ("rooted", rooted)], &[]);

    let out = fleet
        .ctl("pull")
        .args(&["-g", "all", "--json", "-d", "collected", "app.log"])
        .output();
    out.assert_code(1);
    let results = json_sorted(&out);
    for host in ["dotdot", "rooted"] {
        let result = json_of(&out, &results, host);
        assert_eq!(result["status"], "error", "{host}: {result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(error.contains("unsafe path"), "{host}: {error:?}");
    }
    assert!(!fleet.path("collected/escape").exists());
    assert!(!fleet.path("escape").exists());
    assert!(!absolute.exists());
    assert_eq!(files_below(&fleet.path("collected")), Vec::<PathBuf>::new());
}

#[test]
fn a_folder_entry_over_a_planted_link_is_refused_and_nothing_outside_dest_changes() {
    // Tried: a fake agent answers a pull -r with a link `site` pointing to a folder outside
    // DEST (mode 0700), then a folder entry `site` of mode 0777.
    let fleet = Fleet::new();
    let victim = fleet.path("victim");
    fs::create_dir(&victim).unwrap();
    set_mode(&victim, 0o700);
    let replies = vec![
        Packet::Control(Reply::Entry {
            path: "site".into(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: 0,
            target: Some(text(&victim).to_owned()),
        }),
        Packet::Control(Reply::Entry {
            path: "site".into(),
            kind: EntryKind::Dir,
            mode: 0o777,
            size: 0,
            target: None,
        }),
        Packet::Control(Reply::GetDone {
            entries: 2,
            bytes: 0,
        }),
    ];
    let evil = fake_agent_replying(&fleet, replies);
    fleet.write_inventory(&[("evil", evil)], &[]);

    let out = fleet
        .ctl("pull")
        .args(&["-H", "evil", "--json", "-r", "-d", "collected", "site"])
        .output();
    out.assert_code(1);
    let evil = &json_sorted(&out)["evil"];
    assert_eq!(evil["status"], "error", "{evil}");
    assert!(
        evil["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{evil}"
    );
    assert_eq!(
        mode_of(&victim),
        0o700,
        "the folder outside DEST was not touched"
    );
}

/// The channel a fake controller speaks on.
type ControllerChannel =
    common::channel::Channel<common::handshake::ClientStream<tokio::net::TcpStream>>;

/// Runs `work` against a fresh authenticated connection to `addr`, as a controller would,
/// with the fleet's operator identity (and trusting whatever key the agent proves).
fn as_controller<T>(
    fleet: &Fleet,
    addr: SocketAddr,
    work: impl AsyncFnOnce(&mut ControllerChannel) -> T,
) -> T {
    let tls = trusting_client_config(fleet);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let connect = async {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connects");
            common::handshake::connect(stream, tls, addr.ip(), None)
                .await
                .expect("the agent accepts the operator's key")
        };
        let mut channel = tokio::time::timeout(Duration::from_secs(20), connect)
            .await
            .expect("connected within 20 s");
        tokio::time::timeout(Duration::from_secs(60), work(&mut channel))
            .await
            .expect("the exchange ends within 60 s")
    })
}

/// The agent's next reply other than a heartbeat.
async fn next_reply(channel: &mut ControllerChannel) -> Reply {
    loop {
        match channel.recv::<Reply>().await {
            Ok(Some(Packet::Control(Reply::Heartbeat))) => continue,
            Ok(Some(Packet::Control(reply))) => return reply,
            other => panic!("expected a reply from the agent, got {other:?}"),
        }
    }
}

/// A `PutFile` of `size` bytes to `path`, as ctl would send it.
fn put_file(path: &str, size: usize) -> Packet<Request> {
    Packet::Control(Request::PutFile(PutFile {
        path: path.into(),
        name: String::new(),
        size: size as u64,
        mode: 0o644,
        mkdir: false,
    }))
}

#[test]
fn data_that_does_not_match_the_closing_checksum_is_refused_and_discarded() {
    // Tried: as a controller, PutFile target.txt, send the data, then close it with the
    // SHA-256 of other bytes; then a correct push on the same connection.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = hosts[0].files.clone();
    let dest = files.join("target.txt");
    fs::write(&dest, "old\n").unwrap();
    let data = b"new content\n";
    let chunk = Packet::<Request>::FileData(Bytes::from_static(data));
    let end = |sha256: String| Packet::Control(Request::PutEnd { sha256 });

    let (refused, accepted) = as_controller(&fleet, hosts[0].agent.addr(), async |channel| {
        channel
            .send(&put_file("target.txt", data.len()))
            .await
            .unwrap();
        let ready = next_reply(channel).await;
        assert!(
            matches!(
                ready,
                Reply::PutReady {
                    held_sha256: None,
                    ..
                }
            ),
            "a file of another size is no candidate for keeping: {ready:?}"
        );
        channel.send(&chunk).await.unwrap();
        channel
            .send(&end(sha256_hex(b"other bytes")))
            .await
            .unwrap();
        let refused = next_reply(channel).await;

        channel
            .send(&put_file("target.txt", data.len()))
            .await
            .unwrap();
        let ready = next_reply(channel).await;
        assert!(matches!(ready, Reply::PutReady { .. }), "{ready:?}");
        channel.send(&chunk).await.unwrap();
        channel.send(&end(sha256_hex(data))).await.unwrap();
        (refused, next_reply(channel).await)
    });

    let Reply::Error { message } = refused else {
        panic!("expected an error for the wrong checksum, got {refused:?}");
    };
    assert!(message.contains("checksum mismatch"), "{message:?}");
    assert!(
        matches!(accepted, Reply::PutDone { ref sha256, unchanged: false, .. } if *sha256 == sha256_hex(data)),
        "the connection stays usable: {accepted:?}"
    );
    assert_eq!(fs::read_to_string(&dest).unwrap(), "new content\n");
    assert_eq!(temps_in(&files), Vec::<PathBuf>::new());
}

#[test]
fn a_keep_for_content_the_agent_does_not_hold_is_refused() {
    // Tried: as a controller, PutFile for a destination of the same size as ours (so the
    // agent reports its hash), then PutKeep with the SHA-256 of other bytes of that size.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let dest = hosts[0].files.join("target.txt");
    fs::write(&dest, "held\n").unwrap();
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o600)).unwrap();

    let (ready, answer) = as_controller(&fleet, hosts[0].agent.addr(), async |channel| {
        channel.send(&put_file("target.txt", 5)).await.unwrap();
        let ready = next_reply(channel).await;
        let keep = Request::PutKeep {
            sha256: sha256_hex(b"other"),
        };
        channel.send(&Packet::Control(keep)).await.unwrap();
        (ready, next_reply(channel).await)
    });

    assert!(
        matches!(ready, Reply::PutReady { held_sha256: Some(ref held), .. } if *held == sha256_hex(b"held\n")),
        "{ready:?}"
    );
    let Reply::Error { message } = answer else {
        panic!("expected the keep to be refused, got {answer:?}");
    };
    assert!(message.contains("cannot keep"), "{message:?}");
    assert_eq!(fs::read_to_string(&dest).unwrap(), "held\n");
    assert_eq!(mode_of(&dest), 0o600, "a refused keep changes no mode");
}

#[test]
fn a_file_closed_before_all_its_bytes_arrived_is_dropped_with_the_connection() {
    // Tried: as a controller, PutFile of 12 bytes, send 4, then PutEnd with the hash of
    // those 4. The agent must drop the connection and leave no file and no temporary.
    let (fleet, hosts) = fleet_of(&["web1"]);
    let files = hosts[0].files.clone();

    let after = as_controller(&fleet, hosts[0].agent.addr(), async |channel| {
        channel.send(&put_file("short.txt", 12)).await.unwrap();
        let _ready = next_reply(channel).await;
        let part = Packet::<Request>::FileData(Bytes::from_static(b"only"));
        channel.send(&part).await.unwrap();
        let end = Request::PutEnd {
            sha256: sha256_hex(b"only"),
        };
        channel.send(&Packet::Control(end)).await.unwrap();
        channel.recv::<Reply>().await
    });

    assert!(
        !matches!(after, Ok(Some(_))),
        "the agent answered instead of dropping the connection: {after:?}"
    );
    assert!(!files.join("short.txt").exists());
    wait_until(
        "the temporary file is removed",
        Duration::from_secs(10),
        || temps_in(&files).is_empty(),
    );
}

#[test]
fn a_pull_that_gets_only_heartbeats_ends_as_error_after_the_silence_timeout() {
    // Tried: a fake agent answers a pull with a heartbeat every 200 ms and nothing else,
    // for a minute. Heartbeats keep the connection alive but are not progress: ctl with
    // --silence-timeout 6 ends the host as error, saying so, before the fake stops.
    let fleet = Fleet::new();
    let busy = fake_agent_heartbeating(&fleet);
    fleet.write_inventory(&[("busy", busy)], &[]);
    let out = fleet
        .ctl("pull")
        .args(&[
            "-H",
            "busy",
            "--json",
            "--silence-timeout",
            "6",
            "-d",
            "collected",
            "x",
        ])
        .output();
    out.assert_code(1);
    let result = &json_sorted(&out)["busy"];
    assert_eq!(result["status"], "error", "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    // Not "closed the connection": the fake was still sending heartbeats.
    assert!(error.contains("no progress"), "{error:?}");
}
