//! What the schema itself guarantees, whatever the code above it does.

use crate::helpers::TestApp;

/// Rows of `table` that belong to the tenant (through `tenant_id`).
async fn rows_of(app: &TestApp, table: &str, tenant: uuid::Uuid) -> i64 {
    sqlx::query_scalar(&format!(
        "select count(*) from {table} where tenant_id = $1"
    ))
    .bind(tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_ticket_cannot_name_a_service_of_another_tenant() {
    let app = TestApp::spawn().await;
    let one = app.site("one", 1, 0).await;
    let two = app.site("two", 1, 0).await;
    let inserted = sqlx::query(
        "insert into tickets (id, tenant_id, service_id, code, service_day, status, priority,
                              created_at)
         values (gen_random_uuid(), $1, $2, 'A001', current_date, 'waiting', 'normal', now())",
    )
    .bind(app.tenant_id(&one.slug).await)
    .bind(uuid::Uuid::parse_str(&two.services[0]).unwrap())
    .execute(&app.pool)
    .await;
    let error = inserted.expect_err("a ticket of tenant one in tenant two's service");
    let db_error = error.as_database_error().expect("a database error");
    assert_eq!(db_error.code().as_deref(), Some("23503"), "{db_error}");
    assert_eq!(db_error.constraint(), Some("tickets_service_fkey"));
}

#[actix_web::test]
async fn deleting_a_tenant_deletes_everything_of_it_and_nothing_else() {
    let app = TestApp::spawn().await;
    let gone = app.site("gone", 2, 2).await;
    let kept = app.site("kept", 1, 1).await;
    for site in [&gone, &kept] {
        app.issue(site, 0).await;
        let ticket = app.call_next(site, 0).await.expect(200);
        app.act(site, &ticket, "start").await.expect(200);
    }
    // A transferred ticket leaves a leg behind.
    app.issue(&gone, 0).await;
    let moved = app.call_next(&gone, 1).await.expect(200);
    let id = moved["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/tenants/{}/tickets/{id}/transfer", gone.slug),
        Some(&gone.operator),
        serde_json::json!({ "service_id": gone.services[1] }),
    )
    .await
    .expect(200);
    // And an answer kept for an Idempotency-Key.
    app.post_keyed(
        &format!("/api/v1/tenants/{}/tickets", gone.slug),
        None,
        "press-1",
        serde_json::json!({ "service_id": gone.services[0] }),
    )
    .await
    .expect(201);
    let (gone_id, kept_id) = (
        app.tenant_id(&gone.slug).await,
        app.tenant_id(&kept.slug).await,
    );
    let tables = [
        "services",
        "tickets",
        "events",
        "event_sequences",
        "ticket_legs",
    ];
    for table in tables {
        assert!(rows_of(&app, table, gone_id).await > 0, "{table} before");
    }

    sqlx::query("delete from tenants where id = $1")
        .bind(gone_id)
        .execute(&app.pool)
        .await
        .unwrap();

    for table in tables {
        assert_eq!(rows_of(&app, table, gone_id).await, 0, "{table} after");
    }
    for table in ["services", "tickets", "events", "event_sequences"] {
        assert!(
            rows_of(&app, table, kept_id).await > 0,
            "{table} of the other tenant"
        );
    }
    assert_eq!(
        app.queue(&kept).await["called"].as_array().map(Vec::len),
        Some(1)
    );
}
