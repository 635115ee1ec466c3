//! A fan-out of 1,000 children through the real binary (SQLite): it runs
//! under its tenant's run limit, and another tenant's runs start as soon as
//! they did without it. (The fan-out on MongoDB is the 20-child conformance
//! case: SecantusDB's speed would make this one minutes long.)

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_tests::server::Server;

/// Runs `hello` for `token` `n` times, one after another: each one's start
/// delay (created → started), in ms.
async fn start_delays(s: &Server, token: &str, hello: &str, n: usize) -> Vec<i64> {
    let mut delays = Vec::new();
    for i in 0..n {
        let body =
            json!({ "plugin_id": hello, "input": { "name": format!("b{i}") }, "wait": "30s" });
        let (code, e) = s
            .call(Method::POST, "/v1/executions", Some(token), Some(body))
            .await;
        assert_eq!(code, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "succeeded", "{e}");
        let at = |f: &str| {
            chrono::DateTime::parse_from_rfc3339(e[f].as_str().expect("time")).expect("time")
        };
        delays.push((at("started_at") - at("created_at")).num_milliseconds());
    }
    delays.sort_unstable();
    delays
}

/// Every execution of `token`'s tenant.
async fn all_executions(s: &Server, token: &str) -> Vec<Value> {
    let (mut all, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/executions?limit=1000&cursor={c}"),
            None => "/v1/executions?limit=1000".to_owned(),
        };
        let (code, page) = s.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// The most of `runs` that ran at once, from their start and end times.
fn most_at_once(runs: &[Value]) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for e in runs {
        let at = |f: &str| {
            e[f].as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros())
        };
        if let (Some(start), Some(end)) = (at("started_at"), at("finished_at")) {
            edges.extend([(start, 1), (end, -1)]);
        }
    }
    // An end before a start at the same instant.
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_children_run_under_the_tenant_limit_and_fairly() {
    let s = Server::start_with(None, &["--workers", "8", "--tenant-limit", "4"], None);
    let (a, b) = (s.admin("tenant-a"), s.admin("tenant-b"));
    let fanout = s.upload(&a, "fanout").await;
    s.upload(&a, "test-sleep").await;
    let hello = s.upload(&b, "hello").await;
    let hello = hello["id"].as_str().expect("id").to_owned();
    let before = start_delays(&s, &b, &hello, 20).await;

    let began = Instant::now();
    let body = json!({ "plugin_id": fanout["id"], "input": {
        "count": 1000, "plugin": "test-sleep", "child_input": { "ms": 20 } } });
    let (code, parent) = s
        .call(Method::POST, "/v1/executions", Some(&a), Some(body))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{parent}");
    let path = format!("/v1/executions/{}", parent["id"].as_str().expect("id"));
    // Once its children are queued, tenant B runs beside them.
    loop {
        let (_, p) = s.call(Method::GET, &path, Some(&a), None).await;
        if p["waiting"]["children"].is_array() {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "no spawn: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = start_delays(&s, &b, &hello, 20).await;
    let (_, p) = s.call(Method::GET, &path, Some(&a), None).await;
    let still = p["waiting"]["children"].as_array().map_or(0, Vec::len);
    let done = loop {
        let (_, p) = s.call(Method::GET, &path, Some(&a), None).await;
        if p["status"] != "queued" && p["status"] != "running" {
            break p;
        }
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "not joined: {}",
            p["waiting"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = began.elapsed();
    assert_eq!(done["status"], "succeeded", "{}", done["outcome"]);
    assert_eq!(
        done["outcome"]["output"],
        json!({ "children": 1000, "succeeded": 1000, "sum": 20_000 })
    );

    let runs = all_executions(&s, &a).await;
    assert_eq!(runs.len(), 1001, "the parent and its children, each once");
    let children: Vec<Value> = runs
        .into_iter()
        .filter(|e| e["parent"].is_object())
        .collect();
    let most = most_at_once(&children);
    let p99 = |d: &[i64]| d[((d.len() as f64) * 0.99).ceil() as usize - 1];
    eprintln!(
        "fan-out of 1,000 joined in {took:?}; at most {most} children at once; \
         tenant B start delays (ms) before {before:?} (p99 {}), during {during:?} (p99 {}); \
         {still} children were still waiting after B's runs",
        p99(&before),
        p99(&during),
    );
    assert!(most <= 4, "the tenant limit is 4: {most} ran at once");
    assert!(still > 0, "B's runs were measured while the fan-out ran");
    // Without fairness B would wait behind up to 1,000 queued children.
    let bound = (p99(&before) * 3).max(1000);
    assert!(
        p99(&during) <= bound,
        "B's p99 start delay {} ms, before the fan-out {} ms",
        p99(&during),
        p99(&before)
    );
}
