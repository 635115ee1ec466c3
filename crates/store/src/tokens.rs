//! Revoked tokens on [`Store`]: written by a tenant's admin, read by every
//! node's cache (the API's `auth::Revoked`).

use super::{ApiKeyStore, Store, StoreError};
use chrono::{DateTime, Utc};
use taskhost_model::Revocation;

impl Store {
    /// Revokes `tenant`'s token `jti` until `expires_at` (when it would have
    /// expired anyway), if the tenant keeps fewer than `max` revocations in
    /// force (`Quota` otherwise; the API's is
    /// [`MAX_REVOKED_TOKENS_PER_TENANT`](taskhost_model::MAX_REVOKED_TOKENS_PER_TENANT)).
    /// Returns the revocation and whether it is new.
    pub async fn revoke_token(
        &self,
        tenant: &str,
        jti: &str,
        by: &str,
        expires_at: DateTime<Utc>,
        max: u64,
    ) -> Result<(Revocation, bool), StoreError> {
        let now = self.now();
        let revocation = Revocation {
            tenant: tenant.to_owned(),
            jti: jti.to_owned(),
            revoked_by: by.to_owned(),
            revoked_at: now,
            expires_at,
        };
        let new = self.backend.token_revoke(&revocation, now, max).await?;
        Ok((revocation, new))
    }

    /// The revocations in force, of `tenant` or of every tenant.
    pub async fn revoked_tokens(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<Revocation>, StoreError> {
        self.backend.tokens_revoked(tenant, self.now()).await
    }

    /// The API keys (see [`taskhost_model::apikey`]): read by every node's
    /// cache, written by tenants' admins.
    pub fn api_keys(&self) -> &dyn ApiKeyStore {
        &*self.backend
    }
}
