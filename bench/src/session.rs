//! WebSocket sessions of the contract (§5): `/ws/{slug}/totem` and `/ws/{slug}/operator`.
//!
//! Two layers:
//! - [`Connection`]: one socket. [`Connection::recv`] returns the next server message as a
//!   [`Frame`] (its `type`, `seq`, ticket id and action, and the instant it was read),
//!   answering protocol pings on the way. Parsing skips everything else in the message
//!   without allocating, so thousands of sessions fit in one process.
//! - [`Session`]: one client across any number of connections. It resumes with
//!   `since=<last seq seen>`, keeps the frames it is told to keep, and checks the contract's
//!   ordering as frames arrive: `hello` first, then a snapshot or the replay, changes in `seq`
//!   order with no gap or duplicate, each `ticket_update` immediately followed by the
//!   `queue_update` of the same `seq`. A snapshot sent to a connection that asked for
//!   `since` is counted apart ([`SessionStats::snapshots_on_resume`]): the changes in between
//!   were not replayed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::api::{ApiError, ChangeAction};

/// Who the session is: a kiosk or display, or an operator console with its token.
#[derive(Debug, Clone)]
pub enum Audience {
    Totem,
    Operator { token: Arc<str> },
}

/// Where a session connects.
#[derive(Debug, Clone)]
pub struct Target {
    ws_base: Arc<str>,
    slug: Arc<str>,
    audience: Audience,
}

impl Target {
    /// `ws_base` is `ws://HOST:PORT`.
    pub fn totem(ws_base: &str, slug: &str) -> Self {
        Self {
            ws_base: ws_base.trim_end_matches('/').into(),
            slug: slug.into(),
            audience: Audience::Totem,
        }
    }

    pub fn operator(ws_base: &str, slug: &str, token: &str) -> Self {
        Self {
            audience: Audience::Operator {
                token: token.into(),
            },
            ..Self::totem(ws_base, slug)
        }
    }

    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    pub fn is_operator(&self) -> bool {
        matches!(self.audience, Audience::Operator { .. })
    }

    /// The session URL; the operator token travels in the `Authorization` header instead.
    pub fn url(&self, since: Option<u64>) -> String {
        let path = match self.audience {
            Audience::Totem => "totem",
            Audience::Operator { .. } => "operator",
        };
        let mut url = format!("{}/ws/{}/{path}", self.ws_base, self.slug);
        if let Some(since) = since {
            url.push_str(&format!("?since={since}"));
        }
        url
    }
}

/// The `type` of a server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    Hello,
    Snapshot,
    TicketUpdate,
    QueueUpdate,
    Pong,
    Error,
    /// Not a JSON message of the contract's shape (or a binary frame).
    #[serde(skip_deserializing)]
    Unparsable,
    /// A type this tool does not know.
    #[serde(other)]
    Other,
}

impl FrameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Hello => "hello",
            FrameKind::Snapshot => "snapshot",
            FrameKind::TicketUpdate => "ticket_update",
            FrameKind::QueueUpdate => "queue_update",
            FrameKind::Pong => "pong",
            FrameKind::Error => "error",
            FrameKind::Other => "other",
            FrameKind::Unparsable => "unparsable",
        }
    }
}

/// What the tools keep of one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// When the message was read from the socket (before parsing).
    pub at: Instant,
    pub kind: FrameKind,
    /// The envelope's `seq` (absent on `hello`, `pong` and `error`).
    pub seq: Option<u64>,
    /// `ticket_update`: `data.ticket.id`.
    pub ticket: Option<Uuid>,
    /// `ticket_update`: `data.action`.
    pub action: Option<ChangeAction>,
    /// `hello`: `data.seq`, the seq the connection's initial state brings the client to.
    pub hello_seq: Option<u64>,
}

impl Frame {
    fn unparsable(at: Instant) -> Self {
        Self {
            at,
            kind: FrameKind::Unparsable,
            seq: None,
            ticket: None,
            action: None,
            hello_seq: None,
        }
    }
}

/// The envelope, reading only the fields the tools use (the rest is skipped unread).
#[derive(Deserialize)]
pub(crate) struct WireFrame {
    #[serde(rename = "type")]
    kind: FrameKind,
    seq: Option<u64>,
    #[serde(default)]
    data: WireData,
}

#[derive(Deserialize, Default)]
struct WireData {
    action: Option<ChangeAction>,
    ticket: Option<WireTicket>,
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct WireTicket {
    id: Uuid,
}

impl WireFrame {
    pub(crate) fn into_frame(self, at: Instant) -> Frame {
        let hello = self.kind == FrameKind::Hello;
        Frame {
            at,
            kind: self.kind,
            seq: self.seq,
            ticket: self.data.ticket.map(|t| t.id),
            action: self.data.action,
            hello_seq: if hello { self.data.seq } else { None },
        }
    }
}

/// Parses one server message; anything not of the contract's shape is `Unparsable`.
pub fn parse_frame(text: &str, at: Instant) -> Frame {
    match serde_json::from_str::<WireFrame>(text) {
        Ok(wire) => wire.into_frame(at),
        Err(_) => Frame::unparsable(at),
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The server sent a Close frame (its code, e.g. 1013 for a slow client).
    Closed { code: u16, reason: String },
    /// The connection broke without a Close frame (1006 to a browser), or a protocol error.
    Broken(String),
    /// This client closed it.
    ClosedByClient,
    /// There was no connection.
    NotConnected,
}

impl End {
    /// A short key for counting: `"close 1013"`, `"broken"`, `"client"`.
    pub fn key(&self) -> String {
        match self {
            End::Closed { code, .. } => format!("close {code}"),
            End::Broken(_) => "broken".to_owned(),
            End::ClosedByClient => "client".to_owned(),
            End::NotConnected => "not_connected".to_owned(),
        }
    }
}

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One open WebSocket.
pub struct Connection {
    ws: WsStream,
}

/// Small buffers: a session reads small messages, and a process may hold thousands.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
}

impl Connection {
    /// Opens a session. A refused handshake gives its status and contract error code
    /// (e.g. 503 `database_unavailable` while PostgreSQL is down).
    pub async fn open(target: &Target, since: Option<u64>) -> Result<Connection, ApiError> {
        let mut request = target
            .url(since)
            .into_client_request()
            .map_err(|e| ws_error(&e))?;
        if let Audience::Operator { token } = &target.audience {
            let value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| ApiError {
                    status: None,
                    code: "bad_token".to_owned(),
                    message: e.to_string(),
                })?;
            request.headers_mut().insert("authorization", value);
        }
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true)
                .await
                .map_err(|e| ws_error(&e))?;
        Ok(Connection { ws })
    }

    /// The next server message; protocol pings are answered on the way.
    /// Cancel-safe: nothing is lost when a `select!` drops it.
    pub async fn recv(&mut self) -> Result<Frame, End> {
        loop {
            let message = self.ws.next().await;
            let at = Instant::now();
            match message {
                None => return Err(End::Broken("connection ended".to_owned())),
                Some(Err(e)) => return Err(End::Broken(e.to_string())),
                Some(Ok(Message::Text(text))) => return Ok(parse_frame(text.as_str(), at)),
                Some(Ok(Message::Binary(_))) => return Ok(Frame::unparsable(at)),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    });
                    return Err(End::Closed { code, reason });
                }
                Some(Ok(_)) => continue, // ping, pong, raw frame
            }
        }
    }

    /// Sends the application-level `{"type":"ping"}` (answered by a `pong` message).
    pub async fn send_ping(&mut self) -> Result<(), End> {
        self.ws
            .send(Message::text(r#"{"type":"ping"}"#))
            .await
            .map_err(|e| End::Broken(e.to_string()))
    }

    /// Closes with 1000 and waits (at most 2 s) for the server's echo.
    pub async fn close(mut self) {
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.ws.close(Some(normal)).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}

fn ws_error(error: &WsError) -> ApiError {
    match error {
        WsError::Http(response) => {
            let body = response.body().as_deref().unwrap_or_default();
            ApiError::from_body(response.status().as_u16(), body)
        }
        WsError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => ApiError {
            status: None,
            code: "connect".to_owned(),
            message: e.to_string(),
        },
        other => ApiError {
            status: None,
            code: "transport".to_owned(),
            message: other.to_string(),
        },
    }
}

/// Which frames a [`Session`] keeps (counts and checks cover every frame regardless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    All,
    /// Only `ticket_update` frames: one per change.
    Changes,
    Nothing,
}

/// What a session saw, across all its connections.
#[derive(Debug, Clone, Default)]
pub struct SessionStats {
    /// Handshakes that succeeded.
    pub connections: u64,
    /// Refused or failed handshakes, by [`ApiError::key`].
    pub handshake_failures: BTreeMap<String, u64>,
    /// How connections ended, by [`End::key`].
    pub ends: BTreeMap<String, u64>,
    pub frames: u64,
    pub hellos: u64,
    pub snapshots: u64,
    pub ticket_updates: u64,
    pub queue_updates: u64,
    pub pongs: u64,
    pub errors: u64,
    pub other: u64,
    /// Snapshots sent to a connection that gave `since`: the changes in between were not
    /// replayed, so they never reached this client as changes.
    pub snapshots_on_resume: u64,
    /// The first few of those, as (`since` asked, seq of the snapshot). The server sends a
    /// snapshot by design when `since` is over 1000 changes behind (websocket.md §5.1).
    pub first_resume_snapshots: Vec<(u64, u64)>,
    /// Breaches of the ordering rules (see the module doc).
    pub violations: u64,
    /// The first few breaches, described.
    pub first_violations: Vec<String>,
}

const MAX_VIOLATIONS_KEPT: usize = 10;

/// One client of the contract across reconnections (see the module doc).
pub struct Session {
    target: Target,
    keep: Keep,
    conn: Option<Connection>,
    /// `since` of the current connection.
    since: Option<u64>,
    /// The seq of the last change (or snapshot) seen: the next connection's `since`.
    last_seq: Option<u64>,
    /// A `ticket_update` whose `queue_update` has not come yet.
    pending_pair: Option<u64>,
    /// Frames of the current connection so far.
    frames_in_connection: u64,
    hello_seq: Option<u64>,
    frames: Vec<Frame>,
    stats: SessionStats,
}

impl Session {
    pub fn new(target: Target, keep: Keep) -> Self {
        Self {
            target,
            keep,
            conn: None,
            since: None,
            last_seq: None,
            pending_pair: None,
            frames_in_connection: 0,
            hello_seq: None,
            frames: Vec::new(),
            stats: SessionStats::default(),
        }
    }

    /// Starts from a known state: the first connection asks for the changes after `seq`.
    pub fn resuming_from(mut self, seq: u64) -> Self {
        self.last_seq = Some(seq);
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The seq of the last change or snapshot seen (the `since` of the next connection).
    /// After a `ticket_update` whose `queue_update` has not come, it is that change's seq:
    /// resuming then continues after it, so no `ticket_update` is received twice.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// `hello.data.seq` of the current connection: the session is up to date once
    /// [`Self::last_seq`] reaches it.
    pub fn hello_seq(&self) -> Option<u64> {
        self.hello_seq
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    pub fn take_frames(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.frames)
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Opens a connection (closing any open one first), with `since` = [`Self::last_seq`].
    pub async fn connect(&mut self) -> Result<(), ApiError> {
        self.disconnect(true).await;
        let since = self.last_seq;
        match Connection::open(&self.target, since).await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.since = since;
                self.pending_pair = None;
                self.frames_in_connection = 0;
                self.hello_seq = None;
                self.stats.connections += 1;
                Ok(())
            }
            Err(e) => {
                *self.stats.handshake_failures.entry(e.key()).or_default() += 1;
                Err(e)
            }
        }
    }

    /// The next frame, recorded and checked. On `Err` the connection is gone; call
    /// [`Self::connect`] to resume. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Frame, End> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(End::NotConnected);
        };
        match conn.recv().await {
            Ok(frame) => {
                self.observe(frame);
                Ok(frame)
            }
            Err(end) => {
                self.conn = None;
                *self.stats.ends.entry(end.key()).or_default() += 1;
                Err(end)
            }
        }
    }

    /// Sends `{"type":"ping"}`; a failure drops the connection.
    pub async fn ping(&mut self) -> Result<(), End> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(End::NotConnected);
        };
        if let Err(end) = conn.send_ping().await {
            self.conn = None;
            *self.stats.ends.entry(end.key()).or_default() += 1;
            return Err(end);
        }
        Ok(())
    }

    /// Ends the connection: with a Close handshake, or by dropping the socket (as a
    /// vanished client would).
    pub async fn disconnect(&mut self, graceful: bool) {
        if let Some(conn) = self.conn.take() {
            *self
                .stats
                .ends
                .entry(End::ClosedByClient.key())
                .or_default() += 1;
            if graceful {
                conn.close().await;
            }
        }
    }

    fn violation(&mut self, what: String) {
        self.stats.violations += 1;
        if self.stats.first_violations.len() < MAX_VIOLATIONS_KEPT {
            self.stats.first_violations.push(what);
        }
    }

    fn observe(&mut self, frame: Frame) {
        let first = self.frames_in_connection == 0;
        let second = self.frames_in_connection == 1;
        self.frames_in_connection += 1;
        self.stats.frames += 1;
        let keep = match self.keep {
            Keep::All => true,
            Keep::Changes => frame.kind == FrameKind::TicketUpdate,
            Keep::Nothing => false,
        };
        if keep {
            self.frames.push(frame);
        }
        if first && frame.kind != FrameKind::Hello {
            self.violation(format!(
                "the first message of a connection was {}, not hello",
                frame.kind.as_str()
            ));
        }
        if let Some(pending) = self.pending_pair
            && frame.kind != FrameKind::QueueUpdate
        {
            self.violation(format!(
                "{} (seq {:?}) came between ticket_update {pending} and its queue_update",
                frame.kind.as_str(),
                frame.seq
            ));
            self.pending_pair = None;
        }
        match frame.kind {
            FrameKind::Hello => {
                self.stats.hellos += 1;
                if !first {
                    self.violation("hello after the first message".to_owned());
                }
                self.hello_seq = frame.hello_seq;
            }
            FrameKind::Snapshot => {
                self.stats.snapshots += 1;
                if !second {
                    self.violation("snapshot not right after hello".to_owned());
                }
                if let Some(since) = self.since {
                    self.stats.snapshots_on_resume += 1;
                    if self.stats.first_resume_snapshots.len() < MAX_VIOLATIONS_KEPT {
                        let seq = frame.seq.unwrap_or_default();
                        self.stats.first_resume_snapshots.push((since, seq));
                    }
                }
                self.last_seq = frame.seq;
            }
            FrameKind::TicketUpdate => {
                self.stats.ticket_updates += 1;
                let Some(seq) = frame.seq else {
                    self.violation("ticket_update without seq".to_owned());
                    return;
                };
                match self.last_seq {
                    None => {
                        self.violation(format!("ticket_update {seq} before any snapshot or since"))
                    }
                    Some(last) if seq == last + 1 => {}
                    Some(last) if seq <= last => {
                        self.violation(format!("ticket_update {seq} again, after {last}"))
                    }
                    Some(last) => self.violation(format!(
                        "gap: ticket_update {seq} after {last} (missing {}..={})",
                        last + 1,
                        seq - 1
                    )),
                }
                self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
                self.pending_pair = Some(seq);
            }
            FrameKind::QueueUpdate => {
                self.stats.queue_updates += 1;
                match (self.pending_pair.take(), frame.seq) {
                    (Some(pending), Some(seq)) if pending == seq => {}
                    (pending, seq) => self.violation(format!(
                        "queue_update {seq:?} not right after ticket_update of the same seq \
                         (pending {pending:?})"
                    )),
                }
            }
            FrameKind::Pong => self.stats.pongs += 1,
            FrameKind::Error => self.stats.errors += 1,
            FrameKind::Other => self.stats.other += 1,
            FrameKind::Unparsable => {
                self.stats.other += 1;
                self.violation("a message that is not JSON of the contract's shape".to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_after(messages: &[&str], since: Option<u64>) -> Session {
        let mut session = Session::new(Target::totem("ws://127.0.0.1:1", "t"), Keep::Changes);
        session.since = since;
        session.last_seq = since;
        for m in messages {
            session.observe(parse_frame(m, Instant::now()));
        }
        session
    }

    const HELLO: &str = r#"{"type":"hello","ts":"x","data":{"session_id":"2c9f4e71-0a8b-4d6c-b3e2-9f1a7c5d0e48","audience":"totem","seq":2,"heartbeat_interval_secs":15}}"#;

    fn change(seq: u64) -> [String; 2] {
        [
            format!(
                r#"{{"type":"ticket_update","seq":{seq},"ts":"x","data":{{"action":"called","previous_status":"waiting","ticket":{{"id":"0b6f3c1e-5d0a-4a43-9a55-2f1f7c0b9e21","code":"A007","counter":{{"id":"c7a2d4e9-1b3f-4c6a-8e5d-2f9b0a7c3e14","name":"Desk 2"}}}}}}}}"#
            ),
            format!(
                r#"{{"type":"queue_update","seq":{seq},"ts":"x","data":{{"services":[{{"id":"5b1c8f0e-3a8d-4f55-8a0e-6d1f9c2b7a10","waiting":1}}]}}}}"#
            ),
        ]
    }

    #[test]
    fn a_ticket_update_gives_its_seq_ticket_and_action() {
        let [update, _] = change(44);
        let frame = parse_frame(&update, Instant::now());
        assert_eq!(frame.kind, FrameKind::TicketUpdate);
        assert_eq!(frame.seq, Some(44));
        assert_eq!(frame.action, Some(ChangeAction::Called));
        assert_eq!(
            frame.ticket,
            Some("0b6f3c1e-5d0a-4a43-9a55-2f1f7c0b9e21".parse().unwrap())
        );
        let hello = parse_frame(HELLO, Instant::now());
        assert_eq!(
            (hello.kind, hello.seq, hello.hello_seq),
            (FrameKind::Hello, None, Some(2))
        );
        assert_eq!(
            parse_frame("not json", Instant::now()).kind,
            FrameKind::Unparsable
        );
        assert_eq!(
            parse_frame(r#"{"type":"later","data":{}}"#, Instant::now()).kind,
            FrameKind::Other
        );
    }

    #[test]
    fn a_clean_replay_has_no_violation() {
        let mut messages = vec![HELLO.to_owned()];
        messages.extend(change(1));
        messages.extend(change(2));
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        let session = session_after(&refs, Some(0));
        assert_eq!(
            session.stats().violations,
            0,
            "{:?}",
            session.stats().first_violations
        );
        assert_eq!(session.last_seq(), Some(2));
        assert_eq!(session.frames().len(), 2);
    }

    #[test]
    fn gaps_duplicates_split_pairs_and_resume_snapshots_are_caught() {
        let snapshot = r#"{"type":"snapshot","seq":5,"ts":"x","data":{"seq":5,"waiting":[{"id":"0b6f3c1e-5d0a-4a43-9a55-2f1f7c0b9e21"}],"called":[]}}"#;
        let pong = r#"{"type":"pong","ts":"x","data":{}}"#;
        let [t1, q1] = change(1);
        let [t3, q3] = change(3);
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec![HELLO, &t1, &q1, &t3, &q3], "gap"),
            (vec![HELLO, &t1, &q1, &t1, &q1], "again"),
            (vec![HELLO, &t1, pong, &q1], "came between"),
            (vec![&t1, &q1], "not hello"),
            (vec![HELLO, &t1, &q3], "not right after"),
        ];
        for (messages, expected) in cases {
            let session = session_after(&messages, Some(0));
            let violations = &session.stats().first_violations;
            assert!(
                violations.iter().any(|v| v.contains(expected)),
                "expected '{expected}' in {violations:?}"
            );
        }
        let session = session_after(&[HELLO, snapshot], Some(0));
        assert_eq!(session.stats().snapshots_on_resume, 1);
        assert_eq!(session.stats().first_resume_snapshots, vec![(0, 5)]);
        assert_eq!(session.last_seq(), Some(5));
    }
}
