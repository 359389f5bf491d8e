//! What an anonymous WebSocket client can do to the server (issue 18, items 1 and 4), over
//! raw sockets: frames larger than the limit, frames that never complete, and what happens
//! to the TCP connection when a session closes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{START_TIMEOUT, Sandbox, Server, listening_url};
use crate::helpers::*;
use crate::ws::parse_frame;

/// Far longer than any wait below: with it, a connection that only ends when actix-web's
/// disconnect timeout (`REQUEST_TIMEOUT_SECS`) runs out fails the test.
const LONG_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection may take to end after its close frame (nothing waits on a timer).
const PROMPTLY: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket client on a bare TCP socket, sending frames byte for byte as written.
struct RawClient {
    stream: TcpStream,
    /// Bytes read and not yet parsed as frames.
    data: Vec<u8>,
}

/// How a raw client's connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// A close frame with this code, then the end of the connection.
    ClosedWith(u16),
}

impl RawClient {
    async fn connect(address: SocketAddr, path: &str) -> RawClient {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut client = RawClient {
            stream,
            data: Vec::new(),
        };
        // The response head, then `hello`: the session is running.
        let head_end = loop {
            if let Some(pos) = client.data.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            assert!(client.read_more(WAIT).await > 0, "no handshake answer");
        };
        let head = String::from_utf8_lossy(&client.data[..head_end]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        client.data.drain(..head_end);
        let (opcode, hello) = client.next_frame(WAIT).await.expect("hello");
        assert_eq!(opcode, 0x1);
        assert!(String::from_utf8_lossy(&hello).contains("\"hello\""));
        client
    }

    /// Reads once; 0 at the end of the connection (a reset counts as an end too).
    async fn read_more(&mut self, wait: Duration) -> usize {
        let mut buf = [0u8; 65536];
        match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Ok(Ok(n)) => {
                self.data.extend_from_slice(&buf[..n]);
                n
            }
            Ok(Err(_)) => 0,
            Err(_) => panic!("nothing from the server within {wait:?}"),
        }
    }

    /// The next server frame: (opcode, payload); `None` at the end of the connection.
    async fn next_frame(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, len)) = parse_frame(&self.data) {
                let payload = payload.to_vec();
                self.data.drain(..len);
                return Some((opcode, payload));
            }
            if self.read_more(wait).await == 0 {
                return None;
            }
        }
    }

    /// Skips data frames and pings up to the close frame, then expects the end of the
    /// connection within `PROMPTLY`.
    async fn ending(&mut self, wait: Duration) -> Ending {
        let deadline = Instant::now() + wait;
        let code = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some((0x8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
                Some(_) => continue,
                None => panic!("the connection ended without a close frame"),
            }
        };
        let ended_at = Instant::now() + PROMPTLY;
        loop {
            let left = ended_at.saturating_duration_since(Instant::now());
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Ending::ClosedWith(code),
                Ok(Ok(_)) => continue,
                Err(_) => panic!(
                    "close frame {code} came, but the connection was still open {PROMPTLY:?} later"
                ),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
}

/// A masked client frame header (FIN set) declaring `len` payload bytes.
fn client_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut bytes = vec![0x80 | opcode];
    match len {
        0..=125 => bytes.push(0x80 | len as u8),
        126..=0xffff => {
            bytes.push(0x80 | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            bytes.push(0x80 | 127);
            bytes.extend_from_slice(&len.to_be_bytes());
        }
    }
    // A zero mask leaves the payload as written.
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes
}

fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = client_header(opcode, payload.len() as u64);
    bytes.extend_from_slice(payload);
    bytes
}

fn address(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

fn totem(slug: &str) -> String {
    format!("/ws/{slug}/totem")
}

#[actix_web::test]
async fn a_frame_declaring_more_than_the_limit_is_refused_at_its_header_and_the_connection_ends() {
    let app = TestApp::spawn_with(|c| c.request_timeout = LONG_REQUEST_TIMEOUT).await;
    let site = app.site("clinic", 1, 1).await;
    // (case, declared payload length)
    for (case, declared) in [
        ("2^62 bytes", 1u64 << 62),
        ("64 KiB", 65_536),
        ("one over the limit", 4097),
    ] {
        let mut client = RawClient::connect(address(&app), &totem(&site.slug)).await;
        client.send(&client_header(0x1, declared)).await;
        // Only the header: a gate that waited for the payload would never answer.
        assert_eq!(
            client.ending(WAIT).await,
            Ending::ClosedWith(1009),
            "{case}"
        );
    }
    app.wait_for_sessions("clinic", (0, 0)).await;
    // A frame at the limit is still fine.
    let mut client = RawClient::connect(address(&app), &totem(&site.slug)).await;
    let mut ping = br#"{"type":"ping","pad":""#.to_vec();
    ping.resize(4096 - 2, b'x');
    ping.extend_from_slice(b"\"}");
    client.send(&client_frame(0x1, &ping)).await;
    loop {
        let (opcode, payload) = client.next_frame(WAIT).await.expect("an answer");
        if opcode == 0x1 && String::from_utf8_lossy(&payload).contains("\"pong\"") {
            break;
        }
    }
}

#[actix_web::test]
async fn a_frame_that_never_completes_closes_its_session_with_1008() {
    let app = TestApp::spawn_with(|c| {
        c.request_timeout = Duration::from_secs(1);
        // Pings and the client timeout must not be what ends it.
        c.heartbeat_interval = Duration::from_secs(60);
        c.client_timeout = Duration::from_secs(600);
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let mut client = RawClient::connect(address(&app), &totem(&site.slug)).await;
    // 10 bytes of a 100-byte frame, then a byte now and then: never complete.
    let mut frame = client_header(0x1, 100);
    frame.extend_from_slice(b"{\"type\":\"p");
    client.send(&frame).await;
    let trickle = async {
        for _ in 0..20 {
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            if client.stream.write_all(b"i").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    assert_eq!(client.ending(WAIT).await, Ending::ClosedWith(1008));
    app.wait_for_sessions("clinic", (0, 0)).await;
}

#[actix_web::test]
async fn the_connection_ends_right_after_the_close_frame_whoever_closes() {
    let app = TestApp::spawn_with(|c| c.request_timeout = LONG_REQUEST_TIMEOUT).await;
    let site = app.site("clinic", 1, 1).await;

    // The server closes: a fragmented message is refused with 1003.
    let mut client = RawClient::connect(address(&app), &totem(&site.slug)).await;
    client
        .send(&{
            let mut first = client_frame(0x1, b"{\"type\"");
            first[0] &= 0x7f; // not the final fragment
            first
        })
        .await;
    client.send(&client_frame(0x0, b":\"ping\"}")).await;
    assert_eq!(client.ending(WAIT).await, Ending::ClosedWith(1003));

    // The client closes, and does not close its side of TCP: the server does, at once.
    let mut client = RawClient::connect(address(&app), &totem(&site.slug)).await;
    client
        .send(&client_frame(0x8, &1000u16.to_be_bytes()))
        .await;
    assert_eq!(client.ending(WAIT).await, Ending::ClosedWith(1000));
    app.wait_for_sessions("clinic", (0, 0)).await;
}

/// The server's side of the TCP connection from `client` to `server`, as the kernel lists
/// it: its state (hex, as in /proc/net/tcp), or `None` once it is gone.
fn server_side_state(server: SocketAddr, client: SocketAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let hex = |a: SocketAddr| {
        let std::net::IpAddr::V4(ip) = a.ip() else {
            panic!("IPv4 only")
        };
        format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), a.port())
    };
    let (local, remote) = (hex(server), hex(client));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[1] == local && fields[2] == remote).then(|| fields[3].to_owned())
    })
}

#[actix_web::test]
async fn a_client_that_stops_reading_loses_its_connection_not_just_its_session() {
    let send_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(|c| {
        c.send_timeout = send_timeout;
        c.request_timeout = LONG_REQUEST_TIMEOUT;
    })
    .await;
    // Many services make every queue_update several kilobytes, to fill buffers quickly.
    let site = app.site("clinic", 26, 1).await;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&address(&app).into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let stream = TcpStream::from_std(socket.into()).unwrap();
    let client_address = stream.local_addr().unwrap();
    let mut stalled = RawClient {
        stream,
        data: Vec::new(),
    };
    stalled
        .send(
            format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                totem(&site.slug)
            )
            .as_bytes(),
        )
        .await;
    app.wait_for_sessions("clinic", (1, 0)).await;
    assert!(server_side_state(address(&app), client_address).is_some());

    // Changes until the session is gone, however it went (dropped by the hub as too slow,
    // or its connection aborted by the send timeout): it reads nothing at all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut made = 0;
    while app.session_counts("clinic").await != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "the session stayed after {made} changes"
        );
        for _ in 0..20 {
            app.post(
                &format!("/api/v1/tenants/{}/tickets", site.slug),
                Some(&site.operator),
                json!({ "service_id": site.services[made % 26] }),
            )
            .await
            .expect(201);
            made += 1;
        }
    }
    // And the connection with it, within the send timeout and the kernel's last probe.
    let deadline = Instant::now() + send_timeout + WAIT;
    while let Some(state) = server_side_state(address(&app), client_address) {
        assert!(
            Instant::now() < deadline,
            "the server still holds the connection of a client that reads nothing (state {state})"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The probe's attack on the release binary: four anonymous connections declare frames of
/// 2^62 bytes and stream data for two seconds; four more send valid frames at the size limit
/// as fast as they can without reading anything. Before the gate, the first four took the
/// release binary from 14 MB to over 1 GB in one second (this debug build, slower, to 90 MB).
#[test]
fn streaming_frames_at_the_server_does_not_grow_its_memory() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.nextup(&["serve", "--demo"]);
    command.env("RUST_LOG", "warn");
    let server = Server::start(command);
    let lines = server.read_until(Instant::now() + START_TIMEOUT, |l| {
        l.contains("listening on")
    });
    let base = listening_url(lines.last().unwrap());
    let address: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let pid = server.child.id();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Warm up: a session of each kind, so the baseline includes a running hub.
        drop(RawClient::connect(address, "/ws/demo/totem").await);
        let before = rss_kib(pid);

        let chunk = vec![b'x'; 64 * 1024];
        let mut attackers = Vec::new();
        for i in 0..8 {
            let chunk = chunk.clone();
            attackers.push(tokio::spawn(async move {
                let mut client = RawClient::connect(address, "/ws/demo/totem").await;
                let until = Instant::now() + Duration::from_secs(2);
                let mut sent = 0usize;
                if i < 4 {
                    if client
                        .stream
                        .write_all(&client_header(0x1, 1 << 62))
                        .await
                        .is_err()
                    {
                        return sent;
                    }
                    while Instant::now() < until {
                        match tokio::time::timeout(
                            Duration::from_millis(100),
                            client.stream.write_all(&chunk),
                        )
                        .await
                        {
                            Ok(Ok(())) => sent += chunk.len(),
                            Ok(Err(_)) => break,
                            Err(_) => {}
                        }
                    }
                } else {
                    let frame = client_frame(0x1, &vec![b' '; 4096]);
                    while Instant::now() < until {
                        match tokio::time::timeout(
                            Duration::from_millis(100),
                            client.stream.write_all(&frame),
                        )
                        .await
                        {
                            Ok(Ok(())) => sent += frame.len(),
                            Ok(Err(_)) => break,
                            Err(_) => {}
                        }
                    }
                }
                sent
            }));
        }
        let mut sent = 0;
        for attacker in attackers {
            sent += attacker.await.unwrap();
        }
        let after = rss_kib(pid);
        let grown_mib = after.saturating_sub(before) / 1024;
        eprintln!(
            "server RSS {before} → {after} KiB while clients sent {} MiB",
            sent / (1024 * 1024)
        );
        assert!(
            grown_mib < 16,
            "the server grew by {grown_mib} MiB ({before} → {after} KiB) while clients sent {} MiB",
            sent / (1024 * 1024)
        );
    });
    let log = server.log();
    assert!(!log.contains("panicked"), "the server panicked: {log}");
}
