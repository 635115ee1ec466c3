//! `Idempotency-Key`: a client that retries a request (its answer was
//! lost, the connection dropped) gets the first answer again instead of new
//! work.
//!
//! On `POST /v1/executions` and `POST /v1/executions/batch`, a request with
//! the header records, before it makes anything, its key, a hash of what it
//! asks (the operation and its JSON body, key order and spacing aside) and
//! the ids of the executions it is about to make, under a unique index per
//! tenant and key (so that two nodes receiving one key at once agree). For
//! [`WINDOW`], a request with the same key and the same body is answered 200
//! with those executions as they are now; with another body it is refused
//! (422 `idempotency_key_reused`). Because the ids are recorded first, a
//! first request that died before it made its executions is finished by
//! the retry, under the same ids: one key never makes two runs.

use super::AppState;
use super::error::{ApiError, from_value};
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use taskhost_model::error::ErrorCode;
use taskhost_model::{Execution, IdempotencyRecord};
use taskhost_scheduler::{Admission, Work};

/// The header.
pub const HEADER: &str = "idempotency-key";
/// How long a key is kept.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest key, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// The header as the OpenAPI document declares it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documents the header only
pub(super) struct IdempotencyHeader {
    /// A key the client chooses for this request (1-255 visible ASCII
    /// characters, e.g. a UUID); a retry with the same key and body within
    /// 24 hours gets the first answer (200) instead of new work.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]+$"
    )]
    idempotency_key: Option<String>,
}

/// A request's key and what it asks.
#[derive(Debug, Clone)]
pub(super) struct RequestKey {
    key: String,
    /// The hash of the operation and the body.
    request: String,
}

/// A JSON body, and the request's idempotency key if it has one.
pub(super) struct Keyed<T> {
    pub body: T,
    pub key: Option<RequestKey>,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Keyed<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let key = header_key(req.headers())?;
        let operation = format!("{} {}", req.method(), req.uri().path());
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        let key = key.map(|key| {
            let mut text = operation.into_bytes();
            text.push(b'\n');
            canonical(&value, &mut text);
            RequestKey {
                key,
                request: taskhost_runtime::sha256_hex(&text),
            }
        });
        Ok(Keyed {
            body: from_value(value)?,
            key,
        })
    }
}

/// `value` as JSON with every object's keys sorted: the same JSON is the
/// same text however its sender ordered or spaced it.
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(&Value::String(key.clone()), out);
                out.push(b':');
                canonical(&fields[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(scalar.to_string().into_bytes()),
    }
}

fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key must be one header of 1-{MAX_KEY_CHARS} visible ASCII characters"
            ),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    let visible = text.bytes().all(|b| b.is_ascii_graphic());
    if values.next().is_some() || text.is_empty() || text.len() > MAX_KEY_CHARS || !visible {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

/// Records `key` for the executions `ids` about to be made, or — for a
/// retry — the ids the first request recorded (`Some`); 422 if the key was
/// used for another request.
pub(super) async fn first_ids(
    state: &AppState,
    tenant: &str,
    key: &RequestKey,
    ids: Vec<String>,
) -> Result<Option<Vec<String>>, ApiError> {
    let now = state.store.now();
    let window = chrono::Duration::from_std(WINDOW).unwrap_or_default();
    let record = IdempotencyRecord {
        tenant: tenant.to_owned(),
        key: key.key.clone(),
        request: key.request.clone(),
        ids,
        created_at: now,
        expires_at: now + window,
    };
    match state.store.idempotency_first(&record).await? {
        None => Ok(None),
        Some(first) if first.request != key.request => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            format!(
                "Idempotency-Key {:?} was used at {} for another request; use a new key for new work",
                key.key,
                first.created_at.to_rfc3339()
            ),
        )
        .with_details(serde_json::json!({ "first_ids": first.ids }))),
        Some(first) => Ok(Some(first.ids)),
    }
}

/// How long a retry waits for the first request (on this node or another)
/// to make its executions before it makes them itself.
const FIRST_GRACE: Duration = Duration::from_secs(2);

/// The first execution of a retried request's `work` (whose ids are the
/// first request's): as it is now, or — if the first request ended before
/// making it — made now under the same ids.
pub(super) async fn replayed(
    state: &AppState,
    tenant: &str,
    work: Vec<Work>,
) -> Result<Execution, ApiError> {
    let id = work
        .first()
        .map(|w| w.id.clone())
        .ok_or_else(|| ApiError::internal("a replay without work"))?;
    let deadline = tokio::time::Instant::now() + FIRST_GRACE;
    loop {
        if let Some(e) = state.store.get_execution(tenant, &id).await? {
            return Ok(e);
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let made = state.node.intake(work, Admission::Submit).await;
    // Made here, or by the first request after all (its write won).
    match state.store.get_execution(tenant, &id).await? {
        Some(e) => Ok(e),
        None => Err(match made {
            Err(e) => e.into(),
            Ok(_) => ApiError::internal("a replayed execution was not stored"),
        }),
    }
}
