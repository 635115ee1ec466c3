//! Durable workflows (issue 27), on both stores, with in-process nodes on
//! an injected clock: a step that fails is retried from that step, the
//! steps before it not run again; a durable sleep frees its worker and the
//! execution wakes when the clock reaches its time; a replay that renames a
//! step fails as a non-deterministic workflow.
//!
//! The plugin (`plugins/test-workflow`) counts each step's runs in kv.

use std::time::Duration;
use taskhost_model::{Execution, ExecutionStatus, RetryPolicy};
use taskhost_runtime::{KvNamespace, KvStore};
use taskhost_scheduler::{Node, Work};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::metric_value;
use taskhost_tests::stores::Harness;

taskhost_tests::conformance!(
    a_failed_step_is_retried_from_that_step,
    a_durable_sleep_frees_its_worker_and_wakes_on_time,
    a_replay_that_renames_a_step_fails_as_non_deterministic,
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
