//! Statistics (contract §4 and §9): `GET …/stats` over a history built through the API
//! with the test clock, every number checked against figures worked out by hand
//! (percentiles by `percentile_cont`'s linear interpolation).

use std::time::Duration;

use actix_web::http::Method;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn stats_path(site: &Site, query: &str) -> String {
    format!("/api/v1/tenants/{}/stats{query}", site.slug)
}

async fn stats(app: &TestApp, site: &Site, query: &str) -> Value {
    app.get(&stats_path(site, query), Some(&site.admin))
        .await
        .expect(200)
}

/// Issues a ticket of the service at this moment.
async fn issue_at(app: &TestApp, site: &Site, service: usize, when: &str) -> Value {
    app.clock.jump_to(at(when));
    app.issue(site, service).await
}

/// Call-next from all services to the counter, by the holder of `token`, at this moment.
async fn call_next_at(
    app: &TestApp,
    site: &Site,
    token: &str,
    counter: usize,
    when: &str,
) -> Value {
    app.clock.jump_to(at(when));
    app.post(
        &format!(
            "/api/v1/tenants/{}/counters/{}/call",
            site.slug, site.counters[counter]
        ),
        Some(token),
        json!({}),
    )
    .await
    .expect(200)
}

/// This waiting ticket called to the counter, out of order, at this moment.
async fn call_ticket_at(
    app: &TestApp,
    site: &Site,
    token: &str,
    ticket: &Value,
    counter: usize,
    when: &str,
) -> Value {
    app.clock.jump_to(at(when));
    let id = ticket["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/tenants/{}/tickets/{id}/call", site.slug),
        Some(token),
        json!({ "counter_id": site.counters[counter] }),
    )
    .await
    .expect(200)
}

/// An action on the ticket (`start`, `finish`, `no-show`…) by the holder of `token`.
async fn act_at(app: &TestApp, site: &Site, token: &str, ticket: &Value, action: &str, when: &str) {
    app.clock.jump_to(at(when));
    let id = ticket["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/tenants/{}/tickets/{id}/{action}", site.slug),
        Some(token),
        json!({}),
    )
    .await
    .expect(200);
}

async fn transfer_at(
    app: &TestApp,
    site: &Site,
    token: &str,
    ticket: &Value,
    to: usize,
    when: &str,
) {
    app.clock.jump_to(at(when));
    let id = ticket["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/tenants/{}/tickets/{id}/transfer", site.slug),
        Some(token),
        json!({ "service_id": site.services[to] }),
    )
    .await
    .expect(200);
}

async fn add_operator(app: &TestApp, site: &Site, username: &str) -> String {
    let password = format!("{username}-password");
    app.post(
        &format!("/api/v1/tenants/{}/users", site.slug),
        Some(&site.admin),
        json!({ "username": username, "password": password, "role": "operator" }),
    )
    .await
    .expect(201);
    app.login(&site.slug, username, &password).await
}

/// The day of the hand-built history, in the tenant's zone (UTC).
const DAY: &str = "2027-01-12";

/// One day of a UTC tenant with services A and B, counters 0 and 1, and two operators,
/// olga and ivan. Its legs (service, operator, end, wait, service time, start hour):
///
/// | leg | service | operator | end | wait | service | hour |
/// | --- | --- | --- | --- | --- | --- | --- |
/// | A001 | A | olga | done | 120 | 180 | 9 |
/// | A002 | A | ivan | no_show (after a recall) | 300 | – | 9 |
/// | B001 in B | B | olga | transferred (while serving) | 540 | 60 | 9 |
/// | B001 in A | A | ivan | done | 180 | 240 | 9 |
/// | A003 | A | – | expired (waiting) | – | – | 9 |
/// | B002 | B | – | cancelled (waiting) | – | – | 9 |
/// | A004 | A | olga | done, after a no-show and a reactivation | 120 | 120 | 9 |
/// | B003 | B | ivan | expired (called) | 180 | – | 10 |
async fn hand_built_history(app: &TestApp) -> Site {
    app.clock.jump_to(at("2027-01-12T08:00:00Z"));
    let site = app.site("bank", 2, 2).await;
    let olga = site.operator.clone();
    let ivan = add_operator(app, &site, "ivan").await;

    let a1 = issue_at(app, &site, 0, "2027-01-12T09:00:00Z").await;
    // At the same moment: a second jump there would put the clock back.
    let a2 = app.issue(&site, 0).await;
    let b1 = issue_at(app, &site, 1, "2027-01-12T09:01:00Z").await;
    let called = call_next_at(app, &site, &olga, 0, "2027-01-12T09:02:00Z").await;
    assert_eq!(called["id"], a1["id"]);
    act_at(app, &site, &olga, &a1, "start", "2027-01-12T09:03:00Z").await;
    let called = call_next_at(app, &site, &ivan, 1, "2027-01-12T09:05:00Z").await;
    assert_eq!(called["id"], a2["id"]);
    act_at(app, &site, &olga, &a1, "finish", "2027-01-12T09:06:00Z").await;
    // A recall does not move the wait, which runs to the first call.
    act_at(app, &site, &ivan, &a2, "recall", "2027-01-12T09:07:00Z").await;
    act_at(app, &site, &ivan, &a2, "no-show", "2027-01-12T09:08:00Z").await;

    let called = call_next_at(app, &site, &olga, 0, "2027-01-12T09:10:00Z").await;
    assert_eq!(called["id"], b1["id"]);
    act_at(app, &site, &olga, &b1, "start", "2027-01-12T09:11:00Z").await;
    transfer_at(app, &site, &olga, &b1, 0, "2027-01-12T09:12:00Z").await;
    let called = call_next_at(app, &site, &ivan, 1, "2027-01-12T09:15:00Z").await;
    assert_eq!(called["id"], b1["id"]);
    act_at(app, &site, &ivan, &b1, "start", "2027-01-12T09:16:00Z").await;
    act_at(app, &site, &ivan, &b1, "finish", "2027-01-12T09:20:00Z").await;

    let _a3 = issue_at(app, &site, 0, "2027-01-12T09:30:00Z").await;
    let b2 = issue_at(app, &site, 1, "2027-01-12T09:31:00Z").await;
    act_at(app, &site, &olga, &b2, "cancel", "2027-01-12T09:32:00Z").await;

    // A004's first leg (wait 60, no-show) is undone by its reactivation: it counts once,
    // done, with the wait from the reactivation to the next call.
    let a4 = issue_at(app, &site, 0, "2027-01-12T09:40:00Z").await;
    call_ticket_at(app, &site, &olga, &a4, 0, "2027-01-12T09:41:00Z").await;
    act_at(app, &site, &olga, &a4, "no-show", "2027-01-12T09:42:00Z").await;
    act_at(app, &site, &olga, &a4, "reactivate", "2027-01-12T09:45:00Z").await;
    call_ticket_at(app, &site, &olga, &a4, 0, "2027-01-12T09:47:00Z").await;
    act_at(app, &site, &olga, &a4, "start", "2027-01-12T09:48:00Z").await;
    act_at(app, &site, &olga, &a4, "finish", "2027-01-12T09:50:00Z").await;

    let b3 = issue_at(app, &site, 1, "2027-01-12T10:05:00Z").await;
    call_ticket_at(app, &site, &ivan, &b3, 1, "2027-01-12T10:08:00Z").await;
    app.clock.jump_to(at("2027-01-12T10:10:00Z"));
    let closed = app
        .post(
            &format!("/api/v1/tenants/{}/day/close", site.slug),
            Some(&site.admin),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(
        closed["expired"], 2,
        "A003 waiting and B003 called: {closed}"
    );
    site
}

/// The clock runs between a jump and the request it times (milliseconds, more under
/// load): times are checked to a second, and every expected figure is seconds apart.
#[track_caller]
fn assert_secs(actual: &Value, expected: Option<f64>, what: &str) {
    match expected {
        None => assert!(actual.is_null(), "{what}: expected null, got {actual}"),
        Some(expected) => {
            let actual = actual
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: expected {expected}, got {actual}"));
            assert!(
                (actual - expected).abs() <= 1.0,
                "{what}: expected {expected}, got {actual}"
            );
        }
    }
}

/// Checks the fields shared by totals, services and operators: counts, then wait and
/// service times as (mean, p50, p90).
#[track_caller]
fn assert_ended(
    got: &Value,
    what: &str,
    counts: [i64; 5],
    wait: [Option<f64>; 3],
    service: [Option<f64>; 3],
) {
    for (field, expected) in ["served", "no_show", "cancelled", "expired", "transferred"]
        .into_iter()
        .zip(counts)
    {
        assert_eq!(got[field], expected, "{what} {field}: {got}");
    }
    for (times, expected) in [("wait_secs", wait), ("service_secs", service)] {
        for (stat, expected) in ["mean", "p50", "p90"].into_iter().zip(expected) {
            assert_secs(
                &got[times][stat],
                expected,
                &format!("{what} {times}.{stat}"),
            );
        }
    }
}

#[actix_web::test]
async fn a_hand_built_day_gives_every_number_of_the_report() {
    let app = TestApp::spawn().await;
    let site = hand_built_history(&app).await;
    let report = stats(&app, &site, &format!("?from={DAY}&to={DAY}")).await;

    assert_eq!(report["from"], DAY);
    assert_eq!(report["to"], DAY);
    assert_eq!(report["timezone"], "UTC");

    let totals = &report["totals"];
    assert_eq!(totals["issued"], 7, "{totals}");
    // Waits 120 120 180 180 300 540; service times 60 120 180 240.
    assert_ended(
        totals,
        "totals",
        [3, 1, 1, 2, 1],
        [Some(240.0), Some(180.0), Some(420.0)],
        [Some(150.0), Some(150.0), Some(222.0)],
    );

    let services = report["services"].as_array().unwrap();
    let codes: Vec<&str> = services
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["A", "B"]);
    let (a, b) = (&services[0], &services[1]);
    assert_eq!(a["id"], site.services[0].as_str());
    assert_eq!(a["name"], "Service A");
    assert_eq!(a["issued"], 4, "A001 A002 A003 A004, not B001: {a}");
    // Waits 120 120 180 300; service times 120 180 240.
    assert_ended(
        a,
        "A",
        [3, 1, 0, 1, 0],
        [Some(180.0), Some(150.0), Some(264.0)],
        [Some(180.0), Some(180.0), Some(228.0)],
    );
    assert_eq!(b["issued"], 3, "{b}");
    // Waits 180 540; service time 60 (start to transfer).
    assert_ended(
        b,
        "B",
        [0, 0, 1, 1, 1],
        [Some(360.0), Some(360.0), Some(504.0)],
        [Some(60.0), Some(60.0), Some(60.0)],
    );

    let operators = report["operators"].as_array().unwrap();
    let names: Vec<&str> = operators
        .iter()
        .map(|o| o["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ivan", "olga"], "the admin ended no leg");
    let (ivan, olga) = (&operators[0], &operators[1]);
    assert!(ivan.get("issued").is_none(), "{ivan}");
    // ivan: A002 no-show 300, B001 in A done 180/240, B003 expired 180.
    assert_ended(
        ivan,
        "ivan",
        [1, 1, 0, 1, 0],
        [Some(220.0), Some(180.0), Some(276.0)],
        [Some(240.0), Some(240.0), Some(240.0)],
    );
    // olga: A001 done 120/180, B001 in B transferred 540/60, A004 done 120/120.
    assert_ended(
        olga,
        "olga",
        [2, 0, 0, 0, 1],
        [Some(260.0), Some(120.0), Some(456.0)],
        [Some(120.0), Some(120.0), Some(168.0)],
    );

    let hours = report["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    for (i, hour) in hours.iter().enumerate() {
        assert_eq!(hour["hour"], i);
        let (arrivals, mean) = match i {
            // Seven legs began at 9 (B001's second at its transfer, A004's last at its
            // reactivation); five were called: 120 300 540 180 120.
            9 => (7, Some(252.0)),
            10 => (1, Some(180.0)),
            _ => (0, None),
        };
        assert_eq!(hour["arrivals"], arrivals, "hour {i}: {hour}");
        assert_secs(&hour["mean_wait_secs"], mean, &format!("hour {i}"));
    }

    // Today (the clock's day) is the default at either end.
    let mut default = stats(&app, &site, "").await;
    let mut from_only = stats(&app, &site, &format!("?from={DAY}")).await;
    for answer in [&mut default, &mut from_only] {
        assert_eq!(answer["to"], DAY);
    }
    assert_eq!(default, report);
    assert_eq!(from_only, report);
    let wider = stats(&app, &site, "?from=2027-01-01&to=2027-01-31").await;
    assert_eq!(wider["totals"], report["totals"]);
    assert_eq!(wider["services"], report["services"]);
}

#[actix_web::test]
async fn a_range_without_activity_lists_the_active_services_with_zeros() {
    let app = TestApp::spawn().await;
    let site = hand_built_history(&app).await;
    let report = stats(&app, &site, "?from=2027-01-13&to=2027-02-13").await;
    assert_eq!(report["totals"]["issued"], 0);
    assert_ended(&report["totals"], "totals", [0; 5], [None; 3], [None; 3]);
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 2, "both services are active: {report}");
    for service in services {
        assert_eq!(service["issued"], 0);
        assert_ended(service, "service", [0; 5], [None; 3], [None; 3]);
    }
    assert_eq!(report["operators"], json!([]));
    assert_eq!(report["hours"].as_array().unwrap().len(), 24);
    assert!(
        report["hours"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["arrivals"] == 0 && h["mean_wait_secs"].is_null())
    );

    // A deactivated service with no activity is left out; one with activity stays.
    app.send(
        Method::PATCH,
        &format!(
            "/api/v1/tenants/{}/services/{}",
            site.slug, site.services[1]
        ),
        Some(&site.admin),
        &[],
        Some(json!({ "active": false }).to_string().into_bytes()),
    )
    .await
    .expect(200);
    let idle = stats(&app, &site, "?from=2027-01-13&to=2027-01-13").await;
    let codes: Vec<&Value> = idle["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["code"])
        .collect();
    assert_eq!(codes, ["A"]);
    let busy = stats(&app, &site, &format!("?from={DAY}&to={DAY}")).await;
    assert_eq!(busy["services"][1]["code"], "B");
    assert_eq!(busy["services"][1]["issued"], 3);
}

#[actix_web::test]
async fn the_csv_export_is_one_table_with_the_numbers_of_the_json() {
    let app = TestApp::spawn().await;
    let site = hand_built_history(&app).await;
    let query = format!("?from={DAY}&to={DAY}");
    let report = stats(&app, &site, &query).await;

    let by_format = app
        .get(
            &stats_path(&site, &format!("{query}&format=csv")),
            Some(&site.admin),
        )
        .await;
    let by_accept = app
        .send(
            Method::GET,
            &stats_path(&site, &query),
            Some(&site.admin),
            &[("Accept", "text/csv")],
            None,
        )
        .await;
    for reply in [&by_format, &by_accept] {
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(
            reply
                .header("content-type")
                .unwrap()
                .starts_with("text/csv"),
            "{:?}",
            reply.headers
        );
    }
    assert_eq!(by_format.raw, by_accept.raw);
    let json_first = app
        .send(
            Method::GET,
            &stats_path(&site, &query),
            Some(&site.admin),
            &[("Accept", "application/json, text/csv;q=0.5")],
            None,
        )
        .await
        .expect(200);
    assert_eq!(json_first, report);

    let mut reader = csv::Reader::from_reader(by_format.raw.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let cell = |row: &csv::StringRecord, column: &str| -> String {
        let i = header.iter().position(|c| c == column).unwrap();
        row[i].to_owned()
    };
    // A cell equals a JSON value: blank for null, the same number otherwise.
    let same = |cell: String, value: &Value, what: &str| match value {
        Value::Null => assert_eq!(cell, "", "{what}"),
        Value::String(s) => assert_eq!(&cell, s, "{what}"),
        number => assert_eq!(
            cell.parse::<f64>().unwrap_or(f64::NAN),
            number.as_f64().unwrap(),
            "{what}: {cell}"
        ),
    };
    let ended_columns = [
        ("served", "/served"),
        ("no_show", "/no_show"),
        ("cancelled", "/cancelled"),
        ("expired", "/expired"),
        ("transferred", "/transferred"),
        ("wait_mean_secs", "/wait_secs/mean"),
        ("wait_p50_secs", "/wait_secs/p50"),
        ("wait_p90_secs", "/wait_secs/p90"),
        ("service_mean_secs", "/service_secs/mean"),
        ("service_p50_secs", "/service_secs/p50"),
        ("service_p90_secs", "/service_secs/p90"),
    ];
    let scoped = |scope: &str| -> Vec<&csv::StringRecord> {
        rows.iter().filter(|r| &r[0] == scope).collect()
    };
    assert_eq!(rows.len(), 2 + 2 + 24 + 1);

    let services = scoped("service");
    assert_eq!(services.len(), 2);
    for (row, json) in services.iter().zip(report["services"].as_array().unwrap()) {
        for column in ["id", "code", "name", "issued"] {
            same(cell(row, column), &json[column], column);
        }
        for (column, pointer) in ended_columns {
            same(cell(row, column), json.pointer(pointer).unwrap(), column);
        }
        assert_eq!(cell(row, "username"), "");
        assert_eq!(cell(row, "hour"), "");
    }
    let operators = scoped("operator");
    assert_eq!(operators.len(), 2);
    for (row, json) in operators
        .iter()
        .zip(report["operators"].as_array().unwrap())
    {
        for column in ["id", "username"] {
            same(cell(row, column), &json[column], column);
        }
        for (column, pointer) in ended_columns {
            same(cell(row, column), json.pointer(pointer).unwrap(), column);
        }
        assert_eq!(cell(row, "issued"), "");
    }
    let hours = scoped("hour");
    for (row, json) in hours.iter().zip(report["hours"].as_array().unwrap()) {
        for column in ["hour", "arrivals", "mean_wait_secs"] {
            same(cell(row, column), &json[column], column);
        }
        assert_eq!(cell(row, "served"), "");
    }
    let total = scoped("total");
    assert_eq!(total.len(), 1);
    same(
        cell(total[0], "issued"),
        &report["totals"]["issued"],
        "issued",
    );
    for (column, pointer) in ended_columns {
        same(
            cell(total[0], column),
            report["totals"].pointer(pointer).unwrap(),
            column,
        );
    }
}

#[actix_web::test]
async fn stats_outlive_the_event_log() {
    let app = TestApp::spawn().await;
    let site = hand_built_history(&app).await;
    let query = format!("?from={DAY}&to={DAY}");
    let before = stats(&app, &site, &query).await;

    app.clock.jump_to(at("2027-03-01T12:00:00Z"));
    let pruned = nextup::maintenance::prune_once(
        &app.pool,
        app.clock.as_ref(),
        Duration::from_secs(7 * 86_400),
    )
    .await
    .unwrap();
    assert!(pruned > 20, "the day's events are past retention: {pruned}");
    app.get(
        &format!("/api/v1/tenants/{}/events?since=0", site.slug),
        None,
    )
    .await
    .expect_error(410, "since_unavailable");

    let after = stats(&app, &site, &query).await;
    assert_eq!(after, before);
}

#[actix_web::test]
async fn hours_are_local_across_daylight_saving_changes() {
    let app = TestApp::spawn().await;
    app.clock.jump_to(at("2027-03-27T08:00:00Z"));
    let site = app.site_in("porto", "Europe/Lisbon", 1, 1).await;
    let olga = site.operator.clone();
    // Each ticket is called `wait` seconds after its issue, then marked a no-show.
    let issue_and_call = async |issued: &str, called: &str| {
        let ticket = issue_at(&app, &site, 0, issued).await;
        let got = call_next_at(&app, &site, &olga, 0, called).await;
        assert_eq!(got["id"], ticket["id"]);
        app.act(&site, &ticket, "no-show").await.expect(200);
    };
    // Lisbon is UTC+0 until 01:00 UTC on Sunday 28 March 2027, then UTC+1 (no local 01:xx).
    issue_and_call("2027-03-27T10:30:00Z", "2027-03-27T10:31:40Z").await; // 10:30, wait 100
    issue_and_call("2027-03-27T23:30:00Z", "2027-03-27T23:30:30Z").await; // 23:30, wait 30
    issue_and_call("2027-03-28T00:30:00Z", "2027-03-28T00:31:00Z").await; // 00:30, wait 60
    issue_and_call("2027-03-28T01:30:00Z", "2027-03-28T01:32:00Z").await; // 02:30, wait 120
    issue_and_call("2027-03-28T10:30:00Z", "2027-03-28T10:35:00Z").await; // 11:30, wait 300

    let spring = stats(&app, &site, "?from=2027-03-27&to=2027-03-28").await;
    assert_eq!(spring["timezone"], "Europe/Lisbon");
    assert_eq!(spring["totals"]["issued"], 5);
    assert_eq!(spring["totals"]["no_show"], 5);
    let expected = [(0, 60.0), (2, 120.0), (10, 100.0), (11, 300.0), (23, 30.0)];
    for (i, hour) in spring["hours"].as_array().unwrap().iter().enumerate() {
        match expected.iter().find(|(h, _)| *h == i) {
            Some((_, wait)) => {
                assert_eq!(hour["arrivals"], 1, "local hour {i}: {spring}");
                assert_secs(&hour["mean_wait_secs"], Some(*wait), &format!("hour {i}"));
            }
            None => assert_eq!(hour["arrivals"], 0, "local hour {i}: {spring}"),
        }
    }
    // The day is the local one: 23:30 UTC on the 27th is still the 27th in Lisbon.
    let sunday = stats(&app, &site, "?from=2027-03-28&to=2027-03-28").await;
    assert_eq!(sunday["totals"]["issued"], 3);

    // Autumn: at 01:00 UTC on Sunday 31 October 2027 the clocks go back from 02:00 to
    // 01:00, so 00:30 and 01:30 UTC are both 01:30 local.
    issue_and_call("2027-10-30T22:30:00Z", "2027-10-30T22:31:00Z").await; // 23:30, wait 60
    issue_and_call("2027-10-31T00:30:00Z", "2027-10-31T00:31:00Z").await; // 01:30, wait 60
    issue_and_call("2027-10-31T01:30:00Z", "2027-10-31T01:33:00Z").await; // 01:30, wait 180
    let autumn = stats(&app, &site, "?from=2027-10-30&to=2027-10-31").await;
    assert_eq!(autumn["totals"]["issued"], 3);
    let hours = autumn["hours"].as_array().unwrap();
    assert_eq!(hours[1]["arrivals"], 2, "{autumn}");
    assert_secs(&hours[1]["mean_wait_secs"], Some(120.0), "hour 1");
    assert_eq!(hours[23]["arrivals"], 1, "{autumn}");
    assert_eq!(hours[0]["arrivals"], 0);
    assert_eq!(hours[2]["arrivals"], 0);
    let saturday = stats(&app, &site, "?from=2027-10-30&to=2027-10-30").await;
    assert_eq!(
        saturday["totals"]["issued"], 1,
        "22:30 UTC is 23:30 on the 30th (WEST)"
    );

    let whole = stats(&app, &site, "?from=2027-01-01&to=2027-12-31").await;
    assert_eq!(whole["totals"]["issued"], 8);
}

#[actix_web::test]
async fn bad_ranges_formats_and_callers_get_the_contract_errors() {
    let app = TestApp::spawn().await;
    let site = app.site("bank", 1, 1).await;
    let other = app.site("other", 1, 1).await;
    let cases: [(&str, u16, &str, &str); 10] = [
        ("?from=2027-1-05", 400, "invalid_query", "a one-digit month"),
        ("?to=2027-02-30", 400, "invalid_query", "no such day"),
        ("?from=yesterday", 400, "invalid_query", "a word"),
        ("?from=2027-01-05T00:00:00Z", 400, "invalid_query", "a time"),
        (
            "?from=2027-01-06&to=2027-01-05",
            422,
            "invalid_input",
            "from after to",
        ),
        (
            "?from=2016-01-01&to=2027-01-05",
            422,
            "invalid_input",
            "more than 3660 days",
        ),
        ("?format=xml", 400, "invalid_query", "an unknown format"),
        ("?format=", 400, "invalid_query", "an empty format"),
        ("?from=%FF", 400, "invalid_query", "not UTF-8"),
        (
            "?from=2027-01-01&from=2027-01-02",
            400,
            "invalid_query",
            "from twice",
        ),
    ];
    for (query, status, code, why) in cases {
        let reply = app.get(&stats_path(&site, query), Some(&site.admin)).await;
        assert_eq!(reply.status, status, "{why}: {}", reply.raw);
        reply.expect_error(status, code);
    }
    let ten_years = app
        .get(
            &stats_path(&site, "?from=2017-01-10&to=2027-01-05"),
            Some(&site.admin),
        )
        .await;
    ten_years.expect(200);

    app.get(&stats_path(&site, ""), Some(&site.operator))
        .await
        .expect_error(403, "admin_required");
    app.get(&stats_path(&site, ""), None)
        .await
        .expect_error(401, "missing_token");
    app.get(&stats_path(&site, ""), Some(&other.admin))
        .await
        .expect_error(403, "wrong_tenant");
    app.get(&stats_path(&site, ""), Some("not-a-token"))
        .await
        .expect_error(401, "invalid_token");
}
