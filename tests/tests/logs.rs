//! `serve --log-format json`: every log line is one JSON object, and what a
//! request causes carries its request id (and tenant), what a run logs its
//! execution and node.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_tests::server::Server;

/// The value of `field` in the event or any of its spans.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get(name).or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span.get(name))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_and_the_run() {
    let s = Server::start_with_env(
        None,
        &["--log-format", "json", "--node-id", "logger"],
        None,
        &[("TASKHOST_LOG", "taskhost=debug,info")],
    );
    let token = s.admin("acme");
    let hello = s.upload(&token, "hello").await;
    let response = s
        .client
        .post(s.at("/v1/executions"))
        .bearer_auth(&token)
        .header("x-request-id", "req-logs-1")
        .json(&json!({"plugin_id": hello["id"], "input": {"name": "log"}, "wait": "10s"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    let execution: Value = response.json().await.expect("json");
    let id = execution["id"].as_str().expect("id");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = s
            .logs()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let message = |l: &Value| l["message"].as_str().unwrap_or_default().to_owned();
        let request = lines.iter().find(|l| {
            message(l) == "request" && field(l, "request_id") == Some(&json!("req-logs-1"))
        });
        let queued = lines.iter().find(|l| {
            message(l) == "execution created" && field(l, "execution") == Some(&json!(id))
        });
        let ran = lines
            .iter()
            .find(|l| message(l) == "run finished" && field(l, "execution") == Some(&json!(id)));
        if let (Some(request), Some(queued), Some(ran)) = (request, queued, ran) {
            assert_eq!(field(request, "tenant"), Some(&json!("acme")), "{request}");
            assert_eq!(
                field(queued, "request_id"),
                Some(&json!("req-logs-1")),
                "{queued}"
            );
            assert_eq!(field(ran, "node"), Some(&json!("logger")), "{ran}");
            assert_eq!(field(ran, "tenant"), Some(&json!("acme")), "{ran}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing log lines in:\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
