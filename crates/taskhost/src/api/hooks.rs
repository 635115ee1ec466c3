//! Hooks: `/v1/hooks` to make and manage them, and `POST /hooks/{id}`, the
//! public endpoint another service sends events to without a taskhost token
//! (see [`taskhost_model::hook`] for the secret and the two modes).
//!
//! A hook request is checked in this order, and nothing runs unless all
//! pass: the hook exists (404); the tenant's request rate (429); the body's
//! size ([`MAX_BODY_BYTES`], 413); the signature or token and the timestamp
//! (401 `bad_signature`, `stale_timestamp`); the body is JSON (400); the
//! `webhook-id` was not taken within [`REPLAY_WINDOW`] (409
//! `webhook_replayed`). Then the body becomes the `data` of the hook's event,
//! whose id is the `webhook-id` (or a new one), and the event is published
//! like `POST /v1/events`.

use super::error::{ApiError, ApiResult, Json, body_error};
use super::events::{self, EventAccepted};
use super::scoped::{Caller, need};
use super::secrets::secrets_key;
use super::{AppState, ErrorBody};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taskhost_model::error::ErrorCode;
use taskhost_model::event::{Event, check_name};
use taskhost_model::hook::{
    self, HookError, HookMode, HookRecord, MAX_BODY_BYTES, MAX_HOOKS_PER_TENANT, PreviousSecret,
    REPLAY_WINDOW, ROTATION_GRACE, Signed,
};
use taskhost_model::{IdempotencyRecord, new_id};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(create, list))
                .routes(routes!(get, delete))
                .routes(routes!(rotate)),
        )
}

/// A new hook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewHook {
    /// A label for people (1-200 characters).
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// The event its requests become.
    #[schema(pattern = r"^[A-Za-z0-9_.:/-]{1,200}$", example = "github.push")]
    event: String,
    /// How its requests are verified (default `signed`).
    #[serde(default)]
    mode: HookMode,
}

/// A hook, as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Hook {
    id: String,
    name: String,
    event: String,
    mode: HookMode,
    /// Where its sender posts: `/hooks/{id}` on this server.
    path: String,
    #[serde(with = "taskhost_model::time::utc")]
    created_at: DateTime<Utc>,
    created_by: String,
    #[serde(with = "taskhost_model::time::utc")]
    rotated_at: DateTime<Utc>,
    /// Until when the secret before the last rotation still verifies.
    #[serde(
        with = "taskhost_model::time::option_utc",
        skip_serializing_if = "Option::is_none"
    )]
    previous_secret_until: Option<DateTime<Utc>>,
}

impl From<&HookRecord> for Hook {
    fn from(h: &HookRecord) -> Self {
        Hook {
            id: h.id.clone(),
            name: h.name.clone(),
            event: h.event.clone(),
            mode: h.mode,
            path: format!("/hooks/{}", h.id),
            created_at: h.created_at,
            created_by: h.created_by.clone(),
            rotated_at: h.rotated_at,
            previous_secret_until: h.previous.as_ref().map(|p| p.until),
        }
    }
}

/// A hook with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookWithSecret {
    hook: Hook,
    /// `whsec_` + base64 (Standard Webhooks libraries take it as it is);
    /// in `token` mode, the bearer token. Shown only now.
    secret: String,
}

/// The tenant's hooks.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookList {
    items: Vec<Hook>,
}

/// What a hook request did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookAccepted {
    /// The event's id: the request's `webhook-id`, or a new one.
    id: String,
    /// How many schedules it fired.
    fired: usize,
}

fn shown(state: &AppState, h: &HookRecord) -> ApiResult<HookWithSecret> {
    let key = secrets_key(state)?;
    let secret = key.hook_secret(&h.tenant, &h.id, &h.salt);
    Ok(HookWithSecret {
        hook: Hook::from(h),
        secret: hook::show_secret(&secret),
    })
}

/// Make a hook: a public endpoint (`/hooks/{id}`) whose verified requests
/// become events of one name. Its secret is in this answer only.
#[utoipa::path(post, path = "/v1/hooks", tag = "hooks", request_body = NewHook,
    responses((status = 201, body = HookWithSecret), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a bad name or event, or over the tenant's 100 hooks")))]
async fn create(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Json(body): Json<NewHook>,
) -> ApiResult<(StatusCode, Json<HookWithSecret>)> {
    let chars = body.name.chars().count();
    if body.name.trim().is_empty() || chars > 200 {
        let e = ApiError::new(
            ErrorCode::InvalidName,
            "a hook's name has 1 to 200 characters",
        );
        return Err(e.on_field("name"));
    }
    check_name(&body.event)
        .map_err(|e| ApiError::new(ErrorCode::InvalidEvent, e.to_string()).on_field("event"))?;
    secrets_key(&state)?;
    let now = state.store.now();
    let record = HookRecord {
        id: new_id(),
        tenant: principal.tenant.clone(),
        name: body.name,
        event: body.event,
        mode: body.mode,
        created_at: now,
        created_by: principal.subject.clone(),
        rotated_at: now,
        salt: hook::new_salt(),
        previous: None,
        version: 0,
    };
    state
        .store
        .create_hook(&record, MAX_HOOKS_PER_TENANT)
        .await?;
    tracing::info!(tenant = %record.tenant, hook = %record.id, event = %record.event, "hook made");
    Ok((StatusCode::CREATED, Json(shown(&state, &record)?)))
}

/// The tenant's hooks, newest first (never their secrets).
#[utoipa::path(get, path = "/v1/hooks", tag = "hooks",
    responses((status = 200, body = HookList), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesRead>,
) -> ApiResult<Json<HookList>> {
    let hooks = state.store.hooks(&principal.tenant).await?;
    let items = hooks.iter().map(Hook::from).collect();
    Ok(Json(HookList { items }))
}

async fn tenant_hook(state: &AppState, tenant: &str, id: &str) -> ApiResult<HookRecord> {
    let found = state.store.hook(id).await?;
    found
        .filter(|h| h.tenant == tenant)
        .ok_or_else(|| ApiError::not_found("hook"))
}

/// One hook (never its secret).
#[utoipa::path(get, path = "/v1/hooks/{id}", tag = "hooks",
    responses((status = 200, body = Hook), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<Hook>> {
    let h = tenant_hook(&state, &principal.tenant, &id).await?;
    Ok(Json(Hook::from(&h)))
}

/// Delete a hook: its requests are refused (404) from now on.
#[utoipa::path(delete, path = "/v1/hooks/{id}", tag = "hooks",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    match state.store.delete_hook(&principal.tenant, &id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found("hook")),
    }
}

/// Give a hook a new secret, shown in this answer only. The secret before
/// it still verifies for 24 hours, so the sender can switch without losing
/// events.
#[utoipa::path(post, path = "/v1/hooks/{id}/rotate", tag = "hooks",
    responses((status = 200, body = HookWithSecret), (status = 404, body = ErrorBody)))]
async fn rotate(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<HookWithSecret>> {
    secrets_key(&state)?;
    let grace = chrono::Duration::from_std(ROTATION_GRACE).unwrap_or_default();
    for _ in 0..8 {
        let old = tenant_hook(&state, &principal.tenant, &id).await?;
        let now = state.store.now();
        let mut new = old.clone();
        new.previous = Some(PreviousSecret {
            salt: old.salt.clone(),
            until: now + grace,
        });
        new.salt = hook::new_salt();
        new.rotated_at = now;
        new.version = old.version + 1;
        if state.store.replace_hook(&new, old.version).await? {
            tracing::info!(tenant = %new.tenant, hook = %new.id, "hook secret rotated");
            return Ok(Json(shown(&state, &new)?));
        }
    }
    Err(ApiError::unavailable(
        "the hook kept changing while it was rotated; try again",
    ))
}

/// A hook's endpoint: a request verified by the hook's mode becomes its
/// event, with the JSON body as the event's data (see the module docs).
#[utoipa::path(post, path = "/hooks/{id}", tag = "hooks", security(()),
    request_body(content = Object, description = "any JSON (at most 256 KiB)"),
    responses((status = 202, body = HookAccepted),
        (status = 400, body = ErrorBody, description = "the body is not JSON"),
        (status = 401, body = ErrorBody, description = "`bad_signature` or `stale_timestamp`"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`webhook_replayed`"),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn receive(
    State(state): State<AppState>,
    slot: Option<axum::Extension<super::audit::Slot>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<HookAccepted>)> {
    let h = state
        .store
        .hook(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("hook"))?;
    super::audit::hook_caller(&slot, &h.tenant, &format!("hook:{}", h.id));
    state.verifier.admit_rate(&h.tenant)?;
    let body = body.map_err(body_error)?;
    let webhook_id = verify(&state, &h, &headers, &body)?;
    let data: serde_json::Value = match body.is_empty() {
        true => serde_json::Value::Null,
        false => serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("a hook's body is JSON: {e}"),
            )
        })?,
    };
    let event = Event {
        id: webhook_id.clone().unwrap_or_else(new_id),
        name: h.event.clone(),
        tenant: h.tenant.clone(),
        data,
        received_at: state.store.now(),
        hook: Some(h.id.clone()),
    };
    events::checked(&event)?;
    if let Some(webhook_id) = &webhook_id {
        taken_once(&state, &h, webhook_id, &body).await?;
    }
    let EventAccepted { id, fires, .. } = events::publish(&state, event).await?;
    let fired = fires.iter().filter(|f| !f.duplicate).count();
    Ok((StatusCode::ACCEPTED, Json(HookAccepted { id, fired })))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies a request by its hook's mode; the `webhook-id` it carries.
fn verify(
    state: &AppState,
    h: &HookRecord,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Option<String>> {
    let key = secrets_key(state)?;
    let now = state.store.now();
    let secrets: Vec<[u8; 32]> = h
        .salts(now)
        .into_iter()
        .map(|salt| key.hook_secret(&h.tenant, &h.id, salt))
        .collect();
    let webhook_id = header(headers, "webhook-id").map(str::to_owned);
    let verified = match h.mode {
        HookMode::Signed => {
            let (Some(id), Some(timestamp), Some(signatures)) = (
                webhook_id.as_deref(),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
            ) else {
                return Err(refused(HookError::MissingHeaders));
            };
            let signed = Signed {
                id,
                timestamp,
                signatures,
            };
            hook::verify_signed(&secrets, signed, body, now)
        }
        HookMode::Token => {
            let bearer = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "));
            hook::verify_token(&secrets, bearer.unwrap_or_default().trim())
        }
    };
    verified.map_err(refused)?;
    Ok(webhook_id)
}

fn refused(e: HookError) -> ApiError {
    let code = match e {
        HookError::TimestampOutOfWindow(_) | HookError::BadTimestamp(_) => {
            ErrorCode::StaleTimestamp
        }
        _ => ErrorCode::BadSignature,
    };
    ApiError::new(code, e.to_string())
}

/// Takes `webhook_id` for this hook, once within the replay window.
async fn taken_once(
    state: &AppState,
    h: &HookRecord,
    webhook_id: &str,
    body: &[u8],
) -> ApiResult<()> {
    let now = state.store.now();
    let window = chrono::Duration::from_std(REPLAY_WINDOW).unwrap_or_default();
    let record = IdempotencyRecord {
        tenant: h.tenant.clone(),
        key: format!("hook:{}:{webhook_id}", h.id),
        request: taskhost_runtime::sha256_hex(body),
        ids: Vec::new(),
        created_at: now,
        expires_at: now + window,
    };
    match state.store.idempotency_first(&record).await? {
        None => Ok(()),
        Some(first) => Err(ApiError::new(
            ErrorCode::WebhookReplayed,
            format!(
                "webhook-id {webhook_id:?} was received at {}; a message is taken once, so this one runs nothing",
                first.created_at.to_rfc3339()
            ),
        )),
    }
}
