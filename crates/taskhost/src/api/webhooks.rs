//! Webhook routes: an execution's deliveries, and the tenant's signing
//! secret that receivers verify them with (see [`taskhost_scheduler::webhooks`]).

use super::error::{ApiError, ApiResult, Json};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use serde::Serialize;
use taskhost_model::Delivery;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(deliveries))
        .routes(routes!(signing_secret))
}

/// An execution's webhook deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryList {
    items: Vec<Delivery>,
}

/// The tenant's webhook signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SigningSecret {
    /// `whsec_` + base64 of the HMAC-SHA256 key, as Standard Webhooks
    /// libraries take it.
    secret: String,
}

/// An execution's webhook deliveries: each target, its state, and every
/// attempt (time, status or error, node).
#[utoipa::path(get, path = "/v1/executions/{id}/deliveries", tag = "webhooks",
    responses((status = 200, body = DeliveryList), (status = 404, body = ErrorBody)))]
async fn deliveries(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryList>> {
    let execution = state
        .store
        .get_execution(&principal.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("execution"))?;
    Ok(Json(DeliveryList {
        items: execution.deliveries,
    }))
}

/// The secret the tenant's webhooks are signed with (`webhook-signature`,
/// HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`).
#[utoipa::path(get, path = "/v1/webhooks/secret", tag = "webhooks",
    responses((status = 200, body = SigningSecret), (status = 403, body = ErrorBody)))]
async fn signing_secret(
    State(state): State<AppState>,
    principal: Caller<need::SecretsRead>,
) -> ApiResult<Json<SigningSecret>> {
    let key = super::secrets::secrets_key(&state)?;
    Ok(Json(SigningSecret {
        secret: taskhost_scheduler::webhooks::show_secret(&key.webhook_secret(&principal.tenant)),
    }))
}
