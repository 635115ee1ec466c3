//! Hooks: public endpoints (`POST /hooks/{id}`) through which another
//! service sends a tenant events without a taskhost token.
//!
//! A hook names the event its requests become. Its secret is never stored:
//! it is derived from the node's secrets key, the hook and a random salt
//! ([`crate::secrets::SecretKey::hook_secret`]), shown once when the hook is
//! made or rotated, and unrecoverable from the store alone. Rotating draws
//! a new salt; the old secret still verifies for [`ROTATION_GRACE`], so a
//! sender can switch without losing events.
//!
//! A request is verified in one of two modes:
//! - `signed` (the default): the Standard Webhooks scheme. The sender signs
//!   `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 and sends
//!   `webhook-signature: v1,<base64>` (several, space-separated, during its
//!   own rotations). The timestamp must be within [`TIMESTAMP_TOLERANCE`] of
//!   now, and a `webhook-id` is taken once within [`REPLAY_WINDOW`].
//! - `token`: for senders that cannot sign: `Authorization: Bearer <secret>`.
//!   A `webhook-id`, if sent, is taken once as in `signed` mode.

use crate::secrets::{hmac_sha256, same};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How far a signed request's timestamp may be from now.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// How long a `webhook-id` is remembered: past it, the timestamp refuses a replay.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a rotated-out secret still verifies.
pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The largest body a hook takes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most hooks one tenant may have.
pub const MAX_HOOKS_PER_TENANT: u64 = 100;

/// How a hook's requests prove they come from its sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookMode {
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`).
    #[default]
    Signed,
    /// `Authorization: Bearer <secret>`, for senders that cannot sign.
    Token,
}

/// A hook as stored (no secret: see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookRecord {
    pub id: String,
    pub tenant: String,
    /// A label for people (at most 200 characters).
    pub name: String,
    /// The event its requests become.
    pub event: String,
    pub mode: HookMode,
    #[serde(with = "crate::time::utc")]
    pub created_at: DateTime<Utc>,
    /// Who made it (the token's subject).
    pub created_by: String,
    #[serde(with = "crate::time::utc")]
    pub rotated_at: DateTime<Utc>,
    /// The current secret's salt.
    #[schema(ignore)]
    pub salt: String,
    /// The rotated-out secret's salt, and until when it still verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub previous: Option<PreviousSecret>,
    #[serde(default)]
    pub version: u64,
}

/// A rotated-out secret, verifying until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub salt: String,
    #[serde(with = "crate::time::utc")]
    pub until: DateTime<Utc>,
}

impl HookRecord {
    /// The salts whose secrets verify at `now`: the current one first.
    pub fn salts(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut salts = vec![self.salt.as_str()];
        if let Some(p) = self.previous.as_ref().filter(|p| p.until > now) {
            salts.push(&p.salt);
        }
        salts
    }
}

/// A new random salt (16 bytes from the OS, as hex).
pub fn new_salt() -> String {
    crate::secrets::SecretKey::generate()[..32].to_owned()
}

/// The `webhook-signature` value of one message (Standard Webhooks `v1`).
pub fn signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(id.len() + body.len() + 24);
    message.extend_from_slice(id.as_bytes());
    message.extend_from_slice(format!(".{timestamp}.").as_bytes());
    message.extend_from_slice(body);
    let mac = hmac_sha256(secret, &message);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// A signing secret as Standard Webhooks libraries take it: `whsec_` + base64.
pub fn show_secret(secret: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(secret)
    )
}

/// Why a hook request was refused. Shown to the sender as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error(
        "this hook needs the headers webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)"
    )]
    MissingHeaders,
    #[error("webhook-timestamp {0:?} is not Unix seconds")]
    BadTimestamp(String),
    #[error(
        "webhook-timestamp is {0} s from the server's time, more than the {tolerance} s allowed; \
         sign with the current time (check the sender's clock)",
        tolerance = TIMESTAMP_TOLERANCE.as_secs()
    )]
    TimestampOutOfWindow(i64),
    #[error(
        "no webhook-signature matches the body with this hook's secret; sign `{{webhook-id}}.{{webhook-timestamp}}.{{body}}` with HMAC-SHA256"
    )]
    BadSignature,
    #[error(
        "this hook needs `Authorization: Bearer <hook secret>`, and this request's token is missing or wrong"
    )]
    BadToken,
}

/// The headers a signed request carries.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signatures: &'a str,
}

/// Verifies a signed request against any of `secrets`, at `now`.
pub fn verify_signed(
    secrets: &[[u8; 32]],
    headers: Signed<'_>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), HookError> {
    let timestamp: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| HookError::BadTimestamp(headers.timestamp.to_owned()))?;
    let skew = now.timestamp().saturating_sub(timestamp);
    if skew.unsigned_abs() > TIMESTAMP_TOLERANCE.as_secs() {
        return Err(HookError::TimestampOutOfWindow(skew));
    }
    let given: Vec<&str> = headers.signatures.split_whitespace().collect();
    let ok = secrets.iter().any(|secret| {
        let want = signature(secret, headers.id, timestamp, body);
        given.iter().any(|g| same(g.as_bytes(), want.as_bytes()))
    });
    if ok {
        Ok(())
    } else {
        Err(HookError::BadSignature)
    }
}

/// Verifies a bearer token against any of `secrets`.
pub fn verify_token(secrets: &[[u8; 32]], token: &str) -> Result<(), HookError> {
    let ok = secrets
        .iter()
        .any(|s| same(token.as_bytes(), show_secret(s).as_bytes()));
    if ok { Ok(()) } else { Err(HookError::BadToken) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard() {
        // The example of the Standard Webhooks specification's test vectors.
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_signatures_times_and_tokens() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let body = br#"{"a":1}"#;
        let sig = signature(&old, "m1", now.timestamp(), body);
        let ts = now.timestamp().to_string();
        let signed = |signatures| Signed {
            id: "m1",
            timestamp: &ts,
            signatures,
        };
        let both = format!("v1,bogus {sig}");
        assert_eq!(verify_signed(&[new, old], signed(&both), body, now), Ok(()));
        assert_eq!(
            verify_signed(&[new], signed(&sig), body, now),
            Err(HookError::BadSignature)
        );
        assert_eq!(
            verify_signed(&[old], signed(&sig), b"{}", now),
            Err(HookError::BadSignature)
        );
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(
            verify_signed(&[old], signed(&sig), body, later),
            Err(HookError::TimestampOutOfWindow(301))
        );
        assert_eq!(verify_token(&[new], &show_secret(&new)), Ok(()));
        assert_eq!(verify_token(&[new], "whsec_x"), Err(HookError::BadToken));
    }
}
