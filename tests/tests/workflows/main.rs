//! Durable workflows (issue 27), on both stores, with in-process nodes on
//! an injected clock: a step that fails is retried from that step, the
//! steps before it not run again; a durable sleep frees its worker and the
//! execution wakes when the clock reaches its time; a replay that renames a
//! step fails as a non-deterministic workflow.
//!
//! The plugin (`plugins/test-workflow`) counts each step's runs in kv.

use std::time::Duration;
use taskhost_model::event::Event;
use taskhost_model::{Execution, ExecutionStatus, RetryPolicy};
use taskhost_runtime::{KvNamespace, KvStore};
use taskhost_scheduler::{Delivered, DeliveryError, Node, Work};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::metric_value;
use taskhost_tests::stores::Harness;

mod chaos;
mod children;
mod fanout;

use children::*;

taskhost_tests::conformance!(
    a_fan_out_joins_its_children_and_aggregates,
    cancelling_a_parent_cancels_its_children_but_detached_ones,
    nesting_is_refused_past_its_depth,
    a_spawn_past_the_children_bound_is_refused,
    a_workflow_that_would_outlive_its_lifetime_ends_failed,
    a_node_holds_workflows_to_its_tighter_bounds,
    a_child_the_cancel_could_not_find_is_cancelled_when_it_would_start,
    a_tenant_event_wakes_the_runs_waiting_for_it,
    a_failed_step_is_retried_from_that_step,
    a_durable_sleep_frees_its_worker_and_wakes_on_time,
    a_replay_that_renames_a_step_fails_as_non_deterministic,
    an_event_resumes_a_waiting_run_and_a_timeout_the_other,
);

/// A run of the workflow with `input`, two attempts, retried at once.
fn workflow(plugin_id: &str, input: serde_json::Value) -> Work {
    let mut spec = Work::ad_hoc("acme", plugin_id);
    spec.policy.retry = Some(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::ZERO,
        ..RetryPolicy::default()
    });
    spec.policy.input = input;
    spec
}

async fn get(h: &Harness, id: &str) -> Execution {
    h.store
        .get_execution("acme", id)
        .await
        .expect("get")
        .expect("exists")
}

/// The step counters in kv: (one, two, three).
async fn counts(h: &Harness) -> (u64, u64, u64) {
    let ns = KvNamespace::new("acme", "test-workflow");
    let mut out = [0u64; 3];
    for (i, key) in ["one", "two", "three"].iter().enumerate() {
        let value = h.store.kv_get(&ns, key).await.expect("kv");
        out[i] = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    (out[0], out[1], out[2])
}

async fn submit(node: &Node, work: Work) -> Execution {
    node.submit(work).await.expect("an execution")
}

fn output(e: &Execution) -> serde_json::Value {
    let bytes = e.outcome.as_ref().and_then(|o| o.output.clone());
    serde_json::from_slice(bytes.as_deref().unwrap_or(b"null")).expect("JSON output")
}

async fn a_failed_step_is_retried_from_that_step(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let plugin = upload(&h.store, "acme", "test-workflow").await;
    let input = serde_json::json!({ "fail_two_once": true });
    let e = submit(&cluster.nodes[0], workflow(&plugin.id, input)).await;
    cluster.tick().await;
    let failed = get(&h, &e.id).await;
    assert_eq!(
        (failed.status, failed.attempt),
        (ExecutionStatus::Queued, 2),
        "{failed:?}"
    );
    let names: Vec<&str> = failed.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["one"], "step one is recorded, step two is not");
    cluster.tick().await;
    let done = get(&h, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let names: Vec<&str> = done.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["one", "two", "three"]);
    assert_eq!(counts(&h).await, (1, 2, 1), "steps one and three ran once");
    assert_eq!(output(&done)["one"], 1, "step one's result, replayed");
    assert_eq!(cluster.starts.counts()[&e.id], 2);
}

async fn a_durable_sleep_frees_its_worker_and_wakes_on_time(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let plugin = upload(&h.store, "acme", "test-workflow").await;
    let input = serde_json::json!({ "sleep_ms": 2000 });
    let e = submit(node, workflow(&plugin.id, input)).await;
    let reached = h.store.now();
    cluster.tick().await;
    let asleep = get(&h, &e.id).await;
    assert_eq!(
        (asleep.status, asleep.attempt),
        (ExecutionStatus::Queued, 1),
        "no attempt used"
    );
    let outcome = asleep.outcome.clone().expect("the run's outcome");
    assert_eq!(outcome.status.as_str(), "suspended");
    let wake = reached + chrono::Duration::seconds(2);
    assert_eq!(outcome.suspended_until, Some(wake));
    assert_eq!(asleep.due_at, wake);
    let running = |n: &Node| {
        metric_value(
            &n.metrics().render(Default::default()),
            "taskhost_runs_in_flight",
        )
    };
    assert_eq!(running(node), 0.0, "the sleep holds no worker");
    // Not before its time.
    h.clock.advance(Duration::from_millis(1500));
    cluster.tick().await;
    assert_eq!(get(&h, &e.id).await.status, ExecutionStatus::Queued);
    h.clock.advance(Duration::from_millis(600));
    cluster.tick().await;
    let done = get(&h, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let names: Vec<&str> = done.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["one", "two", "nap", "three"]);
    assert_eq!(counts(&h).await, (1, 1, 1), "no step ran twice");
    assert_eq!(
        cluster.starts.counts()[&e.id],
        2,
        "the run before the sleep, the one after"
    );
}

async fn a_replay_that_renames_a_step_fails_as_non_deterministic(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let plugin = upload(&h.store, "acme", "test-workflow").await;
    let input = serde_json::json!({ "rename_on_retry": true });
    let e = submit(&cluster.nodes[0], workflow(&plugin.id, input)).await;
    cluster.tick().await;
    cluster.tick().await;
    let done = get(&h, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    let error = done.outcome.and_then(|o| o.error).expect("an error");
    assert!(
        error.message.contains("non-deterministic workflow"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("`one`") && error.message.contains("`uno`"),
        "{}",
        error.message
    );
    assert!(!error.retryable);
}

fn event(name: &str, data: serde_json::Value) -> Event {
    Event {
        id: taskhost_model::new_id(),
        name: name.into(),
        tenant: "acme".into(),
        data,
        received_at: chrono::Utc::now(),
        hook: None,
    }
}

async fn a_tenant_event_wakes_the_runs_waiting_for_it(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let plugin = upload(&h.store, "acme", "test-workflow").await;
    let waiting = |order: u32| {
        serde_json::json!({ "wait": {
            "event": "approved", "filter": { "order": order }, "timeout_ms": 60_000 } })
    };
    let first = submit(node, workflow(&plugin.id, waiting(1))).await;
    let second = submit(node, workflow(&plugin.id, waiting(2))).await;
    cluster.tick().await;
    let sent = event("approved", serde_json::json!({ "order": 1, "by": "ada" }));
    let woke = node.deliver_to_waiting(&sent).await.expect("deliver");
    assert_eq!(
        woke,
        vec![first.id.clone()],
        "only the run whose filter it matches"
    );
    let again = node.deliver_to_waiting(&sent).await.expect("deliver again");
    assert!(again.is_empty(), "the same event wakes nothing twice");
    cluster.tick().await;
    let done = get(&h, &first.id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(output(&done)["approval"]["data"]["by"], "ada");
    let other = get(&h, &second.id).await;
    assert_eq!(other.status, ExecutionStatus::Queued);
    assert!(
        other.inbox.is_empty(),
        "an event it does not wait for is not kept"
    );
}

async fn an_event_resumes_a_waiting_run_and_a_timeout_the_other(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let plugin = upload(&h.store, "acme", "test-workflow").await;
    let input = serde_json::json!({ "wait": {
        "event": "approved", "filter": { "order": 1 }, "timeout_ms": 5000 } });
    let approved = submit(node, workflow(&plugin.id, input.clone())).await;
    let ignored = submit(node, workflow(&plugin.id, input)).await;
    let began = h.store.now();
    cluster.tick().await;
    for e in [&approved, &ignored] {
        let waiting = get(&h, &e.id).await;
        assert_eq!(waiting.status, ExecutionStatus::Queued, "{waiting:?}");
        let wait = waiting
            .waiting
            .clone()
            .unwrap_or_else(|| panic!("what it waits for: {waiting:?}"));
        assert_eq!(
            (wait.step.as_str(), wait.event.as_str()),
            ("approval", "approved")
        );
        assert_eq!(
            waiting.due_at,
            began + chrono::Duration::seconds(5),
            "its timeout"
        );
    }
    // Another order's approval is kept, and wakes nothing; this order's does.
    let other = node
        .send_to_execution(
            "acme",
            &approved.id,
            event("approved", serde_json::json!({"order": 2})),
        )
        .await
        .expect("sent");
    assert_eq!(other, Delivered::Kept { woke: false });
    let mine = event("approved", serde_json::json!({"order": 1, "by": "ada"}));
    let sent = node
        .send_to_execution("acme", &approved.id, mine.clone())
        .await;
    assert_eq!(sent.expect("sent"), Delivered::Kept { woke: true });
    let again = node.send_to_execution("acme", &approved.id, mine).await;
    assert_eq!(again.expect("sent"), Delivered::Duplicate);
    cluster.tick().await;
    let done = get(&h, &approved.id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(output(&done)["approval"]["data"]["by"], "ada");
    assert_eq!(done.inbox.len(), 1, "the other order's event is not taken");
    assert!(done.waiting.is_none());
    let ended = node
        .send_to_execution(
            "acme",
            &approved.id,
            event("approved", serde_json::json!({})),
        )
        .await;
    assert!(matches!(ended, Err(DeliveryError::Ended(_))), "{ended:?}");

    // The other times out: its step's result is null.
    assert_eq!(get(&h, &ignored.id).await.status, ExecutionStatus::Queued);
    h.clock.advance(Duration::from_secs(5));
    cluster.tick().await;
    let timed_out = get(&h, &ignored.id).await;
    assert_eq!(
        timed_out.status,
        ExecutionStatus::Succeeded,
        "{timed_out:?}"
    );
    assert_eq!(output(&timed_out)["approval"], serde_json::Value::Null);
    let names: Vec<&str> = timed_out.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["one", "two", "approval", "three"]);
}

/// The same through the real binary and HTTP: `POST
/// /v1/executions/{id}/events` wakes a workflow waiting for that event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_through_the_api_resumes_a_waiting_run() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;
    let s = taskhost_tests::server::Server::start(None);
    let token = s.admin("acme");
    let plugin = s.upload(&token, "test-workflow").await;
    let body = json!({ "plugin_id": plugin["id"], "input": { "wait": {
        "event": "approved", "timeout_ms": 600_000 } } });
    let (code, e) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{e}");
    let path = format!("/v1/executions/{}", e["id"].as_str().expect("id"));
    let until = |want: &'static str| {
        let (s, token, path) = (&s, &token, &path);
        async move {
            let started = std::time::Instant::now();
            loop {
                let (_, e) = s.call(Method::GET, path, Some(token), None).await;
                let done = match want {
                    "waiting" => e.get("waiting").is_some(),
                    _ => e["status"] == want,
                };
                if done || started.elapsed() > Duration::from_secs(30) {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let waiting = until("waiting").await;
    assert_eq!(waiting["waiting"]["event"], "approved", "{waiting}");
    assert_eq!(waiting["outcome"]["status"], "suspended");
    let event = json!({ "name": "approved", "data": { "by": "ada" } });
    let (code, sent) = s
        .call(
            Method::POST,
            &format!("{path}/events"),
            Some(&token),
            Some(event),
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["woke"], true);
    let done = until("succeeded").await;
    assert_eq!(
        done["outcome"]["output"]["approval"]["data"]["by"], "ada",
        "{done}"
    );
    // Unknown executions are 404, ended ones 409.
    let event = json!({ "name": "approved" });
    let (code, _) = s
        .call(
            Method::POST,
            "/v1/executions/nope/events",
            Some(&token),
            Some(event.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = s
        .call(
            Method::POST,
            &format!("{path}/events"),
            Some(&token),
            Some(event),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    // A list shows each step's size, not its result; the record shows both.
    let (_, page) = s
        .call(Method::GET, "/v1/executions", Some(&token), None)
        .await;
    let listed = &page["items"][0]["steps"];
    assert_eq!(listed[2]["name"], "approval", "{page}");
    assert!(
        listed[2]["result"] == "" && listed[2]["bytes"].as_u64() > Some(10),
        "{listed}"
    );
    assert_eq!(done["steps"][2]["kind"], "event", "{done}");
    assert!(
        done["steps"][2]["result"]
            .as_str()
            .is_some_and(|r| r.contains("ada"))
    );
    // The console's execution page draws the timeline.
    let page = reqwest::Client::new()
        .get(s.at(&format!("/executions/{}", done["id"].as_str().expect("id"))))
        .header("cookie", format!("taskhost_session={token}"))
        .send()
        .await
        .expect("console");
    let html = page.text().await.expect("html");
    for shown in ["Workflow", "approval", ">event<", ">one<", ">three<"] {
        assert!(html.contains(shown), "{shown} not on the page");
    }
}
