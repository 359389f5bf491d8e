//! Messages between sessions, hubs and the log feed, and the JSON frames sent to clients.

use std::sync::Arc;

use actix::{Message, Recipient};
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::close::Close;
use crate::domain::ids::UserId;
use crate::views::{Audience, CommittedChange};

pub type SessionId = Uuid;

/// One event encoded for one audience: its `ticket_update` and `queue_update` frames.
/// Cloning shares the bytes, so a broadcast encodes each event once per audience.
#[derive(Debug, Clone)]
pub struct EventFrames {
    pub seq: i64,
    pub frames: [ByteString; 2],
}

/// Everything the hub tells a session, through the session's one bounded mailbox.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum ToSession {
    Event(EventFrames),
    /// Close the session (e.g. 1013 for a client that reads too slowly).
    Close(Close),
}

/// A session joins its tenant's hub, having already sent its client the state as of
/// `after` (a snapshot, or the events replayed up to it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub audience: Audience,
    pub recipient: Recipient<ToSession>,
    pub after: i64,
    /// The operator session's user and token generation (none for totems).
    pub operator: Option<TokenHolder>,
}

/// Whose token an operator session was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHolder {
    pub user: UserId,
    pub generation: i32,
}

/// The user's tokens before `generation` are revoked: close their sessions (4001).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RevokeTokens {
    pub user: UserId,
    pub generation: i32,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
}

/// A committed change, from the request that made it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Arc<CommittedChange>);

/// The database says event `seq` of the hub's tenant was committed, by a request of this
/// process (which also hands the event over) or of another one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed {
    pub seq: i64,
    pub by_this_process: bool,
}

/// The feed's listener was reconnected: notifications may have been lost, so read the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp;

/// Changes read from the log at the hub's request: `None` if the read failed; `complete`
/// when the log had nothing more up to the requested bound.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fetched {
    pub changes: Option<Vec<Arc<CommittedChange>>>,
    /// Seqs of the events read whose rows cannot be read back into a change: no session
    /// can be sent them, so the hub passes over them.
    pub unreadable: Vec<i64>,
    pub complete: bool,
}

/// Close every session with this code (1001 at shutdown) and forget them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll(pub Close);

/// How many sessions the hub has, by audience (totem, operator).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct SessionCount;

/// A server message without `seq` (`hello`, `pong`, `error`).
pub fn frame(kind: &str, ts: DateTime<Utc>, data: serde_json::Value) -> ByteString {
    json!({ "type": kind, "ts": ts, "data": data })
        .to_string()
        .into()
}
