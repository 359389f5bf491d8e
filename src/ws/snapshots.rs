//! The queue snapshot that WebSocket handshakes and `GET …/queue` send, read from the
//! database once per tenant and `seq`, and shared.
//!
//! A snapshot is the whole active queue: with thousands of waiting tickets, a read of a
//! second or more and megabytes of JSON. Read for every request, a burst of handshakes or
//! polls (displays reconnecting after a network blip, or a flood) held every pooled
//! connection and refused the rest with 503. Here the requests that need a tenant's
//! snapshot at one `seq` wait for a single read, each projection is encoded once, and every
//! session and response shares those bytes.
//!
//! A snapshot is only used at the `seq` it was read at, and every caller has read that `seq`
//! itself, in its own repeatable-read transaction, before asking: a handshake reports it in
//! `hello` and joins the hub there, a poll answers it with its tag. The request that finds
//! no snapshot at its `seq` reads it in that same transaction; the others at that `seq`
//! wait for it (if that read fails or is dropped, the next of them reads instead). Every
//! ticket change moves `seq`, so a snapshot never outlives the state it shows (what does not
//! move `seq` is in api.md §4.4).
//!
//! Memory: one snapshot per tenant, the latest asked for. A request at a newer `seq`
//! replaces it; one at an older `seq` (its read began just before a change) reads its own
//! and does not keep it. Tenants unused for [`IDLE`] are forgotten when another snapshot is
//! kept, and at most [`MAX_TENANTS`] are kept, the least recently used going first.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use sqlx::PgConnection;
use tokio::sync::OnceCell;

use crate::db::tenants::Tenant;
use crate::domain::ids::TenantId;
use crate::error::ApiError;
use crate::ticketing::reads::{self, QueueSnapshot};
use crate::views::Audience;

/// A tenant's snapshot unused for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(60);
/// Most tenants whose snapshot is kept.
pub const MAX_TENANTS: usize = 1_000;

pub struct SnapshotCache {
    tenants: Mutex<HashMap<TenantId, Kept>>,
    /// Counts the database reads (`nextup_snapshot_builds_total`).
    builds: IntCounter,
}

struct Kept {
    at: Arc<AtSeq>,
    last_used: Instant,
}

/// A tenant's snapshot at one `seq`, once someone has read it.
struct AtSeq {
    seq: i64,
    read: OnceCell<Arc<SharedSnapshot>>,
}

impl AtSeq {
    fn new(seq: i64) -> Arc<Self> {
        Arc::new(Self {
            seq,
            read: OnceCell::new(),
        })
    }
}

impl SnapshotCache {
    pub fn new(builds: IntCounter) -> Self {
        Self {
            tenants: Mutex::default(),
            builds,
        }
    }

    /// The tenant's snapshot at `seq`. The caller has just read `seq` in `conn`, a
    /// repeatable-read transaction ([`crate::db::begin_snapshot`]); the snapshot is read
    /// there only if no other request has read it or is reading it.
    pub async fn at_seq(
        &self,
        conn: &mut PgConnection,
        tenant: &Tenant,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<Arc<SharedSnapshot>, ApiError> {
        self.get_or_read(tenant.id, seq, now, move || async move {
            Ok(reads::queue_snapshot(conn, tenant, now).await?)
        })
        .await
    }

    /// The snapshot at `seq`, shared, or made by `read` (at `now`).
    async fn get_or_read<F, Fut>(
        &self,
        tenant: TenantId,
        seq: i64,
        now: DateTime<Utc>,
        read: F,
    ) -> Result<Arc<SharedSnapshot>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<QueueSnapshot, ApiError>>,
    {
        let at = self.entry(tenant, seq, Instant::now());
        let shared = at
            .read
            .get_or_try_init(|| async move {
                self.builds.inc();
                let snapshot = read().await?;
                if snapshot.seq != seq {
                    return Err(ApiError::internal(anyhow::anyhow!(
                        "a snapshot for seq {seq} was read at seq {}",
                        snapshot.seq
                    )));
                }
                Ok(Arc::new(SharedSnapshot::new(snapshot, now)))
            })
            .await?;
        Ok(shared.clone())
    }

    /// Where the snapshot of `tenant` at `seq` is (or will be) kept.
    fn entry(&self, tenant: TenantId, seq: i64, now: Instant) -> Arc<AtSeq> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        match tenants.get_mut(&tenant) {
            Some(kept) if kept.at.seq == seq => {
                kept.last_used = now;
                return kept.at.clone();
            }
            // A read that began before the latest change: the newer snapshot is the one
            // the next requests need, so this one is not kept. (A newer one that has gone
            // unused, e.g. after the database was restored to an earlier seq, is replaced.)
            Some(kept) if kept.at.seq > seq && now.duration_since(kept.last_used) < IDLE => {
                return AtSeq::new(seq);
            }
            _ => {}
        }
        tenants.retain(|_, kept| now.duration_since(kept.last_used) < IDLE);
        if tenants.len() >= MAX_TENANTS && !tenants.contains_key(&tenant) {
            let least_used = tenants
                .iter()
                .min_by_key(|(_, kept)| kept.last_used)
                .map(|(id, _)| *id);
            if let Some(id) = least_used {
                tenants.remove(&id);
            }
        }
        let at = AtSeq::new(seq);
        tenants.insert(
            tenant,
            Kept {
                at: at.clone(),
                last_used: now,
            },
        );
        at
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A snapshot as read, and its projections encoded the first time each is needed.
pub struct SharedSnapshot {
    snapshot: QueueSnapshot,
    read_at: DateTime<Utc>,
    public: OnceLock<Encoded>,
    operator: OnceLock<Encoded>,
}

/// The `snapshot` WebSocket message; `data`, its range, is the `GET …/queue` body.
struct Encoded {
    message: ByteString,
    data: Range<usize>,
}

impl SharedSnapshot {
    fn new(snapshot: QueueSnapshot, read_at: DateTime<Utc>) -> Self {
        Self {
            snapshot,
            read_at,
            public: OnceLock::new(),
            operator: OnceLock::new(),
        }
    }

    pub fn seq(&self) -> i64 {
        self.snapshot.seq
    }

    /// The `snapshot` message for a session of `audience`; its `ts` is when the snapshot
    /// was read.
    pub fn message(&self, audience: Audience) -> ByteString {
        self.encoded(audience).message.clone()
    }

    /// The queue in the projection of `audience`, as JSON (the message's `data`).
    pub fn body(&self, audience: Audience) -> Bytes {
        let encoded = self.encoded(audience);
        encoded.message.as_bytes().slice(encoded.data.clone())
    }

    fn encoded(&self, audience: Audience) -> &Encoded {
        let once = match audience {
            Audience::Public => &self.public,
            Audience::Operator => &self.operator,
        };
        once.get_or_init(|| {
            let ts = serde_json::to_string(&self.read_at).expect("times always serialize");
            let mut message = format!(
                r#"{{"type":"snapshot","seq":{},"ts":{ts},"data":"#,
                self.snapshot.seq
            )
            .into_bytes();
            let start = message.len();
            self.snapshot.write_json(audience, &mut message);
            let data = start..message.len();
            message.push(b'}');
            let message = String::from_utf8(message).expect("JSON is UTF-8");
            Encoded {
                message: message.into(),
                data,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::join_all;

    use super::*;
    use crate::domain::ids::{ServiceId, TicketId};
    use crate::domain::ticket::{Priority, Status};
    use crate::views::{OperatorTicket, PublicTicket, ServiceRef, ServiceSummary};

    fn cache() -> SnapshotCache {
        SnapshotCache::new(IntCounter::new("builds", "builds").unwrap())
    }

    fn snapshot(seq: i64) -> QueueSnapshot {
        let service = ServiceRef {
            id: ServiceId::new(),
            code: "A".into(),
            name: "General".into(),
        };
        let ticket = OperatorTicket {
            public: PublicTicket {
                id: TicketId::new(),
                code: "A001".into(),
                service: service.clone(),
                status: Status::Waiting,
                priority: Priority::Normal,
                call_count: 0,
                created_at: Utc::now(),
                called_at: None,
                counter: None,
                ahead: Some(0),
                estimated_wait_secs: Some(0),
            },
            customer_name: Some("Maria Souza".into()),
            operator: None,
            started_at: None,
            finished_at: None,
            call_order_key: None,
        };
        QueueSnapshot {
            tenant_slug: "clinic".into(),
            tenant_name: "Clinic".into(),
            seq,
            services: vec![ServiceSummary {
                id: service.id,
                code: service.code,
                name: service.name,
                waiting: 1,
                estimated_wait_secs: 0,
            }],
            waiting: vec![ticket],
            called: Vec::new(),
        }
    }

    /// Reads `snapshot(seq)` slowly (other requests get to wait), counting reads.
    async fn slow_read(reads: &AtomicUsize, seq: i64) -> Result<QueueSnapshot, ApiError> {
        reads.fetch_add(1, Ordering::SeqCst);
        for _ in 0..10 {
            actix_web::rt::task::yield_now().await;
        }
        Ok(snapshot(seq))
    }

    #[actix_web::test]
    async fn concurrent_requests_at_one_seq_share_one_read() {
        let cache = cache();
        let tenant = TenantId::new();
        let reads = AtomicUsize::new(0);
        let got = join_all(
            (0..20).map(|_| cache.get_or_read(tenant, 7, Utc::now(), || slow_read(&reads, 7))),
        )
        .await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.builds.get(), 1);
        let first = got[0].as_ref().unwrap();
        assert!(got.iter().all(|s| Arc::ptr_eq(s.as_ref().unwrap(), first)));
    }

    #[actix_web::test]
    async fn a_failed_read_leaves_the_next_request_to_read() {
        let cache = cache();
        let tenant = TenantId::new();
        let failed = cache
            .get_or_read(tenant, 3, Utc::now(), || async {
                Err(ApiError::DatabaseUnavailable)
            })
            .await;
        assert!(matches!(failed, Err(ApiError::DatabaseUnavailable)));
        let reads = AtomicUsize::new(0);
        let read = cache
            .get_or_read(tenant, 3, Utc::now(), || slow_read(&reads, 3))
            .await
            .unwrap();
        assert_eq!(read.seq(), 3);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[actix_web::test]
    async fn a_snapshot_read_at_another_seq_is_refused() {
        let cache = cache();
        let wrong = cache
            .get_or_read(TenantId::new(), 3, Utc::now(), || async { Ok(snapshot(4)) })
            .await;
        assert!(matches!(wrong, Err(ApiError::Internal(_))));
    }

    #[actix_web::test]
    async fn a_newer_seq_replaces_the_snapshot_and_an_older_one_is_read_but_not_kept() {
        let cache = cache();
        let tenant = TenantId::new();
        let reads = &AtomicUsize::new(0);
        let at = |seq| cache.get_or_read(tenant, seq, Utc::now(), move || slow_read(reads, seq));
        at(5).await.unwrap();
        at(6).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        at(6).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2, "6 is kept");
        assert_eq!(at(5).await.unwrap().seq(), 5, "never a newer one");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        at(6).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 3, "6 is still the one kept");
        assert_eq!(cache.kept(), 1, "one snapshot per tenant");
    }

    #[test]
    fn idle_tenants_are_forgotten_and_at_most_max_tenants_are_kept() {
        let cache = cache();
        let start = Instant::now();
        let quiet = TenantId::new();
        cache.entry(quiet, 1, start);
        let busy = TenantId::new();
        cache.entry(busy, 1, start + IDLE / 2);
        cache.entry(busy, 2, start + IDLE);
        assert_eq!(cache.kept(), 1, "the quiet tenant's snapshot went");

        let later = start + 2 * IDLE;
        let tenants: Vec<TenantId> = (0..MAX_TENANTS).map(|_| TenantId::new()).collect();
        for (i, tenant) in tenants.iter().enumerate() {
            cache.entry(*tenant, 1, later + Duration::from_millis(i as u64));
        }
        assert_eq!(cache.kept(), MAX_TENANTS);
        // The first one is used again: the second is now the least recently used.
        let now = later + Duration::from_secs(1);
        cache.entry(tenants[0], 1, now);
        cache.entry(TenantId::new(), 1, now);
        assert_eq!(cache.kept(), MAX_TENANTS);
        let kept = cache.tenants.lock().unwrap();
        assert!(kept.contains_key(&tenants[0]));
        assert!(!kept.contains_key(&tenants[1]));
    }

    #[test]
    fn a_newer_snapshot_left_unused_gives_way_to_an_older_seq() {
        // After a restore to an earlier seq, the old newer snapshot must not stay forever.
        let cache = cache();
        let tenant = TenantId::new();
        let start = Instant::now();
        let newer = cache.entry(tenant, 90, start);
        let older = cache.entry(tenant, 10, start + IDLE / 2);
        assert!(!Arc::ptr_eq(&newer, &older));
        assert_eq!(cache.tenants.lock().unwrap()[&tenant].at.seq, 90);
        cache.entry(tenant, 10, start + IDLE);
        assert_eq!(cache.tenants.lock().unwrap()[&tenant].at.seq, 10);
    }

    #[test]
    fn the_message_and_the_body_are_one_encoding_per_audience() {
        let read_at = Utc::now();
        let shared = SharedSnapshot::new(snapshot(42), read_at);
        for audience in [Audience::Public, Audience::Operator] {
            let message: serde_json::Value =
                serde_json::from_str(&shared.message(audience)).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&shared.body(audience)).unwrap();
            assert_eq!(message["type"], "snapshot");
            assert_eq!(message["seq"], 42);
            assert_eq!(message["ts"], serde_json::to_value(read_at).unwrap());
            assert_eq!(message["data"], body);
            assert_eq!(body["seq"], 42);
            assert_eq!(body["tenant"]["slug"], "clinic");
            assert_eq!(body["waiting"][0]["code"], "A001");
        }
        let public = String::from_utf8(shared.body(Audience::Public).to_vec()).unwrap();
        assert!(!public.contains("Maria") && !public.contains("customer_name"));
        let operator = String::from_utf8(shared.body(Audience::Operator).to_vec()).unwrap();
        assert!(operator.contains("Maria Souza"));
        // Shared, not copied: the body points into the message.
        let message = shared.message(Audience::Public);
        let body = shared.body(Audience::Public);
        let within = message.as_bytes().as_ptr_range();
        assert!(within.contains(&body.as_ptr()));
    }
}
