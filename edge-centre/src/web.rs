//! The operators' web console and its JSON API, served by `edge-centre
//! run` when `[console] listen` is set: server-rendered pages
//! ([`pages`]), a JSON API under `/api/` ([`api`]), live updates by
//! server-sent events ([`live`]).
//!
//! Security: every page and API call needs a user, by session cookie
//! (`HttpOnly; SameSite=Strict`) or `Authorization: Bearer` token; every
//! POST authenticated by cookie needs the session's CSRF token (form field
//! `csrf` or header `X-CSRF-Token`); bearer requests carry no ambient
//! credential and need none. The database is used from blocking threads
//! through the console's own connections, never the writer's.

pub mod api;
pub mod auth;
pub mod html;
pub mod live;
pub mod pages;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::sync::broadcast;

use crate::config::ConsolePlan;
use crate::store::StoreError;
use crate::store::console::{ConsoleDb, Db, Role, User};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "edge_session";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "edge_login";

/// What every request handler shares.
pub struct Console {
    pub db: Arc<ConsoleDb>,
    pub snapshots: PathBuf,
    pub live: broadcast::Sender<Update>,
    pub session: Duration,
    pub secure_cookie: bool,
}

pub use live::Update;

type App = Arc<Console>;

/// A refusal or failure, as a page or as JSON.
#[derive(Debug)]
pub struct Fail {
    pub status: StatusCode,
    pub message: String,
    pub api: bool,
}

impl Fail {
    pub fn new(status: StatusCode, message: impl Into<String>, api: bool) -> Fail {
        Fail {
            status,
            message: message.into(),
            api,
        }
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED && !self.api {
            return Redirect::to("/login").into_response();
        }
        if self.api {
            let body = serde_json::json!({ "error": self.message });
            return (self.status, axum::Json(body)).into_response();
        }
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{s}</title>\
<link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body class=\"login\"><main>\
<h1>{s}</h1><p class=\"error\" id=\"error\">{m}</p><p><a href=\"/alerts\">Back to the alerts</a></p></main></body></html>",
            s = self.status,
            m = html::esc(&self.message)
        );
        (self.status, axum::response::Html(body)).into_response()
    }
}

/// How a request proved who it is.
#[derive(Clone, Debug)]
pub enum Via {
    /// The session cookie (the token itself, to derive its CSRF token).
    Session(String),
    Bearer,
}

/// A request's user.
#[derive(Clone, Debug)]
pub struct Who {
    pub user: User,
    pub via: Via,
}

impl Who {
    /// The CSRF token to put in forms (empty for bearer requests).
    pub fn csrf(&self) -> String {
        match &self.via {
            Via::Session(t) => auth::csrf_for(t),
            Via::Bearer => String::new(),
        }
    }
}

pub fn now_ms() -> i64 {
    crate::store::millis(SystemTime::now())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

impl Console {
    /// Runs `f` on a console connection, on a blocking thread.
    pub async fn db<T: Send + 'static>(
        self: &Arc<Self>,
        api: bool,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Fail> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.run(f)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "console: database error");
                Err(Fail::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is not answering; try again",
                    api,
                ))
            }
            Err(_) => Err(Fail::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                api,
            )),
        }
    }

    /// The request's user, by bearer token or session cookie; 401 (a
    /// redirect to the login page for pages) without one.
    pub async fn who(self: &Arc<Self>, headers: &HeaderMap, api: bool) -> Result<Who, Fail> {
        let refused = || Fail::new(StatusCode::UNAUTHORIZED, "log in first", api);
        if let Some(token) = bearer(headers) {
            let hash = auth::token_hash(&token);
            let user = self
                .db(api, move |db| crate::store::console::token_user(db, &hash))
                .await?;
            return user
                .map(|user| Who {
                    user,
                    via: Via::Bearer,
                })
                .ok_or_else(refused);
        }
        let Some(token) = cookie(headers, SESSION_COOKIE) else {
            return Err(refused());
        };
        let hash = auth::token_hash(&token);
        let now = now_ms();
        let user = self
            .db(api, move |db| {
                crate::store::console::session_user(db, &hash, now)
            })
            .await?;
        user.map(|user| Who {
            user,
            via: Via::Session(token),
        })
        .ok_or_else(refused)
    }

    /// The user of a POST: as [`Console::who`], and with a cookie session
    /// the CSRF token (form field or `X-CSRF-Token`) must match (403).
    pub async fn who_posting(
        self: &Arc<Self>,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
        api: bool,
    ) -> Result<Who, Fail> {
        let who = self.who(headers, api).await?;
        if let Via::Session(token) = &who.via {
            let sent = form.get("csrf").cloned().or_else(|| {
                headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            if !sent.is_some_and(|s| auth::same(&s, &auth::csrf_for(token))) {
                return Err(Fail::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token: reload the page and try again",
                    api,
                ));
            }
        }
        Ok(who)
    }

    fn session_cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("edge_session=; Max-Age=0"))
    }
}

/// Refuses a user below `role` (403).
pub fn require(who: &Who, role: Role, api: bool) -> Result<(), Fail> {
    if who.user.role >= role {
        Ok(())
    } else {
        Err(Fail::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a {}: this needs the {} role",
                who.user.name,
                who.user.role.name(),
                role.name()
            ),
            api,
        ))
    }
}

/// A POST body as form fields (empty when it is not a form).
pub fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

// ---- login ------------------------------------------------------------------

async fn login_page(headers: HeaderMap) -> Response {
    let token = cookie(&headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64)
        .unwrap_or_else(auth::new_token);
    login_form(&token, None, StatusCode::OK)
}

fn login_form(token: &str, error: Option<&str>, status: StatusCode) -> Response {
    let mut r = (status, axum::response::Html(html::login(token, error))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login(
    axum::extract::State(app): axum::extract::State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Fail> {
    let f = form(&body);
    // The login form's CSRF: the cookie set with the form must come back
    // with the same value in the form (a foreign site can set neither).
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let sent = f.get("csrf").cloned().unwrap_or_default();
    if expected.is_empty() || !auth::same(&expected, &sent) {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "the login form expired: reload it and try again",
            false,
        ));
    }
    let name = f.get("name").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let lookup = name.clone();
    let found = app
        .db(false, move |db| {
            crate::store::console::user_hash(db, &lookup)
        })
        .await?;
    let ok = tokio::task::spawn_blocking(move || {
        auth::verify_password(&password, found.as_ref().map(|(h, _)| h.as_str()))
    })
    .await
    .unwrap_or(false);
    if !ok {
        tracing::info!(user = %name, "console: login refused");
        return Ok(login_form(
            &expected,
            Some("Wrong name or password."),
            StatusCode::UNAUTHORIZED,
        ));
    }
    let token = auth::new_token();
    let hash = auth::token_hash(&token);
    let now = now_ms();
    let expires = now + i64::try_from(app.session.as_millis()).unwrap_or(i64::MAX / 2);
    let who = name.clone();
    app.db(false, move |db| {
        crate::store::console::add_session(db, &hash, &who, now, expires)
    })
    .await?;
    tracing::info!(user = %name, "console: logged in");
    let mut r = Redirect::to("/alerts").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        app.session_cookie(&token, app.session.as_secs()),
    );
    Ok(r)
}

async fn logout(
    axum::extract::State(app): axum::extract::State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Fail> {
    let who = app.who_posting(&headers, &form(&body), false).await?;
    if let Via::Session(token) = who.via {
        let hash = auth::token_hash(&token);
        app.db(false, move |db| {
            crate::store::console::end_session(db, &hash)
        })
        .await?;
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, app.session_cookie("", 0));
    Ok(r)
}

// ---- assets -----------------------------------------------------------------

const CSS: &str = include_str!("web/console.css");
const JS: &str = include_str!("web/console.js");

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

/// Headers on every response: no framing, no sniffing, no caching of
/// pages, scripts only from here.
async fn harden(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Every route.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/alerts") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/alerts", get(pages::alerts))
        .route("/alerts/item", get(pages::alert_item))
        .route("/alerts/:id/ack", post(pages::ack))
        .route("/objects/:id", get(pages::object))
        .route("/cameras", get(pages::cameras))
        .route("/cameras/:node/:camera", get(pages::camera))
        .route("/search", get(pages::search))
        .route("/counts", get(pages::counts))
        .route("/delivery", get(pages::delivery))
        .route("/accounts", get(pages::accounts))
        .route("/snapshots/:sha", get(api::snapshot_page))
        .route("/events/stream", get(api::stream))
        .route("/api/events", get(api::events))
        .route("/api/events/:node/:camera/:seq", get(api::event))
        .route("/api/objects/:id", get(api::object))
        .route("/api/cameras", get(api::cameras))
        .route(
            "/api/cameras/:node/:camera/history",
            get(api::camera_history),
        )
        .route("/api/gaps", get(api::gaps))
        .route("/api/snapshots/:sha", get(api::snapshot))
        .route("/api/alerts", get(api::alerts))
        .route("/api/alerts/:id/ack", post(api::ack))
        .route("/api/unacked", get(api::unacked))
        .route("/api/me", get(api::me))
        .layer(axum::middleware::from_fn(harden))
        .with_state(app)
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the console on {addr}: {source}")]
pub struct ServeError {
    addr: std::net::SocketAddr,
    source: std::io::Error,
}

/// Binds the console's address and serves it on the current runtime
/// until the returned task is aborted.
pub async fn serve(
    plan: &ConsolePlan,
    addr: std::net::SocketAddr,
    console: Console,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = router(Arc::new(console));
    tracing::info!(listen = %local, secure_cookie = plan.secure_cookie, "console listening");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "console server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(secure_cookie: bool) -> Console {
        let plan = crate::config::StorePlan::Sqlite {
            path: PathBuf::from("unused.db"),
        };
        Console {
            db: Arc::new(ConsoleDb::open(&plan).unwrap()),
            snapshots: PathBuf::from("snapshots"),
            live: broadcast::channel(1).0,
            session: Duration::from_secs(3600),
            secure_cookie,
        }
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_when_asked() {
        let c = console(false).session_cookie("abc", 3600);
        let c = c.to_str().unwrap();
        assert_eq!(
            c,
            "edge_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600"
        );
        let s = console(true).session_cookie("abc", 0);
        assert!(s.to_str().unwrap().ends_with("; Max-Age=0; Secure"));
    }

    #[test]
    fn credentials_are_read_from_cookies_and_bearer_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; edge_session=tok; b=2"),
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  xyz "),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "edge_sess"), None);
        assert_eq!(bearer(&h).as_deref(), Some("xyz"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eHl6"),
        );
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn roles_are_ordered() {
        let who = |role| Who {
            user: User {
                name: "u".into(),
                role,
            },
            via: Via::Bearer,
        };
        assert!(require(&who(Role::Viewer), Role::Operator, true).is_err());
        assert!(require(&who(Role::Operator), Role::Operator, true).is_ok());
        assert!(require(&who(Role::Admin), Role::Operator, true).is_ok());
        assert!(require(&who(Role::Operator), Role::Admin, true).is_err());
        assert_eq!(who(Role::Admin).csrf(), "", "no CSRF token for bearers");
    }
}
