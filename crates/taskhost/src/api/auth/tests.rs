//! Tests of the parent module.
use super::*;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use axum::routing::get;
use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header};
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
        nbf: None,
        jti: None,
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("encode")
}

fn unauthorized_msg(result: Result<Principal, ApiError>) -> String {
    let err = result.expect_err("expected 401");
    assert_eq!(err.status, StatusCode::UNAUTHORIZED, "{err}");
    assert_eq!(err.code.as_str(), "unauthorized");
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
        msg.contains("`plugins:delete`")
            && msg.contains("secrets:use, events:write, admin, operator"),
        "{msg}"
    );
}

#[test]
fn mint_verify_roundtrip() {
    let scopes = [Scope::PluginsRead, Scope::SchedulesWrite];
    let token = mint_hs256(SECRET, "alice", "acme", &scopes, HOUR, Utc::now()).expect("mint");
    let mut p = hs_verifier(SECRET).verify(&token).expect("verify");
    assert!(p.token_id.take().is_some(), "a minted token has an id");
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

/// A token with extra registered claims (`aud`, `iss`, `nbf`…).
fn sign_json(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("encode")
}

#[test]
fn audience_issuer_not_before_and_lifetime() {
    let rules = TokenRules {
        audience: Some("taskhost".into()),
        issuer: Some("https://idp.example".into()),
        max_lifetime: HOUR,
    };
    let verifier = hs_verifier(SECRET).with_rules(&rules);
    let now = Utc::now().timestamp();
    let token = |extra: serde_json::Value| {
        let mut claims = serde_json::json!({
            "sub": "alice", "tenant": "acme", "scopes": ["admin"],
            "iat": now, "exp": now + 600,
            "aud": "taskhost", "iss": "https://idp.example",
        });
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                claims.as_object_mut().expect("object").remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        sign_json(claims)
    };
    assert!(verifier.verify(&token(serde_json::json!({}))).is_ok());
    let refused = |extra: serde_json::Value, words: &str| {
        let message = unauthorized_msg(verifier.verify(&token(extra.clone())));
        assert!(message.contains(words), "{extra}: {message}");
    };
    refused(serde_json::json!({"aud": null}), "aud");
    refused(serde_json::json!({"aud": "someone-else"}), "audience");
    refused(serde_json::json!({"iss": null}), "iss");
    refused(serde_json::json!({"iss": "https://evil.example"}), "issuer");
    refused(serde_json::json!({"nbf": now + 600}), "not yet valid");
    refused(serde_json::json!({"exp": now + 7200}), "lifetime");
    refused(
        serde_json::json!({"iat": null, "exp": now + 7200}),
        "lifetime",
    );
    // Without rules, aud and iss are not required; nbf still counts.
    let plain = hs_verifier(SECRET);
    let mut claims = serde_json::json!({"sub": "a", "tenant": "t", "scopes": [], "exp": now + 60});
    assert!(plain.verify(&sign_json(claims.clone())).is_ok());
    claims["nbf"] = serde_json::json!(now + 600);
    assert!(unauthorized_msg(plain.verify(&sign_json(claims))).contains("not yet valid"));
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
    assert_eq!(err.code.as_str(), "forbidden");
    assert_eq!(err.message, "missing required scope `schedules:write`");

    let admin = Principal::new("a", "t", vec![Scope::Admin]);
    assert!(
        Scope::ALL
            .into_iter()
            .filter(|s| *s != Scope::Operator)
            .all(|s| admin.has(s) && admin.require(s).is_ok())
    );
    // A tenant's admin is not an operator of the cluster.
    assert!(!admin.has(Scope::Operator));
    let err = admin.require(Scope::Operator).expect_err("403");
    assert_eq!(err.message, "missing required scope `operator`");
    let operator = Principal::new("o", "ops", vec![Scope::Operator]);
    assert!(operator.has(Scope::Operator) && !operator.has(Scope::PluginsRead));
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
