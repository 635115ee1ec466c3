//! Webhooks end to end: signed per the Standard Webhooks conventions,
//! retried while the receiver is down, visible per execution, and not lost
//! when the node holding them is killed. On both stores.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_tests::procs::free_port;
use taskhost_tests::receiver::{Received, Receiver};
use taskhost_tests::server::Server;

const OPEN: &str = "[network]\nopen_ranges = [\"127.0.0.0/8\"]\nplain_http = true\n";

taskhost_tests::both_stores!(with(&[], Some(super::OPEN)) retried_until_the_receiver_is_back);

async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn deliveries(s: &Server, token: &str, id: &str) -> Vec<Value> {
    let (code, body) = s
        .call(
            Method::GET,
            &format!("/v1/executions/{id}/deliveries"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

/// The tenant's signing secret, as bytes.
async fn signing_secret(s: &Server, token: &str) -> Vec<u8> {
    let (code, body) = s
        .call(Method::GET, "/v1/webhooks/secret", Some(token), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let shown = body["secret"].as_str().expect("secret");
    let b64 = shown.strip_prefix("whsec_").expect("whsec_ prefix");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

/// Checks a received webhook's headers and signature; returns its body.
fn verified(r: &Received, secret: &[u8]) -> Value {
    let id = &r.headers["webhook-id"];
    let timestamp: i64 = r.headers["webhook-timestamp"].parse().expect("timestamp");
    let expected = taskhost_scheduler::webhooks::signature(secret, id, timestamp, &r.body);
    assert_eq!(r.headers["webhook-signature"], expected, "signature");
    let now = chrono::Utc::now().timestamp();
    assert!((now - timestamp).abs() < 300, "a fresh timestamp");
    serde_json::from_slice(&r.body).expect("JSON body")
}

async fn retried_until_the_receiver_is_back(s: Server) {
    let token = s.admin("acme");
    let hello = s.upload(&token, "hello").await["id"].clone();
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let body = json!({
        "plugin_id": hello, "input": {"name": "Ada"}, "wait": "20s",
        "notify": [{"url": hook, "on": ["succeeded"]}, {"url": hook, "on": ["failed", "dead"]}],
    });
    let (code, e) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "succeeded");
    let id = e["id"].as_str().expect("id").to_owned();

    // Nothing listens yet: the attempt fails and is recorded.
    until("a failed attempt", Duration::from_secs(20), async || {
        let d = deliveries(&s, &token, &id).await;
        d.first()
            .and_then(|d| d["attempts"].as_array())
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let d = deliveries(&s, &token, &id).await;
    assert_eq!(d.len(), 1, "only the target asking for `succeeded`: {d:?}");
    assert_eq!(d[0]["state"], "pending");
    assert_eq!(d[0]["event"], "execution.succeeded");
    assert!(d[0]["attempts"][0]["error"].is_string(), "{d:?}");

    // The receiver comes back; the next attempt delivers.
    let receiver = Receiver::start(port).await;
    until("the delivery", Duration::from_secs(30), async || {
        deliveries(&s, &token, &id).await[0]["state"] == "delivered"
    })
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one request per attempt that reached it");
    let secret = signing_secret(&s, &token).await;
    let event = verified(&got[0], &secret);
    assert_eq!(event["type"], "execution.succeeded");
    assert_eq!(event["data"]["execution_id"], id.as_str());
    let d = deliveries(&s, &token, &id).await;
    assert_eq!(
        got[0].headers["webhook-id"],
        d[0]["id"].as_str().expect("id")
    );
    let attempts = d[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.last().expect("last")["status"], 200);
    let metrics = s.metrics().await;
    let count = |outcome: &str| {
        taskhost_tests::metric_value(
            &metrics,
            &format!("taskhost_webhook_attempts_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("delivered"), 1.0, "{metrics}");
    assert!(count("retrying") >= 1.0, "{metrics}");

    // Another tenant sees neither the execution nor its deliveries.
    let other = s.admin("globex");
    let (code, _) = s
        .call(
            Method::GET,
            &format!("/v1/executions/{id}/deliveries"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Targets the policy refuses are refused when the run is made.
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&token),
            Some(json!({"plugin_id": hello, "notify": [{"url": "http://169.254.169.254/x"}]})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

/// A node killed with a delivery pending: another node on the same store
/// (with the same key) delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_does_not_lose_a_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("shared.db").display());
    let key = "11".repeat(32);
    let env = [("TASKHOST_SECRETS_KEY", key.as_str())];
    let a = Server::start_with_env(Some(&store), &["--node-id", "a"], Some(OPEN), &env);
    let token = a.admin("acme");
    let hello = a.upload(&token, "hello").await["id"].clone();
    let port = free_port();
    let body = json!({
        "plugin_id": hello, "input": {"name": "Ada"}, "wait": "20s",
        "notify": [{"url": format!("http://127.0.0.1:{port}/hook")}],
    });
    let (code, e) = a
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{e}");
    let id = e["id"].as_str().expect("id").to_owned();
    until("a failed attempt", Duration::from_secs(20), async || {
        let d = deliveries(&a, &token, &id).await;
        d.first()
            .and_then(|d| d["attempts"].as_array())
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    taskhost_tests::procs::signal(a.pid(), "KILL");

    let receiver = Receiver::start(port).await;
    let b = Server::start_with_env(Some(&store), &["--node-id", "b"], Some(OPEN), &env);
    until("node b to deliver", Duration::from_secs(60), async || {
        deliveries(&b, &token, &id).await[0]["state"] == "delivered"
    })
    .await;
    let got = receiver.received();
    assert!(!got.is_empty());
    let secret = signing_secret(&b, &token).await;
    for r in &got {
        let event = verified(r, &secret);
        assert_eq!(event["data"]["execution_id"], id.as_str());
    }
    let d = deliveries(&b, &token, &id).await;
    let last = d[0]["attempts"]
        .as_array()
        .expect("attempts")
        .last()
        .cloned();
    assert_eq!(last.expect("an attempt")["node"], "b");
}

/// Tenant A's 100 runs each notify eight targets (the most a run may) that
/// accept connections and never answer; tenant B's one webhook is still sent on its time: A holds
/// only its few delivery slots, and is left out of the reads while they are
/// full. (Before, a pass read the 100 oldest due — all A's — and waited
/// on them, 32 at a time, 10 s each, before reading again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_silent_targets_do_not_delay_anothers_webhook() {
    let s = Server::start_with(None, &[], Some(OPEN));
    let (a, b) = (s.admin("tenant-a"), s.admin("tenant-b"));
    let hello_a = s.upload(&a, "hello").await["id"].clone();
    let hello_b = s.upload(&b, "hello").await["id"].clone();
    // Eight targets that take connections and say nothing.
    let mut silent = Vec::new();
    let mut held = Vec::new();
    for _ in 0..8 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        silent.push(
            json!({"url": format!("http://{}/hook", listener.local_addr().expect("addr")),
            "on": ["succeeded"]}),
        );
        held.push(tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        }));
    }
    let runs: Vec<Value> = (0..100)
        .map(|_| json!({"plugin_id": hello_a, "input": {"name": "a"}, "notify": silent}))
        .collect();
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/executions/batch",
            Some(&a),
            Some(json!({"runs": runs})),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body:.300}");
    // A's deliveries are under way (their first attempts hang).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let receiver = Receiver::start(0).await;
    let body = json!({
        "plugin_id": hello_b, "input": {"name": "b"}, "wait": "20s",
        "notify": [{"url": receiver.url("/hook"), "on": ["succeeded"]}],
    });
    let (code, e) = s
        .call(Method::POST, "/v1/executions", Some(&b), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{e}");
    let ended = Instant::now();
    // Its first attempt's time: the next delivery pass (every 500 ms), with
    // room for a loaded machine — far below A's 10-second attempts.
    until("B's webhook", Duration::from_secs(8), async || {
        !receiver.received().is_empty()
    })
    .await;
    eprintln!(
        "B's webhook arrived {:.2} s after its run",
        ended.elapsed().as_secs_f64()
    );
    for h in held {
        h.abort();
    }
}
