//! Statistics (contract §4 and §9): `GET …/stats?from=&to=`, as JSON or CSV.

use actix_web::http::header::{self, Accept, ContentDisposition, DispositionParam, Header};
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse, mime};
use serde::Deserialize;

use crate::auth::extract::AdminAuth;
use crate::db;
use crate::domain::numbering::service_day;
use crate::domain::stats::{Report, ServiceName, StatsRange};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tenants/{slug}/stats").route(web::get().to(get_stats)));
}

/// `?format=` of [`get_stats`], for the API document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(super) enum StatsFormat {
    Json,
    Csv,
}

#[derive(Deserialize)]
pub(super) struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// Admins: the report on the tenant's days `from..=to` (each defaults to today, tenant-local).
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/stats", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"),
        ("from" = Option<chrono::NaiveDate>, Query, description = "First tenant-local day (YYYY-MM-DD), default today"),
        ("to" = Option<chrono::NaiveDate>, Query, description = "Last tenant-local day (YYYY-MM-DD), default today"),
        ("format" = Option<StatsFormat>, Query, description = "`json` or `csv`; without it, the `Accept` header decides (JSON unless it prefers `text/csv`)")),
    responses(
        (status = 200, description = "The report, per service and per operator, and by hour", content(
            (crate::domain::stats::Report = "application/json"),
            (String = "text/csv"),
        )),
        (status = 422, description = "`from` is after `to`, or the range is too long (`invalid_input`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn get_stats(
    state: Data<AppState>,
    slug: Path<String>,
    _auth: AdminAuth,
    query: Query<StatsQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let format = negotiate_format(query.format.as_deref(), &req)?;
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let today = service_day(state.clock.now(), tenant.timezone);
    let range = StatsRange::parse(query.from.as_deref(), query.to.as_deref(), today)?;
    let counted =
        db::stats::count_legs(&mut conn, tenant.id, range.from, range.to, tenant.timezone).await?;
    let active = db::services::list_services(&mut conn, tenant.id, true)
        .await?
        .into_iter()
        .map(|s| ServiceName {
            id: s.id.get(),
            code: s.code,
            name: s.name,
        })
        .collect();
    let report = Report::new(
        range,
        tenant.timezone.name(),
        counted.totals,
        counted.services,
        active,
        counted.operators,
        counted.hours,
    );
    match format {
        Format::Json => Ok(HttpResponse::Ok().json(report)),
        Format::Csv => {
            let body = report.to_csv().map_err(ApiError::internal)?;
            let filename = format!("stats-{}-{}-{}.csv", tenant.slug, range.from, range.to);
            Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .insert_header(ContentDisposition {
                    disposition: header::DispositionType::Attachment,
                    parameters: vec![DispositionParam::Filename(filename)],
                })
                .body(body))
        }
    }
}

/// `?format=csv|json` decides; without it, the `Accept` header's most wanted of `text/csv`
/// (or `text/*`) and JSON (or `application/*`, `*/*`); JSON when it names neither.
fn negotiate_format(asked: Option<&str>, req: &HttpRequest) -> Result<Format, ApiError> {
    match asked {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "format must be json or csv, not '{}'",
                other.chars().take(40).collect::<String>()
            )));
        }
        None => {}
    }
    let Ok(accept) = Accept::parse(req) else {
        return Ok(Format::Json);
    };
    for wanted in accept.ranked() {
        if wanted.type_() == mime::TEXT
            && (wanted.subtype() == mime::CSV || wanted.subtype() == mime::STAR)
        {
            return Ok(Format::Csv);
        }
        if wanted.subtype() == mime::JSON || wanted.subtype() == mime::STAR {
            return Ok(Format::Json);
        }
    }
    Ok(Format::Json)
}
