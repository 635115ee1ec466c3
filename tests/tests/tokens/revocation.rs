//! Token revocation through real processes sharing one store: a tenant's
//! admin revokes a token by its `jti`; the node that took the revocation
//! refuses the token on its next request, every other node within its
//! refresh (a second), and a node started later from its first request.
//! Another tenant cannot revoke it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost::api::auth::Scope;
use taskhost_tests::server::Server;

/// The `jti` claim of a token (its payload, unverified).
fn jti(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["jti"].as_str().expect("a jti").to_owned()
}

async fn status(s: &Server, token: &str) -> (StatusCode, Value) {
    s.call(Method::GET, "/v1/plugins", Some(token), None).await
}

async fn revoke(s: &Server, token: &str, jti: &str) -> (StatusCode, Value) {
    let body = json!({ "jti": jti });
    s.call(
        Method::POST,
        "/v1/tokens/revocations",
        Some(token),
        Some(body),
    )
    .await
}

async fn revoked_everywhere(store: &str) {
    let node = |id: &str| Server::start_with(Some(store), &["--node-id", id], None);
    let (a, b) = (node("a"), node("b"));
    let victim = a.admin("acme");
    let admin = a.admin("acme");
    let reader = a.token("acme", &[Scope::PluginsRead]);
    for s in [&a, &b] {
        assert_eq!(status(s, &victim).await.0, StatusCode::OK);
    }
    let id = jti(&victim);

    // Not another tenant's to revoke, nor a reader's.
    let (code, _) = revoke(&a, &a.admin("globex"), &id).await;
    assert_eq!(
        code,
        StatusCode::CREATED,
        "globex revokes its own jti of that name"
    );
    assert_eq!(
        status(&a, &victim).await.0,
        StatusCode::OK,
        "acme's token untouched"
    );
    let (code, body) = revoke(&a, &reader, &id).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let (code, body) = revoke(&a, &admin, " ").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_jti");

    let (code, body) = revoke(&a, &admin, &id).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["jti"], id.as_str());
    // The node that took it refuses the token on the very next request.
    let (code, body) = status(&a, &victim).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["message"], "token revoked");
    // The other node within its refresh (a second; five allowed here).
    let revoked_at = Instant::now();
    while status(&b, &victim).await.0 != StatusCode::UNAUTHORIZED {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "node b still accepts the revoked token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A node started afterwards refuses it from its first request.
    let c = node("c");
    assert_eq!(status(&c, &victim).await.0, StatusCode::UNAUTHORIZED);
    // Other tokens of the tenant still work, revoking again is no change,
    // and the tenant sees its revocation.
    for s in [&a, &b, &c] {
        assert_eq!(status(s, &admin).await.0, StatusCode::OK);
    }
    assert_eq!(revoke(&b, &admin, &id).await.0, StatusCode::OK);
    let (code, list) = a
        .call(Method::GET, "/v1/tokens/revocations", Some(&admin), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["jti"], id.as_str());
    assert_eq!(items[0]["revoked_by"], "tester");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_every_node_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("shared.db").display());
    revoked_everywhere(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_every_node_mongodb() {
    let db = format!(
        "taskhost_revoke_{}",
        taskhost_model::new_id().replace('-', "")
    );
    if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
        revoked_everywhere(&url).await;
    }
}
