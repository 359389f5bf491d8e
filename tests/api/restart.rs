//! Crash and restart: `kill -9` of a real `nextup serve` process in the middle of traffic.
//! Every change the server acknowledged (2xx) must be in the event log afterwards, once,
//! and a client that resumes with `since` must see every change exactly once.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::ws::Frame;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::cli::{START_TIMEOUT, Sandbox, Server, listening_url};

const JWT_SECRET: &str = "restart-test-secret-of-32-bytes!";
/// Acknowledged changes to wait for before the kill.
const CHANGES_BEFORE_KILL: usize = 60;

/// What clients saw acknowledged: (event action, ticket id).
type Acknowledged = Rc<RefCell<Vec<(String, String)>>>;

fn start(sandbox: &Sandbox) -> (Server, String) {
    let mut command = sandbox.nextup(&["serve", "--demo"]);
    command.env("JWT_SECRET", JWT_SECRET);
    let server = Server::start(command);
    let lines = server.read_until(Instant::now() + START_TIMEOUT, |l| {
        l.contains("listening on http://")
    });
    let base = listening_url(lines.last().unwrap());
    (server, base)
}

struct Api {
    base: String,
    token: String,
    client: awc::Client,
}

impl Api {
    async fn connect(base: &str) -> Api {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish();
        let mut api = Api {
            base: base.to_owned(),
            token: String::new(),
            client,
        };
        let login = api
            .post(
                "/api/v1/auth/login",
                json!({ "tenant": "demo", "username": "admin", "password": "demo-admin" }),
            )
            .await
            .expect("login");
        api.token = login.1["token"].as_str().expect("a token").to_owned();
        api
    }

    /// (status, body), or `None` when the request got no answer.
    async fn post(&self, path: &str, body: Value) -> Option<(u16, Value)> {
        let mut response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send_json(&body)
            .await
            .ok()?;
        let bytes = response.body().await.ok()?;
        Some((
            response.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn get(&self, path: &str) -> Value {
        let mut response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET answered");
        let bytes = response.body().await.expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }
}

/// Issues tickets until the server stops answering; records each 201.
async fn keep_issuing(api: Rc<Api>, service: String, acknowledged: Acknowledged) {
    let path = "/api/v1/tenants/demo/tickets";
    while let Some((status, body)) = api.post(path, json!({ "service_id": service })).await {
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        acknowledged.borrow_mut().push(("issued".into(), id));
    }
}

/// Calls, starts and finishes tickets at one desk until the server stops answering.
async fn keep_serving(api: Rc<Api>, counter: String, acknowledged: Acknowledged) {
    let call = format!("/api/v1/tenants/demo/counters/{counter}/call");
    loop {
        let Some((status, ticket)) = api.post(&call, json!({})).await else {
            return;
        };
        if status == 204 {
            continue; // nobody waiting yet
        }
        assert_eq!(status, 200, "{ticket}");
        let id = ticket["id"].as_str().unwrap().to_owned();
        acknowledged
            .borrow_mut()
            .push(("called".into(), id.clone()));
        for (action, event) in [("start", "started"), ("finish", "finished")] {
            let path = format!("/api/v1/tenants/demo/tickets/{id}/{action}");
            let Some((status, body)) = api.post(&path, json!({})).await else {
                return;
            };
            assert_eq!(status, 200, "{action}: {body}");
            acknowledged.borrow_mut().push((event.into(), id.clone()));
        }
    }
}

type Frames = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Opens a totem session (resuming after `since`, if given).
async fn open_session(base: &str, since: Option<i64>) -> Frames {
    let mut url = format!("{}/ws/demo/totem", base.replacen("http", "ws", 1));
    if let Some(since) = since {
        url.push_str(&format!("?since={since}"));
    }
    let (_, frames) = awc::Client::new()
        .ws(url)
        .max_frame_size(1 << 24)
        .connect()
        .await
        .expect("a totem session");
    frames
}

/// Reads a session's frames until it ends, until `until` says stop, or 20 s of silence;
/// records `hello`'s seq, snapshots, and (seq, action, ticket id) of each `ticket_update`.
async fn record(frames: &mut Frames, session: &mut Session, until: impl Fn(&Session) -> bool) {
    while !until(session) {
        let Ok(Some(Ok(frame))) =
            actix_web::rt::time::timeout(Duration::from_secs(20), frames.next()).await
        else {
            return;
        };
        let Frame::Text(text) = frame else { continue };
        let message: Value = serde_json::from_slice(&text).unwrap();
        match message["type"].as_str() {
            Some("hello") => session.hello_seq = message["data"]["seq"].as_i64(),
            Some("snapshot") => session.snapshots += 1,
            Some("ticket_update") => session.updates.push((
                message["seq"].as_i64().unwrap(),
                message["data"]["action"].as_str().unwrap().to_owned(),
                message["data"]["ticket"]["id"].as_str().unwrap().to_owned(),
            )),
            _ => {}
        }
    }
}

#[derive(Default)]
struct Session {
    hello_seq: Option<i64>,
    snapshots: usize,
    updates: Vec<(i64, String, String)>,
}

#[actix_web::test]
async fn after_kill_9_mid_traffic_no_acknowledged_change_is_lost_and_resumers_see_each_once() {
    let sandbox = Sandbox::new();
    let (mut server, base) = start(&sandbox);
    let api = Rc::new(Api::connect(&base).await);
    let services = api.get("/api/v1/tenants/demo/services").await;
    let counters = api.get("/api/v1/tenants/demo/counters").await;
    let service_ids: Vec<String> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let counter_ids: Vec<String> = counters["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();

    // A display follows from the start (its snapshot is at seq 0, before any traffic), and
    // records until the server dies.
    let mut display = open_session(&base, None).await;
    let mut first = Session::default();
    record(&mut display, &mut first, |s| s.snapshots == 1).await;
    assert_eq!(first.hello_seq, Some(0));
    let before_crash = actix_web::rt::spawn(async move {
        record(&mut display, &mut first, |_| false).await;
        first
    });
    let acknowledged: Acknowledged = Rc::default();
    let mut traffic = Vec::new();
    for service in &service_ids {
        traffic.push(actix_web::rt::spawn(keep_issuing(
            api.clone(),
            service.clone(),
            acknowledged.clone(),
        )));
    }
    for counter in &counter_ids[..2] {
        traffic.push(actix_web::rt::spawn(keep_serving(
            api.clone(),
            counter.clone(),
            acknowledged.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.borrow().len() < CHANGES_BEFORE_KILL {
        assert!(Instant::now() < deadline, "traffic too slow");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().expect("SIGKILL sent");
    server.child.wait().expect("the server died");
    for task in traffic {
        task.await.expect("traffic ends without a failed assertion");
    }
    let first = before_crash.await.expect("the display recorded");
    let acknowledged = acknowledged.take();

    // Restart on the same database; the display resumes from the last seq it saw.
    let (_restarted, base) = start(&sandbox);
    let api = Api::connect(&base).await;
    let log = api.get("/api/v1/tenants/demo/events?since=0").await;
    let current = log["seq"].as_i64().unwrap();
    let last_seen = first.updates.last().map_or(0, |u| u.0);
    let mut resumed = Session::default();
    let mut display = open_session(&base, Some(last_seen)).await;
    record(&mut display, &mut resumed, |s| {
        s.hello_seq.is_some() && s.updates.last().map_or(last_seen, |u| u.0) >= current
    })
    .await;
    assert_eq!(resumed.snapshots, 0, "resuming replays, it does not reload");

    // Every change exactly once, in order, across the two connections.
    let seen: Vec<i64> = first
        .updates
        .iter()
        .chain(&resumed.updates)
        .map(|u| u.0)
        .collect();
    assert_eq!(seen, (1..=current).collect::<Vec<_>>());
    // Every acknowledged change is in the log, once.
    let mut logged: HashMap<(String, String), usize> = HashMap::new();
    for event in log["events"].as_array().unwrap() {
        if event["type"] == "ticket_update" {
            let key = (
                event["data"]["action"].as_str().unwrap().to_owned(),
                event["data"]["ticket"]["id"].as_str().unwrap().to_owned(),
            );
            *logged.entry(key).or_default() += 1;
        }
    }
    let mut lost = BTreeMap::new();
    for change in &acknowledged {
        match logged.get(change) {
            Some(1) => {}
            count => {
                lost.insert(change.clone(), count.copied());
            }
        }
    }
    assert!(
        lost.is_empty(),
        "acknowledged changes not logged exactly once: {lost:?}"
    );
    assert!(acknowledged.len() >= CHANGES_BEFORE_KILL);
    // And the display saw the same changes as the log, in the same order.
    let streamed: Vec<(String, String)> = first
        .updates
        .iter()
        .chain(&resumed.updates)
        .map(|(_, action, id)| (action.clone(), id.clone()))
        .collect();
    let logged_in_order: Vec<(String, String)> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "ticket_update")
        .map(|e| {
            (
                e["data"]["action"].as_str().unwrap().to_owned(),
                e["data"]["ticket"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(streamed, logged_in_order);
}
