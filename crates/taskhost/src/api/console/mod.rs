//! The web console: server-rendered pages at `/`, served by the same binary.
//!
//! Pages are maud templates (escaping by default; no JavaScript build):
//! reads are rendered on the server from the store, scoped to the signed-in
//! token's tenant exactly as the API is. Every change — upload, create,
//! pause, trigger, cancel, … — is a call of the `/v1` API from the small
//! script in `console.js`, so the console can do nothing the API would not
//! let the same token do, and no rule is written twice.
//!
//! Sign-in: the token is pasted once and kept in an HttpOnly, SameSite=Strict
//! cookie ([`SESSION_COOKIE`]). The API accepts that cookie only on requests
//! that carry the [`CONSOLE_HEADER`], which a page of another site cannot
//! add without a CORS preflight (this server answers none): together with
//! SameSite=Strict, no other site can act with a signed-in user's token.
//! A token without a write scope sees no buttons for it, and the API refuses
//! the call anyway.

mod audit;
mod hooks;
mod html;
mod ledger;
mod pages;
mod runs;
mod workflow;

use super::AppState;
use super::auth::{Principal, SECURE_SESSION_COOKIE, SESSION_COOKIE, session_token};
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// The console's routes (pages and assets); the API's routes are elsewhere.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/plugins", get(pages::plugins))
        .route("/schedules", get(pages::schedules))
        .route("/schedules/new", get(pages::schedule_form))
        .route("/schedules/{id}", get(ledger::schedule))
        .route("/schedules/{id}/edit", get(pages::schedule_edit))
        .route("/executions", get(runs::executions))
        .route("/executions/{id}", get(runs::execution))
        .route("/events", get(hooks::hooks))
        .route("/audit", get(audit::audit))
        .route(
            "/login",
            get(login_form).post(login).layer((
                axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BYTES),
                axum::middleware::from_fn(login_deadline),
            )),
        )
        .route("/logout", axum::routing::post(logout))
        .route("/console.js", get(|| asset(SCRIPT, "text/javascript")))
        .route("/console.css", get(|| asset(STYLE, "text/css")))
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The signed-in user of a page: the principal of the session's token, or
/// a redirect to the sign-in page.
pub(super) struct User(pub Principal);

impl FromRequestParts<AppState> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = session_token(&parts.headers) else {
            return Err(Redirect::to("/login").into_response());
        };
        match state.verifier.admit(token).await {
            Ok(principal) => Ok(User(principal)),
            Err(e) => Err(login_page(Some(&e.message), StatusCode::UNAUTHORIZED)),
        }
    }
}

async fn login_form() -> Response {
    login_page(None, StatusCode::OK)
}

fn login_page(error: Option<&str>, status: StatusCode) -> Response {
    let body = maud::html! {
        main class="narrow" {
            h1 { "Sign in to taskhost" }
            @if let Some(e) = error { p class="error" role="alert" { (e) } }
            form method="post" action="/login" {
                label for="token" { "API token (a JWT; " code { "taskhost token" } " mints one)" }
                textarea id="token" name="token" rows="6" required autofocus spellcheck="false" {}
                button type="submit" { "Sign in" }
            }
        }
    };
    let page = html::document("Sign in", None, body).into_string();
    (status, Html(page)).into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// The largest sign-in form (a token is a few KiB at most).
const MAX_LOGIN_BYTES: usize = 16 << 10;
/// How long a sign-in may take, its body included: the caller is not yet
/// known, so a slow one holds a connection for this long at most.
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Cuts a sign-in that takes longer than [`LOGIN_TIMEOUT`] (408).
async fn login_deadline(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(LOGIN_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => login_page(
            Some("the sign-in took too long; try again"),
            StatusCode::REQUEST_TIMEOUT,
        ),
    }
}

/// Whether a request's `Origin`, if it has one, is this server (the `Host`
/// it was sent to): a page of another site cannot sign a visitor in.
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser's cross-site request
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    host.is_some() && origin_host == host
}

/// Checks the token and keeps it in the session cookie.
async fn login(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    form: axum::Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return login_page(
            Some("sign in from this server's own page"),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.token.trim();
    if let Err(e) = state.verifier.admit(token).await {
        return login_page(Some(&e.message), StatusCode::UNAUTHORIZED);
    }
    let cookie = session_cookie(state.tls, token, "");
    match HeaderValue::from_str(&cookie) {
        Ok(value) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, value),
                (header::LOCATION, HeaderValue::from_static("/")),
            ],
        )
            .into_response(),
        Err(_) => login_page(Some("that is not a token"), StatusCode::BAD_REQUEST),
    }
}

/// The session cookie's header: over TLS `Secure` and `__Host-` named.
fn session_cookie(tls: bool, value: &str, extra: &str) -> String {
    let (name, secure) = match tls {
        true => (SECURE_SESSION_COOKIE, "; Secure"),
        false => (SESSION_COOKIE, ""),
    };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}{extra}")
}

async fn logout(State(state): State<AppState>) -> Response {
    let cookie = session_cookie(state.tls, "", "; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/login".to_owned()),
        ],
    )
        .into_response()
}
