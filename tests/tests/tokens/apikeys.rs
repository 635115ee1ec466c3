//! API keys through two real nodes sharing one store: made by a tenant's
//! admin with a subset of its scopes, shown once, used on either node with
//! its last use recorded, and — once deleted — refused on every node.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost::api::auth::Scope;
use taskhost_tests::server::Server;

async fn plugins(s: &Server, token: &str) -> StatusCode {
    s.call(Method::GET, "/v1/plugins", Some(token), None)
        .await
        .0
}

async fn make(s: &Server, token: &str, body: Value) -> (StatusCode, Value) {
    s.call(Method::POST, "/v1/api-keys", Some(token), Some(body))
        .await
}

async fn api_keys_everywhere(store: &str) {
    let node = |id: &str| Server::start_with(Some(store), &["--node-id", id], None);
    let (a, b) = (node("a"), node("b"));
    let admin = a.admin("acme");

    // Refused: no scope, an unknown one, one the maker lacks, a reader.
    let (code, body) = make(&a, &admin, json!({ "name": "ci", "scopes": [] })).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let body = json!({ "name": "ci", "scopes": ["plugins:delete"] });
    assert_eq!(
        make(&a, &admin, body).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let body = json!({ "name": "ci", "scopes": ["operator"] });
    let (code, body) = make(&a, &admin, body).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let reader = a.token("acme", &[Scope::PluginsRead]);
    let body = json!({ "name": "ci", "scopes": ["plugins:read"] });
    assert_eq!(make(&a, &reader, body).await.0, StatusCode::FORBIDDEN);

    let body = json!({ "name": "ci deploys", "scopes": ["plugins:read"] });
    let (code, made) = make(&a, &admin, body).await;
    assert_eq!(code, StatusCode::CREATED, "{made}");
    let key = made["key"].as_str().expect("the key").to_owned();
    let id = made["api_key"]["id"].as_str().expect("its id").to_owned();
    assert!(key.starts_with("thk_"), "{key}");
    for s in [&a, &b] {
        assert_eq!(plugins(s, &key).await, StatusCode::OK);
    }
    // Its scopes only.
    let (code, _) = a.call(Method::GET, "/v1/schedules", Some(&key), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // A wrong secret with its id, and a made-up key.
    let forged = format!("{}{}", &key[..key.len() - 4], "0000");
    assert_eq!(plugins(&a, &forged).await, StatusCode::UNAUTHORIZED);
    let made_up = format!("thk_nope_{}", "a".repeat(64));
    assert_eq!(plugins(&b, &made_up).await, StatusCode::UNAUTHORIZED);

    // Listed without its secret, with its last use.
    let listed = Instant::now();
    let item = loop {
        let (code, list) = a
            .call(Method::GET, "/v1/api-keys", Some(&admin), None)
            .await;
        assert_eq!(code, StatusCode::OK, "{list}");
        let item = list["items"][0].clone();
        if item.get("last_used_at").is_some() || listed.elapsed() > Duration::from_secs(5) {
            break item;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(item["id"], id.as_str());
    assert!(item.get("last_used_at").is_some(), "{item}");
    assert!(!item.to_string().contains(&key[key.len() - 64..]), "{item}");

    // Not another tenant's to delete.
    let globex = a.admin("globex");
    let path = format!("/v1/api-keys/{id}");
    let (code, _) = a.call(Method::DELETE, &path, Some(&globex), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Deleted on b: refused there at once, on a within its cache (a second).
    let (code, body) = b.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(plugins(&b, &key).await, StatusCode::UNAUTHORIZED);
    let deleted = Instant::now();
    while plugins(&a, &key).await != StatusCode::UNAUTHORIZED {
        assert!(
            deleted.elapsed() < Duration::from_secs(5),
            "node a still accepts the deleted key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The key's text is nowhere in the audit log.
    let (code, audit) = a.call(Method::GET, "/v1/audit", Some(&admin), None).await;
    assert_eq!(code, StatusCode::OK, "{audit}");
    assert!(
        !audit.to_string().contains(&key[4..]),
        "no key text in the audit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_works_is_revoked_and_refused_on_every_node_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("shared.db").display());
    api_keys_everywhere(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_works_is_revoked_and_refused_on_every_node_mongodb() {
    let db = format!(
        "taskhost_keys_{}",
        taskhost_model::new_id().replace('-', "")
    );
    if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
        api_keys_everywhere(&url).await;
    }
}

/// `taskhost api-key create|list|delete`, and the key as the CLI's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_lists_and_deletes_an_api_key() {
    let s = Server::start(None);
    let admin = s.admin("acme");
    let cli = |token: &str, args: &[&str]| {
        std::process::Command::new(taskhost_tests::taskhost_bin())
            .args(args)
            .args(["--server", &s.url, "--token", token])
            .output()
            .expect("run taskhost")
    };
    let made = cli(
        &admin,
        &[
            "api-key",
            "create",
            "--name",
            "ci",
            "--scopes",
            "plugins:read",
            "--json",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: Value = serde_json::from_slice(&made.stdout).expect("JSON");
    let (key, id) = (
        made["key"].as_str().expect("key"),
        made["api_key"]["id"].as_str().expect("id"),
    );
    assert!(cli(key, &["plugin", "list"]).status.success());
    let listed = cli(&admin, &["api-key", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(id) && listed.contains("plugins:read"),
        "{listed}"
    );
    assert!(cli(&admin, &["api-key", "delete", id]).status.success());
    let refused = cli(key, &["plugin", "list"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("unknown or revoked API key"), "{said}");
}
