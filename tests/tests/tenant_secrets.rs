//! Tenant secrets end to end: set through the API (write-only), sealed in
//! the store, readable only by runs that name them, and scrubbed from what a
//! run leaves behind. On both stores.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskhost::api::auth::Scope;
use taskhost_tests::server::Server;

taskhost_tests::both_stores!(secrets_are_sealed_granted_and_scrubbed);

async fn run(s: &Server, token: &str, plugin: &str, secrets: &[&str], name: &str) -> Value {
    let body =
        json!({"plugin_id": plugin, "input": {"name": name}, "secrets": secrets, "wait": "20s"});
    let (code, execution) = s
        .call(Method::POST, "/v1/executions", Some(token), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{execution}");
    execution
}

/// Every byte the store keeps: the SQLite files, or every MongoDB document.
async fn stored_bytes(s: &Server) -> Vec<u8> {
    match &s.store {
        None => {
            let mut bytes = Vec::new();
            for file in ["taskhost.db", "taskhost.db-wal"] {
                bytes.extend(std::fs::read(s.data_dir().join(file)).unwrap_or_default());
            }
            bytes
        }
        Some(url) => {
            use futures::TryStreamExt;
            let client = ::mongodb::Client::with_uri_str(url).await.expect("mongodb");
            let db = client.default_database().expect("a database in the URL");
            let mut bytes = Vec::new();
            for name in db.list_collection_names().await.expect("collections") {
                let docs: Vec<::mongodb::bson::Document> = db
                    .collection(&name)
                    .find(::mongodb::bson::doc! {})
                    .await
                    .expect("find")
                    .try_collect()
                    .await
                    .expect("documents");
                for d in docs {
                    bytes.extend(::mongodb::bson::to_vec(&d).expect("bson"));
                }
            }
            bytes
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn secrets_are_sealed_granted_and_scrubbed(s: Server) {
    let token = s.admin("tenant-a");
    let plugin = s.upload(&token, "test-secret").await;
    let plugin = plugin["id"].as_str().expect("id").to_owned();
    let value = format!("tok-{}", taskhost_model::new_id());

    // Write-only: set twice (a new version), never shown.
    for (i, v) in ["first-value-0123456789", value.as_str()]
        .iter()
        .enumerate()
    {
        let (code, info) = s
            .call(
                Method::PUT,
                "/v1/secrets/PARTNER_TOKEN",
                Some(&token),
                Some(json!({"value": v})),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{info}");
        assert_eq!(info["version"], i as u64 + 1);
        assert!(!info.to_string().contains(v), "a value came back: {info}");
    }
    let (code, list) = s.call(Method::GET, "/v1/secrets", Some(&token), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], "PARTNER_TOKEN");
    assert!(!list.to_string().contains(&value));

    // A run that names it reads it; everything it leaked is scrubbed.
    let execution = run(&s, &token, &plugin, &["PARTNER_TOKEN"], "PARTNER_TOKEN").await;
    assert_eq!(execution["status"], "succeeded", "{execution}");
    let outcome = &execution["outcome"];
    assert_eq!(outcome["output"]["leaked"], "[redacted:PARTNER_TOKEN]");
    assert_eq!(outcome["output"]["length"], value.len());
    assert!(
        outcome["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("[redacted:PARTNER_TOKEN]")
    );
    assert!(
        outcome["logs"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("[redacted:PARTNER_TOKEN]")
    );
    assert!(!execution.to_string().contains(&value), "{execution}");

    // A run that does not name it cannot read it.
    let refused = run(&s, &token, &plugin, &[], "PARTNER_TOKEN").await;
    assert_eq!(refused["status"], "failed", "{refused}");
    let message = refused["outcome"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("not granted"), "{message}");

    // Another tenant has no such secret, whatever its runs name.
    let other = s.admin("tenant-b");
    let theirs = s.upload(&other, "test-secret").await;
    let theirs = theirs["id"].as_str().expect("id").to_owned();
    let (_, list) = s.call(Method::GET, "/v1/secrets", Some(&other), None).await;
    assert_eq!(list["items"], json!([]));
    let absent = run(&s, &other, &theirs, &["PARTNER_TOKEN"], "PARTNER_TOKEN").await;
    assert_eq!(absent["status"], "failed", "{absent}");
    assert!(!absent.to_string().contains(&value));

    // Not in the store in plain text.
    let stored = stored_bytes(&s).await;
    assert!(
        contains(&stored, "PARTNER_TOKEN"),
        "the test reads the right store"
    );
    assert!(
        !contains(&stored, &value),
        "the value is stored in plain text"
    );

    // Names, scopes, deletion.
    let (code, body) = s
        .call(
            Method::PUT,
            "/v1/secrets/bad%20name",
            Some(&token),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("invalid_secret_name")
        )
    );
    let runner = s.token("tenant-a", &[Scope::ExecutionsWrite, Scope::ExecutionsRead]);
    let (code, _) = s
        .call(
            Method::PUT,
            "/v1/secrets/OTHER",
            Some(&runner),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = s
        .call(Method::GET, "/v1/secrets", Some(&runner), None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // Naming a secret on a run or a schedule takes `secrets:use`.
    let names = json!({"plugin_id": plugin, "secrets": ["PARTNER_TOKEN"],
        "input": {"name": "PARTNER_TOKEN"}});
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&runner),
            Some(names.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["details"]["required_scope"], "secrets:use");
    let scheduler = s.token("tenant-a", &[Scope::SchedulesWrite]);
    let (code, _) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&scheduler),
            Some(json!({"name": "uses-a-secret", "plugin_id": plugin,
                "trigger": {"kind": "interval", "every": "1h"}, "secrets": ["PARTNER_TOKEN"]})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let user = s.token(
        "tenant-a",
        &[
            Scope::ExecutionsWrite,
            Scope::ExecutionsRead,
            Scope::SecretsUse,
        ],
    );
    let (code, body) = s
        .call(Method::POST, "/v1/executions", Some(&user), Some(names))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    // A run that names no secret needs no more than before.
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&runner),
            Some(json!({"plugin_id": plugin, "input": {"name": "NONE"}})),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let (code, _) = s
        .call(
            Method::DELETE,
            "/v1/secrets/PARTNER_TOKEN",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = s
        .call(
            Method::DELETE,
            "/v1/secrets/PARTNER_TOKEN",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let gone = run(&s, &token, &plugin, &["PARTNER_TOKEN"], "PARTNER_TOKEN").await;
    assert_eq!(gone["status"], "failed");
}

/// A plugin built against the contract before `secret-get` and the `wasi:http`
/// import existed (`tests/fixtures/hello-contract-0.1.0-before-secrets.wasm`) still
/// validates and runs.
#[tokio::test]
async fn plugins_built_before_secrets_still_run() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let wasm = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/hello-contract-0.1.0-before-secrets.wasm"),
    )
    .expect("fixture");
    let response = s
        .client
        .post(s.at("/v1/plugins?name=old-hello&version=1.0.0"))
        .bearer_auth(&token)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let plugin: Value = response.json().await.expect("json");
    let body = json!({"plugin_id": plugin["id"], "input": {"name": "Ada"}, "wait": "20s"});
    let (code, execution) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{execution}");
    assert_eq!(execution["outcome"]["output"], "Hello, Ada!");
}
