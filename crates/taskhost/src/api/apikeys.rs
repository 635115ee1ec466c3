//! `/v1/api-keys`: a tenant's admin makes, lists and deletes API keys, the
//! credentials of machines (see [`taskhost_model::apikey`]).
//!
//! A key grants the scopes named when it is made, never more than its maker
//! holds (an admin's `admin` covers every scope of the tenant; `operator`
//! only if the maker holds it). Its text is in the create answer only.
//! Deleting a key revokes it: refused on every node within
//! [`CACHE_FOR`](taskhost_model::apikey::CACHE_FOR).

use super::auth::Scope;
use super::error::{ApiError, ApiResult, Json};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taskhost_model::apikey::{self, ApiKeyRecord, MAX_API_KEYS_PER_TENANT, MAX_NAME_CHARS};
use taskhost_model::error::ErrorCode;
use taskhost_model::new_id;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, delete))
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewApiKey {
    /// A label for people (1-200 characters).
    #[schema(min_length = 1, max_length = 200, example = "ci deploys")]
    name: String,
    /// The scopes it grants (at least one; none its maker lacks).
    #[schema(min_items = 1, example = json!(["executions:write", "executions:read"]))]
    scopes: Vec<String>,
    /// How long it works, e.g. `90d` (default: until deleted).
    #[serde(default)]
    #[schema(example = "90d")]
    expires_in: Option<String>,
}

/// An API key, as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiKey {
    id: String,
    name: String,
    scopes: Vec<String>,
    #[serde(with = "taskhost_model::time::utc")]
    created_at: DateTime<Utc>,
    created_by: String,
    #[serde(
        with = "taskhost_model::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<DateTime<Utc>>,
    /// Its last use, to the minute (none yet if absent).
    #[serde(
        with = "taskhost_model::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    last_used_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKey {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKey {
            id: k.id.clone(),
            name: k.name.clone(),
            scopes: k.scopes.clone(),
            created_at: k.created_at,
            created_by: k.created_by.clone(),
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A new API key with its text, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiKeyWithSecret {
    api_key: ApiKey,
    /// `thk_<id>_<secret>`: send as `Authorization: Bearer <key>`. Only
    /// its hash is kept; it cannot be shown again.
    key: String,
}

/// The tenant's API keys.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiKeyList {
    items: Vec<ApiKey>,
}

/// The scopes asked for, each one the maker holds.
fn granted(maker: &super::auth::Principal, asked: &[String]) -> ApiResult<Vec<String>> {
    let bad = |message: String| ApiError::new(ErrorCode::InvalidApiKey, message).on_field("scopes");
    if asked.is_empty() {
        return Err(bad("an API key needs at least one scope".into()));
    }
    let mut scopes: Vec<Scope> = Vec::new();
    for raw in asked {
        let scope: Scope = raw
            .parse()
            .map_err(|e: super::auth::AuthError| bad(e.to_string()))?;
        if !maker.has(scope) {
            return Err(bad(format!(
                "you cannot grant `{scope}`: your token does not hold it"
            )));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes.iter().map(|s| s.as_str().to_owned()).collect())
}

/// Make an API key for a machine. Its text is in this answer only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "apikeys", request_body = NewApiKey,
    responses((status = 201, body = ApiKeyWithSecret), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a bad name, scope or expiry, or over the tenant's 100 keys")))]
async fn create(
    State(state): State<AppState>,
    principal: Caller<need::Admin>,
    Json(body): Json<NewApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKeyWithSecret>)> {
    let chars = body.name.chars().count();
    if body.name.trim().is_empty() || chars > MAX_NAME_CHARS {
        let e = ApiError::new(
            ErrorCode::InvalidName,
            "an API key's name has 1 to 200 characters",
        );
        return Err(e.on_field("name"));
    }
    let scopes = granted(&principal, &body.scopes)?;
    let now = state.store.now();
    let expires_at = match &body.expires_in {
        None => None,
        Some(text) => {
            let bad = |m: String| ApiError::new(ErrorCode::InvalidApiKey, m).on_field("expires_in");
            let d = taskhost_model::time::parse_duration(text).map_err(|e| bad(e.to_string()))?;
            let d = chrono::Duration::from_std(d)
                .ok()
                .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(3660))
                .ok_or_else(|| bad("`expires_in` must be from 1s to 10 years".into()))?;
            Some(now + d)
        }
    };
    let id = new_id();
    let (key, hash) = apikey::generate(&id);
    let record = ApiKeyRecord {
        id,
        tenant: principal.tenant.clone(),
        name: body.name,
        scopes,
        hash,
        created_at: now,
        created_by: principal.subject.clone(),
        expires_at,
        last_used_at: None,
    };
    state
        .store
        .api_keys()
        .api_key_insert(&record, MAX_API_KEYS_PER_TENANT)
        .await?;
    tracing::info!(tenant = %record.tenant, api_key = %record.id, by = %record.created_by, "API key made");
    let api_key = ApiKey::from(&record);
    Ok((StatusCode::CREATED, Json(ApiKeyWithSecret { api_key, key })))
}

/// The tenant's API keys, newest first (never their secrets).
#[utoipa::path(get, path = "/v1/api-keys", tag = "apikeys",
    responses((status = 200, body = ApiKeyList), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::Admin>,
) -> ApiResult<Json<ApiKeyList>> {
    let keys = state
        .store
        .api_keys()
        .api_key_list(&principal.tenant)
        .await?;
    let items = keys.iter().map(ApiKey::from).collect();
    Ok(Json(ApiKeyList { items }))
}

/// One API key (never its secret).
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "apikeys",
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    principal: Caller<need::Admin>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    let found = state.store.api_keys().api_key_get(&id).await?;
    found
        .filter(|k| k.tenant == principal.tenant)
        .map(|k| Json(ApiKey::from(&k)))
        .ok_or_else(|| ApiError::not_found("API key"))
}

/// Delete (revoke) an API key: refused on every node within a second.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "apikeys",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    principal: Caller<need::Admin>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let keys = state.store.api_keys();
    if !keys.api_key_delete(&principal.tenant, &id).await? {
        return Err(ApiError::not_found("API key"));
    }
    if let Some(cache) = state.verifier.api_keys() {
        cache.forget(&id);
    }
    tracing::info!(tenant = %principal.tenant, api_key = %id, by = %principal.subject, "API key deleted");
    Ok(StatusCode::NO_CONTENT)
}
