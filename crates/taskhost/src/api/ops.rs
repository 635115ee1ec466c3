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

/// The store answers: ready to serve.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses((status = 200, body = String), (status = 503, body = super::ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    // A probe gets its answer quickly, and no internals: the cause is logged.
    let answer = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    let error = match answer {
        Ok(Ok(())) => return Ok("ready"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {}s", READY_TIMEOUT.as_secs()),
    };
    state.node.metrics().store_error("ping");
    tracing::warn!(error, "readiness: the store does not answer");
    Err(ApiError::unavailable(
        "not ready: the store does not answer (see the node's log)",
    ))
}

/// How long a readiness probe waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Prometheus metrics of this node (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let node = &state.node;
    let live_nodes = match state.store.live_nodes().await {
        Ok(nodes) => Some(nodes.len()),
        Err(_) => {
            node.metrics().store_error("live_nodes");
            None
        }
    };
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
