use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::change::change;
use super::{JsonBody, JsonBytes};
use crate::auth::extract::{AdminAuth, OperatorAuth};
use crate::db;
use crate::domain::ids::{CounterId, DisplayName, ServiceId};
use crate::error::{ApiError, parse_json_body};
use crate::state::AppState;
use crate::ticketing::batch::Command;
use crate::views::Audience;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants/{slug}/counters")
            .route(web::get().to(list_counters))
            .route(web::post().to(create_counter)),
    )
    .service(
        web::resource("/tenants/{slug}/counters/{counter_id}/call")
            .route(web::post().to(call_next)),
    );
}

async fn list_counters(
    state: Data<AppState>,
    slug: Path<String>,
    _auth: OperatorAuth,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let counters = db::counters::list_counters(&mut conn, tenant.id).await?;
    Ok(HttpResponse::Ok().json(json!({ "counters": counters })))
}

#[derive(Deserialize)]
struct CreateCounterRequest {
    name: String,
}

async fn create_counter(
    state: Data<AppState>,
    slug: Path<String>,
    _auth: AdminAuth,
    body: JsonBody<CreateCounterRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = DisplayName::parse("name", &body.0.name)?;
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let counter = db::counters::insert_counter(&mut conn, tenant.id, &name).await?;
    Ok(HttpResponse::Created().json(counter))
}

#[derive(Deserialize, Default)]
struct CallNextRequest {
    service_ids: Option<Vec<ServiceId>>,
}

/// Operators: call the next waiting ticket to this counter; 204 when nobody waits.
async fn call_next(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, CounterId)>,
    auth: OperatorAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, counter) = path.into_inner();
    // The body is optional: no body means "from every service".
    let request: CallNextRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CallNextRequest::default()
    } else {
        parse_json_body(&body)?
    };
    let command = Command::CallNext {
        counter,
        services: request.service_ids,
        operator: auth.0.sub,
    };
    change(&state, &req, &slug, &body, Audience::Operator, command).await
}
