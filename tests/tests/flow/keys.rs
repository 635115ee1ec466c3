//! Concurrency keys through real processes sharing one store (issue 26,
//! acceptance 3): 50 runs with one key and limit 2, submitted to one of two
//! nodes, never run more than 2 at once (from the runs' own start and end
//! times) and all finish; 20 runs with a rate-limit key of 5 per second
//! start no faster, and 10 debounced submissions give one run with the last
//! input (acceptance 4); a node killed while its run holds a key's
//! only slot does not keep it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use taskhost_tests::server::Server;

/// The executions `ids`, once all are final (or the deadline passes).
async fn finished(s: &Server, token: &str, ids: &[String], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (status, page) = s
            .call(Method::GET, "/v1/executions?limit=1000", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items: Vec<Value> = page["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| ids.iter().any(|id| e["id"] == id.as_str()))
            .collect();
        let done = items
            .iter()
            .filter(|e| !matches!(e["status"].as_str(), Some("queued" | "running")))
            .count();
        if done == ids.len() {
            return items;
        }
        assert!(Instant::now() < deadline, "{done} of {} ended", ids.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The most runs that were running at one instant, by their start and end.
fn most_at_once(runs: &[Value]) -> usize {
    let time = |v: &Value| {
        let text = v.as_str().expect("a time");
        chrono::DateTime::parse_from_rfc3339(text).expect("rfc3339")
    };
    let mut edges: Vec<(chrono::DateTime<chrono::FixedOffset>, i32)> = Vec::new();
    for r in runs {
        edges.push((time(&r["started_at"]), 1));
        edges.push((time(&r["finished_at"]), -1));
    }
    // At one instant, an end comes before a start.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// Submits `runs` in one batch; the runs once all have ended.
async fn all_of(s: &Server, token: &str, runs: Vec<Value>) -> Vec<Value> {
    let body = json!({ "runs": runs });
    let (status, made) = s
        .call(
            Method::POST,
            "/v1/executions/batch",
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{made}");
    let ids: Vec<String> = serde_json::from_value(made["ids"].clone()).expect("ids");
    finished(s, token, &ids, Duration::from_secs(120)).await
}

fn run(plugin: &Value, ms: u64, key: &str, limit: u32) -> Value {
    json!({
        "plugin_id": plugin,
        "input": {"ms": ms},
        "limits": {"timeout": "5s"},
        "concurrency": {"key": key, "limit": limit},
    })
}

async fn concurrency_keys(store: &str) {
    let node =
        |id: &str| Server::start_with(Some(store), &["--node-id", id, "--lease", "3s"], None);
    let mut nodes: HashMap<&str, Server> = [("a", node("a")), ("b", node("b"))].into();
    let a = &nodes["a"];
    let token = a.admin("acme");
    let plugin = a.upload(&token, "test-sleep").await["id"].clone();

    let runs: Vec<Value> = (0..50)
        .map(|_| run(&plugin, 40, "customer-42", 2))
        .collect();
    let done = all_of(a, &token, runs).await;
    assert!(
        done.iter().all(|e| e["status"] == "succeeded"),
        "all 50 finish"
    );
    assert!(
        most_at_once(&done) <= 2,
        "never more than the limit at once"
    );
    assert_eq!(done[0]["concurrency"]["key"], "customer-42");

    // 20 runs with a rate-limit key of 5 per second: no 6 start within a second.
    let runs: Vec<Value> = (0..20)
        .map(|_| {
            json!({"plugin_id": plugin, "input": {"ms": 0},
                "rate_limit": {"key": "partner-api", "limit": 5, "per": "1s"}})
        })
        .collect();
    let done = all_of(a, &token, runs).await;
    assert!(
        done.iter().all(|e| e["status"] == "succeeded"),
        "all 20 start"
    );
    let mut starts: Vec<i64> = done
        .iter()
        .map(|e| {
            let text = e["started_at"].as_str().expect("started");
            chrono::DateTime::parse_from_rfc3339(text)
                .expect("time")
                .timestamp_millis()
        })
        .collect();
    starts.sort();
    for six in starts.windows(6) {
        assert!(six[5] - six[0] >= 1000, "6 starts within a second: {six:?}");
    }

    // 10 submissions with one debounce key, within its period, to either
    // node: one run, with the last input; the others debounced into it.
    // (The period is long enough for a slow store under a full test run:
    // with 2 s, SecantusDB once took longer than that for the burst, and
    // the first run of it was due, rightly, before the last came.)
    let mut ids = Vec::new();
    for n in 0..10 {
        let to = if n % 2 == 0 { a } else { &nodes["b"] };
        let body = json!({"plugin_id": plugin, "input": {"ms": 0, "n": n},
            "debounce": {"key": "sync-42", "period": "10s"}});
        let (status, made) = to
            .call(Method::POST, "/v1/executions", Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{made}");
        ids.push(made["id"].as_str().expect("id").to_owned());
    }
    let done = finished(a, &token, &ids, Duration::from_secs(60)).await;
    let ran: Vec<&Value> = done.iter().filter(|e| e["status"] == "succeeded").collect();
    assert_eq!(ran.len(), 1, "one run: {done:?}");
    assert_eq!(ran[0]["input"]["n"], 9, "with the last input");
    let by_id: HashMap<&str, &Value> = done
        .iter()
        .map(|e| (e["id"].as_str().unwrap_or(""), e))
        .collect();
    for e in done.iter().filter(|e| e["id"] != ran[0]["id"]) {
        assert_eq!(e["status"], "debounced", "{e}");
        // Its `debounced_into` leads to the run.
        let mut at: &Value = e;
        while at["status"] == "debounced" {
            at = by_id[at["debounced_into"].as_str().expect("into")];
        }
        assert_eq!(at["id"], ran[0]["id"]);
    }

    // A run holding the only slot of a key, on a node that is then killed.
    let (status, held) = a
        .call(
            Method::POST,
            "/v1/executions",
            Some(&token),
            Some(run(&plugin, 60_000, "k2", 1)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let held_id = held["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let (_, e) = a
            .call(
                Method::GET,
                &format!("/v1/executions/{held_id}"),
                Some(&token),
                None,
            )
            .await;
        if e["status"] == "running" {
            break e["node"].as_str().expect("node").to_owned();
        }
        assert!(Instant::now() < deadline, "the run did not start: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivor = if holder == "a" { "b" } else { "a" };
    drop(nodes.remove(holder.as_str()));
    let s = &nodes[survivor];
    let (status, next) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&token),
            Some(run(&plugin, 0, "k2", 1)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{next}");
    let next_id = next["id"].as_str().expect("id").to_owned();
    // The killed node's lease lapses (3 s), its run is run again (5 s at
    // most, its timeout) and the waiting one runs: the slot was not kept.
    let done = finished(s, &token, &[held_id, next_id], Duration::from_secs(60)).await;
    assert!(done.iter().any(|e| e["status"] == "succeeded"), "{done:?}");
    assert!(most_at_once(&done) <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_keys_hold_across_nodes_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("shared.db").display());
    concurrency_keys(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_keys_hold_across_nodes_mongodb() {
    let db = format!(
        "taskhost_flow_{}",
        taskhost_model::new_id().replace('-', "")
    );
    if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
        concurrency_keys(&url).await;
    }
}
