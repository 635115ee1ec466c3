//! Bearer-token (JWT) authentication and scope-based authorization.
//!
//! * A [`Verifier`] is built once at startup from a [`KeyConfig`] (HS256 shared
//!   secret, RS256 or EdDSA public key). Key problems surface there as
//!   [`AuthError`]s, not per request. A token's `alg` picks its key — the
//!   configured key's algorithm, or one of the provider's — so an HS256
//!   token is rejected by an RS256 host (no algorithm confusion), and a
//!   provider's key never verifies an HMAC.
//! * [`Verifier::verify`] checks signature, algorithm and `exp` (5 s leeway),
//!   requires non-empty `sub` and `tenant`, and parses `scopes` strictly: an
//!   unknown scope string rejects the token instead of being silently dropped.
//!   Every failure is a 401 [`ApiError`] with a precise message.
//! * [`Principal`] is an axum extractor (state must provide `Arc<Verifier>` via
//!   `FromRef`), so handlers declare `principal: Principal` and call
//!   [`Principal::require`] for the scope they need (403 otherwise).
//!   [`Scope::Admin`] implies every scope.
//! * With an identity provider configured ([`idp`]), its tokens are
//!   accepted too, verified with the keys of its JWKS; the configured key
//!   stays (an HS256 secret for development, say).
//! * API keys (`thk_…`, see [`taskhost_model::apikey`]) are checked against
//!   the store through each node's [`ApiKeys`] cache.
//! * [`mint_hs256`] and [`generate_secret`] back the `taskhost token` command
//!   and tests.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts};
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::revocations::Revoked;

mod bearer;
pub mod idp;
mod keys;
mod mint;
mod scope;

pub use bearer::{CONSOLE_HEADER, SECURE_SESSION_COOKIE, SESSION_COOKIE, bearer, session_token};
use idp::Idp;
pub use keys::ApiKeys;
pub use mint::{generate_secret, mint_hs256};
pub use scope::Scope;
use scope::VALID_SCOPES;

/// Clock skew tolerated when checking `exp`, in seconds.
pub const EXP_LEEWAY_SECS: u64 = 5;

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
    #[error("identity provider: {0}")]
    Idp(String),
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
    /// Not valid before (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's id, by which it can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What a token must say besides its signature, beyond `exp`.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Required `aud` (when set).
    pub audience: Option<String>,
    /// Required `iss` (when set).
    pub issuer: Option<String>,
    /// The longest a token may be valid: from `iat` (or `nbf`, or now) to `exp`.
    pub max_lifetime: std::time::Duration,
}

impl Default for TokenRules {
    fn default() -> Self {
        TokenRules {
            audience: None,
            issuer: None,
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

/// The longest token lifetime accepted unless configured otherwise.
pub const DEFAULT_MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub tenant: String,
    /// The token's id (`jti`), if it has one.
    pub token_id: Option<String>,
    scopes: Vec<Scope>,
}

impl Principal {
    /// Build a principal directly (tests, internal callers).
    pub fn new(subject: impl Into<String>, tenant: impl Into<String>, scopes: Vec<Scope>) -> Self {
        Self {
            subject: subject.into(),
            tenant: tenant.into(),
            token_id: None,
            scopes,
        }
    }

    /// The caller presenting an API key: the key itself (subject
    /// `api-key:<id>`, token id the key's id), with the key's scopes.
    pub fn of_api_key(key: taskhost_model::apikey::ApiKeyRecord) -> Self {
        let scopes = key.scopes.iter().filter_map(|s| s.parse().ok()).collect();
        Self {
            subject: key.subject(),
            tenant: key.tenant,
            token_id: Some(key.id),
            scopes,
        }
    }

    /// Scopes as granted by the token (not expanded for `admin`).
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether the principal holds `scope` (directly, or through `admin`
    /// for a tenant's scopes; `operator` only directly).
    pub fn has(&self, scope: Scope) -> bool {
        let through_admin = scope != Scope::Operator && self.scopes.contains(&Scope::Admin);
        through_admin || self.scopes.contains(&scope)
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

/// Validates bearer tokens: JWTs signed with the configured key or by the
/// identity provider, and API keys.
pub struct Verifier {
    /// The configured key (HS256 secret or one public key) and its rules;
    /// none when only the identity provider's tokens are accepted.
    key: Option<(DecodingKey, Validation)>,
    /// The identity provider, if one is configured.
    idp: Option<Arc<Idp>>,
    /// The API keys, if the store is at hand.
    api_keys: Option<ApiKeys>,
    /// Per-tenant request rates, checked once a token is verified.
    rates: Option<super::rates::RequestRates>,
    max_lifetime: std::time::Duration,
    /// Tokens revoked by their `jti`.
    revoked: Arc<Revoked>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.accepted())
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
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
        let mut verifier = Verifier::without_key();
        verifier.key = Some((key, validation));
        Ok(verifier)
    }

    /// A verifier with no key of its own (give it an identity provider).
    pub fn without_key() -> Verifier {
        Verifier {
            key: None,
            idp: None,
            api_keys: None,
            rates: None,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            revoked: Arc::default(),
        }
    }

    /// Also accepts the identity provider's tokens.
    #[must_use]
    pub fn with_idp(mut self, idp: Arc<Idp>) -> Self {
        self.idp = Some(idp);
        self
    }

    /// Also accepts the API keys kept in `store`.
    #[must_use]
    pub fn with_api_keys(mut self, store: taskhost_store::Store) -> Self {
        self.api_keys = Some(ApiKeys::new(store));
        self
    }

    /// Requires `aud` and `iss` where set (of the configured key's tokens),
    /// and caps token lifetimes.
    #[must_use]
    pub fn with_rules(mut self, rules: &TokenRules) -> Self {
        if let Some((_, validation)) = &mut self.key {
            if let Some(audience) = &rules.audience {
                validation.set_audience(&[audience]);
                validation.validate_aud = true;
                validation.required_spec_claims.insert("aud".to_owned());
            }
            if let Some(issuer) = &rules.issuer {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".to_owned());
            }
        }
        self.max_lifetime = rules.max_lifetime;
        self
    }

    /// Also admits each verified request against its tenant's request rate.
    #[must_use]
    pub fn with_rates(mut self, rates: super::rates::RequestRates) -> Self {
        self.rates = Some(rates);
        self
    }

    /// The revocations this verifier refuses (shared with the task that
    /// refreshes them).
    pub fn revoked(&self) -> &Arc<Revoked> {
        &self.revoked
    }

    /// The identity provider, if one is configured.
    pub fn idp(&self) -> Option<&Arc<Idp>> {
        self.idp.as_ref()
    }

    /// The API keys' cache, if API keys are accepted.
    pub fn api_keys(&self) -> Option<&ApiKeys> {
        self.api_keys.as_ref()
    }

    /// The longest any token this verifier accepts can stay valid from now:
    /// how long a revocation must be kept.
    pub fn longest_validity(&self) -> std::time::Duration {
        self.max_lifetime + std::time::Duration::from_secs(EXP_LEEWAY_SECS)
    }

    /// Admits one request of `tenant` by its request rate, if rates are
    /// configured (a hook's request, which carries no token).
    pub fn admit_rate(&self, tenant: &str) -> Result<(), ApiError> {
        match &self.rates {
            Some(rates) => rates.admit(tenant),
            None => Ok(()),
        }
    }

    /// Verifies `token` — an API key, or a JWT (fetching the identity
    /// provider's keys first if it names one not held) — and, with rates
    /// configured, admits the request against its tenant's rate (429 over it).
    pub async fn admit(&self, token: &str) -> Result<Principal, ApiError> {
        let principal = match &self.api_keys {
            Some(keys) if token.starts_with(taskhost_model::apikey::PREFIX) => {
                Principal::of_api_key(keys.check(token).await?)
            }
            _ => {
                if let Some(idp) = &self.idp
                    && let Ok(header) = jsonwebtoken::decode_header(token)
                    && idp.accepts(header.alg)
                {
                    idp.refresh_for(header.kid.as_deref()).await;
                }
                self.verify(token)?
            }
        };
        self.admit_rate(&principal.tenant)?;
        Ok(principal)
    }

    /// Verify the JWT `token` with the keys held and turn its claims into a
    /// [`Principal`]. All errors are 401 (503 while the provider's keys or
    /// the revocations are not read yet).
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        if token.is_empty() {
            return Err(ApiError::unauthorized("missing bearer token"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| self.map_jwt_error(token, e))?;
        let claims = match (&self.key, &self.idp) {
            (Some((key, rules)), _) if rules.algorithms.contains(&header.alg) => {
                jsonwebtoken::decode::<Claims>(token, key, rules)
                    .map_err(|e| self.map_jwt_error(token, e))?
                    .claims
            }
            (_, Some(idp)) if idp.accepts(header.alg) => {
                let key = idp.key(header.kid.as_deref(), header.alg)?;
                let mut rules = idp.validation().clone();
                rules.algorithms = vec![header.alg];
                let claims = jsonwebtoken::decode::<serde_json::Map<_, _>>(token, &key, &rules)
                    .map_err(|e| self.map_jwt_error(token, e))?
                    .claims;
                idp.claims(claims)?
            }
            _ => return Err(self.algorithm_refused(header.alg)),
        };
        self.principal(claims)
    }

    /// The principal of verified claims, once the checks every token
    /// passes (lifetime, non-empty `sub` and `tenant`, not revoked, scopes).
    fn principal(&self, claims: Claims) -> Result<Principal, ApiError> {
        let now = Utc::now().timestamp();
        let from = claims.iat.or(claims.nbf).unwrap_or(now).min(now);
        let max = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if claims.exp.saturating_sub(from) > max.saturating_add(EXP_LEEWAY_SECS as i64) {
            return Err(ApiError::unauthorized(format!(
                "token lifetime is over the maximum of {} (the server's --jwt-max-lifetime)",
                taskhost_model::time::human(self.max_lifetime)
            )));
        }
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
        if !self.revoked.ready() {
            return Err(ApiError::unavailable(
                "this node has not read the revoked tokens yet (the store is away); try again shortly",
            ));
        }
        if let Some(jti) = &claims.jti
            && self.revoked.contains(&claims.tenant, jti)
        {
            return Err(ApiError::unauthorized("token revoked"));
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
            token_id: claims.jti,
            scopes,
        })
    }

    /// The algorithms accepted: the configured key's, then the provider's.
    fn accepted(&self) -> Vec<Algorithm> {
        let own = self.key.iter().flat_map(|(_, v)| v.algorithms.clone());
        let idp = self
            .idp
            .iter()
            .flat_map(|idp| idp.validation().algorithms.clone());
        own.chain(idp).collect()
    }

    fn algorithm_refused(&self, alg: Algorithm) -> ApiError {
        let accepted: Vec<String> = self.accepted().iter().map(|a| format!("{a:?}")).collect();
        let expected = match accepted.as_slice() {
            [one] => one.clone(),
            many => format!("one of {}", many.join(", ")),
        };
        ApiError::unauthorized(format!(
            "token algorithm {alg:?} not accepted (expected {expected})"
        ))
    }

    fn map_jwt_error(&self, token: &str, err: jsonwebtoken::errors::Error) -> ApiError {
        let message = match err.kind() {
            ErrorKind::ExpiredSignature => "token expired".to_owned(),
            ErrorKind::InvalidSignature => "invalid token signature".to_owned(),
            ErrorKind::ImmatureSignature => "token not yet valid (nbf)".to_owned(),
            ErrorKind::InvalidAudience => "token audience (aud) not accepted".to_owned(),
            ErrorKind::InvalidIssuer => "token issuer (iss) not accepted".to_owned(),
            ErrorKind::InvalidAlgorithm => match jsonwebtoken::decode_header(token) {
                Ok(h) => return self.algorithm_refused(h.alg),
                Err(_) => "token algorithm not accepted".to_owned(),
            },
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

impl<S> FromRequestParts<S> for Principal
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        let token = match bearer(&parts.headers) {
            Ok(token) => token,
            // The console's script: its session cookie, on a request that
            // says it comes from the console (a header no other site's page
            // can add without a CORS preflight, which this server refuses).
            Err(e) if !parts.headers.contains_key(header::AUTHORIZATION) => {
                match session_token(&parts.headers) {
                    Some(token) if parts.headers.contains_key(CONSOLE_HEADER) => token,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let principal = verifier.admit(token).await?;
        tracing::Span::current().record("tenant", principal.tenant.as_str());
        super::audit::caller(
            parts,
            &principal.tenant,
            &principal.subject,
            principal.token_id.as_deref(),
        );
        Ok(principal)
    }
}

#[cfg(test)]
mod tests;
