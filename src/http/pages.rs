//! The pages of contract §6, served from the static directory.

use std::path::{Path as FsPath, PathBuf};

use actix_files::{Files, NamedFile};
use actix_web::web::{self, Data, Path};

use crate::db;
use crate::error::{ApiError, Resource};
use crate::state::AppState;

/// The per-tenant pages, each a file `<name>.html` in the static directory.
const TENANT_PAGES: [&str; 3] = ["totem", "display", "operator"];

pub fn configure(cfg: &mut web::ServiceConfig, static_dir: &str) {
    cfg.route("/", web::get().to(index))
        .route("/t/{slug}/{page}", web::get().to(tenant_page))
        // Assets (scripts, styles, sounds). `Files` refuses paths that leave the directory.
        .service(Files::new("/static", static_dir));
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
