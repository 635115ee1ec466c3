//! Tokens from an identity provider: a local OIDC server (discovery and a
//! JWKS) with RSA, P-256 and Ed25519 keys made here by `openssl`, and a
//! node that finds its keys by discovery and maps the tenant from a nested
//! claim and the scopes from OAuth's `scope` string.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use taskhost_tests::server::Server;

const AUDIENCE: &str = "taskhost-api";

/// A private key made by `openssl genpkey`, and its JWK.
struct Key {
    kid: String,
    private: EncodingKey,
    jwk: Jwk,
}

fn make_key(kid: &str, alg: Algorithm) -> Key {
    let args: &[&str] = match alg {
        Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Algorithm::EdDSA => &["-algorithm", "ED25519"],
        other => panic!("no key for {other:?}"),
    };
    let out = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .expect("run openssl (the tests need it)");
    assert!(out.status.success(), "openssl genpkey failed");
    let private = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&out.stdout),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&out.stdout),
        _ => EncodingKey::from_ed_pem(&out.stdout),
    }
    .expect("a private key");
    let mut jwk = Jwk::from_encoding_key(&private, alg).expect("its JWK");
    jwk.common.key_id = Some(kid.to_owned());
    Key {
        kid: kid.to_owned(),
        private,
        jwk,
    }
}

/// The local provider: its issuer URL, key set (changeable) and how often
/// its key set was fetched.
struct Provider {
    issuer: String,
    keys: Arc<Mutex<JwkSet>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn provider(keys: &[&Key]) -> Provider {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    };
    let keys = Arc::new(Mutex::new(set));
    let fetches = Arc::new(AtomicUsize::new(0));
    let discovery = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/keys") });
    let (served, counted) = (keys.clone(), fetches.clone());
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/keys",
            get(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let set = served.lock().expect("keys").clone();
                axum::Json(set)
            }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Provider {
        issuer,
        keys,
        fetches,
        task,
    }
}

/// A token the provider would issue: `claims` over sensible defaults.
fn token(key: &Key, alg: Algorithm, issuer: &str, claims: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut body = json!({
        "iss": issuer, "aud": AUDIENCE, "sub": "alice@example.com",
        "iat": now, "exp": now + 600,
        "org": { "tenant": "acme" },
        "scope": "openid email schedules:read plugins:read",
    });
    for (k, v) in claims.as_object().expect("claims") {
        body[k] = v.clone();
    }
    let mut header = Header::new(alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &body, &key.private).expect("sign")
}

async fn get(s: &Server, token: &str, path: &str) -> (StatusCode, Value) {
    s.call(Method::GET, path, Some(token), None).await
}

fn refused(answer: &(StatusCode, Value), words: &str) {
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{}", answer.1);
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{words:?} not in {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_providers_tokens_are_accepted_mapped_and_refused_when_wrong() {
    let (rsa, ec, ed) = (
        make_key("rsa-1", Algorithm::RS256),
        make_key("ec-1", Algorithm::ES256),
        make_key("ed-1", Algorithm::EdDSA),
    );
    let idp = provider(&[&rsa, &ec, &ed]).await;
    let s = Server::start_with(
        None,
        &[
            "--oidc-issuer",
            &idp.issuer,
            "--oidc-audience",
            AUDIENCE,
            "--oidc-tenant-claim",
            "/org/tenant",
        ],
        None,
    );
    // acme's hook, made with the development key's token: the provider's
    // tokens see it, so their tenant is acme.
    let hook = json!({ "name": "from-hs", "event": "deploy" });
    let admin = s.admin("acme");
    let (code, body) = s
        .call(Method::POST, "/v1/hooks", Some(&admin), Some(hook))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");

    for (key, alg) in [
        (&rsa, Algorithm::RS256),
        (&ec, Algorithm::ES256),
        (&ed, Algorithm::EdDSA),
    ] {
        let t = token(key, alg, &idp.issuer, json!({}));
        let (code, body) = get(&s, &t, "/v1/hooks").await;
        assert_eq!(code, StatusCode::OK, "{alg:?}: {body}");
        assert_eq!(body["items"][0]["name"], "from-hs", "{alg:?}: tenant acme");
    }
    // Scopes from the `scope` string (`openid`, `email` ignored): reading,
    // not writing.
    let reader = token(&rsa, Algorithm::RS256, &idp.issuer, json!({}));
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/hooks",
            Some(&reader),
            Some(json!({ "name": "x", "event": "y" })),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");

    // Wrong issuer, audience, expired, no tenant, an algorithm not allowed,
    // and HMAC signed with the provider's public key (algorithm confusion).
    let other = json!({ "iss": "http://127.0.0.1:1" });
    refused(
        &get(
            &s,
            &token(&rsa, Algorithm::RS256, &idp.issuer, other),
            "/v1/hooks",
        )
        .await,
        "issuer",
    );
    let other = json!({ "aud": "another-app" });
    refused(
        &get(
            &s,
            &token(&rsa, Algorithm::RS256, &idp.issuer, other),
            "/v1/hooks",
        )
        .await,
        "audience",
    );
    let old = chrono::Utc::now().timestamp() - 3600;
    let expired = json!({ "iat": old - 600, "exp": old });
    refused(
        &get(
            &s,
            &token(&ec, Algorithm::ES256, &idp.issuer, expired),
            "/v1/hooks",
        )
        .await,
        "expired",
    );
    let no_tenant = json!({ "org": {} });
    refused(
        &get(
            &s,
            &token(&ed, Algorithm::EdDSA, &idp.issuer, no_tenant),
            "/v1/hooks",
        )
        .await,
        "tenant claim",
    );
    let t = token(&rsa, Algorithm::RS384, &idp.issuer, json!({}));
    refused(&get(&s, &t, "/v1/hooks").await, "RS384 not accepted");
    let public = serde_json::to_vec(&rsa.jwk).expect("jwk");
    let confused = Key {
        private: EncodingKey::from_secret(&public),
        ..clone_key(&rsa)
    };
    let t = token(&confused, Algorithm::HS256, &idp.issuer, json!({}));
    refused(&get(&s, &t, "/v1/hooks").await, "signature");

    // The provider rotates: rsa-1 out, rsa-2 in. A token of the new key is
    // taken without a restart; one of the old key no longer is.
    let rsa2 = make_key("rsa-2", Algorithm::RS256);
    *idp.keys.lock().expect("keys") = JwkSet {
        keys: vec![rsa2.jwk.clone(), ec.jwk.clone(), ed.jwk.clone()],
    };
    let before = idp.fetches.load(Ordering::SeqCst);
    let t = token(&rsa2, Algorithm::RS256, &idp.issuer, json!({}));
    let (code, body) = get(&s, &t, "/v1/hooks").await;
    assert_eq!(code, StatusCode::OK, "the rotated-in key: {body}");
    assert_eq!(idp.fetches.load(Ordering::SeqCst), before + 1);
    let t = token(&rsa, Algorithm::RS256, &idp.issuer, json!({}));
    refused(&get(&s, &t, "/v1/hooks").await, "unknown key `rsa-1`");
    // Made-up `kid`s are refused and do not make the node fetch again and
    // again (at most once in five seconds; the rotation's fetch was just now).
    for n in 0..20 {
        let fake = Key {
            kid: format!("made-up-{n}"),
            ..clone_key(&rsa2)
        };
        let t = token(&fake, Algorithm::RS256, &idp.issuer, json!({}));
        refused(&get(&s, &t, "/v1/hooks").await, "unknown key");
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), before + 1);
}

/// A copy of a key (to change its `kid` or signing key).
fn clone_key(k: &Key) -> Key {
    Key {
        kid: k.kid.clone(),
        private: k.private.clone(),
        jwk: k.jwk.clone(),
    }
}
