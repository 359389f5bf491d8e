//! Prometheus metrics, created once per process and rendered by `GET /metrics`.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sqlx::PgPool;

pub struct Metrics {
    registry: Registry,
    /// Open WebSocket sessions, by tenant slug and audience (`totem`, `operator`).
    pub ws_sessions: IntGaugeVec,
    /// Events delivered to a tenant's sessions by this process.
    pub events_broadcast: IntCounterVec,
    /// From the change's commit to its frames being queued for every session.
    pub broadcast_latency: Histogram,
    /// Reads of the event log by hubs: events that did not come from a request of this
    /// process (other processes, a lost listener, a missed hand-over).
    pub hub_log_reads: IntCounter,
    /// Sessions closed, by reason (`client_closed`, `timeout`, `slow_client`, …).
    pub sessions_closed: IntCounterVec,
    /// HTTP requests by route pattern and status.
    pub http_requests: IntCounterVec,
    /// Events removed from the log by retention.
    pub events_pruned: IntCounter,
    /// Ticket-change requests answered by each committed transaction of the writer.
    pub change_batch_size: Histogram,
    /// Tenants whose changes each committed transaction of the writer carried.
    pub change_batch_tenants: Histogram,
    /// Ticket-change requests waiting for a batch (their tenant has one under way, or every
    /// lane of the writer is busy).
    pub change_queue: IntGauge,
    /// Login attempts held back because their username had many recent failures.
    pub login_slowed: IntCounter,
    /// Queue snapshots read from the database: one per tenant and seq that handshakes or
    /// polls asked for, however many asked (see `ws::snapshots`).
    pub snapshot_builds: IntCounter,
    db_pool: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let registry = Registry::new();
        let ws_sessions = IntGaugeVec::new(
            Opts::new("nextup_ws_sessions", "Open WebSocket sessions"),
            &["tenant", "audience"],
        )
        .expect("valid metric");
        let events_broadcast = IntCounterVec::new(
            Opts::new(
                "nextup_events_broadcast_total",
                "Events delivered to sessions",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        let broadcast_latency = Histogram::with_opts(
            HistogramOpts::new(
                "nextup_broadcast_latency_seconds",
                "Time from a change's commit to its frames being queued for every session",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        let hub_log_reads = IntCounter::new(
            "nextup_hub_log_reads_total",
            "Reads of the event log by hubs filling a gap",
        )
        .expect("valid metric");
        let sessions_closed = IntCounterVec::new(
            Opts::new(
                "nextup_ws_sessions_closed_total",
                "WebSocket sessions closed",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new("nextup_http_requests_total", "HTTP requests"),
            &["route", "status"],
        )
        .expect("valid metric");
        let events_pruned = IntCounter::new(
            "nextup_events_pruned_total",
            "Events older than EVENT_RETENTION_DAYS removed from the log",
        )
        .expect("valid metric");
        let change_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "nextup_change_batch_size",
                "Ticket-change requests answered by one committed transaction",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("valid metric");
        let change_batch_tenants = Histogram::with_opts(
            HistogramOpts::new(
                "nextup_change_batch_tenants",
                "Tenants whose ticket changes one committed transaction carried",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("valid metric");
        let change_queue = IntGauge::new(
            "nextup_change_queue",
            "Ticket-change requests waiting for a batch of the writer",
        )
        .expect("valid metric");
        let login_slowed = IntCounter::new(
            "nextup_login_slowed_total",
            "Login attempts held back because their username had many recent failures",
        )
        .expect("valid metric");
        let snapshot_builds = IntCounter::new(
            "nextup_snapshot_builds_total",
            "Queue snapshots read from the database, each shared by the handshakes and polls at its seq",
        )
        .expect("valid metric");
        let db_pool = IntGaugeVec::new(
            Opts::new("nextup_db_pool_connections", "Database pool connections"),
            &["state"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(ws_sessions.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events_broadcast.clone()),
            Box::new(broadcast_latency.clone()),
            Box::new(hub_log_reads.clone()),
            Box::new(sessions_closed.clone()),
            Box::new(http_requests.clone()),
            Box::new(events_pruned.clone()),
            Box::new(change_batch_size.clone()),
            Box::new(change_batch_tenants.clone()),
            Box::new(change_queue.clone()),
            Box::new(login_slowed.clone()),
            Box::new(snapshot_builds.clone()),
            Box::new(db_pool.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Arc::new(Self {
            registry,
            ws_sessions,
            events_broadcast,
            broadcast_latency,
            hub_log_reads,
            sessions_closed,
            http_requests,
            events_pruned,
            change_batch_size,
            change_batch_tenants,
            change_queue,
            login_slowed,
            snapshot_builds,
            db_pool,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, pool: &PgPool) -> String {
        let idle = pool.num_idle() as i64;
        let size = i64::from(pool.size());
        self.db_pool.with_label_values(&["idle"]).set(idle);
        self.db_pool.with_label_values(&["in_use"]).set(size - idle);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding cannot fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}
