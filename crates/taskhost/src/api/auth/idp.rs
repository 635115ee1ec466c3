//! Tokens from the team's identity provider: OIDC discovery, the JWKS and
//! claim mapping.
//!
//! The provider is named by its issuer (`--oidc-issuer`; its keys' address
//! is read from `{issuer}/.well-known/openid-configuration`) or by its key
//! set's address (`--oidc-jwks-url`). Both must be HTTPS, except on a
//! loopback address (a provider on the same machine, or a test's).
//!
//! Keys are fetched at startup and cached by `kid`. A token naming a `kid`
//! the cache lacks makes the node fetch the set again — the provider has
//! rotated — but at most once every [`MIN_REFETCH`], so a stream of tokens
//! with made-up `kid`s costs the provider nothing. A set older than
//! [`MAX_AGE`] is fetched again on the next token, which is how a key the
//! provider withdrew stops verifying.
//!
//! Only asymmetric keys are taken from a set (RSA, P-256/P-384, Ed25519):
//! an `oct` key would let anyone holding the set sign tokens. A token's
//! `alg` must be one of `--oidc-algorithms` and of its key's family.
//!
//! The tenant and scopes come from claims named by `--oidc-tenant-claim`
//! (default `tenant`) and `--oidc-scopes-claim` (default `scope`): a JSON
//! pointer (`/realm/tenant`) reaches into nested claims. Scopes may be an
//! array or an OAuth space-separated string; ones taskhost does not know
//! (`openid`, `email`) are ignored, as a provider grants them to every app.

use super::{AuthError, Claims};
use crate::api::error::ApiError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The least time between two fetches of the key set.
pub const MIN_REFETCH: Duration = Duration::from_secs(5);
/// The longest a fetched key set is used before it is fetched again.
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the operator configured.
#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// The issuer: tokens' `iss` must equal it, and discovery starts there.
    pub issuer: Option<String>,
    /// The key set's address (instead of discovery).
    pub jwks_url: Option<String>,
    /// Tokens' required `aud`.
    pub audience: String,
    /// Algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// The claim (or JSON pointer) holding the tenant.
    pub tenant_claim: String,
    /// The claim (or JSON pointer) holding the scopes.
    pub scopes_claim: String,
}

/// The algorithms accepted unless configured otherwise.
pub const DEFAULT_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Parses `--oidc-algorithms` (comma-separated); only asymmetric ones.
pub fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, AuthError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| AuthError::Idp(format!("unknown algorithm `{name}`")))?;
        if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return Err(AuthError::Idp(format!(
                "`{name}` is a shared-secret algorithm; an identity provider's keys are public (RS256, ES256, EdDSA…)"
            )));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err(AuthError::Idp("--oidc-algorithms names none".into()));
    }
    Ok(out)
}

/// One key of the set.
struct Key {
    key: Arc<DecodingKey>,
    /// The algorithm the set says it is for, if it says.
    alg: Option<String>,
    curve: Option<EllipticCurve>,
}

/// The fetched keys and when they were fetched.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Key>,
    fetched: Option<Instant>,
}

/// The identity provider's keys and rules, shared by every request.
pub struct Idp {
    config: IdpConfig,
    validation: Validation,
    client: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When the last fetch began (limits refetches to one per [`MIN_REFETCH`]).
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Idp {
    /// Checks the configuration; fetches nothing yet ([`Idp::refresh`]).
    pub fn new(config: IdpConfig, leeway: u64) -> Result<Idp, AuthError> {
        match (&config.issuer, &config.jwks_url) {
            (None, None) => {
                return Err(AuthError::Idp(
                    "give --oidc-issuer (discovery) or --oidc-jwks-url".into(),
                ));
            }
            (issuer, jwks) => {
                for url in issuer.iter().chain(jwks) {
                    check_url(url)?;
                }
            }
        }
        if config.audience.trim().is_empty() {
            return Err(AuthError::Idp(
                "--oidc-audience is required: without it, a token the provider issued to any other application would be accepted".into(),
            ));
        }
        let mut validation = Validation::new(config.algorithms[0]);
        validation.algorithms = config.algorithms.clone();
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.set_audience(&[&config.audience]);
        let mut required = vec!["exp", "sub", "aud"];
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let client =
            taskhost_net::tls::http_client(None).map_err(|e| AuthError::Idp(e.to_string()))?;
        Ok(Idp {
            config,
            validation,
            client,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// The rules a token of this provider must meet.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }

    /// Whether `alg` is accepted.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.config.algorithms.contains(&alg)
    }

    /// Fetches the key set now; returns how many keys it holds.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let url = match (&self.config.jwks_url, &self.config.issuer) {
            (Some(url), _) => url.clone(),
            (None, Some(issuer)) => self.discover(issuer).await?,
            (None, None) => unreachable!("checked in Idp::new"),
        };
        let set: JwkSet = serde_json::from_slice(&self.fetch(&url).await?)
            .map_err(|e| AuthError::Idp(format!("{url} is not a JWK set: {e}")))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                continue;
            }
            let curve = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) | AlgorithmParameters::OctetKeyPair(_) => None,
                AlgorithmParameters::EllipticCurve(p) => Some(p.curve.clone()),
                // A shared secret in a public set is never trusted, nor
                // is a kind this build does not know.
                _ => continue,
            };
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping an unreadable key of the identity provider");
                    continue;
                }
            };
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            let alg = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
            by_kid.insert(
                kid,
                Key {
                    key: Arc::new(key),
                    alg,
                    curve,
                },
            );
        }
        let n = by_kid.len();
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        *keys = KeySet {
            by_kid,
            fetched: Some(Instant::now()),
        };
        Ok(n)
    }

    /// Fetches the key set again if a token needs it — it names a `kid`
    /// not held, or the set is older than [`MAX_AGE`] — and the last fetch
    /// began at least [`MIN_REFETCH`] ago. A failed fetch keeps the keys held.
    pub async fn refresh_for(&self, kid: Option<&str>) {
        let needed = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            let stale = keys.fetched.is_none_or(|at| at.elapsed() >= MAX_AGE);
            stale || !keys.by_kid.contains_key(kid.unwrap_or_default())
        };
        if !needed {
            return;
        }
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return;
        }
        *last = Some(Instant::now());
        match self.refresh().await {
            Ok(n) => tracing::info!(keys = n, "fetched the identity provider's keys"),
            Err(e) => tracing::warn!(error = %e, "could not fetch the identity provider's keys"),
        }
    }

    /// The key for a token's `kid` and `alg` (401 if there is none).
    pub fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<DecodingKey>, ApiError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        if keys.fetched.is_none() {
            return Err(ApiError::unavailable(
                "this node has not fetched the identity provider's keys yet; try again shortly",
            ));
        }
        let found = match kid {
            Some(kid) => keys.by_kid.get(kid),
            // No `kid`: only a set of one key can say which.
            None if keys.by_kid.len() == 1 => keys.by_kid.values().next(),
            None => {
                return Err(ApiError::unauthorized(
                    "token has no `kid`; the identity provider has several keys",
                ));
            }
        };
        let Some(key) = found else {
            return Err(ApiError::unauthorized(format!(
                "token signed with unknown key `{}` (not in the identity provider's key set)",
                kid.unwrap_or_default()
            )));
        };
        let fits = key.key.family() == alg.family()
            && key.alg.as_deref().is_none_or(|a| a == format!("{alg:?}"))
            && match (&key.curve, alg) {
                (Some(EllipticCurve::P256), Algorithm::ES256) => true,
                (Some(EllipticCurve::P384), Algorithm::ES384) => true,
                (Some(_), _) => false,
                (None, _) => true,
            };
        if !fits {
            return Err(ApiError::unauthorized(format!(
                "token algorithm {alg:?} does not match its key `{}`",
                kid.unwrap_or_default()
            )));
        }
        Ok(key.key.clone())
    }

    /// The claims of a verified token, by the configured claim names.
    pub fn claims(&self, claims: Map<String, Value>) -> Result<Claims, ApiError> {
        let tenant = match claim(&claims, &self.config.tenant_claim) {
            Some(Value::String(t)) => t.clone(),
            Some(_) => {
                return Err(ApiError::unauthorized(format!(
                    "malformed token: the tenant claim `{}` is not a string",
                    self.config.tenant_claim
                )));
            }
            None => {
                return Err(ApiError::unauthorized(format!(
                    "token has no tenant claim `{}` (the server's --oidc-tenant-claim)",
                    self.config.tenant_claim
                )));
            }
        };
        let scopes = match claim(&claims, &self.config.scopes_claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let scopes: Vec<Value> = scopes
            .into_iter()
            .filter(|s: &String| s.parse::<super::Scope>().is_ok())
            .map(Value::String)
            .collect();
        let mut claims = claims;
        claims.insert("tenant".into(), Value::String(tenant));
        claims.insert("scopes".into(), Value::Array(scopes));
        serde_json::from_value(Value::Object(claims))
            .map_err(|e| ApiError::unauthorized(format!("malformed token: {e}")))
    }

    /// The key set's address, from the issuer's discovery document.
    async fn discover(&self, issuer: &str) -> Result<String, AuthError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: Value = serde_json::from_slice(&self.fetch(&url).await?)
            .map_err(|e| AuthError::Idp(format!("{url} is not JSON: {e}")))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(AuthError::Idp(format!(
                "{url} names another issuer ({}); --oidc-issuer must be exactly the provider's",
                doc.get("issuer").unwrap_or(&Value::Null)
            )));
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Idp(format!("{url} has no `jwks_uri`")))?;
        check_url(jwks)?;
        Ok(jwks.to_owned())
    }

    /// GETs `url`, at most [`MAX_DOCUMENT_BYTES`].
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, AuthError> {
        let failed = |e: &dyn std::fmt::Display| AuthError::Idp(format!("GET {url}: {e}"));
        let mut response = self
            .client
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(&e))?;
        if !response.status().is_success() {
            return Err(failed(&response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(failed(&"larger than 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The claim `name`, or the value at a JSON pointer.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let Some(path) = name.strip_prefix('/') else {
        return claims.get(name);
    };
    match path.split_once('/') {
        Some((first, rest)) => claims.get(first)?.pointer(&format!("/{rest}")),
        None => claims.get(path),
    }
}

/// An HTTPS address, or HTTP on a loopback address.
fn check_url(raw: &str) -> Result<(), AuthError> {
    let url =
        url::Url::parse(raw).map_err(|e| AuthError::Idp(format!("`{raw}` is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(AuthError::Idp(format!(
            "`{raw}` must be an https:// address (plain http only on a loopback address)"
        )))
    }
}
