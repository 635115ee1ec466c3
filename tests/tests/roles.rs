//! Node roles through real processes on one store: an API node in front never
//! runs anything, worker nodes behind serve only health and metrics, and a
//! drained worker finishes its runs while new work goes to the other.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost::api::auth::Scope;
use taskhost_tests::server::Server;

fn node(store: &str, role: &str, id: &str) -> Server {
    Server::start_with(
        Some(store),
        &["--role", role, "--node-id", id, "--heartbeat", "3s"],
        None,
    )
}

async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn execution(s: &Server, token: &str, id: &str) -> Value {
    s.call(
        Method::GET,
        &format!("/v1/executions/{id}"),
        Some(token),
        None,
    )
    .await
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_node_in_front_workers_behind_and_a_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("shared.db").display());
    let api = node(&store, "api", "api");
    let w1 = node(&store, "worker", "worker-1");
    let token = api.admin("acme");
    let operator = api.token("ops", &[Scope::Operator]);

    // A worker serves health and metrics, not the API.
    let (status, _) = w1.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = w1
        .call(Method::GET, "/v1/plugins", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let hello = api.upload(&token, "hello").await["id"].clone();
    let sleep = api.upload(&token, "test-sleep").await["id"].clone();

    // Long runs land on worker-1, the only worker so far.
    let mut long = Vec::new();
    for _ in 0..4 {
        let body = json!({"plugin_id": sleep, "input": {"ms": 4000}, "limits": {"timeout": "30s"}});
        let (status, e) = api
            .call(Method::POST, "/v1/executions", Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{e}");
        long.push(e["id"].as_str().expect("id").to_owned());
    }
    until(
        "worker-1 to run the long runs",
        Duration::from_secs(30),
        async || {
            let mut running = 0;
            for id in &long {
                let e = execution(&api, &token, id).await;
                running += usize::from(e["status"] == "running" && e["node"] == "worker-1");
            }
            running == long.len()
        },
    )
    .await;

    // A second worker joins; worker-1 is drained.
    let w2 = node(&store, "worker", "worker-2");
    until("three live nodes", Duration::from_secs(30), async || {
        let (_, nodes) = api
            .call(Method::GET, "/v1/nodes", Some(&operator), None)
            .await;
        nodes.as_array().is_some_and(|n| n.len() == 3)
    })
    .await;
    // A tenant's admin holds no power over the cluster.
    let (status, refused) = api
        .call(Method::POST, "/v1/nodes/worker-1/drain", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["details"]["required_scope"], "operator");
    let (status, _) = api.call(Method::GET, "/v1/nodes", Some(&token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, drained) = api
        .call(
            Method::POST,
            "/v1/nodes/worker-1/drain",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{drained}");
    assert_eq!(drained["draining"], true);
    let (status, _) = api
        .call(
            Method::POST,
            "/v1/nodes/no-such-node/drain",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // It takes effect at worker-1's next heartbeat (every second here).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (_, nodes) = api
        .call(Method::GET, "/v1/nodes", Some(&operator), None)
        .await;
    let roles: Vec<(String, String, bool)> = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["role"].as_str().unwrap_or_default().to_owned(),
                n["draining"] == true,
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            ("api".into(), "api".into(), false),
            ("worker-1".into(), "worker".into(), true),
            ("worker-2".into(), "worker".into(), false),
        ]
    );

    // New work all goes to worker-2; the API node runs nothing.
    let mut quick = Vec::new();
    for i in 0..10 {
        let body = json!({"plugin_id": hello, "input": {"name": format!("n{i}")}});
        let (status, e) = api
            .call(Method::POST, "/v1/executions", Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{e}");
        quick.push(e["id"].as_str().expect("id").to_owned());
    }
    for id in quick.iter().chain(&long) {
        let mut last = Value::Null;
        until("every run to finish", Duration::from_secs(60), async || {
            last = execution(&api, &token, id).await;
            last["status"] == "succeeded"
        })
        .await;
        let expected = if long.contains(id) {
            "worker-1"
        } else {
            "worker-2"
        };
        assert_eq!(last["node"], expected, "{last}");
    }
    drop((w1, w2));
}
