//! Administration of services and counters (contract §9): listings with `?all=true`,
//! `PATCH` of a counter, and the refusal to call to an inactive counter.

use actix_web::http::Method;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> Reply {
    app.send(
        Method::PATCH,
        path,
        Some(token),
        &[],
        Some(body.to_string().into_bytes()),
    )
    .await
}

fn names(list: &Value) -> Vec<(String, Option<bool>)> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["active"].as_bool(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn admins_list_inactive_services_with_all_and_others_get_the_usual_listing() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 0).await;
    let other = app.site("garage", 0, 0).await;
    let path = format!("/api/v1/tenants/{}/services", site.slug);
    patch(
        &app,
        &format!("{path}/{}", site.services[1]),
        &site.admin,
        json!({ "active": false }),
    )
    .await
    .expect(200);

    let all = app
        .get(&format!("{path}?all=true"), Some(&site.admin))
        .await
        .expect(200);
    assert_eq!(
        names(&all["services"]),
        vec![
            ("Service A".to_owned(), Some(true)),
            ("Service B".to_owned(), Some(false))
        ]
    );

    let usual = vec![("Service A".to_owned(), None)];
    // Without `all`, the admin gets the public listing.
    let listed = app.get(&path, Some(&site.admin)).await.expect(200);
    assert_eq!(names(&listed["services"]), usual);
    // `all` from an operator or an anonymous caller is ignored.
    for token in [Some(site.operator.as_str()), None] {
        let listed = app
            .get(&format!("{path}?all=true"), token)
            .await
            .expect(200);
        assert_eq!(names(&listed["services"]), usual, "token {token:?}");
    }
    // `all=false` is the usual listing too; a value that is not a boolean is bad input.
    let listed = app
        .get(&format!("{path}?all=false"), Some(&site.admin))
        .await
        .expect(200);
    assert_eq!(names(&listed["services"]), usual);
    app.get(&format!("{path}?all=yes"), Some(&site.admin))
        .await
        .expect_error(400, "invalid_query");
    // Another tenant's admin asking for all: a token sent must be this tenant's.
    app.get(&format!("{path}?all=true"), Some(&other.admin))
        .await
        .expect_error(403, "wrong_tenant");
}

#[actix_web::test]
async fn admins_rename_and_deactivate_counters_and_list_them_with_all() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 0, 2).await;
    let other = app.site("garage", 0, 1).await;
    let path = format!("/api/v1/tenants/{}/counters", site.slug);
    let desk1 = format!("{path}/{}", site.counters[0]);

    let renamed = patch(&app, &desk1, &site.admin, json!({ "name": "  Window 1 " }))
        .await
        .expect(200);
    assert_eq!(
        renamed,
        json!({ "id": site.counters[0], "name": "Window 1", "active": true })
    );
    let inactive = patch(&app, &desk1, &site.admin, json!({ "active": false }))
        .await
        .expect(200);
    assert_eq!(
        inactive,
        json!({ "id": site.counters[0], "name": "Window 1", "active": false })
    );

    // Operators are not shown the inactive counter, even when they ask for all.
    for query in ["", "?all=true"] {
        let listed = app
            .get(&format!("{path}{query}"), Some(&site.operator))
            .await
            .expect(200);
        assert_eq!(
            names(&listed["counters"]),
            vec![("Desk 2".to_owned(), None)],
            "{query}"
        );
    }
    let listed = app.get(&path, Some(&site.admin)).await.expect(200);
    assert_eq!(
        names(&listed["counters"]),
        vec![("Desk 2".to_owned(), None)]
    );
    let all = app
        .get(&format!("{path}?all=true"), Some(&site.admin))
        .await
        .expect(200);
    assert_eq!(
        names(&all["counters"]),
        vec![
            ("Desk 2".to_owned(), Some(true)),
            ("Window 1".to_owned(), Some(false))
        ]
    );

    // Errors: a taken name, an unknown counter, another tenant's counter, bad input,
    // an operator, another tenant's admin.
    patch(&app, &desk1, &site.admin, json!({ "name": "Desk 2" }))
        .await
        .expect_error(409, "counter_name_taken");
    patch(
        &app,
        &format!("{path}/{}", uuid::Uuid::new_v4()),
        &site.admin,
        json!({ "active": true }),
    )
    .await
    .expect_error(404, "counter_not_found");
    patch(
        &app,
        &format!("{path}/{}", other.counters[0]),
        &site.admin,
        json!({ "active": false }),
    )
    .await
    .expect_error(404, "counter_not_found");
    patch(&app, &desk1, &site.admin, json!({ "name": "   " }))
        .await
        .expect_error(422, "invalid_input");
    let wrong_type = patch(&app, &desk1, &site.admin, json!({ "active": "no" })).await;
    assert!(
        [400, 422].contains(&wrong_type.status),
        "{}",
        wrong_type.raw
    );
    patch(&app, &desk1, &site.operator, json!({ "active": true }))
        .await
        .expect_error(403, "admin_required");
    patch(&app, &desk1, &other.admin, json!({ "active": true }))
        .await
        .expect_error(403, "wrong_tenant");
    app.get(&format!("{path}?all=true"), Some(&other.admin))
        .await
        .expect_error(403, "wrong_tenant");

    // Nothing of the refused changes was made.
    let all = app
        .get(&format!("{path}?all=true"), Some(&site.admin))
        .await
        .expect(200);
    assert_eq!(
        names(&all["counters"]),
        vec![
            ("Desk 2".to_owned(), Some(true)),
            ("Window 1".to_owned(), Some(false))
        ]
    );
    // Reactivated, it is listed to operators again.
    patch(&app, &desk1, &site.admin, json!({ "active": true }))
        .await
        .expect(200);
    let listed = app.get(&path, Some(&site.operator)).await.expect(200);
    assert_eq!(listed["counters"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn nothing_is_called_to_an_inactive_counter() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 3).await;
    let counters = format!("/api/v1/tenants/{}/counters", site.slug);
    let ticket = app.issue(&site, 0).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    patch(
        &app,
        &format!("{counters}/{}", site.counters[0]),
        &site.admin,
        json!({ "active": false }),
    )
    .await
    .expect(200);
    let seq = app.queue(&site).await["seq"].clone();

    // Call-next from all services (the batched statement), from named services (the
    // single one), a call of this ticket, and the preview of the next call.
    app.call_next(&site, 0)
        .await
        .expect_error(409, "counter_inactive");
    app.post(
        &format!("{counters}/{}/call", site.counters[0]),
        Some(&site.operator),
        json!({ "service_ids": [site.services[0]] }),
    )
    .await
    .expect_error(409, "counter_inactive");
    app.post(
        &format!("/api/v1/tenants/{}/tickets/{ticket_id}/call", site.slug),
        Some(&site.operator),
        json!({ "counter_id": site.counters[0] }),
    )
    .await
    .expect_error(409, "counter_inactive");
    app.get(
        &format!("{counters}/{}/next", site.counters[0]),
        Some(&site.operator),
    )
    .await
    .expect_error(409, "counter_inactive");

    let queue = app.queue(&site).await;
    assert_eq!(queue["seq"], seq, "nothing changed");
    assert_eq!(queue["waiting"][0]["id"], ticket["id"]);
    assert_eq!(queue["called"], json!([]));

    // Calls to the inactive counter made together with calls to active ones: only the
    // inactive one is refused, and the ticket goes to an active counter.
    let replies = join_all([0, 1, 0].map(|counter| app.call_next(&site, counter))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![409, 200, 409], "{replies:?}");
    assert_eq!(replies[1].body["id"], ticket["id"]);
    assert_eq!(replies[1].body["counter"]["id"], site.counters[1].as_str());

    // Reactivated, the counter takes calls again.
    app.issue(&site, 0).await;
    patch(
        &app,
        &format!("{counters}/{}", site.counters[0]),
        &site.admin,
        json!({ "active": true }),
    )
    .await
    .expect(200);
    let called = app.call_next(&site, 0).await.expect(200);
    assert_eq!(called["counter"]["id"], site.counters[0].as_str());
}
