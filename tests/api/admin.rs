use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn admins_manage_services() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 0, 0).await;
    let path = format!("/api/v1/tenants/{}/services", site.slug);
    let created = app
        .post(
            &path,
            Some(&site.admin),
            json!({ "code": "ex", "name": "  Exams " }),
        )
        .await
        .expect(201);
    assert_eq!(created["code"], "EX", "codes are upper-cased");
    assert_eq!(created["name"], "Exams", "names are trimmed");
    app.post(
        &path,
        Some(&site.admin),
        json!({ "code": "EX", "name": "Again" }),
    )
    .await
    .expect_error(409, "service_code_taken");
    app.post(
        &path,
        Some(&site.admin),
        json!({ "code": "E1", "name": "Digits" }),
    )
    .await
    .expect_error(422, "invalid_input");

    let listed = app.get(&path, None).await.expect(200);
    assert_eq!(
        listed["services"],
        json!([{ "id": created["id"], "code": "EX", "name": "Exams" }])
    );

    let id = created["id"].as_str().unwrap();
    let patch = |body| {
        let url = format!("{path}/{id}");
        let token = site.admin.clone();
        let app = &app;
        async move {
            app.send(
                actix_web::http::Method::PATCH,
                &url,
                Some(&token),
                &[],
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await
        }
    };
    let renamed = patch(json!({ "name": "Lab exams" })).await.expect(200);
    assert_eq!(renamed["name"], "Lab exams");
    assert_eq!(renamed["active"], true);
    let inactive = patch(json!({ "active": false })).await.expect(200);
    assert_eq!(inactive["active"], false);
    assert_eq!(inactive["name"], "Lab exams");
    // Inactive services are not offered and take no tickets.
    assert_eq!(
        app.get(&path, None).await.expect(200)["services"],
        json!([])
    );
    app.post(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        None,
        json!({ "service_id": id }),
    )
    .await
    .expect_error(422, "service_inactive");
    patch(json!({ "active": true })).await.expect(200);
    app.post(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        None,
        json!({ "service_id": id }),
    )
    .await
    .expect(201);
}

#[actix_web::test]
async fn admins_manage_counters_and_users() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 0).await;
    let counters = format!("/api/v1/tenants/{}/counters", site.slug);
    let desk = app
        .post(&counters, Some(&site.admin), json!({ "name": "Desk 3" }))
        .await
        .expect(201);
    assert_eq!(desk["name"], "Desk 3");
    app.post(&counters, Some(&site.admin), json!({ "name": "Desk 3" }))
        .await
        .expect_error(409, "counter_name_taken");
    let listed = app.get(&counters, Some(&site.operator)).await.expect(200);
    assert_eq!(
        listed["counters"],
        json!([{ "id": desk["id"], "name": "Desk 3" }])
    );

    let users = format!("/api/v1/tenants/{}/users", site.slug);
    let user = app
        .post(
            &users,
            Some(&site.admin),
            json!({ "username": "nina", "password": "nina-password", "role": "admin" }),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.raw);
    assert!(
        !user.raw.contains("nina-password") && !user.raw.contains("argon2"),
        "{}",
        user.raw
    );
    assert!(
        !user.raw.contains("password"),
        "no password field at all: {}",
        user.raw
    );
    assert_eq!(user.body["role"], "admin");
    app.post(
        &users,
        Some(&site.admin),
        json!({ "username": "nina", "password": "other-password", "role": "operator" }),
    )
    .await
    .expect_error(409, "username_taken");
    app.post(
        &users,
        Some(&site.admin),
        json!({ "username": "short", "password": "short", "role": "operator" }),
    )
    .await
    .expect_error(422, "invalid_input");
    app.post(
        &users,
        Some(&site.admin),
        json!({ "username": "x", "password": "long-enough", "role": "boss" }),
    )
    .await
    .expect_error(422, "invalid_body");
    // The new admin can log in and administer.
    let token = app.login("clinic", "nina", "nina-password").await;
    app.post(&counters, Some(&token), json!({ "name": "Desk 4" }))
        .await
        .expect(201);
    // The stored hash is argon2id, never the password.
    let hash: String =
        sqlx::query_scalar("select password_hash from users where username = 'nina'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("nina-password"));
}
