//! `/v1/secrets`: a tenant's secrets. Write-only: a value goes in and never
//! comes back out through the API; only names, versions and times are shown.
//! Runs read the secrets they name through the `secret-get` host call.

use super::error::{ApiError, ApiResult, Json};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use taskhost_model::SecretInfo;
use taskhost_model::error::ErrorCode;
use taskhost_model::secrets::{MAX_SECRET_BYTES, check_name};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(put, delete))
}

/// A secret's new value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SecretValue {
    /// UTF-8 text, up to 64 KiB. Never returned.
    value: String,
}

/// A tenant's secrets: names, versions and times, never values.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SecretList {
    items: Vec<SecretInfo>,
}

/// The node's secrets key (sealing secrets, deriving webhook signing
/// secrets); 503 when the node has none.
pub(super) fn secrets_key(
    state: &AppState,
) -> Result<&taskhost_model::secrets::SecretKey, ApiError> {
    state
        .node
        .config()
        .secrets_key
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this node has no secrets key configured"))
}

fn checked(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(|e| {
        ApiError::new(ErrorCode::InvalidSecretName, e.to_string())
            .with_details(serde_json::json!({ "field": "name" }))
    })
}

/// Set a secret (a new one, or a new value and version of one). It is sealed
/// (XChaCha20-Poly1305) before it is stored; the response holds no value.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", request_body = SecretValue,
    params(("name" = String, Path, description = "1-128 letters, digits, '_', '-', '.'")),
    responses((status = 200, body = SecretInfo), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "bad name, value too large, or over the tenant's 1,000 secrets")))]
async fn put(
    State(state): State<AppState>,
    principal: Caller<need::SecretsWrite>,
    Path(name): Path<String>,
    Json(body): Json<SecretValue>,
) -> ApiResult<Json<SecretInfo>> {
    checked(&name)?;
    if body.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::new(
            ErrorCode::SecretTooLarge,
            format!("a secret may hold at most {MAX_SECRET_BYTES} bytes"),
        )
        .with_details(serde_json::json!({ "field": "value" })));
    }
    let key = secrets_key(&state)?;
    let info = state
        .store
        .put_secret(key, &principal.tenant, &name, body.value.as_bytes())
        .await?;
    Ok(Json(info))
}

/// List the tenant's secrets: names, versions, times.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = SecretList), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::SecretsRead>,
) -> ApiResult<Json<SecretList>> {
    let items = state.store.list_secrets(&principal.tenant).await?;
    Ok(Json(SecretList { items }))
}

/// Delete a secret. Runs that name it afterwards get an error from `secret-get`.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "The secret's name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    principal: Caller<need::SecretsWrite>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    checked(&name)?;
    if state.store.delete_secret(&principal.tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("secret"))
    }
}
