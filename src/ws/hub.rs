//! The Hub: one actor per tenant, fanning its events out to that tenant's sessions.
//!
//! Invariants:
//! - Events reach sessions in `seq` order, each exactly once, with no gap. Events arrive
//!   from request handlers right after their commit (possibly out of order, since two
//!   workers race) and from the log feed. The hub delivers `delivered + 1` as soon as it has
//!   it and parks later ones; a gap that lasts [`GAP_WAIT`] is filled by asking the feed to
//!   read the log. The hub itself never touches the database.
//! - Each event is encoded once per audience, and the bytes are shared by every session.
//!   Totem sessions get the public projection only.
//! - An event the log holds but cannot give back as a change (a hand-edited row) is passed
//!   over, as no session could be sent it; the feed logs it.
//! - A session whose mailbox is full (its client does not read) is dropped from the
//!   fan-out at once and told to close with 1013; it resumes with `since`.
//! - The last [`RECENT_EVENTS`] events of the last [`RECENT_WINDOW`] are kept, so a session
//!   that joins after reading a snapshot at seq S gets the events after S that the hub
//!   already delivered. Each is encoded for an audience only once a session of it needs it.
//! - An operator session whose user's tokens are revoked is closed with 4001: when the
//!   revocation arrives ([`RevokeTokens`]), or when it joins after one this process knows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::close::Close;
use super::feed::{LogReader, ReadLog};
use super::messages::*;
use crate::auth::revocation::TokenGenerations;
use crate::domain::ids::TenantId;
use crate::metrics::Metrics;
use crate::views::{Audience, CommittedChange};

/// How long a missing seq may be awaited from its request before reading the log.
pub const GAP_WAIT: Duration = Duration::from_millis(100);
/// How long to wait before reading the log again after a failed read.
pub const LOG_RETRY: Duration = Duration::from_secs(1);
/// Delivered events kept for sessions that join slightly behind: at most this many...
pub const RECENT_EVENTS: usize = 512;
/// ...and none older than this (by commit time). A session that joins further behind is
/// served from the log instead.
pub const RECENT_WINDOW: Duration = Duration::from_secs(10);

struct Member {
    audience: Audience,
    recipient: Recipient<ToSession>,
    operator: Option<TokenHolder>,
}

/// A delivered change, encoded for an audience the first time a session of it needs the
/// change: a tenant with no operator session never encodes the operator view, and a hub
/// with no session encodes nothing.
struct Encoded {
    seq: i64,
    committed_at: chrono::DateTime<chrono::Utc>,
    change: Arc<CommittedChange>,
    public: Option<EventFrames>,
    operator: Option<EventFrames>,
}

impl Encoded {
    fn new(change: Arc<CommittedChange>) -> Self {
        Self {
            seq: change.seq,
            committed_at: change.at,
            change,
            public: None,
            operator: None,
        }
    }

    fn for_audience(&mut self, audience: Audience) -> EventFrames {
        let encoded = match audience {
            Audience::Public => &self.public,
            Audience::Operator => &self.operator,
        };
        if let Some(frames) = encoded {
            return frames.clone();
        }
        // The queue_update is the same in both projections.
        let queue_update = match (&self.public, &self.operator) {
            (Some(other), _) | (_, Some(other)) => other.frames[1].clone(),
            (None, None) => self.change.queue_update().into(),
        };
        let frames = EventFrames {
            seq: self.seq,
            frames: [self.change.ticket_update(audience).into(), queue_update],
        };
        let slot = match audience {
            Audience::Public => &mut self.public,
            Audience::Operator => &mut self.operator,
        };
        *slot = Some(frames.clone());
        frames
    }
}

pub struct Hub {
    tenant: TenantId,
    slug: String,
    metrics: Arc<Metrics>,
    sessions: HashMap<SessionId, Member>,
    /// Last seq sent to sessions; `None` until the first session sets the baseline.
    delivered: Option<i64>,
    /// Highest seq known to be committed.
    known: i64,
    /// Changes not yet delivered, by seq; `None` for one the log holds but cannot give
    /// back, which is passed over.
    parked: BTreeMap<i64, Option<Arc<CommittedChange>>>,
    recent: VecDeque<Encoded>,
    log: Addr<LogReader>,
    gap_timer: Option<SpawnHandle>,
    reading_log: bool,
    /// Notifications may have been lost: read the log to its end, whatever `known` says.
    catching_up: bool,
    /// Revoked tokens, as far as this process knows (memory only).
    generations: Arc<TokenGenerations>,
}

impl Hub {
    pub fn new(
        tenant: TenantId,
        slug: String,
        log: Addr<LogReader>,
        metrics: Arc<Metrics>,
        generations: Arc<TokenGenerations>,
    ) -> Self {
        Self {
            tenant,
            slug,
            metrics,
            sessions: HashMap::new(),
            delivered: None,
            known: 0,
            parked: BTreeMap::new(),
            recent: VecDeque::new(),
            log,
            gap_timer: None,
            reading_log: false,
            catching_up: false,
            generations,
        }
    }

    fn accept(&mut self, change: Arc<CommittedChange>, ctx: &mut Context<Self>) {
        self.known = self.known.max(change.seq);
        match self.delivered {
            Some(delivered) if change.seq <= delivered => return,
            None if self.parked.len() >= RECENT_EVENTS => {
                // No session has set a baseline yet; keep only the newest events.
                self.parked.pop_first();
            }
            _ => {}
        }
        self.parked.insert(change.seq, Some(change));
        self.deliver_ready();
        self.watch_gap(ctx);
    }

    /// Sends every parked change that follows `delivered` without a gap.
    fn deliver_ready(&mut self) {
        let Some(mut delivered) = self.delivered else {
            return;
        };
        while let Some(entry) = self.parked.first_entry() {
            let seq = *entry.key();
            if seq <= delivered {
                entry.remove();
                continue;
            }
            if seq != delivered + 1 {
                break;
            }
            if let Some(change) = entry.remove() {
                self.broadcast(Encoded::new(change));
            }
            delivered = seq;
        }
        self.delivered = Some(delivered);
    }

    fn broadcast(&mut self, mut encoded: Encoded) {
        let mut dropped = Vec::new();
        for (id, member) in &self.sessions {
            let frames = encoded.for_audience(member.audience);
            if let Err(e) = member.recipient.try_send(ToSession::Event(frames)) {
                dropped.push((*id, matches!(e, SendError::Full(_))));
            }
        }
        for (id, slow) in dropped {
            let Some(member) = self.remove(id) else {
                continue;
            };
            if slow {
                log::info!(
                    "session {id} of tenant {} reads too slowly: closing",
                    self.tenant
                );
                // One message past the capacity, so the session learns why it goes.
                member.recipient.do_send(ToSession::Close(Close::TooSlow));
            }
        }
        let latency = (chrono::Utc::now() - encoded.committed_at)
            .to_std()
            .unwrap_or_default();
        self.metrics
            .broadcast_latency
            .observe(latency.as_secs_f64());
        self.metrics
            .events_broadcast
            .with_label_values(&[self.slug.as_str()])
            .inc();
        // After a rewind, events are delivered again: keep the ring in seq order.
        if self
            .recent
            .back()
            .is_some_and(|last| last.seq >= encoded.seq)
        {
            return;
        }
        self.recent.push_back(encoded);
        if self.recent.len() > RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.forget_old_events();
    }

    /// Joining sessions need only the events of the last moments (they read their state
    /// just before joining): older ones are dropped, so a quiet tenant holds none.
    fn forget_old_events(&mut self) {
        let horizon = chrono::Utc::now()
            - chrono::TimeDelta::from_std(RECENT_WINDOW).unwrap_or(chrono::TimeDelta::MAX);
        while self
            .recent
            .front()
            .is_some_and(|oldest| oldest.committed_at < horizon)
        {
            self.recent.pop_front();
        }
        if self.recent.is_empty() {
            self.recent.shrink_to_fit();
        }
    }

    fn audience_label(audience: Audience) -> &'static str {
        match audience {
            Audience::Public => "totem",
            Audience::Operator => "operator",
        }
    }

    fn remove(&mut self, id: SessionId) -> Option<Member> {
        let member = self.sessions.remove(&id)?;
        self.metrics
            .ws_sessions
            .with_label_values(&[self.slug.as_str(), Self::audience_label(member.audience)])
            .dec();
        Some(member)
    }

    /// When a seq is known to exist but has not arrived, read the log after [`GAP_WAIT`].
    fn watch_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(delivered) = self.delivered else {
            return;
        };
        if delivered >= self.known || self.gap_timer.is_some() || self.reading_log {
            return;
        }
        self.gap_timer = Some(ctx.run_later(GAP_WAIT, |hub, ctx| {
            hub.gap_timer = None;
            hub.read_log(ctx);
        }));
    }

    fn read_log(&mut self, ctx: &mut Context<Self>) {
        let Some(delivered) = self.delivered else {
            return;
        };
        if self.reading_log || (delivered >= self.known && !self.catching_up) {
            return;
        }
        self.reading_log = true;
        self.metrics.hub_log_reads.inc();
        self.log.do_send(ReadLog {
            tenant: self.tenant,
            after: delivered,
            up_to: if self.catching_up {
                i64::MAX
            } else {
                self.known
            },
            reply_to: ctx.address().recipient(),
        });
    }
}

// Handlers and the feed reach the hub with `do_send`, which ignores the mailbox capacity:
// a request never waits for, or is refused by, the fan-out.
impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RECENT_WINDOW, |hub, _| hub.forget_old_events());
    }
}

impl Handler<Connect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        // Revoked between the handshake's check and now.
        if let Some(holder) = msg.operator
            && self
                .generations
                .is_known_revoked(holder.user, holder.generation)
        {
            msg.recipient.do_send(ToSession::Close(Close::TokenRevoked));
            return;
        }
        let delivered = *self.delivered.get_or_insert(msg.after);
        self.known = self.known.max(msg.after);
        // The events after the session's baseline that were already delivered to others.
        if msg.after < delivered {
            let covered = self
                .recent
                .front()
                .is_some_and(|oldest| oldest.seq <= msg.after + 1);
            if covered {
                for event in self.recent.iter_mut().filter(|e| e.seq > msg.after) {
                    let frames = event.for_audience(msg.audience);
                    if msg.recipient.try_send(ToSession::Event(frames)).is_err() {
                        msg.recipient.do_send(ToSession::Close(Close::TooFarBehind));
                        return;
                    }
                }
            } else {
                // Not in memory (e.g. two sessions racing to start this hub): go back to
                // the session's baseline and read the rest from the log. Sessions that
                // already have those events skip them by seq.
                self.delivered = Some(msg.after);
                self.known = self.known.max(delivered);
            }
        }
        self.metrics
            .ws_sessions
            .with_label_values(&[self.slug.as_str(), Self::audience_label(msg.audience)])
            .inc();
        self.sessions.insert(
            msg.session,
            Member {
                audience: msg.audience,
                recipient: msg.recipient,
                operator: msg.operator,
            },
        );
        self.deliver_ready();
        self.watch_gap(ctx);
    }
}

impl Handler<Disconnect> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.remove(msg.session);
    }
}

impl Handler<Publish> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        self.accept(msg.0, ctx);
    }
}

impl Handler<Committed> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Committed, ctx: &mut Context<Self>) {
        self.known = self.known.max(msg.seq);
        if msg.by_this_process {
            // Its request hands it over in a moment; the log is only the fallback.
            self.watch_gap(ctx);
        } else {
            // Nobody here will hand it over: read it now.
            self.read_log(ctx);
        }
    }
}

impl Handler<CatchUp> for Hub {
    type Result = ();

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) {
        // The newest seq is unknown: read everything after what was delivered.
        if self.delivered.is_some() {
            self.catching_up = true;
            self.read_log(ctx);
        }
    }
}

impl Handler<Fetched> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Fetched, ctx: &mut Context<Self>) {
        self.reading_log = false;
        let Some(changes) = msg.changes else {
            // The database is unreachable: try again later, without hammering it.
            self.gap_timer = Some(ctx.run_later(LOG_RETRY, |hub, ctx| {
                hub.gap_timer = None;
                hub.read_log(ctx);
            }));
            return;
        };
        for change in changes {
            self.known = self.known.max(change.seq);
            self.parked.insert(change.seq, Some(change));
        }
        for seq in msg.unreadable {
            self.known = self.known.max(seq);
            self.parked.entry(seq).or_insert(None);
        }
        self.deliver_ready();
        if msg.complete {
            self.catching_up = false;
        } else {
            // One page of a long gap: read the next one now.
            self.read_log(ctx);
        }
        self.watch_gap(ctx);
    }
}

impl Handler<CloseAll> for Hub {
    type Result = ();

    fn handle(&mut self, msg: CloseAll, _: &mut Context<Self>) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(member) = self.remove(id) {
                // Past the mailbox capacity on purpose: this must reach every session.
                member.recipient.do_send(ToSession::Close(msg.0));
            }
        }
    }
}

impl Handler<RevokeTokens> for Hub {
    type Result = ();

    fn handle(&mut self, msg: RevokeTokens, _: &mut Context<Self>) {
        let revoked: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, member)| {
                member.operator.is_some_and(|holder| {
                    holder.user == msg.user && holder.generation < msg.generation
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in revoked {
            if let Some(member) = self.remove(id) {
                // Past the mailbox capacity on purpose: this must reach the session.
                member
                    .recipient
                    .do_send(ToSession::Close(Close::TokenRevoked));
            }
        }
    }
}

impl Handler<SessionCount> for Hub {
    type Result = MessageResult<SessionCount>;

    fn handle(&mut self, _: SessionCount, _: &mut Context<Self>) -> Self::Result {
        let totems = self
            .sessions
            .values()
            .filter(|m| m.audience == Audience::Public)
            .count();
        MessageResult((totems, self.sessions.len() - totems))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;
    use sqlx::postgres::PgPoolOptions;

    use super::*;
    use crate::db::tickets::TicketRecord;
    use crate::domain::ticket::EventAction;
    use crate::views::OperatorTicket;

    /// Stands in for a session: records the seqs it is sent, and close codes as negatives.
    struct Collector(Arc<Mutex<Vec<i64>>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    /// Answered once every message sent before it was handled; `stop` ends the actor.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Flush {
        stop: bool,
    }

    impl Handler<Flush> for Collector {
        type Result = ();
        fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
            if msg.stop {
                ctx.stop();
            }
        }
    }

    impl Handler<ToSession> for Collector {
        type Result = ();
        fn handle(&mut self, msg: ToSession, _: &mut Context<Self>) {
            let entry = match msg {
                ToSession::Event(frames) => frames.seq,
                ToSession::Close(close) => -i64::from(close.code()),
            };
            self.0.lock().unwrap().push(entry);
        }
    }

    fn event(seq: i64) -> Arc<CommittedChange> {
        event_at(seq, Utc::now())
    }

    fn event_at(seq: i64, committed_at: chrono::DateTime<Utc>) -> Arc<CommittedChange> {
        let record = TicketRecord {
            code: format!("A{seq:03}"),
            customer_name: Some("Private Name".into()),
            ..TicketRecord::sample()
        };
        let ticket = OperatorTicket::from_record(record, Some(0), &[]).unwrap();
        Arc::new(CommittedChange {
            seq,
            action: EventAction::Issued,
            previous: None,
            ticket,
            queue: Vec::new(),
            at: committed_at,
        })
    }

    fn hub() -> Addr<Hub> {
        // Never connects: these tests leave no gap for the hub to read from the log.
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let log = LogReader::new(pool).start();
        Hub::new(
            TenantId::new(),
            "test".into(),
            log,
            Metrics::new(),
            Arc::default(),
        )
        .start()
    }

    struct Joined {
        seen: Arc<Mutex<Vec<i64>>>,
        session: Addr<Collector>,
    }

    impl Joined {
        fn seen(&self) -> Vec<i64> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn join(hub: &Addr<Hub>, audience: Audience, after: i64) -> Joined {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let session = Collector(seen.clone()).start();
        hub.send(Connect {
            session: uuid::Uuid::new_v4(),
            audience,
            recipient: session.clone().recipient(),
            after,
            operator: None,
        })
        .await
        .unwrap();
        Joined { seen, session }
    }

    /// Returns once the hub and then each session handled everything sent so far.
    async fn settle(hub: &Addr<Hub>, sessions: &[&Joined]) {
        hub.send(SessionCount).await.unwrap();
        for joined in sessions {
            joined.session.send(Flush { stop: false }).await.unwrap();
        }
    }

    #[actix_web::test]
    async fn events_published_out_of_order_reach_sessions_in_seq_order() {
        let hub = hub();
        let seen = join(&hub, Audience::Public, 0).await;
        for seq in [3, 1, 4, 2, 5] {
            hub.do_send(Publish(event(seq)));
        }
        settle(&hub, &[&seen]).await;
        assert_eq!(seen.seen(), [1, 2, 3, 4, 5]);
    }

    #[actix_web::test]
    async fn duplicates_and_events_before_the_baseline_are_not_sent() {
        let hub = hub();
        let seen = join(&hub, Audience::Operator, 2).await;
        for seq in [1, 2, 3, 3, 4, 2] {
            hub.do_send(Publish(event(seq)));
        }
        settle(&hub, &[&seen]).await;
        assert_eq!(seen.seen(), [3, 4]);
    }

    #[actix_web::test]
    async fn a_session_joining_behind_gets_the_recent_events_it_missed_then_live_ones() {
        let hub = hub();
        let first = join(&hub, Audience::Public, 0).await;
        for seq in 1..=4 {
            hub.do_send(Publish(event(seq)));
        }
        settle(&hub, &[&first]).await;
        // Read its snapshot at seq 2, joins after 4 was delivered.
        let late = join(&hub, Audience::Public, 2).await;
        hub.do_send(Publish(event(5)));
        settle(&hub, &[&first, &late]).await;
        assert_eq!(first.seen(), [1, 2, 3, 4, 5]);
        assert_eq!(late.seen(), [3, 4, 5]);
        assert_eq!(hub.send(SessionCount).await.unwrap(), (2, 0));
    }

    #[actix_web::test]
    async fn events_older_than_the_recent_window_are_not_kept_for_late_joiners() {
        let hub = hub();
        let first = join(&hub, Audience::Public, 0).await;
        let long_ago = Utc::now() - chrono::TimeDelta::from_std(RECENT_WINDOW * 2).unwrap();
        for seq in 1..=4 {
            hub.do_send(Publish(event_at(seq, long_ago)));
        }
        settle(&hub, &[&first]).await;
        // Joining behind old events: nothing comes from memory; the hub goes back to the
        // session's baseline and waits for the log (here, the events published again).
        let late = join(&hub, Audience::Public, 2).await;
        hub.do_send(Publish(event(5)));
        settle(&hub, &[&first, &late]).await;
        assert!(
            late.seen().is_empty(),
            "served from memory: {:?}",
            late.seen()
        );
        for seq in [3, 4] {
            hub.do_send(Publish(event_at(seq, long_ago)));
        }
        settle(&hub, &[&first, &late]).await;
        assert_eq!(late.seen(), [3, 4, 5]);
    }

    #[actix_web::test]
    async fn a_session_joining_behind_a_fresh_hub_rewinds_it_instead_of_being_closed() {
        let hub = hub();
        // The first session read the database at seq 3, the second one at seq 1.
        let ahead = join(&hub, Audience::Public, 3).await;
        let behind = join(&hub, Audience::Public, 1).await;
        // Events 2 and 3 come from the log; here, as if read from it.
        for seq in [2, 3, 4] {
            hub.do_send(Publish(event(seq)));
        }
        settle(&hub, &[&ahead, &behind]).await;
        assert_eq!(behind.seen(), [2, 3, 4], "nothing missing, no close");
        // The hub sends 2 and 3 again, and the session that had them skips them (checked
        // in the session); here the collector shows what the hub sent.
        assert_eq!(ahead.seen(), [2, 3, 4]);
        assert_eq!(hub.send(SessionCount).await.unwrap(), (2, 0));
    }

    #[actix_web::test]
    async fn an_event_the_log_cannot_give_back_is_passed_over_not_waited_for() {
        let hub = hub();
        let seen = join(&hub, Audience::Operator, 0).await;
        hub.do_send(Publish(event(3)));
        hub.do_send(Fetched {
            changes: Some(vec![event(2)]),
            unreadable: vec![1],
            complete: true,
        });
        settle(&hub, &[&seen]).await;
        assert_eq!(seen.seen(), [2, 3]);
    }

    #[actix_web::test]
    async fn a_session_whose_mailbox_is_gone_leaves_the_fan_out() {
        let hub = hub();
        let gone = join(&hub, Audience::Public, 0).await;
        let staying = join(&hub, Audience::Operator, 0).await;
        // The session actor stops without deregistering (as a crashed one would).
        gone.session.send(Flush { stop: true }).await.unwrap();
        hub.do_send(Publish(event(1)));
        settle(&hub, &[&staying]).await;
        assert_eq!(hub.send(SessionCount).await.unwrap(), (0, 1));
        assert_eq!(staying.seen(), [1]);
        assert!(gone.seen().is_empty());
    }
}
