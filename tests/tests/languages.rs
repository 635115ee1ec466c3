//! Python and JavaScript plugins, built from source with their SDKs' pinned
//! tools (componentize-py, ComponentizeJS): run with `taskhost run`, under
//! the runtime's limits, and through the API on a schedule.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use taskhost_runtime::{Limits, RunRequest, Runtime, RuntimeConfig, Status};
use taskhost_tests::langs::{self, Lang};
use taskhost_tests::server::Server;
use taskhost_tests::taskhost_bin;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            max_concurrent_runs: 8,
            ..RuntimeConfig::default()
        })
        .expect("runtime")
    })
}

/// `taskhost run` on the language's hello: the same output and log line as
/// the Rust hello, with the default limits.
fn hello_with_taskhost_run(lang: Lang) {
    if !langs::tools_or_skip("hello_with_taskhost_run") {
        return;
    }
    let wasm = langs::build(lang, &format!("hello-{}", lang.suffix()));
    let output = Command::new(taskhost_bin())
        .arg("run")
        .arg(&wasm)
        .args(["--input", r#"{"name":"Ada"}"#])
        .output()
        .expect("taskhost run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["output"], "Hello, Ada!");
    assert_eq!(outcome["logs"][0]["message"], "greeting Ada");
    assert_eq!(outcome["logs"][0]["level"], "info");
}

#[test]
fn python_hello_with_taskhost_run() {
    hello_with_taskhost_run(Lang::Python);
}

#[test]
fn js_hello_with_taskhost_run() {
    hello_with_taskhost_run(Lang::Js);
}

/// Each misbehaviour ends with its own status, and the runtime goes on.
async fn misbehaviour_ends_with_its_status(lang: Lang) {
    if !langs::tools_or_skip("misbehaviour_ends_with_its_status") {
        return;
    }
    let wasm = std::fs::read(langs::build(lang, &format!("test-{}", lang.suffix()))).expect("read");
    let plugin = {
        let wasm = wasm.clone();
        tokio::task::spawn_blocking(move || runtime().prepare(&wasm))
            .await
            .expect("join")
            .expect("the plugin validates")
    };
    let run = |input: Value, limits: Limits| {
        let mut request = RunRequest::new(input.to_string().as_bytes());
        request.limits = limits;
        runtime().run(&plugin, request)
    };

    let outcome = run(json!({"mode": "loop"}), Limits::default()).await;
    assert_eq!(outcome.status, Status::OutOfFuel, "{outcome:?}");

    let limits = Limits {
        fuel: u64::MAX / 4,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let outcome = run(json!({"mode": "loop"}), limits).await;
    assert_eq!(outcome.status, Status::TimedOut, "{outcome:?}");

    let limits = Limits {
        memory_bytes: 48 << 20,
        ..Limits::default()
    };
    let outcome = run(json!({"mode": "memhog"}), limits).await;
    assert_eq!(outcome.status, Status::MemoryLimit, "{outcome:?}");
    assert!(outcome.peak_memory_bytes <= 48 << 20, "{outcome:?}");

    let outcome = run(json!({"mode": "fatal"}), Limits::default()).await;
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    assert!(!outcome.error.as_ref().expect("error").retryable);

    if lang == Lang::Python {
        let outcome = run(json!({"mode": "exit"}), Limits::default()).await;
        assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
        let error = outcome.error.as_ref().expect("error");
        assert!(!error.retryable, "{outcome:?}");
        assert!(error.message.contains("sys.exit(3)"), "{}", error.message);
    }

    let outcome = run(json!(null), Limits::default()).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_misbehaviour_ends_with_its_status() {
    misbehaviour_ends_with_its_status(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn js_misbehaviour_ends_with_its_status() {
    misbehaviour_ends_with_its_status(Lang::Js).await;
}

/// Through the API: the upload of a large interpreter component; a schedule
/// every second whose runs count in kv (state kept across runs); an ad hoc
/// run failing retryably until its second attempt, retried to success.
async fn on_a_schedule_through_the_api(lang: Lang) {
    if !langs::tools_or_skip("on_a_schedule_through_the_api") {
        return;
    }
    let wasm = std::fs::read(langs::build(lang, &format!("test-{}", lang.suffix()))).expect("read");
    let s = Server::start(None);
    let token = s.admin("team");
    let response = s
        .client
        .post(s.at("/v1/plugins?name=counter&version=1.0.0"))
        .bearer_auth(&token)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    let status = response.status();
    let plugin: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let plugin_id = plugin["id"].as_str().expect("id").to_owned();

    let (status, schedule) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&token),
            Some(json!({
                "name": "count",
                "plugin_id": plugin_id,
                "trigger": {"kind": "interval", "every": "1s"},
                "overlap": "skip",
                "input": {"mode": "count"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let schedule_id = schedule["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/executions?schedule_id={schedule_id}&status=succeeded");
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let (_, page) = s.call(Method::GET, &path, Some(&token), None).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 3 {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 3 runs in 60 s: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/schedules/{schedule_id}/pause"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Newest first; each run saw the count the one before it left.
    let mut counts: Vec<i64> = runs
        .iter()
        .filter_map(|r| r["outcome"]["output"].as_i64())
        .collect();
    counts.sort_unstable();
    assert_eq!(counts.len(), runs.len(), "{runs:?}");
    for pair in counts.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{counts:?}");
    }
    assert_eq!(counts[0], 1, "{counts:?}");

    let (status, run) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&token),
            Some(json!({
                "plugin_id": plugin_id,
                "input": {"mode": "retry", "fail_until_attempt": 2},
                "retry": {"max_attempts": 3, "initial_backoff": "100ms", "max_backoff": "100ms"},
                "wait": "25s",
            })),
        )
        .await;
    assert!(status.is_success(), "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 2, "{run}");
    assert_eq!(run["outcome"]["output"], json!({"attempt": 2}), "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_on_a_schedule_through_the_api() {
    on_a_schedule_through_the_api(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn js_on_a_schedule_through_the_api() {
    on_a_schedule_through_the_api(Lang::Js).await;
}

/// Outbound HTTP from each language's SDK (`taskhost_sdk.http` in Python,
/// `fetch` in JavaScript), to a local server the run is granted; without the
/// grant the request is refused and recorded.
async fn outbound_http(lang: Lang) {
    if !langs::tools_or_skip("outbound_http") {
        return;
    }
    let wasm = langs::build(lang, &format!("test-{}", lang.suffix()));
    let web = taskhost_tests::receiver::Receiver::start(0).await;
    let mode = match lang {
        Lang::Python => "http",
        Lang::Js => "fetch",
    };
    let input = json!({"mode": mode, "url": web.url("/ok")}).to_string();
    let host = format!("127.0.0.1:{}", web.port);
    let run = |grant: bool| {
        let mut command = Command::new(taskhost_bin());
        command.arg("run").arg(&wasm).args(["--input", &input]);
        command.args(["--allow-range", "127.0.0.0/8", "--allow-http"]);
        if grant {
            command.args(["--allow-host", &host]);
        }
        tokio::task::spawn_blocking(move || command.output().expect("taskhost run"))
    };

    let output = run(true).await.expect("join");
    let outcome: Value = serde_json::from_slice(&output.stdout).expect("outcome");
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["output"]["status"], 200, "{outcome}");
    assert_eq!(outcome["output"]["body"], "hello", "{outcome}");
    assert_eq!(outcome["http"][0]["status"], 200, "{outcome}");
    assert_eq!(outcome["http"][0]["path"], "/ok", "{outcome}");

    let output = run(false).await.expect("join");
    let outcome: Value = serde_json::from_slice(&output.stdout).expect("outcome");
    assert_eq!(outcome["status"], "failed", "{outcome}");
    assert!(
        outcome["http"][0]["refused"]
            .as_str()
            .unwrap_or_default()
            .contains("granted no hosts"),
        "{outcome}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_outbound_http() {
    outbound_http(Lang::Python).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn js_outbound_http() {
    outbound_http(Lang::Js).await;
}

taskhost_tests::both_stores!(python_workflows, js_workflows);

async fn python_workflows(s: Server) {
    workflows_through_the_api(s, Lang::Python).await;
}

async fn js_workflows(s: Server) {
    workflows_through_the_api(s, Lang::Js).await;
}

/// Polls `id` until `done` holds (or 180 s pass: the MongoDB leg runs on
/// SecantusDB, slow under the whole suite): the execution.
async fn until(s: &Server, token: &str, id: &Value, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/v1/executions/{}", id.as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, e) = s.call(Method::GET, &path, Some(token), None).await;
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "not so in 180 s: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SDK's workflows through the API, on each store: step two fails once
/// and is retried from there (steps one and three run once), with a sleep
/// between two and three; a sleep holds no worker; an event sent to the
/// tenant resumes the run waiting for it and a timeout the other; a fan-out
/// to three children, joined.
async fn workflows_through_the_api(s: Server, lang: Lang) {
    if !langs::tools_or_skip("workflows_through_the_api") {
        return;
    }
    let wasm = std::fs::read(langs::build(lang, &format!("test-{}", lang.suffix()))).expect("read");
    let token = s.admin("team");
    let response = s
        .client
        .post(s.at("/v1/plugins?name=flow&version=1.0.0"))
        .bearer_auth(&token)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let plugin: Value = response.json().await.expect("json");
    let plugin_id = plugin["id"].as_str().expect("id").to_owned();
    let submit = |input: Value, retry: bool| {
        let mut body = json!({ "plugin_id": plugin_id, "input": input });
        if retry {
            body["retry"] =
                json!({"max_attempts": 2, "initial_backoff": "100ms", "max_backoff": "100ms"});
        }
        let (s, token) = (&s, &token);
        async move {
            let (status, run) = s
                .call(Method::POST, "/v1/executions", Some(token), Some(body))
                .await;
            assert!(status.is_success(), "{run}");
            run["id"].clone()
        }
    };
    let ended = |e: &Value| e["status"] == "succeeded" || e["status"] == "failed";

    let id = submit(
        json!({"mode": "workflow", "fail_two_once": true, "sleep_ms": 300}),
        true,
    )
    .await;
    let done = until(&s, &token, &id, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["outcome"]["output"],
        json!({"one": 1, "two": 2, "three": 1}),
        "{done}"
    );
    let names: Vec<&str> = done["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["one", "two", "nap", "three"], "{done}");

    // A sleep holds no worker.
    let id = submit(json!({"mode": "workflow", "sleep_ms": 3000}), false).await;
    let asleep = until(&s, &token, &id, |e| e["outcome"]["status"] == "suspended").await;
    assert_eq!(asleep["status"], "queued", "{asleep}");
    let metrics = s
        .client
        .get(s.at("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        taskhost_tests::metric_value(&metrics, "taskhost_runs_in_flight"),
        0.0
    );
    until(&s, &token, &id, |e| e["status"] == "succeeded").await;

    // The tenant's event wakes the run waiting for it; the other times out.
    let wait = |order: u32, timeout_ms: u64| json!({"mode": "workflow", "wait": {"event": "approved", "filter": {"order": order}, "timeout_ms": timeout_ms}});
    let approved = submit(wait(1, 60_000), false).await;
    let timed_out = submit(wait(2, 1_500), false).await;
    until(&s, &token, &approved, |e| {
        e["waiting"]["event"] == "approved"
    })
    .await;
    let event = json!({"name": "approved", "data": {"order": 1, "by": "ada"}});
    let (status, sent) = s
        .call(Method::POST, "/v1/events", Some(&token), Some(event))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["woke"], json!([approved]), "{sent}");
    let done = until(&s, &token, &approved, ended).await;
    assert_eq!(
        done["outcome"]["output"]["approval"]["data"]["by"], "ada",
        "{done}"
    );
    let done = until(&s, &token, &timed_out, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["outcome"]["output"]["approval"], Value::Null, "{done}");

    // Child runs: three children of the same plugin, joined.
    let id = submit(
        json!({"mode": "fanout", "count": 3, "plugin": plugin_id}),
        false,
    )
    .await;
    let done = until(&s, &token, &id, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["outcome"]["output"], json!(5), "0 + 1 + 4: {done}");
}
