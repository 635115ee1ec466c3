//! Token revocation: `/v1/tokens/revocations`, and the cache every node
//! checks tokens against.
//!
//! A JWT is valid until it expires; to withdraw one sooner, a tenant's admin
//! revokes it by its `jti` claim (`taskhost token` gives every token one).
//! Revocations are stored (so every node sharing the store sees them) and kept
//! until the token would have expired anyway: the server refuses any token
//! living longer than `--jwt-max-lifetime`, so that is as long as one is kept.
//!
//! Checking the store on every request would put the store on every request's
//! path; instead each node holds every revocation in force in a [`Revoked`]
//! cache, which [`Verifier::verify`](super::auth::Verifier::verify) consults.
//! The node that takes a revocation adds it to its cache at once; the others
//! read them all every [`REFRESH`], so a revoked token is refused on every node
//! within that time. Tokens without a `jti` cannot be revoked one by one
//! (rotate the signing key instead).

use super::error::{ApiError, ApiResult, Json};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use taskhost_model::error::ErrorCode;
use taskhost_model::{MAX_REVOKED_TOKENS_PER_TENANT, Revocation};
use taskhost_store::{Store, StoreError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How often a node reads the revocations other nodes took.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The longest `jti` that can be revoked, in characters.
pub const MAX_JTI_CHARS: usize = 256;

/// The revocations in force: tenant → jti → when the record may go.
type ByTenant = HashMap<String, HashMap<String, DateTime<Utc>>>;

/// The revocations in force on this node.
#[derive(Debug, Default)]
pub struct Revoked {
    tokens: RwLock<ByTenant>,
    /// Not read from the store yet (it was away when the node started):
    /// until it is, no token is accepted, since any may be revoked.
    unread: AtomicBool,
}

impl Revoked {
    /// Whether the revocations have been read (see [`Revoked::unread`]).
    pub fn ready(&self) -> bool {
        !self.unread.load(Ordering::Acquire)
    }

    /// Marks the cache as not read yet; the next successful load clears it.
    pub fn unread(&self) {
        self.unread.store(true, Ordering::Release);
    }

    /// Whether `tenant`'s token `jti` is revoked.
    pub fn contains(&self, tenant: &str, jti: &str) -> bool {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens.get(tenant).is_some_and(|t| t.contains_key(jti))
    }

    /// Adds one (taken on this node).
    pub fn insert(&self, r: &Revocation) {
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let tenant = tokens.entry(r.tenant.clone()).or_default();
        tenant.insert(r.jti.clone(), r.expires_at);
    }

    /// Replaces the cache with the store's revocations in force; returns
    /// how many there are.
    pub async fn load(&self, store: &Store) -> Result<usize, StoreError> {
        let all = store.revoked_tokens(None).await?;
        let count = all.len();
        let mut fresh = ByTenant::new();
        for r in all {
            fresh
                .entry(r.tenant)
                .or_default()
                .insert(r.jti, r.expires_at);
        }
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.unread.store(false, Ordering::Release);
        Ok(count)
    }

    /// Reloads every [`REFRESH`] until the task is aborted. A failed read
    /// keeps what the cache holds (logged): revocations are never dropped
    /// because the store was away.
    pub async fn refresh(self: std::sync::Arc<Self>, store: Store) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.load(&store).await {
                tracing::warn!(error = %e, "could not read the revoked tokens; keeping the cached ones");
            }
        }
    }
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, revoke))
}

/// A token to revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeRequest {
    /// The token's `jti` claim: up to 256 characters, no control
    /// characters, not only spaces.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    jti: String,
}

/// The tenant's revoked tokens still in force.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RevocationList {
    items: Vec<Revocation>,
}

fn checked(jti: &str) -> Result<(), ApiError> {
    let printable = jti.chars().all(|c| !c.is_control());
    if jti.trim().is_empty() || jti.chars().count() > MAX_JTI_CHARS || !printable {
        return Err(ApiError::new(
            ErrorCode::InvalidJti,
            format!("`jti` must be 1-{MAX_JTI_CHARS} characters, not only spaces, with no control characters"),
        )
        .with_details(serde_json::json!({ "field": "jti" })));
    }
    Ok(())
}

/// Revoke one of the tenant's tokens by its `jti`: every request carrying it
/// is refused (401) from now on this node, and on every other node within a
/// second. Revoking it again changes nothing (200).
#[utoipa::path(post, path = "/v1/tokens/revocations", tag = "tokens", request_body = RevokeRequest,
    responses((status = 201, body = Revocation, description = "revoked"),
        (status = 200, body = Revocation, description = "already revoked"),
        (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "bad `jti`, or over the tenant's 10,000 revocations in force")))]
async fn revoke(
    State(state): State<AppState>,
    principal: Caller<need::Admin>,
    Json(body): Json<RevokeRequest>,
) -> ApiResult<(StatusCode, Json<Revocation>)> {
    checked(&body.jti)?;
    let keep = state.verifier.longest_validity();
    let until = state.store.now() + chrono::Duration::from_std(keep).unwrap_or_default();
    let (revocation, new) = state
        .store
        .revoke_token(
            &principal.tenant,
            &body.jti,
            &principal.subject,
            until,
            MAX_REVOKED_TOKENS_PER_TENANT,
        )
        .await?;
    state.verifier.revoked().insert(&revocation);
    tracing::info!(tenant = %principal.tenant, jti = %body.jti, by = %principal.subject, "token revoked");
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(revocation)))
}

/// List the tenant's revoked tokens still in force, oldest first.
#[utoipa::path(get, path = "/v1/tokens/revocations", tag = "tokens",
    responses((status = 200, body = RevocationList), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::Admin>,
) -> ApiResult<Json<RevocationList>> {
    let items = state.store.revoked_tokens(Some(&principal.tenant)).await?;
    Ok(Json(RevocationList { items }))
}
