//! `/v1/plugins`: upload, list, get, download, delete.
//!
//! An upload is the raw wasm body with `name` and `version` in the query. It is
//! validated and compiled before it is stored, so a plugin that is stored can
//! run; the runtime's reason for refusing one comes back as a 422.

use super::auth::{Principal, Scope};
use super::error::{ApiError, ApiResult, Json, Query};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use taskhost_model::error::ErrorCode;
use taskhost_model::quota::{QuotaExceeded, QuotaKind};
use taskhost_model::{PluginRecord, new_id};
use taskhost_runtime::UploadError;
use taskhost_runtime::compile_queue::CompileRefusal;
use taskhost_store::{Page, PageRequest, PluginFilter};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes(max_plugin_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .layer(DefaultBodyLimit::max(max_plugin_bytes))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(list))
                .routes(routes!(get, delete))
                .routes(routes!(download)),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadParams {
    /// Plugin name: letters, digits, `.`, `_`, `-`; at most 100 characters.
    /// (In a multipart upload, a `name` field instead.)
    name: Option<String>,
    /// Version, e.g. `1.0.0`: the same characters. (Or a `version` field.)
    version: Option<String>,
}

/// A multipart upload: the wasm in a `file` part, with `name` and `version` fields.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the form only
pub(super) struct UploadForm {
    name: String,
    version: String,
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A plugin's `.wasm` bytes, as a body (binary, not an array of numbers).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documents the body only
pub(super) struct WasmBytes(Vec<u8>);

/// What [`check_label`] allows (plugin names, versions, aliases), as the API
/// document declares it.
pub(super) const LABEL_PATTERN: &str = "^[A-Za-z0-9._-]{1,100}$";

pub(super) fn check_label(what: &str, value: Option<&str>) -> ApiResult<String> {
    let Some(value) = value else {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} is required (a query parameter or form field)"),
        ));
    };
    let ok = !value.is_empty()
        && value.len() <= 100
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} {value:?} must be 1-100 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// Reads name, version and wasm from a `multipart/form-data` body.
async fn read_form(request: Request) -> ApiResult<(Option<String>, Option<String>, Bytes)> {
    let bad = |e: MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(e.body_text())
        } else if super::body_rate::too_slow(&e) {
            let message = super::body_rate::BodyTooSlow.to_string();
            ApiError::new(ErrorCode::BodyTooSlow, message)
        } else {
            ApiError::new(ErrorCode::InvalidMultipart, e.body_text())
        }
    };
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidMultipart, e.body_text()))?;
    let (mut name, mut version, mut wasm) = (None, None, Bytes::new());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "name" => name = Some(field.text().await.map_err(bad)?),
            "version" => version = Some(field.text().await.map_err(bad)?),
            "file" | "wasm" => wasm = field.bytes().await.map_err(bad)?,
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidMultipart,
                    format!("unknown form field {other:?}; expected name, version and file"),
                ));
            }
        }
    }
    Ok((name, version, wasm))
}

/// Upload a plugin version: the raw `.wasm` component as the body with
/// `name` and `version` in the query, or a multipart form.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins", params(UploadParams),
    request_body(content(
        (WasmBytes = "application/wasm"),
        (WasmBytes = "application/octet-stream"),
        (UploadForm = "multipart/form-data"),
    )),
    responses((status = 201, body = PluginRecord), (status = 409, body = ErrorBody, description = "name and version exist"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "not a valid plugin, or over a quota")))]
async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<UploadParams>,
    request: Request,
) -> ApiResult<impl IntoResponse> {
    let received = receive(&state, &principal, params, request).await;
    if let Err(refused) = &received {
        state.node.metrics().upload_refused(refused.code.as_str());
    }
    Ok((StatusCode::CREATED, Json(received?)))
}

/// Checks, validates and stores an upload.
async fn receive(
    state: &AppState,
    principal: &Principal,
    params: UploadParams,
    request: Request,
) -> ApiResult<PluginRecord> {
    principal.require(Scope::PluginsWrite)?;
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (name, version, body) = if multipart {
        let (name, version, wasm) = read_form(request).await?;
        (name.or(params.name), version.or(params.version), wasm)
    } else {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(super::error::body_error)?;
        (params.name, params.version, body)
    };
    let name = check_label("name", name.as_deref())?;
    let version = check_label("version", version.as_deref())?;
    // `name@version` and `name@alias` must never mean two things.
    if state
        .store
        .alias_exists(&principal.tenant, &name, &version)
        .await?
    {
        return Err(ApiError::new(
            ErrorCode::AliasTaken,
            format!("{name}@{version} is an alias; choose another version"),
        ));
    }
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "the request body must be the plugin's .wasm bytes",
        ));
    }
    // Quotas before compiling: a tenant at its limit costs the node nothing.
    let quotas = state.node.config().quotas.for_tenant(&principal.tenant);
    let usage = state.store.usage(&principal.tenant).await?;
    QuotaExceeded::check(QuotaKind::Plugins, quotas.plugins, usage.plugins, 1)?;
    QuotaExceeded::check(
        QuotaKind::PluginBytes,
        quotas.plugin_bytes,
        usage.plugin_bytes,
        body.len() as u64,
    )?;
    // A fair compile slot, then the compile, charged to the tenant.
    let budget = quotas.compile_seconds_per_hour;
    // Waiting for a slot takes at most half the request's time, so that an
    // upload that cannot compile in time is refused (429), not cut (503).
    let max_wait = state.limits.request_timeout / 2;
    let plugin = state
        .runtime
        .upload(&principal.tenant, budget, body.clone(), max_wait)
        .await
        .map_err(upload_error)?;
    let record = PluginRecord {
        id: new_id(),
        tenant: principal.tenant.clone(),
        name,
        version,
        sha256: plugin.sha256().to_owned(),
        size: body.len() as u64,
        world: taskhost_runtime::WORLD.to_owned(),
        created_at: state.store.now(),
        created_by: principal.subject.clone(),
    };
    state.store.create_plugin(&record, &body).await?;
    Ok(record)
}

/// An upload refused by the compile queue (429 with `Retry-After`), or
/// refused as a plugin (422 with its reason).
fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Refused(refusal) => {
            let after = refusal.retry_after().as_secs().max(1);
            match refusal {
                CompileRefusal::Busy { waiting, .. } => {
                    ApiError::too_many_requests(ErrorCode::CompileBusy, refusal.to_string(), after)
                        .with_details(json!({ "waiting": waiting, "retry_after_s": after }))
                }
                CompileRefusal::Budget { limit, used, .. } => ApiError::too_many_requests(
                    ErrorCode::QuotaExceeded,
                    refusal.to_string(),
                    after,
                )
                .with_details(json!({
                    "quota": QuotaKind::CompileSecondsPerHour,
                    "limit": limit,
                    "used": used,
                    "retry_after_s": after,
                })),
            }
        }
        UploadError::Invalid(e) => ApiError::new(e.code(), e.to_string()),
        UploadError::Failed(e) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    /// Only plugins with this name.
    name: Option<String>,
    /// The `next` cursor of the previous page.
    cursor: Option<String>,
    /// Page size: 1 to 1,000 (default 50).
    #[serde(default, deserialize_with = "super::wire::page_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List the tenant's plugins, newest first.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins", params(ListParams),
    responses((status = 200, body = Page<PluginRecord>)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::PluginsRead>,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<Page<PluginRecord>>> {
    let filter = PluginFilter {
        name: params.name,
        version: None,
    };
    let page = PageRequest {
        cursor: params.cursor,
        limit: params.limit,
    };
    Ok(Json(
        state
            .store
            .list_plugins(&principal.tenant, &filter, &page)
            .await?,
    ))
}

/// Get a plugin's metadata.
#[utoipa::path(get, path = "/v1/plugins/{id}", tag = "plugins",
    responses((status = 200, body = PluginRecord), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    principal: Caller<need::PluginsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginRecord>> {
    state
        .store
        .get_plugin(&principal.tenant, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("plugin"))
}

/// Download a plugin's wasm.
#[utoipa::path(get, path = "/v1/plugins/{id}/wasm", tag = "plugins",
    responses((status = 200, content_type = "application/wasm", body = WasmBytes), (status = 404, body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    principal: Caller<need::PluginsRead>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let wasm = state
        .store
        .plugin_wasm(&principal.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin"))?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], wasm))
}

/// Delete a plugin; refused (409) while it is in use: a schedule pinned to
/// it, an alias pointing to it, or a schedule following `name@latest` while
/// it is the newest version.
#[utoipa::path(delete, path = "/v1/plugins/{id}", tag = "plugins",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    principal: Caller<need::PluginsWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let record = state.store.get_plugin(&principal.tenant, &id).await?;
    if state.store.delete_plugin(&principal.tenant, &id).await? {
        if let Some(record) = record {
            state.node.forget_plugin(&id, &record.sha256);
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("plugin"))
    }
}
