//! Live updates over WebSocket (contract §5), with real clients against the real server.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::Duration;

use actix_web::http::Method;
use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket client that answers pings unless told not to.
pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    pub answer_pings: bool,
    /// Every text frame received, raw.
    pub raw: Vec<String>,
}

pub enum Received {
    Json(Value),
    Closed(Option<u16>),
}

impl WsClient {
    pub async fn connect(app: &TestApp, path: &str) -> WsClient {
        Self::connect_url(&app.url(path).replacen("http", "ws", 1)).await
    }

    /// Connects to a full `ws://` URL (through a proxy, say).
    pub async fn connect_url(url: &str) -> WsClient {
        let (_, framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(16 * 1024 * 1024)
            .connect()
            .await
            .expect("WebSocket connects");
        WsClient {
            framed,
            answer_pings: true,
            raw: Vec::new(),
        }
    }

    pub async fn receive(&mut self) -> Received {
        loop {
            let frame = actix_web::rt::time::timeout(WAIT, self.framed.next())
                .await
                .expect("a frame within the wait")
                .map(|f| f.expect("a valid frame"));
            match frame {
                None => return Received::Closed(None),
                Some(Frame::Text(bytes)) => {
                    let text = String::from_utf8(bytes.to_vec()).unwrap();
                    let value = serde_json::from_str(&text).expect("JSON text frames");
                    self.raw.push(text);
                    return Received::Json(value);
                }
                Some(Frame::Ping(payload)) => {
                    if self.answer_pings {
                        self.framed.send(Message::Pong(payload)).await.unwrap();
                    }
                }
                Some(Frame::Close(reason)) => {
                    return Received::Closed(reason.map(|r| u16::from(r.code)));
                }
                Some(_) => {}
            }
        }
    }

    /// The next JSON message; panics if the session closes.
    pub async fn next(&mut self) -> Value {
        match self.receive().await {
            Received::Json(value) => value,
            Received::Closed(code) => {
                panic!("session closed ({code:?}) while a message was expected")
            }
        }
    }

    /// The next message that has a `seq` (skips pongs and errors).
    pub async fn next_event(&mut self) -> Value {
        loop {
            let message = self.next().await;
            if message.get("seq").is_some() {
                return message;
            }
        }
    }

    /// Reads until the session closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.receive().await {
                return code;
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// `hello` then `snapshot`; returns (hello data, snapshot message).
    pub async fn start(&mut self) -> (Value, Value) {
        let hello = self.next().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert!(hello.get("seq").is_none(), "hello has no seq");
        let snapshot = self.next().await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        (hello["data"].clone(), snapshot)
    }
}

fn totem(site: &Site) -> String {
    format!("/ws/{}/totem", site.slug)
}

fn operator(site: &Site, token: &str) -> String {
    format!("/ws/{}/operator?token={token}", site.slug)
}

/// Reads `n` changes (ticket_update + queue_update each) and checks their pairing.
async fn changes(client: &mut WsClient, n: usize) -> Vec<Value> {
    let mut updates = Vec::new();
    for _ in 0..n {
        let update = client.next_event().await;
        let queue = client.next_event().await;
        assert_eq!(update["type"], "ticket_update", "{update}");
        assert_eq!(queue["type"], "queue_update", "{queue}");
        assert_eq!(
            update["seq"], queue["seq"],
            "both messages of a change carry its seq"
        );
        updates.push(update);
    }
    updates
}

fn seqs(updates: &[Value]) -> Vec<i64> {
    updates.iter().map(|u| u["seq"].as_i64().unwrap()).collect()
}

#[actix_web::test]
async fn handshakes_are_refused_with_the_json_error_body() {
    let app = TestApp::spawn().await;
    let clinic = app.site("clinic", 1, 1).await;
    let other = app.site("other", 1, 1).await;
    let upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let cases = [
        (
            "totem of an unknown tenant",
            "/ws/nowhere/totem".to_owned(),
            404,
            "tenant_not_found",
        ),
        (
            "operator without a token",
            "/ws/clinic/operator".to_owned(),
            401,
            "missing_token",
        ),
        (
            "operator with a bad token",
            "/ws/clinic/operator?token=nope".to_owned(),
            401,
            "invalid_token",
        ),
        (
            "operator with an expired token",
            operator(&clinic, &expired_token("clinic")),
            401,
            "token_expired",
        ),
        (
            "operator with another tenant's token",
            operator(&clinic, &other.operator),
            403,
            "wrong_tenant",
        ),
    ];
    for (case, path, status, code) in cases {
        let reply = app.send(Method::GET, &path, None, &upgrade, None).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.raw);
        assert_eq!(reply.body["error"]["code"], code, "{case}");
    }
}

#[actix_web::test]
async fn a_session_starts_with_hello_and_a_snapshot_in_its_projection() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    app.post(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        Some(&site.operator),
        json!({ "service_id": site.services[0], "customer_name": "Joana Private" }),
    )
    .await
    .expect(201);

    let mut kiosk = WsClient::connect(&app, &totem(&site)).await;
    let (hello, snapshot) = kiosk.start().await;
    assert_eq!(hello["audience"], "totem");
    assert_eq!(hello["seq"], 1);
    assert_eq!(hello["heartbeat_interval_secs"], 15);
    assert!(hello["session_id"].is_string());
    assert_eq!(snapshot["seq"], 1);
    assert_eq!(snapshot["data"]["waiting"][0]["code"], "A001");
    assert!(
        !kiosk.raw.concat().contains("Joana"),
        "totems never see customer names"
    );

    let mut desk = WsClient::connect(&app, &operator(&site, &site.operator)).await;
    let (hello, snapshot) = desk.start().await;
    assert_eq!(hello["audience"], "operator");
    assert_eq!(
        snapshot["data"]["waiting"][0]["customer_name"],
        "Joana Private"
    );
}

#[actix_web::test]
async fn every_action_sends_a_ticket_update_then_a_queue_update() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    let mut kiosk = WsClient::connect(&app, &totem(&site)).await;
    kiosk.start().await;

    let ticket = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &ticket, "recall").await.expect(200);
    app.act(&site, &ticket, "no-show").await.expect(200);
    app.act(&site, &ticket, "reactivate").await.expect(200);
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &ticket, "start").await.expect(200);
    app.post(
        &format!(
            "/api/v1/tenants/{}/tickets/{}/transfer",
            site.slug,
            ticket["id"].as_str().unwrap()
        ),
        Some(&site.operator),
        json!({ "service_id": site.services[1] }),
    )
    .await
    .expect(200);
    app.act(&site, &ticket, "cancel").await.expect(200);
    app.act(&site, &ticket, "reactivate").await.expect(200);
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &ticket, "start").await.expect(200);
    app.act(&site, &ticket, "finish").await.expect(200);

    let updates = changes(&mut kiosk, 13).await;
    assert_eq!(seqs(&updates), (1..=13).collect::<Vec<_>>());
    let actions: Vec<_> = updates
        .iter()
        .map(|u| u["data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "issued",
            "called",
            "recalled",
            "no_show",
            "reactivated",
            "called",
            "started",
            "transferred",
            "cancelled",
            "reactivated",
            "called",
            "started",
            "finished"
        ]
    );
    assert_eq!(updates[7]["data"]["previous_status"], "serving");
    assert_eq!(updates[7]["data"]["ticket"]["service"]["code"], "B");
    assert_eq!(updates[12]["data"]["ticket"]["status"], "done");

    // The stream matches the polling endpoint exactly.
    let polled = app.public_event_log(&site).await;
    let streamed: Vec<Value> = kiosk
        .raw
        .iter()
        .skip(2)
        .map(|raw| serde_json::from_str(raw).unwrap())
        .collect();
    assert_eq!(polled["events"].as_array().unwrap(), &streamed);
}

#[actix_web::test]
async fn thirty_changes_arrive_gapless_and_in_order_on_totem_and_operator_sessions() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    let mut kiosk = WsClient::connect(&app, &totem(&site)).await;
    let mut desk = WsClient::connect(&app, &operator(&site, &site.operator)).await;
    kiosk.start().await;
    desk.start().await;
    // Concurrent writers: the hub must still deliver in seq order.
    futures_util::future::join_all((0..30).map(|i| app.issue(&site, i % 2))).await;
    for client in [&mut kiosk, &mut desk] {
        let updates = changes(client, 30).await;
        assert_eq!(seqs(&updates), (1..=30).collect::<Vec<_>>());
        let codes: HashSet<_> = updates
            .iter()
            .map(|u| u["data"]["ticket"]["code"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(codes.len(), 30);
    }
}

#[actix_web::test]
async fn a_resumed_session_gets_exactly_the_missed_changes_then_live_ones() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let mut first = WsClient::connect(&app, &totem(&site)).await;
    first.start().await;
    for _ in 0..5 {
        app.issue(&site, 0).await;
    }
    let seen = changes(&mut first, 5).await;
    let last = seen.last().unwrap()["seq"].as_i64().unwrap();
    drop(first);

    // Changes keep happening while the client is away and while it reconnects.
    let writer = async {
        for _ in 0..20 {
            app.issue(&site, 0).await;
        }
    };
    let reader = async {
        let mut again = WsClient::connect(&app, &format!("{}?since={last}", totem(&site))).await;
        let hello = again.next().await;
        assert_eq!(hello["type"], "hello");
        again
    };
    let ((), mut again) = futures_util::future::join(writer, reader).await;
    let updates = changes(&mut again, 20).await;
    assert_eq!(
        seqs(&updates),
        (6..=25).collect::<Vec<_>>(),
        "no snapshot, no gap, no duplicate"
    );
    app.issue(&site, 0).await;
    assert_eq!(changes(&mut again, 1).await[0]["seq"], 26);

    // A `since` from the future (a restored database) gets a fresh snapshot.
    let mut future = WsClient::connect(&app, &format!("{}?since=999", totem(&site))).await;
    let (hello, snapshot) = future.start().await;
    assert_eq!(hello["seq"], 26);
    assert_eq!(snapshot["seq"], 26);
}

#[actix_web::test]
async fn pings_get_pongs_and_garbage_gets_an_error_without_closing() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let mut kiosk = WsClient::connect(&app, &totem(&site)).await;
    kiosk.start().await;
    kiosk.send_text(r#"{"type":"ping"}"#).await;
    let pong = kiosk.next().await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["data"], json!({}));
    assert!(pong.get("seq").is_none());
    for garbage in ["not json", r#"{"type":"subscribe"}"#, "[1,2]"] {
        kiosk.send_text(garbage).await;
        let error = kiosk.next().await;
        assert_eq!(error["type"], "error", "{garbage}");
        assert!(error["data"]["code"].is_string() && error["data"]["message"].is_string());
    }
    // Still open and live.
    app.issue(&site, 0).await;
    assert_eq!(changes(&mut kiosk, 1).await[0]["seq"], 1);
}

#[actix_web::test]
async fn an_oversized_frame_closes_the_session_with_1009() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let mut kiosk = WsClient::connect(&app, &totem(&site)).await;
    kiosk.start().await;
    kiosk
        .send_text(&format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(70_000)
        ))
        .await;
    assert_eq!(kiosk.closed().await, Some(1009));
}

#[actix_web::test]
async fn an_operator_session_closes_with_4001_when_its_token_expires() {
    let app = TestApp::spawn_with(|c| c.token_ttl = Duration::from_secs(2)).await;
    // Tokens live 2 s from their login: the setup makes no service or counter with the
    // admin's token, and the operator logs in again right before connecting, so that a
    // slow machine's setup cannot outlast a token before the session opens.
    let site = app.site("clinic", 0, 0).await;
    let token = app.login("clinic", "olga", "olga-password").await;
    let mut desk = WsClient::connect(&app, &operator(&site, &token)).await;
    desk.start().await;
    assert_eq!(desk.closed().await, Some(4001));
    app.wait_for_sessions("clinic", (0, 0)).await;
}

#[actix_web::test]
async fn a_silent_client_is_closed_and_leaves_its_hub() {
    let app = TestApp::spawn_with(|c| {
        c.heartbeat_interval = Duration::from_secs(1);
        c.client_timeout = Duration::from_secs(2);
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let mut silent = WsClient::connect(&app, &totem(&site)).await;
    silent.answer_pings = false;
    let mut alive = WsClient::connect(&app, &totem(&site)).await;
    silent.start().await;
    alive.start().await;
    app.wait_for_sessions("clinic", (2, 0)).await;
    // The live client keeps reading (and so answering pings) the whole time.
    let silent_side = async {
        assert_eq!(silent.closed().await, Some(4000));
        app.wait_for_sessions("clinic", (1, 0)).await;
        app.issue(&site, 0).await;
    };
    let (_, update) = futures_util::future::join(silent_side, alive.next_event()).await;
    assert_eq!(update["type"], "ticket_update");
    assert_eq!(
        update["seq"], 1,
        "the client that answers pings is still served"
    );
}

/// A raw TCP WebSocket client with a tiny receive buffer that reads nothing until told.
struct StalledClient {
    stream: std::net::TcpStream,
}

impl StalledClient {
    fn connect(app: &TestApp, path: &str) -> StalledClient {
        let address: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&address.into()).unwrap();
        let mut stream: std::net::TcpStream = socket.into();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        StalledClient { stream }
    }

    /// Reads frames until a close frame; returns its code.
    fn read_until_close(&mut self) -> u16 {
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 65536];
        // Skip the HTTP response head.
        let mut start = loop {
            let n = self
                .stream
                .read(&mut buf)
                .expect("reading the stalled socket");
            assert!(n > 0, "connection closed without a close frame");
            data.extend_from_slice(&buf[..n]);
            if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
        };
        loop {
            // Parse as many whole frames as we have.
            while let Some((opcode, payload, len)) = parse_frame(&data[start..]) {
                if opcode == 0x8 {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                start += len;
            }
            let n = self
                .stream
                .read(&mut buf)
                .expect("reading the stalled socket");
            assert!(n > 0, "connection closed without a close frame");
            data.extend_from_slice(&buf[..n]);
        }
    }
}

/// One unmasked server frame at the start of `data`: (opcode, payload, total length).
pub fn parse_frame(data: &[u8]) -> Option<(u8, &[u8], usize)> {
    if data.len() < 2 {
        return None;
    }
    let opcode = data[0] & 0x0f;
    let (len, offset) = match data[1] & 0x7f {
        126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as usize, 4),
        127 if data.len() >= 10 => (
            u64::from_be_bytes(data[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let end = offset + len;
    (data.len() >= end).then(|| (opcode, &data[offset..end], end))
}

#[actix_web::test]
async fn a_client_that_never_reads_is_closed_while_others_keep_receiving() {
    // The stalled client reads its close frame at the end; a send timeout shorter than the
    // test would abort its connection first (`ws_hardening` tests that).
    let app = TestApp::spawn_with(|c| c.send_timeout = Duration::from_secs(600)).await;
    // Many services make every queue_update several kilobytes, to fill buffers quickly.
    let site = app.site("clinic", 26, 1).await;
    let mut stalled = StalledClient::connect(&app, &totem(&site));
    let mut reader = WsClient::connect(&app, &totem(&site)).await;
    reader.start().await;
    app.wait_for_sessions("clinic", (2, 0)).await;

    let changes_made = 600;
    let writer = async {
        for i in 0..changes_made {
            app.post(
                &format!("/api/v1/tenants/{}/tickets", site.slug),
                Some(&site.operator),
                json!({ "service_id": site.services[i % 26] }),
            )
            .await
            .expect(201);
        }
    };
    let reading = async {
        let updates = changes(&mut reader, changes_made).await;
        assert_eq!(
            seqs(&updates),
            (1..=changes_made as i64).collect::<Vec<_>>()
        );
    };
    futures_util::future::join(writer, reading).await;
    // The stalled session was dropped from the fan-out; the reader was not delayed.
    app.wait_for_sessions("clinic", (1, 0)).await;
    let code = actix_web::rt::task::spawn_blocking(move || stalled.read_until_close())
        .await
        .unwrap();
    assert_eq!(code, 1013);
}

#[actix_web::test]
async fn a_change_through_one_instance_reaches_sessions_of_another_even_after_its_listener_dies() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let site = a.site("clinic", 1, 1).await;
    let mut on_b = WsClient::connect(&b, &totem(&site)).await;
    on_b.start().await;
    b.wait_for_listener().await;

    for _ in 0..5 {
        a.issue(&site, 0).await;
    }
    assert_eq!(seqs(&changes(&mut on_b, 5).await), [1, 2, 3, 4, 5]);

    // Kill B's listener connection; changes made meanwhile must still arrive, in order.
    let pid = b.hubs.listener_backend_pid();
    let killed: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&a.pool)
        .await
        .unwrap();
    assert!(killed);
    for _ in 0..5 {
        a.issue(&site, 0).await;
    }
    assert_eq!(seqs(&changes(&mut on_b, 5).await), [6, 7, 8, 9, 10]);
    assert_ne!(
        b.hubs.listener_backend_pid(),
        pid,
        "B reconnected its listener"
    );
    a.issue(&site, 0).await;
    assert_eq!(seqs(&changes(&mut on_b, 1).await), [11]);
    // B learned every change from the database, A's hub had none to read.
    let reads = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("nextup_hub_log_reads_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap()
    };
    assert!(reads(b.get("/metrics", None).await.raw) >= 1.0);
    assert_eq!(reads(a.get("/metrics", None).await.raw), 0.0);
}

#[actix_web::test]
async fn raw_totem_frames_never_contain_personal_data() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    let mut kiosk = WsClient::connect(&app, &totem(&site)).await;
    kiosk.start().await;
    let ticket = app
        .post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            Some(&site.operator),
            json!({ "service_id": site.services[0], "customer_name": "Carlos Confidential" }),
        )
        .await
        .expect(201);
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &ticket, "start").await.expect(200);
    changes(&mut kiosk, 3).await;
    let all = kiosk.raw.concat();
    assert!(!all.contains("Confidential"), "{all}");
    assert!(
        !all.contains("customer_name") && !all.contains("olga"),
        "{all}"
    );
}

/// The raw `ticket_update` and `queue_update` frames a client received, in order.
fn change_frames(client: &WsClient) -> Vec<String> {
    client
        .raw
        .iter()
        .filter(|raw| {
            let message: Value = serde_json::from_str(raw).unwrap();
            message["type"] == "ticket_update" || message["type"] == "queue_update"
        })
        .cloned()
        .collect()
}

#[actix_web::test]
async fn replayed_and_other_process_frames_are_the_live_ones_byte_for_byte() {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let site = a.site("clinic", 2, 1).await;
    // Live on the process that commits the changes, and on one that reads them from the log.
    let mut live = Vec::new();
    for app in [&a, &b] {
        for path in [totem(&site), operator(&site, &site.operator)] {
            let mut client = WsClient::connect(app, &path).await;
            client.start().await;
            live.push(client);
        }
    }
    b.wait_for_listener().await;

    let named = a
        .post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            Some(&site.operator),
            json!({ "service_id": site.services[0], "customer_name": "Joana Lima",
                    "priority": "priority" }),
        )
        .await
        .expect(201);
    let other = a.issue(&site, 1).await;
    a.call_next(&site, 0).await.expect(200);
    for action in ["recall", "start", "finish"] {
        a.act(&site, &named, action).await.expect(200);
    }
    a.act(&site, &other, "cancel").await.expect(200);
    a.act(&site, &other, "reactivate").await.expect(200);
    let count = 8;
    for client in &mut live {
        changes(client, count).await;
    }
    let [a_totem, a_operator, b_totem, b_operator] = [0, 1, 2, 3].map(|i| change_frames(&live[i]));
    assert_eq!(a_totem.len(), 2 * count);
    assert!(a_operator.concat().contains("Joana Lima"));
    assert_eq!(b_totem, a_totem, "totem frames read from the log");
    assert_eq!(b_operator, a_operator, "operator frames read from the log");

    for (path, expected) in [
        (format!("{}?since=0", totem(&site)), &a_totem),
        (
            format!("{}&since=0", operator(&site, &site.operator)),
            &a_operator,
        ),
    ] {
        let mut again = WsClient::connect(&b, &path).await;
        assert_eq!(again.next().await["type"], "hello");
        changes(&mut again, count).await;
        assert_eq!(&change_frames(&again), expected, "replayed on {path}");
    }

    let log_path = format!("/api/v1/tenants/{}/events?since=0", site.slug);
    for (token, expected) in [
        (None, &a_totem),
        (Some(site.operator.as_str()), &a_operator),
    ] {
        let log = a.get(&log_path, token).await;
        assert!(
            log.raw.contains(&expected.join(",")),
            "GET …/events lists the frames as sent: {}",
            log.raw
        );
        let listed = log.expect(200)["events"].as_array().unwrap().len();
        assert_eq!(listed, 2 * count);
    }
}
