//! API keys: long-lived credentials for machines, issued by the server.
//!
//! A person's tokens come from the identity provider (or `taskhost token`)
//! and expire within hours; a CI job or another service needs a credential
//! that lasts and can be withdrawn on its own. A tenant's admin creates one
//! through `POST /v1/api-keys` with the scopes it needs (never more than the
//! admin holds), and is shown it once:
//!
//! ```text
//! thk_<id>_<secret>
//! ```
//!
//! It is sent like any token, `Authorization: Bearer thk_…`. Only the
//! SHA-256 of the secret is stored: the secret is 32 random bytes, so a
//! plain hash is as good as a slow one and costs a microsecond per request.
//! Deleting the key revokes it; every node reads keys through a cache that
//! lives [`CACHE_FOR`], so a revoked key is refused everywhere within it.

use crate::secrets::same;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What every API key starts with (so it is told from a JWT at a glance,
/// and secret scanners can find leaked ones).
pub const PREFIX: &str = "thk_";
/// Most API keys one tenant may have.
pub const MAX_API_KEYS_PER_TENANT: u64 = 100;
/// How long a node trusts what it read of a key: a revoked key is refused
/// on every node within this.
pub const CACHE_FOR: Duration = Duration::from_secs(1);
/// A key's last use is written at most this often.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// An API key as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: String,
    /// A label for people.
    pub name: String,
    /// The scopes it grants, in their wire form (`"executions:write"`).
    pub scopes: Vec<String>,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    /// Who made it (the creating token's subject).
    pub created_by: String,
    /// When it stops working, if ever.
    #[serde(default, with = "crate::time::option_utc")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (written at most every [`TOUCH_EVERY`]).
    #[serde(default, with = "crate::time::option_utc")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether `secret` is this key's.
    pub fn matches(&self, secret: &str) -> bool {
        same(hash(secret).as_bytes(), self.hash.as_bytes())
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The subject its requests act as (audit records, `created_by`).
    pub fn subject(&self) -> String {
        format!("api-key:{}", self.id)
    }
}

/// A new key for record `id`: the text shown once, and its secret's hash.
pub fn generate(id: &str) -> (String, String) {
    let secret = crate::secrets::SecretKey::generate();
    (format!("{PREFIX}{id}_{secret}"), hash(&secret))
}

/// The record id and secret of a presented key, if it has a key's shape.
pub fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.rsplit_once('_')?;
    let ok = !id.is_empty() && id.len() <= 64 && secret.len() == 64;
    ok.then_some((id, secret))
}

/// SHA-256 of `secret`, hex.
fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_splits_and_matches_only_its_secret() {
        let (key, hash) = generate("0190-abc");
        let (id, secret) = split(&key).expect("shape");
        assert_eq!(id, "0190-abc");
        let record = ApiKeyRecord {
            id: id.into(),
            tenant: "acme".into(),
            name: "ci".into(),
            scopes: vec![],
            hash,
            created_at: Utc::now(),
            created_by: "alice".into(),
            expires_at: None,
            last_used_at: None,
        };
        assert!(record.matches(secret));
        assert!(!record.matches(&"0".repeat(64)));
        assert!(!key.contains(&record.hash));
        assert_eq!(split("thk_x_short"), None);
        assert_eq!(split("eyJhbGciOi.x.y"), None);
    }
}
