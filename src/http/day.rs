//! Closing the business day by hand (contract §8).

use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};

use super::JsonBytes;
use super::change::change;
use crate::auth::extract::AdminAuth;
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
async fn close_day(
    req: HttpRequest,
    state: Data<AppState>,
    slug: Path<String>,
    _auth: AdminAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let command = Command::CloseDay(DayClose::Now);
    change(&state, &req, &slug, &body, Audience::Operator, command).await
}
