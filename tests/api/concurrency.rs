use std::collections::HashSet;

use futures_util::future::join_all;

use crate::helpers::*;

#[actix_web::test]
async fn eight_counters_calling_at_once_call_every_ticket_exactly_once() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 8).await;
    for i in 0..40 {
        app.issue(&site, i % 2).await;
    }
    // Each desk calls, serves and finishes until nothing is waiting.
    let desk = |counter: usize| {
        let (app, site) = (&app, &site);
        async move {
            let mut served = Vec::new();
            loop {
                let reply = app.call_next(site, counter).await;
                if reply.status == 204 {
                    return served;
                }
                let ticket = reply.expect(200);
                assert_eq!(ticket["counter"]["id"], site.counters[counter].as_str());
                app.act(site, &ticket, "start").await.expect(200);
                app.act(site, &ticket, "finish").await.expect(200);
                served.push(ticket["id"].as_str().unwrap().to_owned());
            }
        }
    };
    let served: Vec<Vec<String>> = join_all((0..8).map(desk)).await;
    let all: Vec<&String> = served.iter().flatten().collect();
    let distinct: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every ticket was called");
    assert_eq!(distinct.len(), 40, "no ticket was called twice");
    assert!(
        served.iter().filter(|s| !s.is_empty()).count() > 1,
        "the desks really ran in parallel"
    );
    let done: i64 =
        sqlx::query_scalar("select count(*) from tickets where status = 'done' and call_count = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(done, 40);
}

#[actix_web::test]
async fn fifty_concurrent_issues_get_fifty_distinct_codes() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let tickets = join_all((0..50).map(|_| app.issue(&site, 0))).await;
    let codes: HashSet<String> = tickets
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 50);
    let expected: HashSet<String> = (1..=50).map(|n| format!("A{n:03}")).collect();
    assert_eq!(codes, expected, "numbers 1 to 50, none skipped");
}

#[actix_web::test]
async fn concurrent_calls_to_one_counter_call_one_ticket() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    for _ in 0..5 {
        app.issue(&site, 0).await;
    }
    let replies = join_all((0..6).map(|_| app.call_next(&site, 0))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let busy = replies
        .iter()
        .filter(|r| r.status == 409 && r.body["error"]["code"] == "counter_busy")
        .count();
    assert_eq!(
        (ok, busy),
        (1, 5),
        "{:?}",
        replies.iter().map(|r| &r.raw).collect::<Vec<_>>()
    );
    let waiting = app.queue(&site).await["waiting"].as_array().unwrap().len();
    assert_eq!(waiting, 4);
}

#[actix_web::test]
async fn seqs_stay_gapless_under_concurrent_writers() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    join_all((0..30).map(|i| app.issue(&site, i % 2))).await;
    let seqs: Vec<i64> = sqlx::query_scalar("select seq from events order by seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(seqs, (1..=30).collect::<Vec<i64>>());
    // Each event's queue summary counts exactly the tickets issued up to its seq.
    let events = app
        .get(
            &format!("/api/v1/tenants/{}/events?since=0", site.slug),
            None,
        )
        .await
        .expect(200);
    let queue_updates: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "queue_update")
        .collect();
    for (i, update) in queue_updates.iter().enumerate() {
        let waiting: u64 = update["data"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["waiting"].as_u64().unwrap())
            .sum();
        assert_eq!(
            waiting,
            i as u64 + 1,
            "queue_update of seq {}",
            update["seq"]
        );
    }
}
