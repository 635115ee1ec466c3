//! `/v1/nodes`: the live nodes sharing the store, and draining one before
//! maintenance. Operators only (the `operator` scope, which a tenant's
//! `admin` does not imply): nodes serve every tenant.

use super::error::{ApiError, ApiResult, Json};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use taskhost_model::NodeInfo;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(drain))
}

/// List the live nodes: role, version, workers, runs in flight, last heartbeat.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, body = Vec<NodeInfo>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    _principal: Caller<need::Operator>,
) -> ApiResult<Json<Vec<NodeInfo>>> {
    Ok(Json(state.store.live_nodes().await?))
}

/// Drain a node: it claims nothing more (from its next heartbeat on) and
/// finishes the runs it has. Other nodes take the new work.
#[utoipa::path(post, path = "/v1/nodes/{id}/drain", tag = "nodes",
    params(("id" = String, Path, description = "The node's id")),
    responses((status = 202, body = NodeInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn drain(
    State(state): State<AppState>,
    _principal: Caller<need::Operator>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<NodeInfo>)> {
    let node = state
        .store
        .drain_node(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("node"))?;
    Ok((StatusCode::ACCEPTED, Json(node)))
}
