//! The access log and request ids. Every request gets an id: the client's `X-Request-Id`
//! when it is a sensible one (a proxy's, say), a new UUID otherwise. The id is echoed in the
//! response and logged with the request's method, route pattern, status, duration and
//! client address, as structured fields (see `crate::logging` for the JSON form).

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use super::rate_limit::client_address;
use crate::state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longer ids are replaced: they would only bloat every log line.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request, in its extensions for whoever logs about it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's id if it is 1 to 128 visible ASCII characters, so that it cannot break a
/// log line or a header; otherwise none.
fn accepted_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let id = value?.to_str().ok()?;
    let sensible = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic());
    sensible.then(|| id.to_owned())
}

/// The request line for the access log, with `token=` query values hidden: operators'
/// WebSocket URLs carry their login token.
fn redacted_request_line(req: &ServiceRequest) -> String {
    let query = redacted_query(req.query_string());
    let separator = if query.is_empty() { "" } else { "?" };
    format!(
        "{} {}{separator}{query} {:?}",
        req.method(),
        req.path(),
        req.version()
    )
}

/// The query string with the value of every `token` parameter replaced. Keys are compared
/// once decoded, as the query extractor decodes them (`%74oken` is `token` to it), and
/// regardless of case, which costs nothing and hides more.
fn redacted_query(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_token_key(key) => format!("{key}=<redacted>"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn is_token_key(raw_key: &str) -> bool {
    form_urlencoded::parse(raw_key.as_bytes())
        .next()
        .is_some_and(|(key, _)| key.eq_ignore_ascii_case("token"))
}

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = accepted_request_id(req.headers().get(&REQUEST_ID))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let client = req
        .app_data::<web::Data<AppState>>()
        .map(|state| client_address(req.request(), &state.config.trusted_proxies));
    let method = req.method().to_string();
    let line = redacted_request_line(&req);
    let mut response = next.call(req).await?;
    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    let client = client.map(|a| a.to_string()).unwrap_or_default();
    log::info!(
        target: "nextup::access",
        method = method.as_str(),
        route = route.as_str(),
        status,
        duration_ms,
        client = client.as_str(),
        request_id = id.as_str();
        "{line}"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_hidden_however_the_key_is_encoded() {
        for query in [
            "token=SECRET",
            "%74oken=SECRET",
            "%74%6F%6b%65%6e=SECRET",
            "TOKEN=SECRET",
            "Token=SECRET&token=SECRET",
        ] {
            let line = redacted_query(query);
            assert!(!line.contains("SECRET"), "{query} became {line}");
            assert!(line.contains("=<redacted>"), "{line}");
        }
        assert_eq!(
            redacted_query("since=4&%74oken=SECRET&lang=pt-BR"),
            "since=4&%74oken=<redacted>&lang=pt-BR"
        );
    }

    #[test]
    fn other_parameters_are_kept_as_sent() {
        assert_eq!(
            redacted_query("since=4&&lang=pt%2DBR"),
            "since=4&lang=pt%2DBR"
        );
        assert_eq!(redacted_query("tokens=x&my_token=y"), "tokens=x&my_token=y");
        assert_eq!(redacted_query("token"), "token");
        assert_eq!(redacted_query(""), "");
    }

    #[test]
    fn sensible_client_ids_are_kept_and_others_replaced() {
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert_eq!(
            accepted_request_id(Some(&header("req-42/abc"))),
            Some("req-42/abc".to_owned())
        );
        assert_eq!(accepted_request_id(None), None);
        assert_eq!(accepted_request_id(Some(&header(""))), None);
        assert_eq!(accepted_request_id(Some(&header("two words"))), None);
        assert_eq!(accepted_request_id(Some(&header(&"x".repeat(129)))), None);
        assert!(accepted_request_id(Some(&header(&"x".repeat(128)))).is_some());
        let latin1 = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert_eq!(accepted_request_id(Some(&latin1)), None);
    }
}
