//! Making tokens and secrets: the `taskhost token` command and tests.

use super::{AuthError, Claims, Scope};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Mint an HS256 token valid from `now` for `ttl`.
pub fn mint_hs256(
    secret: &[u8],
    subject: &str,
    tenant: &str,
    scopes: &[Scope],
    ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    if subject.trim().is_empty() {
        return Err(AuthError::EmptyClaim("subject"));
    }
    if tenant.trim().is_empty() {
        return Err(AuthError::EmptyClaim("tenant"));
    }
    let iat = now.timestamp();
    let exp = i64::try_from(ttl.as_secs())
        .ok()
        .and_then(|secs| iat.checked_add(secs))
        .ok_or(AuthError::InvalidTtl)?;
    let claims = Claims {
        sub: subject.to_owned(),
        tenant: tenant.to_owned(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        exp,
        iat: Some(iat),
        nbf: None,
        jti: Some(taskhost_model::new_id()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(AuthError::Encode)
}

/// 32 random bytes from `/dev/urandom`, lower-case hex encoded (64 chars).
pub fn generate_secret() -> Result<String, AuthError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(AuthError::Random)?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Ok(out)
}
