//! The pages of contract §6, served from the static directory.

use std::path::{Path as FsPath, PathBuf};

use actix_files::{Files, NamedFile};
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use qrcode::QrCode;
use qrcode::render::svg;

use crate::db;
use crate::db::tenants::Tenant;
use crate::domain::ids::TicketId;
use crate::error::{ApiError, Resource};
use crate::state::AppState;

/// The per-tenant pages, each a file `<name>.html` in the static directory.
const TENANT_PAGES: [&str; 3] = ["totem", "display", "operator"];

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

pub fn configure(cfg: &mut web::ServiceConfig, static_dir: &str) {
    // Browsers ask for it on every page; there is none, and a 404 would be noise.
    cfg.route("/favicon.ico", web::get().to(HttpResponse::NoContent))
        .service(
            web::scope("")
                .wrap(page_headers())
                .route("/", web::get().to(index))
                .route("/t/{slug}/ticket/{id}", web::get().to(ticket_page))
                .route("/t/{slug}/ticket/{id}/qr.svg", web::get().to(ticket_qr))
                .route("/t/{slug}/{page}", web::get().to(tenant_page))
                // Scripts, styles, sounds. `Files` refuses paths that leave the directory.
                .service(Files::new("/static", static_dir)),
        );
}

fn page_file(state: &AppState, name: &str) -> PathBuf {
    FsPath::new(&state.config.static_dir).join(format!("{name}.html"))
}

async fn index(state: Data<AppState>) -> Result<NamedFile, ApiError> {
    NamedFile::open(page_file(&state, "index")).map_err(|_| ApiError::NotFound(Resource::Route))
}

async fn tenant_page(
    state: Data<AppState>,
    path: Path<(String, String)>,
) -> Result<NamedFile, ApiError> {
    let (slug, page) = path.into_inner();
    let page = TENANT_PAGES
        .into_iter()
        .find(|p| *p == page)
        .ok_or(ApiError::NotFound(Resource::Route))?;
    let mut conn = state.db.acquire().await?;
    db::tenants::get_tenant(&mut conn, &slug).await?;
    NamedFile::open(page_file(&state, page)).map_err(|_| ApiError::NotFound(Resource::Route))
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
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
) -> Result<NamedFile, ApiError> {
    let (slug, id) = path.into_inner();
    tenant_with_ticket(&state, &slug, id).await?;
    NamedFile::open(page_file(&state, "ticket")).map_err(|_| ApiError::NotFound(Resource::Route))
}

/// A QR code (SVG) of the ticket's follow page, for the kiosk screen and printout. The URL
/// is built from the request's host, so it works behind whatever name the kiosk used.
async fn ticket_qr(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let tenant = tenant_with_ticket(&state, &slug, id).await?;
    let info = req.connection_info();
    let url = format!(
        "{}://{}/t/{}/ticket/{id}",
        info.scheme(),
        info.host(),
        tenant.slug
    );
    let code = QrCode::new(url.as_bytes()).map_err(ApiError::internal)?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(image))
}
