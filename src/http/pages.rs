//! The pages of contract §6 and the files they load (see [`super::assets`]). The admin page
//! is served to anyone, like the console: it holds no data until an admin signs in through
//! the API.

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use qrcode::QrCode;
use qrcode::render::svg;

use super::rate_limit::from_trusted_proxy;
use crate::config::Config;
use crate::db;
use crate::db::tenants::Tenant;
use crate::domain::ids::TicketId;
use crate::error::{ApiError, Resource};
use crate::state::AppState;

/// The per-tenant pages, each a file `<name>.html` of `static/`.
const TENANT_PAGES: [&str; 4] = ["totem", "display", "operator", "admin"];

/// The pages load only their own scripts, styles and images, open WebSockets to their own
/// host, and may not be framed: no inline code runs even if some text were injected.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; media-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Browsers ask for it on every page; there is none, and a 404 would be noise.
    cfg.route("/favicon.ico", web::get().to(HttpResponse::NoContent))
        .service(
            web::scope("")
                .wrap(page_headers())
                .route("/", web::get().to(index))
                .route("/t/{slug}/ticket/{id}", web::get().to(ticket_page))
                .route("/t/{slug}/ticket/{id}/qr.svg", web::get().to(ticket_qr))
                .route("/t/{slug}/{page}", web::get().to(tenant_page))
                // Scripts, styles, sounds.
                .route("/static/{name:.*}", web::get().to(static_file)),
        );
}

async fn page(state: &AppState, req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    state.assets.respond(req, &format!("{name}.html")).await
}

async fn index(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    page(&state, &req, "index").await
}

async fn static_file(
    req: HttpRequest,
    state: Data<AppState>,
    name: Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.assets.respond(&req, &name).await
}

async fn tenant_page(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, page) = path.into_inner();
    let page = TENANT_PAGES
        .into_iter()
        .find(|p| *p == page)
        .ok_or(ApiError::NotFound(Resource::Route))?;
    let mut conn = state.db.acquire().await?;
    db::tenants::get_tenant(&mut conn, &slug).await?;
    drop(conn);
    self::page(&state, &req, page).await
}

/// The tenant of the path, provided it has the ticket (404 otherwise).
async fn tenant_with_ticket(
    state: &AppState,
    slug: &str,
    id: TicketId,
) -> Result<Tenant, ApiError> {
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, slug).await?;
    db::tickets::find_record(&mut conn, tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound(Resource::Ticket))?;
    Ok(tenant)
}

/// The page a person opens on their phone to follow a ticket.
async fn ticket_page(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    tenant_with_ticket(&state, &slug, id).await?;
    page(&state, &req, "ticket").await
}

/// A QR code (SVG) of the ticket's follow page, for the kiosk screen and printout, at the
/// address people reach this server by (see [`public_base`]).
async fn ticket_qr(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let tenant = tenant_with_ticket(&state, &slug, id).await?;
    let base = public_base(&req, &state.config);
    let image = ticket_qr_svg(&format!("{}/t/{}/ticket/{id}", base.url, tenant.slug))?;
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        // Built from this request's headers, or for one ticket anyway: never for a shared
        // cache to hand to others.
        .insert_header((header::CACHE_CONTROL, "private, max-age=86400"));
    if base.from_request {
        response.insert_header((
            header::VARY,
            "Host, Forwarded, X-Forwarded-Host, X-Forwarded-Proto",
        ));
    }
    Ok(response.body(image))
}

/// The SVG of a QR code of `url`, as the ticket page serves it.
pub fn ticket_qr_svg(url: &str) -> Result<String, ApiError> {
    let code = QrCode::new(url.as_bytes()).map_err(ApiError::internal)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// Where the client reaches this server: `scheme://host[:port]`, plus any path prefix,
/// without a trailing slash.
#[derive(Debug, PartialEq, Eq)]
struct PublicBase {
    url: String,
    /// Taken from the request's headers rather than from `PUBLIC_URL`.
    from_request: bool,
}

/// The base of the links handed out to this request's client. `PUBLIC_URL` when set.
/// Otherwise the request's own `Host`, unless the request came from one of
/// `TRUSTED_PROXIES`: then the host and scheme the proxy forwarded (`Forwarded`,
/// `X-Forwarded-Host`, `X-Forwarded-Proto`). Anyone can write those headers, and a QR code
/// pointing elsewhere sends people to someone else's page.
fn public_base(req: &HttpRequest, config: &Config) -> PublicBase {
    if let Some(url) = &config.public_url {
        return PublicBase {
            url: url.as_str().to_owned(),
            from_request: false,
        };
    }
    let own_scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let url = if from_trusted_proxy(req, &config.trusted_proxies) {
        let info = req.connection_info();
        request_base(info.scheme(), info.host())
    } else {
        req.headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .and_then(|host| request_base(own_scheme, host))
    };
    PublicBase {
        // A Host that is not a plain host and port: this server's own address.
        url: url.unwrap_or_else(|| format!("{own_scheme}://{}", req.app_config().local_addr())),
        from_request: true,
    }
}

/// `scheme://host[:port]` when `host` is only a host and port: nothing that would make a
/// URL with a user, a path or a query of it.
fn request_base(scheme: &str, host: &str) -> Option<String> {
    let url = url::Url::parse(&format!("{scheme}://{host}")).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.path() == "/"
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    plain.then(|| url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;
    use crate::config::PublicUrl;

    const FORGED: [(&str, &str); 3] = [
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "host=evil.example;proto=https"),
    ];

    fn config(trusted: &[&str], public_url: Option<&str>) -> Config {
        let mut config = Config::from_lookup(|_| None).unwrap();
        config.trusted_proxies = trusted.iter().map(|net| net.parse().unwrap()).collect();
        config.public_url = public_url.map(|url| PublicUrl::parse(url).unwrap());
        config
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        headers
            .iter()
            .fold(
                TestRequest::default()
                    .peer_addr(peer.parse().unwrap())
                    .insert_header(("Host", "kiosk.local:8080")),
                |request, header| request.insert_header(*header),
            )
            .to_http_request()
    }

    fn base(url: &str, from_request: bool) -> PublicBase {
        PublicBase {
            url: url.into(),
            from_request,
        }
    }

    #[test]
    fn forwarded_headers_are_ignored_unless_a_trusted_proxy_sent_them() {
        let untrusted = config(&[], None);
        let own_host = base("http://kiosk.local:8080", true);
        let forged = request("203.0.113.9:5000", &FORGED);
        assert_eq!(public_base(&forged, &untrusted), own_host);
        let other_proxy = config(&["10.0.0.0/8"], None);
        assert_eq!(public_base(&forged, &other_proxy), own_host);

        let proxy = config(&["10.0.0.0/8"], None);
        let proxied = request(
            "10.1.2.3:5000",
            &[
                ("X-Forwarded-Host", "queue.example.org"),
                ("X-Forwarded-Proto", "https"),
            ],
        );
        assert_eq!(
            public_base(&proxied, &proxy),
            base("https://queue.example.org", true)
        );
        // A trusted proxy that forwards nothing: the Host it sent.
        let bare = request("10.1.2.3:5000", &[]);
        assert_eq!(public_base(&bare, &proxy), own_host);
    }

    #[test]
    fn a_configured_public_url_wins() {
        let configured = config(&["10.0.0.0/8"], Some("https://queue.example.org/nextup/"));
        for peer in ["10.1.2.3:5000", "203.0.113.9:5000"] {
            assert_eq!(
                public_base(&request(peer, &FORGED), &configured),
                base("https://queue.example.org/nextup", false)
            );
        }
    }

    #[test]
    fn a_host_is_only_ever_a_host_and_port() {
        assert_eq!(
            request_base("http", "Kiosk.Local:8080").as_deref(),
            Some("http://kiosk.local:8080")
        );
        assert_eq!(
            request_base("http", "[::1]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        for bad in [
            "evil.example/phish",
            "evil.example?x=",
            "evil.example#",
            "user@evil.example",
            "evil.example\\phish",
            "",
        ] {
            assert_eq!(request_base("http", bad), None, "{bad}");
        }
        assert_eq!(request_base("javascript", "x"), None);
    }
}
