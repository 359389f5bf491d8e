//! Closing the business day by hand (contract §8).

use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::JsonBytes;
use super::audit::{record, tenant_target};
use super::change::change;
use crate::auth::extract::AdminAuth;
use crate::domain::audit::Action;
use crate::error::ApiError;
use crate::state::AppState;
use crate::ticketing::batch::Command;
use crate::ticketing::commands::DayClose;
use crate::views::Audience;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tenants/{slug}/day/close").route(web::post().to(close_day)));
}

/// Admins: closes the day now. Waiting and called tickets expire and tickets being served
/// are finished, each a change with its own seq and events; issuing goes on afterwards.
///
/// The audit entry is written here once the close answered 200, not in the close's own
/// transaction: that one is the writer's (a batch of changes of many tenants), and an
/// entry there would cost every close of the day and the writer's path an insert. So a
/// process that stops between the two loses the entry of a close that happened; never
/// the reverse. A replay of an `Idempotency-Key` closed nothing and records nothing.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/day/close", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), crate::http::openapi::IdempotencyKeyHeader),
    responses((status = 200, description = "Closed: waiting and called tickets expired, serving ones finished", body = crate::views::DayClosedAnswer)),
    security(("admin" = [])),
)]
pub(super) async fn close_day(
    req: HttpRequest,
    state: Data<AppState>,
    slug: Path<String>,
    auth: AdminAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let command = Command::CloseDay(DayClose::Now);
    let response = change(&state, &req, &slug, &body, Audience::Operator, command).await?;
    let replayed = response.headers().contains_key("idempotent-replayed");
    if response.status().is_success() && !replayed {
        let mut conn = state.db.acquire().await?;
        let tenant = state.tenants.get(&mut conn, &slug).await?;
        let target = tenant_target(&tenant);
        record(
            &state,
            &mut conn,
            tenant.id,
            Some(&auth.0),
            Action::DayClosed,
            Some(&target),
        )
        .await?;
    }
    Ok(response)
}
