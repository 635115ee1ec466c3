//! The REST API, under `/v1`: plugins, schedules and executions, scoped to the
//! tenant of the caller's JWT.
//!
//! Every route is declared once, through `utoipa_axum::routes!`, which both
//! mounts the handler and adds it to the OpenAPI document served at
//! `/openapi.json` — so the document cannot drift from the router. Errors all
//! have one shape ([`error::ApiError`]); bodies go through [`error::Json`], so
//! bad JSON, wrong types and unknown fields are 400s with serde's message.
//!
//! - [`auth`]: bearer JWTs (HS256 secret, RS256/EdDSA public key, or an
//!   identity provider's JWKS), API keys, scopes;
//! - [`plugins`], [`schedules`], [`executions`]: the resources;
//! - [`events`], [`hooks`]: events, and the public endpoints that send them;
//! - [`audit`]: the record of every write request;
//! - [`ops`]: health, readiness and Prometheus metrics.

mod aliases;
mod apikeys;
mod audit;
pub mod auth;
pub mod body_rate;
mod console;
mod contract;
pub(crate) mod cron;
pub mod error;
mod events;
mod executions;
mod fires;
mod hooks;
mod idempotency;
mod nodes;
mod ops;
pub(crate) mod plugins;
pub mod rates;
pub mod revocations;
mod schedules;
pub mod scoped;
mod secrets;
pub mod server;
mod webhooks;
pub mod wire;

use auth::Verifier;
use axum::extract::{DefaultBodyLimit, FromRef, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use error::ApiError;
use std::sync::Arc;
use std::time::Duration;
use taskhost_model::error::ErrorCode;
use taskhost_model::policy::PolicyError;
use taskhost_model::quota::QuotaExceeded;
use taskhost_runtime::Runtime;
use taskhost_scheduler::{IntakeError, Node, Refusal};
use taskhost_store::Store;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Limits the API enforces on requests.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest plugin upload.
    pub max_plugin_bytes: usize,
    /// Largest JSON body.
    pub max_body_bytes: usize,
    /// Longest a request may take (an ad hoc run's `wait` is capped below it).
    pub request_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_plugin_bytes: 50 << 20,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub node: Node,
    pub runtime: Runtime,
    pub verifier: Arc<Verifier>,
    pub limits: Arc<ApiLimits>,
    /// Served over TLS: the console's session cookie is then `Secure` and
    /// named with the `__Host-` prefix (browsers keep it to this origin).
    pub tls: bool,
}

impl FromRef<AppState> for Arc<Verifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "taskhost", description = "A task host for WebAssembly plugins."),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The error body every failure has (see [`error::ApiError`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the JSON shape only
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_json`, `not_found`.
    code: String,
    /// What is wrong, for people.
    message: String,
    details: Option<serde_json::Value>,
}

/// Every route with its OpenAPI description; a worker node serves only the
/// operational ones.
fn routes(limits: &ApiLimits, api: bool) -> OpenApiRouter<AppState> {
    let ops = OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(ops::routes());
    if !api {
        return ops;
    }
    ops.merge(plugins::routes(limits.max_plugin_bytes))
        .merge(aliases::routes())
        .merge(schedules::routes())
        .merge(fires::routes())
        .merge(executions::routes(limits.max_body_bytes.saturating_mul(16)))
        .merge(nodes::routes())
        .merge(secrets::routes())
        .merge(revocations::routes())
        .merge(apikeys::routes())
        .merge(webhooks::routes())
        .merge(events::routes())
        .merge(hooks::routes())
        .merge(audit::routes())
        .merge(cron::routes())
}

/// The OpenAPI document of the API, as a node with the default settings
/// serves it.
pub fn openapi() -> serde_json::Value {
    let doc = routes(&ApiLimits::default(), true).split_for_parts().1;
    let facts = contract::Facts {
        caps: taskhost_scheduler::DEFAULT_CAPS,
        network_open: true,
    };
    contract::document(doc, &facts)
}

/// The whole HTTP application, as the node's role has it.
pub fn router(state: AppState) -> axum::Router {
    let api = state.node.config().role.serves_api();
    let (router, doc) = routes(&state.limits, api).split_for_parts();
    let config = state.node.config();
    let facts = contract::Facts {
        caps: config.caps,
        network_open: config.egress.policy().allows_any_host(),
    };
    let doc = Arc::new(contract::document(doc, &facts));
    let timeout = state.limits.request_timeout;
    let router = if api {
        // Inside routing, so each record names its route.
        let audited = middleware::from_fn_with_state(state.clone(), audit::record);
        router.route_layer(audited).merge(console::routes())
    } else {
        router
    };
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json(doc.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::map_request(body_rate::min_rate))
        .layer(middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(middleware::from_fn(request_id))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// On every response: nothing but this server's own scripts, styles and
/// images on its pages, no framing, no content sniffing.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Gives every request an id (or keeps the caller's), logs it, and returns it.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(taskhost_model::new_id);
    if let Ok(value) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let started = std::time::Instant::now();
    // Everything logged while serving it carries the request id, and the
    // tenant once the token is verified (see `auth`). Traced, it continues
    // the caller's trace if its `traceparent` names one.
    let span = tracing::info_span!("request", request_id = %id, tenant = tracing::field::Empty,
        otel.name = %format!("{method} {path}"), http.request.method = %method,
        url.path = %path, http.response.status_code = tracing::field::Empty);
    taskhost_net::trace::follow_header(&span, req.headers());
    let mut response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    span.in_scope(|| {
        tracing::info!(request_id = %id, %method, %path, status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64, "request")
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response
}

/// Counts every error response by its code (and store failures apart).
async fn count_errors(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    if let Some(mark) = response.extensions().get::<error::ErrorMark>() {
        let metrics = state.node.metrics();
        metrics.api_error(mark.code.as_str());
        if mark.store_failed {
            metrics.store_error("api");
        }
    }
    response
}

async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {}",
            taskhost_model::time::human(timeout)
        ))
        .into_response(),
    }
}

/// A refused policy: its code's status, with the field in `details`.
impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::new(e.code, e.message).on_field(&e.field)
    }
}

/// A quota that would be exceeded: 422 `quota_exceeded` naming it; 429 with
/// `Retry-After` for the queue, which drains by itself.
impl From<QuotaExceeded> for ApiError {
    fn from(e: QuotaExceeded) -> Self {
        let mut details =
            serde_json::json!({ "quota": e.quota, "limit": e.limit, "wanted": e.wanted });
        if !e.quota.drains() {
            return ApiError::new(ErrorCode::QuotaExceeded, e.to_string()).with_details(details);
        }
        details["retry_after_s"] = serde_json::json!(1);
        ApiError::too_many_requests(ErrorCode::QuotaExceeded, e.to_string(), 1)
            .with_details(details)
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::Policy(e) => e.into(),
            Refusal::UnknownPlugin(id) => ApiError::new(
                ErrorCode::UnknownPlugin,
                format!("no plugin {id:?} in this tenant"),
            ),
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Refused(mut refused) if refused.len() == 1 => refused.remove(0).1.into(),
            IntakeError::Refused(refused) => ApiError::new(
                ErrorCode::InvalidBatch,
                format!("{} of the runs were refused", refused.len()),
            ),
            IntakeError::Quota(e) => e.into(),
            IntakeError::Store(e) => e.into(),
        }
    }
}

/// Maps a store error to the API's.
impl From<taskhost_store::StoreError> for ApiError {
    fn from(e: taskhost_store::StoreError) -> Self {
        use taskhost_store::StoreError as E;
        match e {
            E::Conflict(what) => {
                ApiError::new(ErrorCode::Conflict, format!("{what} already exists"))
            }
            E::InUse(why) => ApiError::new(ErrorCode::InUse, why),
            E::Contention(_) => ApiError::unavailable(e.to_string()),
            E::Quota(q) => q.into(),
            // The cause goes to the log (with the request id); the caller
            // gets the kind and the request id to quote, no internals.
            other if other.is_transient() => {
                tracing::warn!(error = %other, "store unavailable");
                ApiError::unavailable(
                    "the store is unavailable; try again later (quote the X-Request-Id header to the operator)",
                )
                .store_failed()
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal(
                    "the store failed (quote the X-Request-Id header to the operator; the node's log has the cause)",
                )
                .store_failed()
            }
        }
    }
}
