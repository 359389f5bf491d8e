//! The API documents: the OpenAPI document lists exactly the routes the code registers, and
//! every documented operation is answered by a route; the AsyncAPI document is served.

use std::collections::BTreeSet;
use std::path::Path;

use actix_web::http::Method;
use serde_json::Value;

use crate::helpers::*;

/// Files whose routes are not part of the API: the HTML pages (contract §6), served for
/// browsers and described in README.md.
const NOT_API: &[&str] = &["src/http/pages.rs"];

/// `(METHOD, path)` of every route registered in src/http and src/ws, with the `/api/v1`
/// prefix for the modules `http::configure_api` mounts there, read from the source.
fn registered_routes() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mod_rs = std::fs::read_to_string(root.join("src/http/mod.rs")).unwrap();
    let configure_api = &mod_rs[mod_rs.find("pub fn configure_api").unwrap()..];
    let configure_api = &configure_api[..configure_api.find("\n}\n").unwrap()];
    let api_modules: Vec<&str> = configure_api
        .lines()
        .filter_map(|line| line.trim().strip_suffix("::configure(cfg);"))
        .collect();
    assert!(api_modules.contains(&"tickets"), "{api_modules:?}");

    let mut routes = BTreeSet::new();
    for dir in ["src/http", "src/ws"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let relative = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            if path.extension().is_none_or(|e| e != "rs") || NOT_API.contains(&&*relative) {
                continue;
            }
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let prefix = match dir == "src/http" && api_modules.contains(&stem.as_str()) {
                true => "/api/v1",
                false => "",
            };
            let source = std::fs::read_to_string(&path).unwrap();
            for (method, route) in routes_in(&source) {
                routes.insert((method, format!("{prefix}{route}")));
            }
        }
    }
    routes
}

/// The routes of one file: `web::resource("P")` followed by `.route(web::get()…)`, and
/// `.route("P", web::get()…)`. A pattern's regex (`{name:.*}`) is dropped.
fn routes_in(source: &str) -> Vec<(String, String)> {
    const RESOURCE: &str = "web::resource(\"";
    const ROUTE_WITH_PATH: &str = ".route(\"";
    const ROUTE: &str = ".route(web::";
    let quoted = |s: &str| s[..s.find('"').unwrap()].to_owned();
    let method_at = |s: &str| {
        let start = s.find("web::").unwrap() + "web::".len();
        s[start..start + s[start..].find('(').unwrap()].to_uppercase()
    };
    let mut routes = Vec::new();
    let mut resource = None;
    let mut rest = source;
    loop {
        let next = [RESOURCE, ROUTE_WITH_PATH, ROUTE]
            .into_iter()
            .filter_map(|p| rest.find(p).map(|at| (at, p)))
            .min();
        let Some((at, pattern)) = next else { break };
        let after = &rest[at + pattern.len()..];
        match pattern {
            RESOURCE => resource = Some(quoted(after)),
            ROUTE_WITH_PATH => routes.push((method_at(after), quoted(after))),
            _ => routes.push((
                method_at(&rest[at + ".route(".len()..]),
                resource.clone().expect("a route inside a resource"),
            )),
        }
        rest = after;
    }
    routes
        .into_iter()
        .map(|(method, path)| {
            let path = path
                .split('/')
                .map(|segment| match segment.split_once(':') {
                    Some((name, _)) if segment.starts_with('{') => format!("{name}}}"),
                    _ => segment.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            (method, path)
        })
        .collect()
}

fn documented_operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

async fn openapi_document(app: &TestApp) -> Value {
    let reply = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    reply.body
}

#[test]
fn the_route_reader_finds_resources_and_plain_routes() {
    let source = r#"
        cfg.service(
            web::resource("/tenants/{slug}/counters")
                .route(web::get().to(list_counters))
                .route(web::post().to(create_counter)),
        )
        .route("/static/{name:.*}", web::get().to(static_file));
    "#;
    assert_eq!(
        routes_in(source),
        [
            ("GET", "/tenants/{slug}/counters"),
            ("POST", "/tenants/{slug}/counters"),
            ("GET", "/static/{name}"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
}

#[actix_web::test]
async fn the_openapi_document_is_served_and_is_openapi_3_1() {
    let app = TestApp::spawn().await;
    let document = openapi_document(&app).await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        document["openapi"]
    );
    let schemas = &document["components"]["schemas"];
    for name in [
        "Error",
        "PublicTicket",
        "OperatorTicket",
        "QueueSnapshot",
        "OperatorQueueSnapshot",
        "ServiceSummary",
        "TicketUpdateMessage",
        "QueueUpdateMessage",
    ] {
        assert!(schemas.get(name).is_some(), "no schema {name}");
    }
    // The public projection has no personal data; the operator one adds it.
    let public = schemas["PublicTicket"]["properties"].as_object().unwrap();
    assert!(public.contains_key("ahead") && !public.contains_key("customer_name"));
    let operator = serde_json::to_string(&schemas["OperatorTicket"]).unwrap();
    assert!(operator.contains("customer_name") && operator.contains("PublicTicket"));
    for scheme in ["operator", "admin"] {
        assert_eq!(
            document["components"]["securitySchemes"][scheme]["scheme"],
            "bearer"
        );
    }
    // Each operation names the role it needs; public ones that answer more to operators
    // make the token optional.
    let security = |method: &str, path: &str| document["paths"][path][method]["security"].clone();
    assert_eq!(
        security("post", "/api/v1/tenants/{slug}/services"),
        serde_json::json!([{ "admin": [] }])
    );
    assert_eq!(
        security("get", "/api/v1/tenants/{slug}/tickets"),
        serde_json::json!([{ "operator": [] }])
    );
    assert_eq!(
        security("post", "/api/v1/tenants/{slug}/tickets"),
        serde_json::json!([{}, { "operator": [] }])
    );
    assert_eq!(
        security("get", "/api/v1/tenants/{slug}/tickets/{id}"),
        Value::Null
    );
}

#[actix_web::test]
async fn every_registered_route_is_documented_and_nothing_else() {
    let app = TestApp::spawn().await;
    let document = openapi_document(&app).await;
    let documented = documented_operations(&document);
    let registered = registered_routes();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "documented operations no route registers: {unknown:?}"
    );
}

#[actix_web::test]
async fn every_operation_documents_its_errors_with_the_error_body() {
    let app = TestApp::spawn().await;
    let document = openapi_document(&app).await;
    for (method, path) in documented_operations(&document) {
        let operation = &document["paths"][&path][method.to_lowercase()];
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let responses = operation["responses"].as_object().unwrap();
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
        }
        if secured {
            for status in ["401", "403"] {
                assert!(responses.contains_key(status), "{method} {path} {status}");
            }
        }
        if path.contains("{slug}") {
            assert!(responses.contains_key("404"), "{method} {path}");
        }
        if path.starts_with("/api/v1/tenants/") {
            assert!(responses.contains_key("503"), "{method} {path}");
        }
    }
}

/// A value for a path parameter: the site's slug, a valid action, or a fresh UUID.
fn path_value(document: &Value, path: &str, method: &str, name: &str, slug: &str) -> String {
    let parameter = document["paths"][path][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name && p["in"] == "path")
        .unwrap_or_else(|| panic!("{method} {path}: {name} is not documented"));
    let schema = match &parameter["schema"]["$ref"] {
        Value::String(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            document["components"]["schemas"][name].clone()
        }
        _ => parameter["schema"].clone(),
    };
    match (name, schema["enum"].as_array()) {
        ("slug", _) => slug.to_owned(),
        (_, Some(values)) => values[0].as_str().unwrap().to_owned(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

#[actix_web::test]
async fn every_documented_operation_is_answered_by_a_route() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let document = openapi_document(&app).await;
    for (method, path) in documented_operations(&document) {
        let lower = method.to_lowercase();
        let url: String = path
            .split('/')
            .map(|segment| match segment.strip_prefix('{') {
                Some(name) => {
                    let name = name.trim_end_matches('}');
                    path_value(&document, &path, &lower, name, &site.slug)
                }
                None => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let body = (method != "GET").then(|| b"{}".to_vec());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app
            .send(method.clone(), &url, Some(&site.admin), &[], body)
            .await;
        assert_ne!(reply.status, 405, "{method} {url}: {}", reply.raw);
        assert!(
            !(reply.status == 404 && reply.body["error"]["code"] == "not_found"),
            "{method} {url} is documented but no route answers it: {}",
            reply.raw
        );
        let documented = &document["paths"][&path][lower]["responses"];
        assert!(
            documented.get(reply.status.to_string()).is_some(),
            "{method} {url} answered {}, which is not documented: {}",
            reply.status,
            reply.raw
        );
    }
}

#[actix_web::test]
async fn the_asyncapi_document_is_served_as_written() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/v1/asyncapi.yaml", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/yaml"));
    let written =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/asyncapi.yaml"))
            .unwrap();
    assert_eq!(reply.raw, written);
    assert!(written.starts_with("asyncapi: 3.0.0"), "{written:.40}");
    for channel in ["/ws/{slug}/totem", "/ws/{slug}/operator"] {
        assert!(written.contains(channel), "{channel}");
    }
    for message in [
        "hello",
        "snapshot",
        "ticket_update",
        "queue_update",
        "pong",
        "error",
        "ping",
    ] {
        assert!(
            written.contains(&format!("const: {message}")),
            "no message {message}"
        );
    }
}

/// docs/openapi.json is the served document, so that the AsyncAPI document's references
/// resolve in the repository as on a server. `NEXTUP_WRITE_DOCS=1 cargo test openapi`
/// rewrites it.
#[actix_web::test]
async fn the_committed_openapi_json_is_the_served_document() {
    let app = TestApp::spawn().await;
    let served = app.get("/api/v1/openapi.json", None).await.raw;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("NEXTUP_WRITE_DOCS").is_some() {
        std::fs::write(&file, format!("{served}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed.trim_end() == served,
        "docs/openapi.json is stale: run `NEXTUP_WRITE_DOCS=1 cargo test openapi` and commit it"
    );
}

#[actix_web::test]
async fn the_asyncapi_document_refers_only_to_schemas_the_openapi_document_has() {
    let app = TestApp::spawn().await;
    let document = openapi_document(&app).await;
    let asyncapi =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/asyncapi.yaml"))
            .unwrap();
    let prefix = "openapi.json#/components/schemas/";
    let names: Vec<&str> = asyncapi
        .match_indices(prefix)
        .map(|(at, _)| {
            let rest = &asyncapi[at + prefix.len()..];
            &rest[..rest.find('\'').unwrap()]
        })
        .collect();
    for name in [
        "PublicTicket",
        "OperatorTicket",
        "QueueSnapshot",
        "ServiceSummary",
    ] {
        assert!(
            names.contains(&name),
            "the AsyncAPI document does not use {name}"
        );
    }
    for name in names {
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "docs/asyncapi.yaml refers to {name}, which the OpenAPI document lacks"
        );
    }
}
