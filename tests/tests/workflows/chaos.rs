//! A 20-step workflow on two `taskhost serve` nodes sharing one store, with
//! the node running it SIGKILLed between its steps, again and again: the
//! execution ends succeeded, every step is recorded once and in order, and
//! by its kv counter each step's work was kept once (on MongoDB at most
//! once: see the README's "Crashes"). A kill
//! cuts a step in flight; that step runs again on the next run (its cut
//! try's kv write is never kept): the re-runs are counted in the runs.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost::api::auth::{Scope, mint_hs256};
use taskhost_tests::procs::NodeProc;
use taskhost_tests::server::SECRET;

const STEPS: usize = 20;
/// Kill the running node once the record holds this many steps.
const KILL_AT: [usize; 6] = [2, 5, 8, 11, 14, 17];

struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn call(
        &self,
        url: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{url}{path}"))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let code = response.status();
        Some((code, response.json().await.unwrap_or(Value::Null)))
    }
}

/// The first answer of any node that answers.
async fn ask(
    api: &Api,
    nodes: &[NodeProc],
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    for _ in 0..100 {
        for node in nodes {
            if let Some(answer) = api
                .call(&node.url(), method.clone(), path, body.clone())
                .await
            {
                return answer;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no node answers {path}");
}

async fn kills_between_steps(store: &str, dir: &std::path::Path) {
    taskhost::tls::install_provider();
    let extra = ["--lease", "3s", "--heartbeat", "1s", "--grace", "1s"];
    let mut nodes: Vec<NodeProc> = (0..2)
        .map(|i| NodeProc::new(&format!("node-{i}"), store, dir, &extra))
        .collect();
    for node in &mut nodes {
        node.start(Duration::from_secs(60)).expect("start a node");
    }
    let token = mint_hs256(
        SECRET.as_bytes(),
        "chaos",
        "acme",
        &Scope::ALL,
        Duration::from_secs(3600),
        chrono::Utc::now(),
    )
    .expect("token");
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client"),
        token,
    };
    let wasm = taskhost_tests::plugin("test-workflow");
    let upload = api
        .http
        .post(format!(
            "{}/v1/plugins?name=test-workflow&version=1.0.0",
            nodes[0].url()
        ))
        .bearer_auth(&api.token)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::CREATED);
    let plugin: Value = upload.json().await.expect("plugin");
    let body = json!({ "plugin_id": plugin["id"], "input": { "steps": STEPS, "step_ms": 300 },
        "limits": { "timeout": "5m" } });
    let (code, e) = ask(&api, &nodes, Method::POST, "/v1/executions", Some(body)).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{e}");
    let path = format!("/v1/executions/{}", e["id"].as_str().expect("id"));

    let (began, mut kills) = (Instant::now(), Vec::new());
    let done = loop {
        let (_, e) = ask(&api, &nodes, Method::GET, &path, None).await;
        if e["status"] != "queued" && e["status"] != "running" {
            break e;
        }
        assert!(began.elapsed() < Duration::from_secs(600), "not done: {e}");
        let recorded = e["steps"].as_array().map_or(0, Vec::len);
        let due = KILL_AT.get(kills.len()).is_some_and(|&at| recorded >= at);
        let owner = e["lease_owner"]
            .as_str()
            .filter(|_| e["status"] == "running");
        if let (true, Some(owner)) = (due, owner)
            && let Some(node) = nodes.iter_mut().find(|n| n.id == owner)
        {
            node.kill();
            kills.push((recorded, owner.to_owned()));
            node.start(Duration::from_secs(60))
                .expect("restart the node");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(kills.len(), KILL_AT.len(), "every kill landed: {kills:?}");
    let names: Vec<&str> = done["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    let expected: Vec<String> = (0..STEPS).map(|i| format!("s{i}")).collect();
    assert_eq!(names, expected, "every step recorded once, in order");
    let counts: Vec<u64> = done["outcome"]["output"]["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(counts.len(), STEPS, "{done}");
    // No step's work was kept twice. On SQLite a step's kv writes are in its
    // record's transaction: each is kept once. On MongoDB they follow the
    // record in a second write, kept at most once (README, "Crashes"): a
    // kill, or an answer lost, between the two loses them.
    assert!(
        counts.iter().all(|&n| n <= 1),
        "a step's work kept twice: {counts:?}"
    );
    let lost = counts.iter().filter(|&&n| n == 0).count();
    if store.starts_with("sqlite") {
        assert_eq!(lost, 0, "each step's work kept once: {counts:?}");
    }
    let runs =
        1 + done["host_faults"].as_u64().unwrap_or(0) + done["attempt"].as_u64().unwrap_or(1) - 1;
    let owners: std::collections::BTreeSet<&str> = kills.iter().map(|(_, o)| o.as_str()).collect();
    eprintln!(
        "{STEPS}-step workflow on {store:.9}: {} kills at steps {:?} on {owners:?}; {runs} runs; \
         {lost} steps' kv writes lost; {:?}",
        kills.len(),
        kills.iter().map(|k| k.0).collect::<Vec<_>>(),
        began.elapsed()
    );
    assert!(
        runs > KILL_AT.len() as u64,
        "each kill cut a run: {runs} runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_steps_with_kills_between_them_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite://{}", dir.path().join("chaos.db").display());
    kills_between_steps(&store, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_steps_with_kills_between_them_on_mongodb() {
    let database = format!("wfchaos{}", taskhost_model::new_id().replace('-', ""));
    let Some(url) = taskhost_tests::stores::mongodb_url(&database) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    kills_between_steps(&url, dir.path()).await;
}
