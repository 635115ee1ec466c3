//! Operations endpoints: liveness, readiness and Prometheus metrics. They need
//! no token, and reveal no tenant's data.

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::metrics::{CONTENT_TYPE, Snapshot};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
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
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable(format!("the store does not answer: {e}")))?;
    Ok("ready")
}

/// Prometheus metrics of this node (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, body = String)))]
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
    let text = node.metrics().render(Snapshot {
        queued: node.queued(),
        in_flight: node.in_flight(),
        workers_free,
        tenants_running,
        live_nodes,
    });
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
