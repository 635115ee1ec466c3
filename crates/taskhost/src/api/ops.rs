//! Operations endpoints: liveness, readiness and Prometheus metrics. They need
//! no token, and reveal no tenant's data.

use super::AppState;
use super::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use taskhost_scheduler::metrics::{CONTENT_TYPE, Snapshot};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Ready to serve: the store took this node's last heartbeat (a write every
/// third of the heartbeat TTL) within that TTL.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses((status = 200, body = String), (status = 503, body = super::ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    // From what the node knows (its heartbeat, a store write every third of
    // the heartbeat TTL): a probe costs the store nothing and says whether
    // it takes writes. No internals in the answer: the cause is logged.
    match state.node.readiness() {
        Ok(()) => Ok("ready"),
        Err(why) => {
            tracing::warn!(why, "readiness: not ready");
            Err(ApiError::unavailable(
                "not ready: the store does not take this node's writes (see the node's log)",
            ))
        }
    }
}

/// Prometheus metrics of this node (OpenMetrics text), from what it holds
/// (the live nodes as of its last heartbeat).
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let node = &state.node;
    // Only what the node holds: a scrape costs the store nothing.
    let live_nodes = node.live_nodes();
    let (workers_free, tenants_running) = node.slots();
    let (compiling, compiling_peak) = state.runtime.compile_usage();
    let text = node.metrics().render(Snapshot {
        queued: node.queued(),
        in_flight: node.in_flight(),
        workers_free,
        tenants_running,
        live_nodes,
        compiling,
        compiling_peak,
    });
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
