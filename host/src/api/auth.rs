//! Bearer-token (JWT) authentication and scope-based authorization.
//!
//! * A [`Verifier`] is built once at startup from a [`KeyConfig`] (HS256 shared
//!   secret, RS256 or EdDSA public key). Key problems surface there as
//!   [`AuthError`]s, not per request. It accepts **only** the configured
//!   algorithm, so an HS256 token is rejected by an RS256 host (no
//!   algorithm-confusion) and vice versa.
//! * [`Verifier::verify`] checks signature, algorithm and `exp` (5 s leeway),
//!   requires non-empty `sub` and `tenant`, and parses `scopes` strictly: an
//!   unknown scope string rejects the token instead of being silently dropped.
//!   Every failure is a 401 [`ApiError`] with a precise message.
//! * [`Principal`] is an axum extractor (state must provide `Arc<Verifier>` via
//!   `FromRef`), so handlers declare `principal: Principal` and call
//!   [`Principal::require`] for the scope they need (403 otherwise).
//!   [`Scope::Admin`] implies every scope.
//! * [`mint_hs256`] and [`generate_secret`] back the `taskhost token` command
//!   and tests.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{HeaderMap, header, request::Parts};
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// Clock skew tolerated when checking `exp`, in seconds.
pub const EXP_LEEWAY_SECS: u64 = 5;

/// Permission carried by a token. [`Scope::Admin`] implies all others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    PluginsRead,
    PluginsWrite,
    SchedulesRead,
    SchedulesWrite,
    ExecutionsRead,
    ExecutionsWrite,
    Admin,
}

impl Scope {
    /// Every scope, in canonical order.
    pub const ALL: [Scope; 7] = [
        Scope::PluginsRead,
        Scope::PluginsWrite,
        Scope::SchedulesRead,
        Scope::SchedulesWrite,
        Scope::ExecutionsRead,
        Scope::ExecutionsWrite,
        Scope::Admin,
    ];

    /// Wire form, e.g. `"plugins:read"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PluginsRead => "plugins:read",
            Scope::PluginsWrite => "plugins:write",
            Scope::SchedulesRead => "schedules:read",
            Scope::SchedulesWrite => "schedules:write",
            Scope::ExecutionsRead => "executions:read",
            Scope::ExecutionsWrite => "executions:write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| AuthError::UnknownScope(s.to_owned()))
    }
}

const VALID_SCOPES: &str = "plugins:read, plugins:write, schedules:read, schedules:write, \
                            executions:read, executions:write, admin";

/// Errors from key loading, token minting and secret generation.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown scope `{0}` (valid scopes: {VALID_SCOPES})")]
    UnknownScope(String),
    #[error("HS256 secret must not be empty")]
    EmptySecret,
    #[error(
        "invalid {kind} public key PEM (expected a `BEGIN PUBLIC KEY` block holding an {kind} key): {source}"
    )]
    InvalidPem {
        kind: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    #[error("invalid {kind} public key: {reason}")]
    InvalidKey { kind: &'static str, reason: String },
    #[error("`{0}` must not be empty")]
    EmptyClaim(&'static str),
    #[error("token lifetime is out of range")]
    InvalidTtl,
    #[error("failed to sign token: {0}")]
    Encode(#[source] jsonwebtoken::errors::Error),
    #[error("failed to read random bytes from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
}

/// JWT payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub tenant: String,
    scopes: Vec<Scope>,
}

impl Principal {
    /// Build a principal directly (tests, internal callers).
    pub fn new(subject: impl Into<String>, tenant: impl Into<String>, scopes: Vec<Scope>) -> Self {
        Self {
            subject: subject.into(),
            tenant: tenant.into(),
            scopes,
        }
    }

    /// Scopes as granted by the token (not expanded for `admin`).
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether the principal holds `scope` (directly or through `admin`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// `Ok` if the principal holds `scope`, else 403 naming the missing scope.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(
                ApiError::forbidden(format!("missing required scope `{scope}`"))
                    .with_details(serde_json::json!({ "required_scope": scope.as_str() })),
            )
        }
    }
}

/// Verification key material.
#[derive(Clone)]
pub enum KeyConfig {
    Hs256 { secret: Vec<u8> },
    Rs256 { public_pem: Vec<u8> },
    EdDsa { public_pem: Vec<u8> },
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the HS256 secret.
        f.write_str(match self {
            KeyConfig::Hs256 { .. } => "KeyConfig::Hs256 { .. }",
            KeyConfig::Rs256 { .. } => "KeyConfig::Rs256 { .. }",
            KeyConfig::EdDsa { .. } => "KeyConfig::EdDsa { .. }",
        })
    }
}

/// Validates bearer tokens against one configured key and algorithm.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Load and sanity-check the key. PEM inputs must be SPKI (`BEGIN PUBLIC KEY`)
    /// or, for RSA, PKCS#1 (`BEGIN RSA PUBLIC KEY`).
    pub fn new(config: &KeyConfig) -> Result<Verifier, AuthError> {
        let (key, alg) = match config {
            KeyConfig::Hs256 { secret } if secret.is_empty() => return Err(AuthError::EmptySecret),
            KeyConfig::Hs256 { secret } => (DecodingKey::from_secret(secret), Algorithm::HS256),
            KeyConfig::Rs256 { public_pem } => {
                let key = DecodingKey::from_rsa_pem(public_pem).map_err(|source| {
                    AuthError::InvalidPem {
                        kind: "RSA",
                        source,
                    }
                })?;
                check_public_key(&key, Algorithm::RS256, "RSA")?;
                (key, Algorithm::RS256)
            }
            KeyConfig::EdDsa { public_pem } => {
                let key = DecodingKey::from_ed_pem(public_pem).map_err(|source| {
                    AuthError::InvalidPem {
                        kind: "Ed25519",
                        source,
                    }
                })?;
                check_public_key(&key, Algorithm::EdDSA, "Ed25519")?;
                (key, Algorithm::EdDSA)
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = EXP_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        Ok(Verifier { key, validation })
    }

    /// Verify `token` and turn its claims into a [`Principal`]. All errors are 401.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        if token.is_empty() {
            return Err(ApiError::unauthorized("missing bearer token"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| self.map_jwt_error(token, e))?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(ApiError::unauthorized(
                "malformed token: `sub` claim is empty",
            ));
        }
        if claims.tenant.trim().is_empty() {
            return Err(ApiError::unauthorized(
                "malformed token: `tenant` claim is empty",
            ));
        }
        let mut scopes = Vec::with_capacity(claims.scopes.len());
        for raw in &claims.scopes {
            let scope = raw.parse::<Scope>().map_err(|_| {
                ApiError::unauthorized(format!("token contains unknown scope `{raw}`"))
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(Principal {
            subject: claims.sub,
            tenant: claims.tenant,
            scopes,
        })
    }

    fn map_jwt_error(&self, token: &str, err: jsonwebtoken::errors::Error) -> ApiError {
        let message = match err.kind() {
            ErrorKind::ExpiredSignature => "token expired".to_owned(),
            ErrorKind::InvalidSignature => "invalid token signature".to_owned(),
            ErrorKind::ImmatureSignature => "token not yet valid".to_owned(),
            ErrorKind::InvalidAlgorithm => {
                let expected = self.validation.algorithms.first().copied();
                match jsonwebtoken::decode_header(token) {
                    Ok(h) => format!(
                        "token algorithm {:?} not accepted (expected {:?})",
                        h.alg,
                        expected.unwrap_or(h.alg)
                    ),
                    Err(_) => "token algorithm not accepted".to_owned(),
                }
            }
            ErrorKind::MissingRequiredClaim(c) => format!("malformed token: missing `{c}` claim"),
            ErrorKind::InvalidClaimFormat(c) => format!("malformed token: invalid `{c}` claim"),
            ErrorKind::Json(e) => format!("malformed token: {e}"),
            ErrorKind::Base64(e) => format!("malformed token: invalid base64: {e}"),
            ErrorKind::Utf8(e) => format!("malformed token: {e}"),
            ErrorKind::InvalidToken => "malformed token: not a JWT".to_owned(),
            _ => format!("malformed token: {err}"),
        };
        ApiError::unauthorized(message)
    }
}

/// Parse the key into algorithm parameters now, so a structurally valid PEM
/// holding a broken key fails at startup rather than on every request.
fn check_public_key(
    key: &DecodingKey,
    alg: Algorithm,
    kind: &'static str,
) -> Result<(), AuthError> {
    let invalid = |e: jsonwebtoken::errors::Error| AuthError::InvalidKey {
        kind,
        reason: e.to_string(),
    };
    jsonwebtoken::jwk::Jwk::from_decoding_key(key, Some(alg)).map_err(invalid)?;
    // Builds the verifier (decodes the Ed25519 point); the dummy signature just fails.
    jsonwebtoken::crypto::verify("AAAA", b"probe", key, alg).map_err(invalid)?;
    Ok(())
}

/// Extract the token from `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let malformed = || ApiError::unauthorized("Authorization header must be `Bearer <token>`");
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::unauthorized("missing bearer token"));
    };
    if values.next().is_some() {
        return Err(malformed());
    }
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return Err(malformed());
    }
    Ok(token)
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let token = bearer(&parts.headers)?;
        verifier.verify(token)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderValue, Request, StatusCode};
    use axum::routing::get;
    use std::time::Duration;
    use tower::ServiceExt;

    // Test-only keys generated with `openssl genpkey` (RSA 2048 / ED25519).
    const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCsBV3GtCC33I/H
fb3k2ZXXL9rRod/ofOAkelBSeHfbeFLm8J+J8J25nV+YTH/XN8k1FPh+TwRPa79R
Uga/nTlkReb31jUo3bu9+4DZUIT8EeORCoP8c/ksDjUfVIZd6M1Fhn+NgNOTUoSt
8G1VqQKbu1q9eDuSvgegUC9K+RNjrYOgDg46cxmgYgO+VxGxzQVjYbiINxEtrWD0
g1igV4QY1EYaNSbXxsWiLDYPnv6CQWHAJ5SV9a+uBP4j8vMTJE2cUzMJhAr7HGQo
95BkIWkS/Tc8TNeC+zxaUzBtWhd9MAJffIvgBcGOaHE4K15rHDy88lKiWXHZ7XXi
+gKJvoivAgMBAAECggEAFNAWvIfmvYLY0pDgJ47mlkFFVGp60NeVtv7QNmo6S4+P
WD8czm+9EEwo2MseB0gfTBDcJUwiKrR6qA199jPA/I+IlnaQZVVj9bnhqRQY7aFX
IKFeaW5kDh8vRjnP2A+RZoFoxWd6MdpLZfraVQGR6I25ONtnOdChfkAKuM4nY75+
UAxQ/aGLp39ABFuljWsGwdsBcHBufFRTF0WPp+wr4pE7+72Psl59nKz/u8fzKa9O
p8S4QnnH9abpcMgNyqKW40Ix8XVWItn9noew4oSH74varVp2bPw7j35zGsjVeOm7
JAfg7EMOgw0Rx5dNW35llQQinV4MSgNYXudEJ4gAYQKBgQDnuB5bp8OiP5/zxAo5
8c8Oh+nCne+cIT3kXnM5So6lhI81WDDKZ6ZC9mwSagu2Badli18wjb2mn52BUfJI
UA5I0n+lRHVUVwJa80IDzlglcMtu6YC6etBvEmjTinGqA37Psonsw3HcAhL/nofN
vJAPZDKC2EgxiZxOdwHCLajnOwKBgQC+C9ayYYexSRMXpxnxVBkI/p/CO9XvJeol
Ytvw7PiSVzx1tudzpHzNuoR2h6r+OJf+eXZ4uHkhOVC+vCwwxDFj8tCshDWDBY5K
XbNUYXBAA9/r7WKRyv9vnqIW2ivftWGEMU481LurJsyzLqzrNI+ABAVCHdC2pdHq
nCaksqWVHQKBgQCGMMEb8SbBUjlOUOxfLCLt1lXQh+gYMcQG+Y+e0QeU4RSSHvV6
cdX+F3j0nQcVLWcIzlKc6qi20t7C4nL936a2E3kqe1+7LPxHMXK8g4XWgOC+5WjQ
FYmZmT6tqxIyE/4fR9TKEVFhyK257NPWmGmREESUM65zSa8EXbTd/9U9uwKBgG6T
jNQ1kzJABm/YtmuINxjYrjPhhNSlBtvB7Z79ApSDVZZYWcsbhdJeF/yva3qHi0hx
e9E55KDELIsOCdhGD0bMXUZDlq8paGU0p8cM+rcEiiFH+fZCWuWjM0SApM6BRsAX
wCH81UT8SlZnbg1cg7JEpJqXpnzfdog/WuyxVU6xAoGBALjy8Zzcz/2moUNyvsqV
9YWaqHeTgxEUH+CtsrI/6mdcd7ntv36+Qa4zDDUP0nREeVP8hFXh/ZPSEe5S75Bd
kwNQ9YvPmhN+FyGQ9ByTzE7h0EsJi8nM0jZvMB1G9JlK2dRuh6KynIXr0DUWihZV
K86gbCE//noRS6JHvS9+X7yX
-----END PRIVATE KEY-----
";
    const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArAVdxrQgt9yPx3295NmV
1y/a0aHf6HzgJHpQUnh323hS5vCfifCduZ1fmEx/1zfJNRT4fk8ET2u/UVIGv505
ZEXm99Y1KN27vfuA2VCE/BHjkQqD/HP5LA41H1SGXejNRYZ/jYDTk1KErfBtVakC
m7tavXg7kr4HoFAvSvkTY62DoA4OOnMZoGIDvlcRsc0FY2G4iDcRLa1g9INYoFeE
GNRGGjUm18bFoiw2D57+gkFhwCeUlfWvrgT+I/LzEyRNnFMzCYQK+xxkKPeQZCFp
Ev03PEzXgvs8WlMwbVoXfTACX3yL4AXBjmhxOCteaxw8vPJSollx2e114voCib6I
rwIDAQAB
-----END PUBLIC KEY-----
";
    const ED_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJpV/+MpHFGwahlZ2XRjSoFPszv7k0KJgBZLV6XSW7r5
-----END PRIVATE KEY-----
";
    const ED_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAZXRYFuXlvM0o2OyoVli6V2kvW3/xc6P2JfqvTKsrdN8=
-----END PUBLIC KEY-----
";

    const SECRET: &[u8] = b"test-secret-test-secret-test-sec";
    const HOUR: Duration = Duration::from_secs(3600);

    fn hs_verifier(secret: &[u8]) -> Verifier {
        Verifier::new(&KeyConfig::Hs256 {
            secret: secret.to_vec(),
        })
        .expect("hs256 verifier")
    }

    fn claims(scopes: &[&str], exp_offset: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: "alice".into(),
            tenant: "acme".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            exp: now + exp_offset,
            iat: Some(now),
        }
    }

    fn sign(alg: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, key).expect("encode")
    }

    fn unauthorized_msg(result: Result<Principal, ApiError>) -> String {
        let err = result.expect_err("expected 401");
        assert_eq!(err.status, StatusCode::UNAUTHORIZED, "{err}");
        assert_eq!(err.code, "unauthorized");
        err.message
    }

    #[test]
    fn scope_roundtrip_and_error() {
        for scope in Scope::ALL {
            assert_eq!(scope.to_string().parse::<Scope>().expect("parse"), scope);
        }
        let err = "plugins:delete".parse::<Scope>().expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("`plugins:delete`") && msg.contains("executions:write, admin"),
            "{msg}"
        );
    }

    #[test]
    fn mint_verify_roundtrip() {
        let scopes = [Scope::PluginsRead, Scope::SchedulesWrite];
        let token = mint_hs256(SECRET, "alice", "acme", &scopes, HOUR, Utc::now()).expect("mint");
        let p = hs_verifier(SECRET).verify(&token).expect("verify");
        assert_eq!(p, Principal::new("alice", "acme", scopes.to_vec()));
        assert!(p.has(Scope::PluginsRead));
        assert!(!p.has(Scope::PluginsWrite));
    }

    #[test]
    fn expired_token() {
        let past = Utc::now() - chrono::Duration::hours(2);
        let token = mint_hs256(SECRET, "alice", "acme", &[], HOUR, past).expect("mint");
        assert_eq!(
            unauthorized_msg(hs_verifier(SECRET).verify(&token)),
            "token expired"
        );
    }

    #[test]
    fn wrong_secret() {
        let token = mint_hs256(b"other-secret", "a", "t", &[], HOUR, Utc::now()).expect("mint");
        assert_eq!(
            unauthorized_msg(hs_verifier(SECRET).verify(&token)),
            "invalid token signature"
        );
    }

    #[test]
    fn malformed_tokens() {
        let v = hs_verifier(SECRET);
        assert!(unauthorized_msg(v.verify("not-a-jwt")).starts_with("malformed token"));
        assert!(unauthorized_msg(v.verify("a.b.c")).starts_with("malformed token"));
        assert_eq!(unauthorized_msg(v.verify("")), "missing bearer token");

        let key = EncodingKey::from_secret(SECRET);
        let mut c = claims(&[], 600);
        c.tenant = " ".into();
        let msg = unauthorized_msg(v.verify(&sign(Algorithm::HS256, &key, &c)));
        assert_eq!(msg, "malformed token: `tenant` claim is empty");

        let no_tenant = serde_json::json!({"sub": "a", "scopes": [], "exp": c.exp});
        let token = jsonwebtoken::encode(&Header::default(), &no_tenant, &key).expect("encode");
        let msg = unauthorized_msg(v.verify(&token));
        assert!(
            msg.starts_with("malformed token: missing field `tenant`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_scope_in_token() {
        let key = EncodingKey::from_secret(SECRET);
        let token = sign(
            Algorithm::HS256,
            &key,
            &claims(&["plugins:read", "root"], 600),
        );
        let msg = unauthorized_msg(hs_verifier(SECRET).verify(&token));
        assert_eq!(msg, "token contains unknown scope `root`");
    }

    #[test]
    fn rs256_and_eddsa() {
        let rs = Verifier::new(&KeyConfig::Rs256 {
            public_pem: RSA_PUBLIC_PEM.into(),
        })
        .expect("rs");
        let ed = Verifier::new(&KeyConfig::EdDsa {
            public_pem: ED_PUBLIC_PEM.into(),
        })
        .expect("ed");
        let rsa_key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("rsa key");
        let ed_key = EncodingKey::from_ed_pem(ED_PRIVATE_PEM.as_bytes()).expect("ed key");
        let c = claims(&["admin"], 600);

        let rs_token = sign(Algorithm::RS256, &rsa_key, &c);
        let ed_token = sign(Algorithm::EdDSA, &ed_key, &c);
        assert!(
            rs.verify(&rs_token)
                .expect("rs ok")
                .has(Scope::ExecutionsWrite)
        );
        assert!(
            ed.verify(&ed_token)
                .expect("ed ok")
                .has(Scope::PluginsWrite)
        );

        // Algorithm confusion: HS256 token (even keyed with the public PEM) is refused.
        let hs_token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
            &c,
        );
        let msg = unauthorized_msg(rs.verify(&hs_token));
        assert_eq!(msg, "token algorithm HS256 not accepted (expected RS256)");
        unauthorized_msg(ed.verify(&rs_token));
        unauthorized_msg(hs_verifier(SECRET).verify(&ed_token));

        // Tampered payload.
        let mut parts: Vec<&str> = rs_token.split('.').collect();
        let other = sign(Algorithm::RS256, &rsa_key, &claims(&["plugins:read"], 600));
        parts[1] = other.split('.').nth(1).expect("payload");
        assert_eq!(
            unauthorized_msg(rs.verify(&parts.join("."))),
            "invalid token signature"
        );
    }

    #[test]
    fn bad_key_configs() {
        assert!(matches!(
            Verifier::new(&KeyConfig::Hs256 { secret: vec![] }),
            Err(AuthError::EmptySecret)
        ));
        let err = Verifier::new(&KeyConfig::Rs256 {
            public_pem: b"garbage".to_vec(),
        })
        .expect_err("bad pem");
        assert!(
            err.to_string().starts_with("invalid RSA public key PEM"),
            "{err}"
        );
        let err = Verifier::new(&KeyConfig::Rs256 {
            public_pem: ED_PUBLIC_PEM.into(),
        })
        .expect_err("ed as rsa");
        assert!(err.to_string().contains("RSA"), "{err}");
        let err = Verifier::new(&KeyConfig::EdDsa {
            public_pem: RSA_PUBLIC_PEM.into(),
        })
        .expect_err("rsa as ed");
        assert!(err.to_string().contains("Ed25519"), "{err}");
    }

    #[test]
    fn require_and_admin() {
        let p = Principal::new("a", "t", vec![Scope::SchedulesRead]);
        assert!(p.require(Scope::SchedulesRead).is_ok());
        let err = p.require(Scope::SchedulesWrite).expect_err("403");
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(err.code, "forbidden");
        assert_eq!(err.message, "missing required scope `schedules:write`");

        let admin = Principal::new("a", "t", vec![Scope::Admin]);
        assert!(
            Scope::ALL
                .into_iter()
                .all(|s| admin.has(s) && admin.require(s).is_ok())
        );
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
        }
        h
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(&headers(&["Bearer abc"])).expect("ok"), "abc");
        assert_eq!(bearer(&headers(&["bearer abc"])).expect("ok"), "abc");
        assert_eq!(bearer(&headers(&["BEARER   abc "])).expect("ok"), "abc");

        let err = bearer(&headers(&[])).expect_err("missing");
        assert_eq!(
            (err.status, err.message.as_str()),
            (StatusCode::UNAUTHORIZED, "missing bearer token")
        );
        for bad in [
            &["Basic dXNlcjpwYXNz"][..],
            &["Bearer"],
            &["Bearer "],
            &["abc"],
            &["Bearer a b"],
            &["Bearer a", "Bearer b"],
        ] {
            let err = bearer(&headers(bad)).expect_err("malformed");
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                err.message, "Authorization header must be `Bearer <token>`",
                "{bad:?}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").expect("opaque"),
        );
        assert!(bearer(&h).is_err());
    }

    #[test]
    fn generate_secret_is_hex() {
        let a = generate_secret().expect("secret");
        let b = generate_secret().expect("secret");
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn mint_rejects_bad_input() {
        let now = Utc::now();
        assert!(matches!(
            mint_hs256(b"", "a", "t", &[], HOUR, now),
            Err(AuthError::EmptySecret)
        ));
        assert!(matches!(
            mint_hs256(SECRET, "", "t", &[], HOUR, now),
            Err(AuthError::EmptyClaim("subject"))
        ));
        assert!(matches!(
            mint_hs256(SECRET, "a", "t", &[], Duration::MAX, now),
            Err(AuthError::InvalidTtl)
        ));
    }

    #[derive(Clone)]
    struct AppState {
        verifier: Arc<Verifier>,
    }

    impl FromRef<AppState> for Arc<Verifier> {
        fn from_ref(state: &AppState) -> Self {
            state.verifier.clone()
        }
    }

    async fn call(auth: Option<String>) -> (StatusCode, Option<HeaderValue>, String) {
        let app = Router::new()
            .route(
                "/schedules",
                get(|p: Principal| async move {
                    p.require(Scope::SchedulesRead)?;
                    Ok::<_, ApiError>(format!("{}/{}", p.tenant, p.subject))
                }),
            )
            .with_state(AppState {
                verifier: Arc::new(hs_verifier(SECRET)),
            });
        let mut req = Request::get("/schedules");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = app
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let www = resp.headers().get(header::WWW_AUTHENTICATE).cloned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, www, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn extractor_via_router() {
        let (status, www, body) = call(None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            www.as_ref().map(HeaderValue::as_bytes),
            Some(&b"Bearer"[..])
        );
        assert!(body.contains("missing bearer token"), "{body}");

        let (status, _, body) = call(Some("Bearer nope".into())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("malformed token"), "{body}");

        let token = mint_hs256(
            SECRET,
            "alice",
            "acme",
            &[Scope::PluginsRead],
            HOUR,
            Utc::now(),
        )
        .expect("mint");
        let (status, www, body) = call(Some(format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(www.is_none());
        assert!(
            body.contains("missing required scope `schedules:read`"),
            "{body}"
        );

        let token = mint_hs256(
            SECRET,
            "alice",
            "acme",
            &[Scope::SchedulesRead],
            HOUR,
            Utc::now(),
        )
        .expect("mint");
        let (status, _, body) = call(Some(format!("bearer {token}"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "acme/alice");
    }
}
