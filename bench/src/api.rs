//! A small REST client for the parts of the contract the tools need (`/api/v1`).
//!
//! Every call answers a typed value or an [`ApiError`] that carries the HTTP status and the
//! contract's error `code`, so a caller can count failures by `"503 database_unavailable"`
//! without parsing anything itself. Transport failures (refused, reset, timed out) have no
//! status and a short code of their own.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::session::{Frame, WireFrame};

/// A failed request: an HTTP error answer, or no answer at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status, or `None` when no answer came (refused, reset, timeout).
    pub status: Option<u16>,
    /// The contract's `error.code`; for transport failures one of `timeout`, `connect`,
    /// `transport`; `non_contract_body` when an error answer lacks the contract's body.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn transport(error: &reqwest::Error) -> Self {
        let code = if error.is_timeout() {
            "timeout"
        } else if error.is_connect() {
            "connect"
        } else {
            "transport"
        };
        Self {
            status: None,
            code: code.to_owned(),
            message: error_chain(error),
        }
    }

    /// Reads the contract's error body `{"error": {"code", "message"}}`.
    pub fn from_body(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(Body { error }) => Self {
                status: Some(status),
                code: error.code,
                message: error.message,
            },
            Err(_) => Self {
                status: Some(status),
                code: "non_contract_body".to_owned(),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            },
        }
    }

    /// A short, low-cardinality key for counting: `"409 counter_busy"`, `"transport timeout"`.
    pub fn key(&self) -> String {
        match self.status {
            Some(status) => format!("{status} {}", self.code),
            None => format!("transport {}", self.code),
        }
    }

    pub fn is(&self, status: u16, code: &str) -> bool {
        self.status == Some(status) && self.code == code
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key(), self.message)
    }
}

impl std::error::Error for ApiError {}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Waiting,
    Called,
    Serving,
    Done,
    NoShow,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Waiting,
        Status::Called,
        Status::Serving,
        Status::Done,
        Status::NoShow,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Called => "called",
            Status::Serving => "serving",
            Status::Done => "done",
            Status::NoShow => "no_show",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    Priority,
}

/// The `action` of a `ticket_update` (and of an event in `GET …/events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Issued,
    Called,
    Recalled,
    Started,
    Finished,
    NoShow,
    Cancelled,
    Transferred,
    Reactivated,
    /// An action this tool does not know (a later server version).
    #[serde(other)]
    Unknown,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Issued => "issued",
            ChangeAction::Called => "called",
            ChangeAction::Recalled => "recalled",
            ChangeAction::Started => "started",
            ChangeAction::Finished => "finished",
            ChangeAction::NoShow => "no_show",
            ChangeAction::Cancelled => "cancelled",
            ChangeAction::Transferred => "transferred",
            ChangeAction::Reactivated => "reactivated",
            ChangeAction::Unknown => "unknown",
        }
    }
}

/// The actions of `POST …/tickets/{id}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketAction {
    Recall,
    Start,
    Finish,
    NoShow,
    Cancel,
    Reactivate,
}

impl TicketAction {
    /// The path segment (`no-show` has a hyphen).
    pub fn path(self) -> &'static str {
        match self {
            TicketAction::Recall => "recall",
            TicketAction::Start => "start",
            TicketAction::Finish => "finish",
            TicketAction::NoShow => "no-show",
            TicketAction::Cancel => "cancel",
            TicketAction::Reactivate => "reactivate",
        }
    }

    /// The `ticket_update` action this request produces when it succeeds.
    pub fn change(self) -> ChangeAction {
        match self {
            TicketAction::Recall => ChangeAction::Recalled,
            TicketAction::Start => ChangeAction::Started,
            TicketAction::Finish => ChangeAction::Finished,
            TicketAction::NoShow => ChangeAction::NoShow,
            TicketAction::Cancel => ChangeAction::Cancelled,
            TicketAction::Reactivate => ChangeAction::Reactivated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IdRef {
    pub id: Uuid,
}

/// The fields of a ticket (public or operator projection) that the tools use.
#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: Uuid,
    pub code: String,
    pub service: IdRef,
    pub status: Status,
    pub priority: Priority,
    pub call_count: u32,
    pub counter: Option<IdRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    pub id: Uuid,
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Counter {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub tenant: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub token: String,
    pub expires_at: String,
    pub user: User,
}

/// The queue snapshot (`GET …/queue`), without the service summaries.
#[derive(Debug, Clone, Deserialize)]
pub struct Queue {
    pub seq: u64,
    pub waiting: Vec<Ticket>,
    pub called: Vec<Ticket>,
}

/// `GET …/events?since=N`: the current `seq` and the messages after N, parsed like
/// WebSocket frames (`at` is when the answer was read).
#[derive(Debug, Clone)]
pub struct Events {
    pub seq: u64,
    pub frames: Vec<Frame>,
}

/// A client of one tenant, optionally with a token. Cheap to clone: clones share the
/// connection pool.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Arc<str>,
    slug: Arc<str>,
    token: Option<Arc<str>>,
}

impl Api {
    /// `base` is `http://HOST:PORT`; requests time out after 30 s.
    pub fn new(base: &str, slug: &str) -> Self {
        Self::with_client(http_client(Duration::from_secs(30)), base, slug)
    }

    pub fn with_client(http: reqwest::Client, base: &str, slug: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').into(),
            slug: slug.into(),
            token: None,
        }
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same client and token, for another server process of the same deployment.
    pub fn at(&self, base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').into(),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn slug(&self) -> &str {
        &self.slug
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn tenant_url(&self, rest: &str) -> String {
        format!("{}/api/v1/tenants/{}{rest}", self.base, self.slug)
    }

    /// Sends a request; a 2xx answer is returned unread, any other becomes an [`ApiError`].
    async fn send(
        &self,
        method: Method,
        url: String,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, ApiError> {
        self.send_keyed(method, url, body, None).await
    }

    async fn send_keyed(
        &self,
        method: Method,
        url: String,
        body: Option<serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = self.http.request(method, url);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| ApiError::transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::transport(&e))?;
        Err(ApiError::from_body(status.as_u16(), &bytes))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: String,
        body: Option<serde_json::Value>,
    ) -> Result<T, ApiError> {
        let response = self.send(method, url, body).await?;
        read_json(response).await
    }

    /// `POST /auth/login` for this client's tenant.
    pub async fn login(&self, username: &str, password: &str) -> Result<Login, ApiError> {
        let url = format!("{}/api/v1/auth/login", self.base);
        let body = json!({"tenant": &*self.slug, "username": username, "password": password});
        self.json(Method::POST, url, Some(body)).await
    }

    /// Admin: `POST …/services`.
    pub async fn create_service(&self, code: &str, name: &str) -> Result<Service, ApiError> {
        let body = json!({"code": code, "name": name});
        self.json(Method::POST, self.tenant_url("/services"), Some(body))
            .await
    }

    /// Admin: `POST …/counters`.
    pub async fn create_counter(&self, name: &str) -> Result<Counter, ApiError> {
        let body = json!({"name": name});
        self.json(Method::POST, self.tenant_url("/counters"), Some(body))
            .await
    }

    /// Admin: `POST …/users` (`role` is `operator` or `admin`).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: &str,
    ) -> Result<User, ApiError> {
        let body = json!({"username": username, "password": password, "role": role});
        self.json(Method::POST, self.tenant_url("/users"), Some(body))
            .await
    }

    /// `GET …/services`: the active services.
    pub async fn services(&self) -> Result<Vec<Service>, ApiError> {
        #[derive(Deserialize)]
        struct List {
            services: Vec<Service>,
        }
        let list: List = self
            .json(Method::GET, self.tenant_url("/services"), None)
            .await?;
        Ok(list.services)
    }

    /// Operator: `GET …/counters`.
    pub async fn counters(&self) -> Result<Vec<Counter>, ApiError> {
        #[derive(Deserialize)]
        struct List {
            counters: Vec<Counter>,
        }
        let list: List = self
            .json(Method::GET, self.tenant_url("/counters"), None)
            .await?;
        Ok(list.counters)
    }

    /// `POST …/tickets` (anonymous without a token, not rate-limited with one).
    pub async fn issue(&self, service_id: Uuid, priority: Priority) -> Result<Ticket, ApiError> {
        self.issue_keyed(service_id, priority, None).await
    }

    /// `POST …/tickets`, with an `Idempotency-Key` if given (the kiosk page sends one).
    pub async fn issue_keyed(
        &self,
        service_id: Uuid,
        priority: Priority,
        idempotency_key: Option<&str>,
    ) -> Result<Ticket, ApiError> {
        let body = json!({"service_id": service_id, "priority": priority});
        let url = self.tenant_url("/tickets");
        let response = self
            .send_keyed(Method::POST, url, Some(body), idempotency_key)
            .await?;
        read_json(response).await
    }

    /// Operator: `POST …/counters/{id}/call`; `None` when nothing waits (204).
    pub async fn call_next(
        &self,
        counter_id: Uuid,
        service_ids: Option<&[Uuid]>,
    ) -> Result<Option<Ticket>, ApiError> {
        let body = service_ids.map(|ids| json!({"service_ids": ids}));
        let url = self.tenant_url(&format!("/counters/{counter_id}/call"));
        let response = self.send(Method::POST, url, body).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        read_json(response).await.map(Some)
    }

    /// Operator: `POST …/tickets/{id}/call`, this waiting ticket to `counter_id`.
    pub async fn call(&self, ticket_id: Uuid, counter_id: Uuid) -> Result<Ticket, ApiError> {
        let url = self.tenant_url(&format!("/tickets/{ticket_id}/call"));
        let body = json!({"counter_id": counter_id});
        self.json(Method::POST, url, Some(body)).await
    }

    /// Operator: `POST …/tickets/{id}/{action}`.
    pub async fn act(&self, ticket_id: Uuid, action: TicketAction) -> Result<Ticket, ApiError> {
        let url = self.tenant_url(&format!("/tickets/{ticket_id}/{}", action.path()));
        self.json(Method::POST, url, None).await
    }

    pub async fn recall(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        self.act(ticket_id, TicketAction::Recall).await
    }

    pub async fn start(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        self.act(ticket_id, TicketAction::Start).await
    }

    pub async fn finish(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        self.act(ticket_id, TicketAction::Finish).await
    }

    pub async fn no_show(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        self.act(ticket_id, TicketAction::NoShow).await
    }

    pub async fn cancel(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        self.act(ticket_id, TicketAction::Cancel).await
    }

    pub async fn reactivate(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        self.act(ticket_id, TicketAction::Reactivate).await
    }

    /// Operator: `POST …/tickets/{id}/transfer` to another service.
    pub async fn transfer(&self, ticket_id: Uuid, service_id: Uuid) -> Result<Ticket, ApiError> {
        let url = self.tenant_url(&format!("/tickets/{ticket_id}/transfer"));
        let body = json!({"service_id": service_id});
        self.json(Method::POST, url, Some(body)).await
    }

    /// `GET …/tickets/{id}` (always the public view).
    pub async fn ticket(&self, ticket_id: Uuid) -> Result<Ticket, ApiError> {
        let url = self.tenant_url(&format!("/tickets/{ticket_id}"));
        self.json(Method::GET, url, None).await
    }

    /// Operator: `GET …/tickets[?status=S]` (without a status: waiting, called and serving).
    pub async fn tickets(&self, status: Option<Status>) -> Result<Vec<Ticket>, ApiError> {
        #[derive(Deserialize)]
        struct List {
            tickets: Vec<Ticket>,
        }
        let query = status.map_or(String::new(), |s| format!("?status={}", s.as_str()));
        let list: List = self
            .json(
                Method::GET,
                self.tenant_url(&format!("/tickets{query}")),
                None,
            )
            .await?;
        Ok(list.tickets)
    }

    /// `GET …/queue`.
    pub async fn queue(&self) -> Result<Queue, ApiError> {
        self.json(Method::GET, self.tenant_url("/queue"), None)
            .await
    }

    /// `GET …/events?since=N`.
    pub async fn events(&self, since: u64) -> Result<Events, ApiError> {
        #[derive(Deserialize)]
        struct Wire {
            seq: u64,
            events: Vec<WireFrame>,
        }
        let url = self.tenant_url(&format!("/events?since={since}"));
        let wire: Wire = self.json(Method::GET, url, None).await?;
        let at = Instant::now();
        Ok(Events {
            seq: wire.seq,
            frames: wire.events.into_iter().map(|w| w.into_frame(at)).collect(),
        })
    }

    /// A GET at the server's root (`/healthz`, `/readyz`, `/metrics`), as text.
    pub async fn get_text(&self, path: &str) -> Result<String, ApiError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(Method::GET, url, None).await?;
        response.text().await.map_err(|e| ApiError::transport(&e))
    }
}

/// An HTTP client for many concurrent requests to one server.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("a plain HTTP client always builds")
}

async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiError> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ApiError::transport(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError {
        status: Some(status.as_u16()),
        code: "unexpected_body".to_owned(),
        message: format!("cannot read the answer: {e}"),
    })
}

/// Sums the values of a Prometheus metric whose labels include every `label="value"` given,
/// e.g. `metric_sum(text, "nextup_ws_sessions", &[("tenant", "demo")])`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let matches = labels
            .iter()
            .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")));
        if !matches {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_status_and_code() {
        let e = ApiError::from_body(
            503,
            br#"{"error":{"code":"database_unavailable","message":"try later"}}"#,
        );
        assert_eq!(e.key(), "503 database_unavailable");
        assert!(e.is(503, "database_unavailable"));
        let e = ApiError::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(e.key(), "502 non_contract_body");
    }

    #[test]
    fn metric_sum_adds_matching_series() {
        let text = "# HELP x\n\
            nextup_ws_sessions{audience=\"totem\",tenant=\"soak\"} 3\n\
            nextup_ws_sessions{audience=\"operator\",tenant=\"soak\"} 2\n\
            nextup_ws_sessions{audience=\"totem\",tenant=\"other\"} 7\n\
            nextup_ws_sessions_closed_total{reason=\"timeout\"} 1\n";
        assert_eq!(
            metric_sum(text, "nextup_ws_sessions", &[("tenant", "soak")]),
            Some(5.0)
        );
        assert_eq!(metric_sum(text, "nextup_ws_sessions", &[]), Some(12.0));
        assert_eq!(metric_sum(text, "nextup_missing", &[]), None);
    }
}
