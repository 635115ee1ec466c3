//! Compiles shared fairly between tenants (issue 25, acceptance 1): tenant A
//! keeps large Python components compiling; tenant B's small upload still
//! goes through within 3 s and B's runs keep their latency within 3× of an
//! idle node; A's uploads past its queue get 429 with `Retry-After`; and a
//! compile whose plugin is refused still counts against the tenant's
//! compile budget.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_tests::langs::{self, Lang};
use taskhost_tests::server::Server;

const CONFIG: &str = r#"
[quotas.tenants.spender]
compile_seconds_per_hour = 5
"#;

async fn upload(
    s: &Server,
    token: &str,
    name: &str,
    version: &str,
    wasm: Vec<u8>,
) -> reqwest::Response {
    s.client
        .post(s.at(&format!("/v1/plugins?name={name}&version={version}")))
        .bearer_auth(token)
        .body(wasm)
        .send()
        .await
        .expect("upload")
}

/// The median time of `n` runs of `plugin`, each waited for.
async fn run_latency(s: &Server, token: &str, plugin: &str, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let body = json!({ "plugin_id": plugin, "input": {"name": "B"}, "wait": "10s" });
        let (status, e) = s
            .call(Method::POST, "/v1/executions", Some(token), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "succeeded", "{e}");
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

async fn compiling(s: &Server) -> f64 {
    taskhost_tests::metric_value(&s.metrics().await, "taskhost_compilations_in_progress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenant_compiling_does_not_hold_up_another() {
    if !langs::tools_or_skip("one_tenant_compiling_does_not_hold_up_another") {
        return;
    }
    let python = std::fs::read(langs::build(Lang::Python, "hello-py")).expect("hello-py");
    let s = Server::start_with(None, &["--max-compiles", "2"], Some(CONFIG));
    let (a, b) = (s.admin("hog"), s.admin("bee"));
    let hello = taskhost_tests::plugin("hello");
    let plugin = upload(&s, &b, "hello", "1.0.0", hello.clone()).await;
    assert_eq!(plugin.status(), StatusCode::CREATED);
    let plugin: Value = plugin.json().await.expect("json");
    let plugin = plugin["id"].as_str().expect("id").to_owned();
    let idle = run_latency(&s, &b, &plugin, 15).await;

    // A uploads four large components at once.
    let mut hog = Vec::new();
    for n in 0..4 {
        let (s2, a, wasm) = (
            s.client.clone(),
            a.clone(),
            taskhost_tests::variant(&python, n),
        );
        let url = s.at(&format!("/v1/plugins?name=py&version=1.0.{n}"));
        hog.push(tokio::spawn(async move {
            // (Those still compiling at the end fail with the server.)
            s2.post(url).bearer_auth(a).body(wasm).send().await
        }));
    }
    // One is refused at once: A compiles one and queues two.
    let (mut refused, mut pending) = (None, hog);
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.is_none() {
        assert!(Instant::now() < deadline, "no upload of A's was refused");
        if let Some(i) = pending.iter().position(|h| h.is_finished()) {
            refused = Some(pending.remove(i).await.expect("task"));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let refused = refused.expect("refused").expect("an answer");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let after = refused.headers().get(header::RETRY_AFTER).cloned();
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "compile_busy", "{body}");
    assert!(after.is_some(), "Retry-After is sent");
    while compiling(&s).await < 1.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // B's small upload is not behind A's.
    let started = Instant::now();
    let response = upload(&s, &b, "hello", "2.0.0", taskhost_tests::variant(&hello, 9)).await;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(took < Duration::from_secs(3), "B's upload took {took:?}");
    // B's runs keep their latency while A compiles.
    let busy = run_latency(&s, &b, &plugin, 15).await;
    assert!(compiling(&s).await >= 1.0, "A was still compiling");
    assert!(
        busy <= idle * 3 + Duration::from_millis(30),
        "B's runs took {busy:?} (median) while A compiled, {idle:?} idle"
    );
    eprintln!("B: upload {took:?}; runs {idle:?} idle, {busy:?} while A compiles");

    // A compile refused after compiling (its version exists) is charged:
    // the spender's 5-second budget is then spent.
    let spender = s.admin("spender");
    let first = upload(&s, &spender, "py", "1.0.0", hello.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = upload(
        &s,
        &spender,
        "py",
        "1.0.0",
        taskhost_tests::variant(&python, 7),
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::CONFLICT,
        "refused after compiling"
    );
    let over = upload(
        &s,
        &spender,
        "py",
        "1.0.1",
        taskhost_tests::variant(&hello, 8),
    )
    .await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().get(header::RETRY_AFTER).is_some());
    let body: Value = over.json().await.expect("json");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(
        body["error"]["details"]["quota"], "compile_seconds_per_hour",
        "{body}"
    );
    assert!(
        body["error"]["details"]["used"].as_f64().unwrap_or(0.0) > 5.0,
        "{body}"
    );
}
