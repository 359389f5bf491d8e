//! The writer commits the changes of many tenants together (`changes::writer`): one
//! transaction for all, each tenant's seq gapless, and a failing request never taking the
//! others of its batch down.

use std::time::{Duration, Instant};

use futures_util::future::{join, join_all};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};

use crate::helpers::{Reply, TestApp};

/// A tenant with one service and nobody logged in: enough for anonymous issuing.
struct BareSite {
    slug: String,
    tenant: uuid::Uuid,
    service: String,
}

async fn bare_site(app: &TestApp, slug: &str) -> BareSite {
    app.create_tenant(slug, "UTC").await;
    let mut conn = app.pool.acquire().await.unwrap();
    let tenant = nextup::db::tenants::get_tenant(&mut conn, slug)
        .await
        .unwrap();
    let service = nextup::db::services::insert_service(
        &mut conn,
        tenant.id,
        &nextup::domain::ids::ServiceCode::parse("A").unwrap(),
        &nextup::domain::ids::DisplayName::parse("name", "Service A").unwrap(),
    )
    .await
    .unwrap();
    BareSite {
        slug: slug.to_owned(),
        tenant: tenant.id.get(),
        service: service.id.to_string(),
    }
}

async fn issue(app: &TestApp, site: &BareSite) -> Reply {
    app.post(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        None,
        json!({ "service_id": site.service }),
    )
    .await
}

/// Holds the seq rows of `sites` locked until the transaction ends, so that the writer's
/// batches of those tenants wait at their last step.
async fn lock_seqs(pool: &PgPool, sites: &[&BareSite]) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    let tenants: Vec<uuid::Uuid> = sites.iter().map(|s| s.tenant).collect();
    sqlx::query("select 1 from event_sequences where tenant_id = any($1) for update")
        .bind(&tenants)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Polls until `check` holds, for at most ten seconds.
async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sessions of the test database waiting for a lock.
async fn lock_waiters(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The `nextup_change_queue` gauge: requests waiting for a batch.
async fn queued_changes(app: &TestApp) -> i64 {
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
    metrics
        .raw
        .lines()
        .find_map(|line| line.strip_prefix("nextup_change_queue "))
        .expect("the nextup_change_queue gauge")
        .trim()
        .parse()
        .unwrap()
}

/// Tenants whose batches hold every lane of the writer while the test keeps their seq
/// rows locked.
async fn blockers(app: &TestApp) -> Vec<BareSite> {
    let mut blockers = Vec::new();
    for k in 0..nextup::changes::LANES {
        blockers.push(bare_site(app, &format!("hold-{k}")).await);
    }
    blockers
}

/// Issues one ticket at each of `sites` so that all of them are sure to share one batch
/// (see [`send_in_one_batch`]).
async fn issue_in_one_batch(
    app: &TestApp,
    blockers: &[BareSite],
    sites: &[&BareSite],
) -> Vec<Reply> {
    let requests: Vec<_> = sites.iter().map(|site| issue(app, site)).collect();
    send_in_one_batch(app, blockers, requests).await
}

/// Sends the ticket requests so that all of them are sure to share one batch: while every
/// lane of the writer is held (by batches of `blockers`, whose seq rows the test keeps
/// locked; each further lane opens once the batches before it are slow), the requests
/// queue; once the lock goes, the writer's next batch takes them all.
async fn send_in_one_batch<F: std::future::Future<Output = Reply>>(
    app: &TestApp,
    blockers: &[BareSite],
    requests: Vec<F>,
) -> Vec<Reply> {
    let count = requests.len() as i64;
    let lock = lock_seqs(&app.pool, &blockers.iter().collect::<Vec<_>>()).await;
    let held = join_all(blockers.iter().enumerate().map(|(k, site)| async move {
        wait_until("the lanes before wait for the test's lock", || async {
            lock_waiters(&app.pool).await == k as i64
        })
        .await;
        issue(app, site).await
    }));
    let batch = async {
        wait_until("every lane waits for the test's lock", || async {
            lock_waiters(&app.pool).await == blockers.len() as i64
        })
        .await;
        let sent = join_all(requests);
        let release = async {
            wait_until("every request waits for a batch", || async {
                queued_changes(app).await == count
            })
            .await;
            lock.commit().await.unwrap();
        };
        join(sent, release).await.0
    };
    let (held, replies) = join(held, batch).await;
    for reply in held {
        reply.expect(201);
    }
    replies
}

/// An anonymous issue with an `Idempotency-Key`.
async fn issue_keyed(app: &TestApp, site: &BareSite, key: &str, service: &str) -> Reply {
    app.post_keyed(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        None,
        key,
        json!({ "service_id": service }),
    )
    .await
}

/// Each tenant's events as (seq, transaction id of the row).
async fn events_of(pool: &PgPool, site: &BareSite) -> Vec<(i64, String)> {
    sqlx::query_as("select seq, xmin::text from events where tenant_id = $1 order by seq")
        .bind(site.tenant)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[actix_web::test]
async fn changes_of_several_tenants_commit_in_one_transaction() {
    let app = TestApp::spawn().await;
    let blockers = blockers(&app).await;
    let mut sites = Vec::new();
    for slug in ["alpha", "bravo", "charlie"] {
        sites.push(bare_site(&app, slug).await);
    }
    let sites: Vec<&BareSite> = sites.iter().collect();

    let replies = issue_in_one_batch(&app, &blockers, &sites).await;

    for reply in replies {
        assert_eq!(reply.expect(201)["code"], "A001");
    }
    let mut transactions = Vec::new();
    for site in &sites {
        let events = events_of(&app.pool, site).await;
        assert_eq!(events.len(), 1, "{}: {events:?}", site.slug);
        assert_eq!(events[0].0, 1, "each tenant's own seq");
        transactions.push(events[0].1.clone());
    }
    transactions.dedup();
    assert_eq!(transactions.len(), 1, "one transaction: {transactions:?}");
}

#[actix_web::test]
async fn a_failing_request_does_not_take_the_other_tenants_of_its_batch_down() {
    let app = TestApp::spawn().await;
    let blockers = blockers(&app).await;
    let alpha = bare_site(&app, "alpha").await;
    let bravo = bare_site(&app, "bravo").await;
    let charlie = bare_site(&app, "charlie").await;
    // Bravo's tickets fail in the database, as a statement does that breaks a constraint.
    sqlx::raw_sql(&format!(
        "create function refuse_bravo() returns trigger language plpgsql as $$
         begin raise exception 'bravo is refused by the test'; end $$;
         create trigger refuse_bravo before insert on tickets for each row
         when (new.tenant_id = '{}') execute function refuse_bravo();",
        bravo.tenant
    ))
    .execute(&app.pool)
    .await
    .unwrap();

    let replies = issue_in_one_batch(&app, &blockers, &[&alpha, &bravo, &charlie]).await;

    let [alpha_reply, bravo_reply, charlie_reply]: [Reply; 3] = replies.try_into().unwrap();
    assert_eq!(alpha_reply.expect(201)["code"], "A001");
    bravo_reply.expect_error(500, "internal_error");
    assert_eq!(charlie_reply.expect(201)["code"], "A001");
    for site in [&alpha, &charlie] {
        let seqs: Vec<i64> = events_of(&app.pool, site)
            .await
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(seqs, [1], "{}", site.slug);
    }
    assert!(events_of(&app.pool, &bravo).await.is_empty());

    // Nothing of bravo's failed request was kept: its next ticket takes seq 1 and A001.
    sqlx::raw_sql("drop trigger refuse_bravo on tickets")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(issue(&app, &bravo).await.expect(201)["code"], "A001");
    let seqs: Vec<i64> = events_of(&app.pool, &bravo)
        .await
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(seqs, [1]);
}

#[actix_web::test]
async fn keyed_requests_of_several_tenants_are_claimed_together_each_by_its_own_rule() {
    let app = TestApp::spawn().await;
    let blockers = blockers(&app).await;
    let mut sites = Vec::new();
    for slug in ["alpha", "bravo", "charlie", "delta"] {
        sites.push(bare_site(&app, slug).await);
    }
    let [alpha, bravo, charlie, delta]: [&BareSite; 4] =
        sites.iter().collect::<Vec<_>>().try_into().ok().unwrap();
    // Alpha and charlie have used the key before; bravo and delta have not (keys are per
    // tenant).
    let alpha_first = issue_keyed(&app, alpha, "press-1", &alpha.service)
        .await
        .expect(201);
    issue_keyed(&app, charlie, "press-1", &charlie.service)
        .await
        .expect(201);
    let elsewhere = uuid::Uuid::new_v4().to_string();

    let replies = send_in_one_batch(
        &app,
        &blockers,
        vec![
            issue_keyed(&app, alpha, "press-1", &alpha.service),
            issue_keyed(&app, bravo, "press-1", &bravo.service),
            issue_keyed(&app, charlie, "press-1", &elsewhere),
            issue_keyed(&app, delta, "press-1", &delta.service),
            issue_keyed(&app, delta, "press-1", &delta.service),
        ],
    )
    .await;

    let [alpha_again, bravo_new, charlie_reused, delta_one, delta_two]: [Reply; 5] =
        replies.try_into().unwrap();
    assert_eq!(alpha_again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(
        alpha_again.expect(201),
        alpha_first,
        "alpha's answer, replayed"
    );
    assert_eq!(bravo_new.expect(201)["code"], "A001");
    charlie_reused.expect_error(422, "idempotency_key_reused");
    // The same key twice in one batch: one is applied, the other is told it is in progress.
    let (applied, refused) = match delta_one.status {
        201 => (delta_one, delta_two),
        _ => (delta_two, delta_one),
    };
    assert_eq!(applied.expect(201)["code"], "A001");
    refused.expect_error(409, "request_in_progress");

    // Bravo's and delta's new tickets committed together; alpha and charlie changed nothing.
    let bravo_events = events_of(&app.pool, bravo).await;
    let delta_events = events_of(&app.pool, delta).await;
    assert_eq!(bravo_events.len(), 1);
    assert_eq!(delta_events.len(), 1);
    assert_eq!(bravo_events[0].1, delta_events[0].1, "one transaction");
    for site in [alpha, charlie] {
        assert_eq!(events_of(&app.pool, site).await.len(), 1, "{}", site.slug);
    }
}

#[actix_web::test]
async fn seqs_stay_gapless_per_tenant_under_concurrent_writers_of_100_tenants() {
    const TENANTS: usize = 100;
    const CLIENTS: usize = 32;
    const ISSUES_PER_CLIENT: usize = 25;
    let app = TestApp::spawn().await;
    // Two processes on one database, as behind a load balancer: their batches of the same
    // tenants lock seq rows crosswise unless they lock them in one order.
    let sibling = app.spawn_sibling().await;
    let mut sites = Vec::new();
    for k in 0..TENANTS {
        sites.push(bare_site(&app, &format!("site-{k:03}")).await);
    }

    // Client c issues at tenants c, c + 32, c + 64, … in turn, through either process.
    let clients = (0..CLIENTS).map(|c| {
        let sites = &sites;
        let (app, sibling) = (&app, &sibling);
        async move {
            let mut codes = Vec::new();
            for i in 0..ISSUES_PER_CLIENT {
                let site = &sites[(c + i * CLIENTS) % TENANTS];
                let via = if (c + i) % 2 == 0 { app } else { sibling };
                let ticket = issue(via, site).await.expect(201);
                codes.push((site.slug.clone(), ticket["code"].clone()));
            }
            codes
        }
    });
    let issued: Vec<(String, Value)> = join_all(clients).await.into_iter().flatten().collect();
    assert_eq!(issued.len(), CLIENTS * ISSUES_PER_CLIENT);

    for site in &sites {
        let mut codes: Vec<String> = issued
            .iter()
            .filter(|(slug, _)| *slug == site.slug)
            .map(|(_, code)| code.as_str().unwrap().to_owned())
            .collect();
        codes.sort();
        let expected: Vec<String> = (1..=codes.len()).map(|n| format!("A{n:03}")).collect();
        assert_eq!(codes, expected, "{}: numbers without gaps", site.slug);

        let seqs: Vec<i64> = events_of(&app.pool, site)
            .await
            .iter()
            .map(|e| e.0)
            .collect();
        let expected: Vec<i64> = (1..=codes.len() as i64).collect();
        assert_eq!(seqs, expected, "{}: seqs without gaps", site.slug);
        let last: i64 =
            sqlx::query_scalar("select last_seq from event_sequences where tenant_id = $1")
                .bind(site.tenant)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(last, codes.len() as i64, "{}", site.slug);
    }
}

#[actix_web::test]
async fn a_batch_stuck_on_a_lock_does_not_hold_up_the_other_tenants() {
    // The writer runs one batch at a time; one that waits on a lock (here the test's, as an
    // operator's `SELECT … FOR UPDATE` or another process's long transaction would) must not
    // keep every other tenant waiting until their requests time out.
    let app = TestApp::spawn().await;
    let stuck = bare_site(&app, "stuck").await;
    let free = bare_site(&app, "free").await;
    let lock = lock_seqs(&app.pool, &[&stuck]).await;
    let held = issue(&app, &stuck);
    let others = async {
        wait_until("the stuck tenant's batch waits for the lock", || async {
            lock_waiters(&app.pool).await == 1
        })
        .await;
        let codes: Vec<Value> = join_all((0..3).map(|_| issue(&app, &free)))
            .await
            .into_iter()
            .map(|reply| reply.expect(201)["code"].clone())
            .collect();
        // Still stuck: the others went past it.
        assert_eq!(lock_waiters(&app.pool).await, 1);
        lock.commit().await.unwrap();
        codes
    };
    let (held, mut codes) = join(held, others).await;
    codes.sort_by_key(|code| code.to_string());
    assert_eq!(codes, ["A001", "A002", "A003"]);
    assert_eq!(held.expect(201)["code"], "A001");
}
