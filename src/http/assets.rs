//! The files of `static/` (pages, scripts, styles, sounds): built into the binary, so that
//! it serves them from whatever directory it is started in, or read from `STATIC_DIR` while
//! pages are being developed. Either way each answer has its type and an `ETag`, and is
//! revalidated on every use (`Cache-Control: no-cache`): a kiosk that reloads gets a
//! bodiless 304 until the file changes.

use std::borrow::Cow;
use std::path::PathBuf;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::{ApiError, Resource};

#[derive(rust_embed::Embed)]
#[folder = "static/"]
struct Embedded;

/// Where the files come from.
#[derive(Debug, Clone)]
pub enum Assets {
    Embedded,
    /// `STATIC_DIR`: read at each request, so an edited file is served at once.
    Directory(PathBuf),
}

/// One file, ready to answer.
pub struct Asset {
    body: Cow<'static, [u8]>,
    etag: String,
    content_type: String,
}

impl Assets {
    pub fn from_config(static_dir: Option<&str>) -> Self {
        match static_dir {
            Some(dir) => Assets::Directory(PathBuf::from(dir)),
            None => Assets::Embedded,
        }
    }

    /// The file at `name` (a path relative to `static/`, like `js/api.js`); `None` if there
    /// is none, or if the name could leave the directory.
    pub async fn load(&self, name: &str) -> Option<Asset> {
        if !is_plain_relative_path(name) {
            return None;
        }
        let content_type = content_type(name);
        match self {
            Assets::Embedded => {
                let file = Embedded::get(name)?;
                let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
                Some(Asset {
                    body: file.data,
                    etag,
                    content_type,
                })
            }
            Assets::Directory(dir) => {
                let path = dir.join(name);
                let (body, modified) = web::block(move || {
                    let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
                    let modified = meta
                        .modified()
                        .ok()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()?;
                    Some((std::fs::read(&path).ok()?, modified))
                })
                .await
                .ok()??;
                let etag = format!("\"{:x}-{:x}\"", body.len(), modified.as_nanos());
                Some(Asset {
                    body: Cow::Owned(body),
                    etag,
                    content_type,
                })
            }
        }
    }

    /// Answers the file, or 404 `not_found`.
    pub async fn respond(&self, req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
        let asset = self
            .load(name)
            .await
            .ok_or(ApiError::NotFound(Resource::Route))?;
        Ok(asset.respond(req))
    }
}

impl Asset {
    fn respond(self, req: &HttpRequest) -> HttpResponse {
        let unchanged = matches_etag(req.headers().get(header::IF_NONE_MATCH), &self.etag);
        let mut response = if unchanged {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, self.etag.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-cache"));
        if unchanged {
            return response.finish();
        }
        response
            .insert_header((header::CONTENT_TYPE, self.content_type))
            .body(self.body.into_owned())
    }
}

/// `If-None-Match` names this entity tag (or `*`). Weak tags compare as equal (RFC 9110
/// §13.1.2 uses the weak comparison for this header).
fn matches_etag(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag.trim_start_matches("W/")
    })
}

/// Segments of ordinary names only: no `..`, `.`, empty segment, backslash or control
/// character, so that the name stays inside the directory on every platform.
fn is_plain_relative_path(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && !name.chars().any(char::is_control)
        && name
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "xml" | "svg"
        );
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for ok in ["index.html", "js/api.js", "js/i18n/pt-BR/common.js"] {
            assert!(is_plain_relative_path(ok), "{ok}");
        }
        for bad in [
            "",
            "../Cargo.toml",
            "js/../../Cargo.toml",
            "/etc/passwd",
            "js//api.js",
            "./index.html",
            "js\\..\\x",
            "a\0b",
        ] {
            assert!(!is_plain_relative_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn types_say_the_charset_of_text() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("css/nextup.css"), "text/css; charset=utf-8");
        assert!(content_type("js/api.js").contains("javascript; charset=utf-8"));
        assert_eq!(content_type("logo.png"), "image/png");
    }

    #[test]
    fn if_none_match_compares_tags_weakly() {
        let tag = "\"abc\"";
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(matches_etag(Some(&header("\"abc\"")), tag));
        assert!(matches_etag(Some(&header("W/\"abc\"")), tag));
        assert!(matches_etag(Some(&header("\"x\", \"abc\"")), tag));
        assert!(matches_etag(Some(&header("*")), tag));
        assert!(!matches_etag(Some(&header("\"abd\"")), tag));
        assert!(!matches_etag(None, tag));
    }

    #[actix_web::test]
    async fn every_page_is_in_the_binary() {
        for page in ["index", "totem", "display", "operator", "ticket"] {
            let name = format!("{page}.html");
            assert!(Assets::Embedded.load(&name).await.is_some(), "{name}");
        }
        assert!(Assets::Embedded.load("../Cargo.toml").await.is_none());
    }
}
