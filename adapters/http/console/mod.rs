//! `/console`: the operator console on the HTTP listener. Server-rendered HTML with a little
//! embedded JavaScript (live tail, session refresh); no CDN, no build step. Operators only: a
//! login form (session cookie: HttpOnly, SameSite=Strict, Secure under TLS, idle expiry) or
//! HTTP Basic; every state change carries a CSRF token. The decisions (who may log in, what is
//! recorded, the index queries) are the core's; this module renders them.

mod audit;
mod html;
mod live;
mod overview;
mod shipped;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::auth::{login_error, presented, remote};
use super::{ApiError, AppState};
use crate::core::ConsoleRefusal;
use crate::identity::Credentials;
use crate::secret::Secret;
use html::{esc, page, page_with, see_other};

const COOKIE: &str = "gh_console";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { see_other("/console/audit") }))
        .route("/console/", get(|| async { see_other("/console/audit") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(audit::router())
        .merge(live::router())
        .merge(overview::router())
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, ctype)], body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    html::secure(r)
}

/// A logged-in operator, by session cookie or HTTP Basic.
pub(super) struct ConsoleOp {
    pub name: String,
    pub csrf: String,
}

/// Why a console request was not let in.
pub(super) enum Refused {
    /// Not logged in: to the login form.
    Login,
    /// Logged in, not an operator (or bad Basic credentials).
    Api(ApiError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Login => see_other("/console/login"),
            Refused::Api(e) => {
                if e.status == StatusCode::FORBIDDEN {
                    page_with(
                        StatusCode::FORBIDDEN,
                        "Operators only",
                        "<p>This account may not use the console.</p>",
                    )
                } else {
                    e.into_response()
                }
            }
        }
    }
}

pub(super) fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for ConsoleOp {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refused> {
        if let Some(t) = cookie_token(parts)
            && let Some(l) = state.core.console.get(&t)
        {
            return Ok(Self {
                name: l.operator,
                csrf: l.csrf,
            });
        }
        let Some(p) = presented(&parts.headers).map_err(Refused::Api)? else {
            return Err(Refused::Login);
        };
        let session = state
            .core
            .console_login(&p.credentials(), remote(parts), false)
            .await
            .map_err(|e| Refused::Api(refusal(e)))?;
        let name = session.principal.name().to_string();
        Ok(Self {
            csrf: state.core.console.basic_csrf(&name),
            name,
        })
    }
}

impl ConsoleOp {
    /// The refusal, unless `presented` is this operator's CSRF token.
    pub(super) fn csrf_refusal(&self, presented: &str) -> Option<Response> {
        if crate::console::csrf_ok(&self.csrf, presented) {
            None
        } else {
            Some(page_with(
                StatusCode::FORBIDDEN,
                "Refused",
                "<p>The form was stale or did not come from this console; reload the page and try again.</p>",
            ))
        }
    }

    pub(super) fn header(&self) -> Option<(&str, &str)> {
        Some((&self.name, &self.csrf))
    }
}

/// The HTTP answer to a refused console login.
fn refusal(e: ConsoleRefusal) -> ApiError {
    match e {
        ConsoleRefusal::Login(e) => login_error(e),
        ConsoleRefusal::NotOperator => ApiError::forbidden("operators only"),
    }
}

fn login_page(message: Option<&str>) -> String {
    let msg = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    format!(
        "{msg}<form class=\"login\" method=\"post\" action=\"/console/login\">\
         <label>User <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Log in</button></form>"
    )
}

async fn login_form() -> Response {
    page("Log in", "", None, &login_page(None))
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    parts: Parts,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(f)) = form else {
        return page_with(
            StatusCode::BAD_REQUEST,
            "Log in",
            &login_page(Some("Enter a user name and a password.")),
        );
    };
    let creds = Credentials::Password {
        user: &f.user,
        password: Secret::new(f.password.as_str()),
    };
    let session = match state.core.console_login(&creds, remote(&parts), true).await {
        Ok(s) => s,
        Err(ConsoleRefusal::NotOperator) => {
            return page_with(
                StatusCode::FORBIDDEN,
                "Operators only",
                "<p>This account may not use the console.</p>",
            );
        }
        Err(ConsoleRefusal::Login(crate::core::LoginError::Audit(e))) => {
            return ApiError::from(crate::vfs::Error::Audit(e)).into_response();
        }
        Err(e) => {
            let api = refusal(e);
            let msg = if api.status == StatusCode::UNAUTHORIZED {
                "Wrong user name or password."
            } else {
                "Refused: too many failed logins or logins in progress; try again later."
            };
            return page_with(api.status, "Log in", &login_page(Some(msg)));
        }
    };
    let (token, _) = state.core.console.start(session.principal.name());
    let secure = if state.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict{secure}");
    let mut r = see_other("/console/audit");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    pub csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    op: ConsoleOp,
    parts: Parts,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(r) = op.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Some(t) = cookie_token(&parts) {
        state.core.console.end(&t);
    }
    let mut r = see_other("/console/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "gh_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}
