//! A WebSocket session: one actor per connected totem, display or operator console.
//!
//! Life of a session: the handshake (in `ws::mod`) has read the state at seq S from the
//! database; the session sends `hello` and that state (a `snapshot`, or the events after
//! the client's `since`), then joins its hub with baseline S and relays live events,
//! dropping any with a seq it already sent. It pings every heartbeat interval and closes
//! when the client has been silent for the client timeout, when an operator's token
//! expires or is revoked (4001), when the hub finds it too slow (1013), or on a protocol violation: a
//! frame over the size limit (1009, refused at its header by [`super::incoming`]), one not
//! completed in time (1008), fragments (1003) or malformed frames (1002). Whatever the way
//! out, `stopping` deregisters it from its hub, and a close ends the TCP connection right
//! after the close frame is sent.
//!
//! This module and `ws::mod` are the only users of actix-web-actors (deprecated upstream
//! in favour of actix-ws), so a move to actix-ws touches only them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::caps::SessionPermit;
use super::close::Close;
use super::hub::Hub;
use super::incoming::{Refusal, Verdict};
use super::messages::{Connect, Disconnect, SessionId, ToSession, TokenHolder, frame};
use crate::http::connection::ConnectionSocket;
use crate::metrics::Metrics;
use crate::views::Audience;

/// Events a session may have queued before the hub considers its client too slow.
pub const MAILBOX_CAPACITY: usize = 64;

pub struct WsSession {
    pub id: SessionId,
    pub audience: Audience,
    pub hub: Addr<Hub>,
    /// `hello` and the initial state, sent first.
    pub initial: Vec<ByteString>,
    /// The seq the initial state is at; later events only.
    pub last_seq: i64,
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// An operator session's user and token generation, closed if revoked.
    pub operator: Option<TokenHolder>,
    pub last_heard: Instant,
    /// Why the session ended, for `nextup_ws_sessions_closed_total`.
    pub close_reason: &'static str,
    pub metrics: Arc<Metrics>,
    /// This session's place under the session caps, freed when the actor is dropped.
    pub permit: SessionPermit,
    /// Why the client's byte stream was cut, if it was (see [`super::incoming`]).
    pub incoming_verdict: Verdict,
    /// The connection under the session, ended when the session closes.
    pub connection: Option<ConnectionSocket>,
}

impl WsSession {
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, close: Close) {
        let (code, reason, label) = close.parts();
        self.close_reason = label;
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_owned()),
        }));
        self.end(ctx);
    }

    /// Stops the session; its connection ends as soon as the close frame is sent.
    fn end(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.stop();
        if let Some(connection) = self.connection.take() {
            connection.end_after_queued_output();
        }
    }

    fn reply_error(&self, ctx: &mut ws::WebsocketContext<Self>, code: &str, message: &str) {
        ctx.text(frame(
            "error",
            Utc::now(),
            json!({ "code": code, "message": message }),
        ));
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let kind = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
        match kind.as_deref() {
            Some("ping") => ctx.text(frame("pong", Utc::now(), json!({}))),
            Some(other) => self.reply_error(
                ctx,
                "unknown_message",
                &format!(
                    "messages of type '{other}' are not understood; send {{\"type\":\"ping\"}}"
                ),
            ),
            None => self.reply_error(
                ctx,
                "invalid_message",
                "a client message must be a JSON object with a \"type\"",
            ),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // Taken, not drained: an idle session keeps no buffer it will never use again.
        for frame in std::mem::take(&mut self.initial) {
            ctx.text(frame);
        }
        // Join the hub before handling anything else, so no event can slip past.
        self.hub
            .send(Connect {
                session: self.id,
                audience: self.audience,
                recipient: ctx.address().recipient(),
                after: self.last_seq,
                operator: self.operator,
            })
            .into_actor(self)
            .then(|joined, session, ctx| {
                if joined.is_err() {
                    session.close(ctx, Close::HubUnavailable);
                }
                fut::ready(())
            })
            .wait(ctx);

        ctx.run_interval(self.heartbeat, |session, ctx| {
            if session.last_heard.elapsed() > session.client_timeout {
                log::debug!("session {} timed out", session.id);
                session.close(ctx, Close::Timeout);
                return;
            }
            ctx.ping(b"");
        });

        if let Some(expires_at) = self.token_expires_at {
            let left = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            ctx.run_later(left, |session, ctx| {
                session.close(ctx, Close::TokenExpired);
            });
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.hub.do_send(Disconnect { session: self.id });
        self.metrics
            .sessions_closed
            .with_label_values(&[self.close_reason])
            .inc();
        Running::Stop
    }
}

impl Handler<ToSession> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Self::Context) {
        match msg {
            ToSession::Event(event) => {
                // Already covered by the initial state.
                if event.seq <= self.last_seq {
                    return;
                }
                self.last_seq = event.seq;
                let [update, queue] = event.frames;
                ctx.text(update);
                ctx.text(queue);
            }
            ToSession::Close(close) => self.close(ctx, close),
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Binary(_)) => {
                self.reply_error(ctx, "invalid_message", "binary messages are not understood")
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                self.end(ctx);
            }
            // Clients send tiny JSON: fragmented messages are refused outright.
            Ok(ws::Message::Continuation(_)) => self.close(ctx, Close::Fragmented),
            Ok(ws::Message::Nop) => {}
            Err(ProtocolError::Overflow) => self.close(ctx, Close::TooBig),
            Err(e) => match self.incoming_verdict.take() {
                Some(Refusal::TooBig) => self.close(ctx, Close::TooBig),
                Some(Refusal::Incomplete) => self.close(ctx, Close::FrameIncomplete),
                None => {
                    log::debug!("session {}: protocol error {e}", self.id);
                    self.close(ctx, Close::ProtocolError);
                }
            },
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client's stream ended (connection closed).
        ctx.stop();
    }
}
