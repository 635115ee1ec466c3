//! `Idempotency-Key` through real processes sharing one store (issue 26,
//! acceptance 2): a client that drops its connection before the answer and
//! retries with the same key gets one execution; the same key with another
//! body is refused; two nodes receiving one key at once make one execution;
//! a batch retried gets its first ids.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Write;
use std::net::TcpStream;
use taskhost_tests::server::Server;

async fn post(s: &Server, token: &str, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let response = s
        .client
        .post(s.at(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("post");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// The tenant's executions whose input is `input`.
async fn made(s: &Server, token: &str, input: &Value) -> Vec<String> {
    let (status, page) = s
        .call(Method::GET, "/v1/executions?limit=1000", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|e| &e["input"] == input)
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

async fn one_key_one_run(store: &str) {
    let node = |id: &str| Server::start_with(Some(store), &["--node-id", id], None);
    let (a, b) = (node("a"), node("b"));
    let token = a.admin("acme");
    let plugin = a.upload(&token, "hello").await["id"].clone();

    // A POST whose connection is dropped before the answer, then a retry.
    let input = json!({"name": "dropped"});
    let body = json!({"plugin_id": plugin, "input": input});
    let text = body.to_string();
    let address = a.url.trim_start_matches("http://").to_owned();
    let mut dropped = TcpStream::connect(address).expect("connect");
    let request = format!(
        "POST /v1/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: key-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    dropped.write_all(request.as_bytes()).expect("write");
    drop(dropped);
    let (status, first) = post(&a, &token, "/v1/executions", "key-1", &body).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::ACCEPTED,
        "{first}"
    );
    let (status, again) = post(&b, &token, "/v1/executions", "key-1", &body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a retry gets the first answer: {again}"
    );
    assert_eq!(again["id"], first["id"]);
    assert_eq!(made(&a, &token, &input).await.len(), 1, "one execution");

    // The same key for another request is refused; nothing is made.
    let other = json!({"plugin_id": plugin, "input": {"name": "other"}});
    let (status, refused) = post(&a, &token, "/v1/executions", "key-1", &other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    assert!(made(&a, &token, &json!({"name": "other"})).await.is_empty());
    // Key order and spacing do not make another request.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{ "input": {{"name": "dropped"}}, "plugin_id": {plugin} }}"#
    ))
    .expect("json");
    let (status, _) = post(&a, &token, "/v1/executions", "key-1", &reordered).await;
    assert_eq!(status, StatusCode::OK);

    // Two nodes receiving one key at once make one execution.
    let input = json!({"name": "raced"});
    let body = json!({"plugin_id": plugin, "input": input});
    let ((s1, e1), (s2, e2)) = tokio::join!(
        post(&a, &token, "/v1/executions", "key-2", &body),
        post(&b, &token, "/v1/executions", "key-2", &body),
    );
    assert!(s1.is_success() && s2.is_success(), "{e1} {e2}");
    assert_eq!(e1["id"], e2["id"]);
    assert_eq!(made(&a, &token, &input).await.len(), 1);

    // A batch retried gets its first ids.
    let runs = json!({"runs": [
        {"plugin_id": plugin, "input": {"name": "batch-1"}},
        {"plugin_id": plugin, "input": {"name": "batch-2"}},
    ]});
    let path = "/v1/executions/batch";
    let (status, first) = post(&a, &token, path, "key-3", &runs).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = post(&b, &token, path, "key-3", &runs).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["ids"], first["ids"]);
    assert_eq!(made(&a, &token, &json!({"name": "batch-2"})).await.len(), 1);

    // A bad key is refused.
    let (status, bad) = post(&a, &token, "/v1/executions", "a key", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_idempotency_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_run_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("shared.db").display());
    one_key_one_run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_run_mongodb() {
    let db = format!(
        "taskhost_idem_{}",
        taskhost_model::new_id().replace('-', "")
    );
    if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
        one_key_one_run(&url).await;
    }
}
