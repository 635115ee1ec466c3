//! `/metrics` is one OpenMetrics registry: every family has help text, and
//! the error paths a client can cause (refused uploads, error responses) are
//! counted by code beside runs by status.

use reqwest::{Method, StatusCode, header};
use serde_json::json;
use taskhost_tests::metric_value;
use taskhost_tests::server::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_and_every_refusal_in_one_registry() {
    let s = Server::start(None);
    let token = s.admin("acme");

    // A refused upload, a bad token, an unknown route, and one good run.
    let refused = s
        .client
        .post(s.at("/v1/plugins?name=junk&version=1.0.0"))
        .bearer_auth(&token)
        .body(b"this is not wasm".to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .call(Method::GET, "/v1/plugins", Some("not-a-token"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s.call(Method::GET, "/v1/nowhere", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let hello = s.upload(&token, "hello").await["id"].clone();
    let body = json!({"plugin_id": hello, "input": {"name": "m"}, "wait": "20s"});
    let (status, run) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(
        (status, run["status"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{run}"
    );

    let response = s
        .client
        .get(s.at("/metrics"))
        .send()
        .await
        .expect("metrics");
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");

    // Every line is a comment or `name{labels} value`; every family has help.
    let mut helped = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, words) = help.split_once(' ').expect("help text");
            assert!(!words.trim().is_empty(), "{line}");
            helped.insert(name.to_owned());
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            let family = series.split('{').next().expect("name");
            let known = helped.iter().any(|h| family.starts_with(h.as_str()));
            assert!(known, "{family} has no help text");
        }
    }
    for family in [
        "taskhost_runs",
        "taskhost_store_errors",
        "taskhost_lease_losses",
        "taskhost_uploads_refused",
        "taskhost_api_errors",
        "taskhost_tls_reload_failures",
        "taskhost_schedule_to_start_seconds",
        "taskhost_queue_depth",
        "taskhost_live_nodes",
    ] {
        assert!(helped.contains(family), "{family} missing from\n{text}");
    }
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(
        value(r#"taskhost_uploads_refused_total{code="not_wasm"}"#),
        1.0
    );
    assert_eq!(value(r#"taskhost_api_errors_total{code="not_wasm"}"#), 1.0);
    assert_eq!(
        value(r#"taskhost_api_errors_total{code="unauthorized"}"#),
        1.0
    );
    assert_eq!(value(r#"taskhost_api_errors_total{code="not_found"}"#), 1.0);
    assert_eq!(value(r#"taskhost_runs_total{status="succeeded"}"#), 1.0);
    assert_eq!(value("taskhost_live_nodes"), 1.0);
}
