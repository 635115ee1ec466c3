//! Operations endpoints: liveness, readiness and Prometheus metrics. They need
//! no token, and reveal no tenant's data.

use super::AppState;
use super::error::{ApiError, ApiResult};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
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

/// Prometheus metrics of this node.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP taskhost_queue_depth Executions held in this node's queue.\n# TYPE taskhost_queue_depth gauge"
    );
    let _ = writeln!(out, "taskhost_queue_depth {}", state.node.queued());
    let _ = writeln!(
        out,
        "# HELP taskhost_runs_in_flight Runs in progress on this node.\n# TYPE taskhost_runs_in_flight gauge"
    );
    let _ = writeln!(out, "taskhost_runs_in_flight {}", state.node.in_flight());
    let (free, tenants) = state.node.slots();
    let _ = writeln!(
        out,
        "# HELP taskhost_workers_free Workers free on this node.\n# TYPE taskhost_workers_free gauge\ntaskhost_workers_free {free}"
    );
    let _ = writeln!(
        out,
        "# HELP taskhost_tenants_running Tenants holding run slots on this node.\n# TYPE taskhost_tenants_running gauge\ntaskhost_tenants_running {tenants}"
    );
    if let Ok(nodes) = state.store.live_nodes().await {
        let _ = writeln!(
            out,
            "# HELP taskhost_live_nodes Nodes with a current heartbeat.\n# TYPE taskhost_live_nodes gauge"
        );
        let _ = writeln!(out, "taskhost_live_nodes {}", nodes.len());
    }
    state.node.metrics().render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
