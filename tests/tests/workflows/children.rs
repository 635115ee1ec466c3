//! Child runs: a fan-out joined and aggregated, a cancel that reaches the
//! children (but detached ones), nesting refused past its depth, and the
//! children bound — on both stores, on an injected clock.
//!
//! The plugin is `plugins/fanout`; children that wait are `test-workflow`
//! runs in a long durable sleep.

use super::{get, output, submit, workflow};
use std::time::Duration;
use taskhost_model::workflow::StepKind;
use taskhost_model::{Execution, ExecutionStatus};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::stores::Harness;

/// Ticks (a second of the clock apart) until `id` has ended; its runs.
async fn until_ended(h: &Harness, cluster: &Cluster, id: &str, ticks: usize) -> Execution {
    for _ in 0..ticks {
        cluster.tick().await;
        let e = get(h, id).await;
        if e.status.is_final() {
            return e;
        }
        h.clock.advance(Duration::from_secs(1));
    }
    panic!("not ended after {ticks} ticks: {:?}", get(h, id).await);
}

/// How many executions `acme` has.
async fn count(h: &Harness) -> usize {
    let request = taskhost_store::PageRequest {
        cursor: None,
        limit: Some(1000),
    };
    let filter = taskhost_store::ExecutionFilter::default();
    let page = h.store.list_executions("acme", &filter, &request).await;
    page.expect("list").items.len()
}

pub(crate) async fn a_fan_out_joins_its_children_and_aggregates(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 2, test_config()).await;
    let plugin = upload(&h.store, "acme", "fanout").await;
    let input = serde_json::json!({ "count": 20, "fail": [3] });
    let parent = submit(&cluster.nodes[0], workflow(&plugin.id, input)).await;
    let done = until_ended(&h, &cluster, &parent.id, 10).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let sum: i64 = (0..20i64).filter(|&i| i != 3).map(|i| i * i).sum();
    assert_eq!(
        output(&done),
        serde_json::json!({ "children": 20, "succeeded": 19, "sum": sum })
    );
    let kinds: Vec<(&str, StepKind)> = done
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [("fan-out", StepKind::Spawn), ("join", StepKind::Join)]
    );
    let ids: Vec<String> = serde_json::from_str(&done.steps[0].result).expect("ids");
    assert_eq!(ids.len(), 20);
    for (i, id) in ids.iter().enumerate() {
        let child = get(&h, id).await;
        let link = child.parent.clone().expect("a parent");
        assert_eq!((link.id.as_str(), link.depth), (parent.id.as_str(), 1));
        let expected = if i == 3 {
            ExecutionStatus::Failed
        } else {
            ExecutionStatus::Succeeded
        };
        assert_eq!(child.status, expected, "{child:?}");
        assert_eq!(cluster.starts.counts()[id], 1, "each child ran once");
    }
    // Replays returned the recorded children: no child was made twice.
    assert_eq!(count(&h).await, 21, "the parent and its 20 children");
    let runs = cluster.starts.counts()[&parent.id];
    assert!(
        (2..=6).contains(&runs),
        "the parent replayed a few times, not per child: {runs}"
    );
}

pub(crate) async fn cancelling_a_parent_cancels_its_children_but_detached_ones(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let plugin = upload(&h.store, "acme", "fanout").await;
    upload(&h.store, "acme", "test-workflow").await;
    let input = serde_json::json!({
        "count": 3, "plugin": "test-workflow", "detach": [0],
        "child_input": { "sleep_ms": 3_600_000 },
    });
    let parent = submit(node, workflow(&plugin.id, input)).await;
    for _ in 0..3 {
        cluster.tick().await;
    }
    let waiting = get(&h, &parent.id).await;
    let wait = waiting.waiting.clone().expect("joining");
    assert_eq!(
        (waiting.status, wait.children.len()),
        (ExecutionStatus::Queued, 3),
        "{waiting:?}"
    );
    node.cancel("acme", &parent.id)
        .await
        .expect("cancel")
        .expect("cancelled");
    assert_eq!(get(&h, &parent.id).await.status, ExecutionStatus::Cancelled);
    let children: Vec<Execution> =
        futures::future::join_all(wait.children.iter().map(|id| get(&h, id))).await;
    let statuses: Vec<(bool, ExecutionStatus)> = children
        .iter()
        .map(|c| (c.parent.as_ref().is_some_and(|p| p.detached), c.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (true, ExecutionStatus::Queued),
            (false, ExecutionStatus::Cancelled),
            (false, ExecutionStatus::Cancelled),
        ],
        "the detached child sleeps on"
    );
}

pub(crate) async fn nesting_is_refused_past_its_depth(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let plugin = upload(&h.store, "acme", "fanout").await;
    let input = serde_json::json!({ "nest": true });
    let top = submit(&cluster.nodes[0], workflow(&plugin.id, input)).await;
    let done = until_ended(&h, &cluster, &top.id, 30).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let out = output(&done);
    assert_eq!(out["depth"], 4, "{out}");
    let refused = out["refused"].as_str().unwrap_or_default();
    assert!(refused.contains("4 deep"), "{refused}");
}

pub(crate) async fn a_spawn_past_the_children_bound_is_refused(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let plugin = upload(&h.store, "acme", "fanout").await;
    let input = serde_json::json!({ "count": 1001 });
    let mut work = workflow(&plugin.id, input);
    work.policy.retry = Some(taskhost_model::RetryPolicy::ONCE);
    let e = submit(&cluster.nodes[0], work).await;
    cluster.tick().await;
    let done = get(&h, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Dead, "{done:?}");
    let error = done.outcome.and_then(|o| o.error).expect("an error");
    assert!(
        error.message.contains("would pass 1000 children"),
        "{}",
        error.message
    );
    assert_eq!(count(&h).await, 1, "no child was made");
}

/// A child the cancel's cascade cannot find — made by a spawn its parent
/// had not recorded when the cancel came (a node killed between the two) —
/// is cancelled when it would start; a detached one runs.
pub(crate) async fn a_child_the_cancel_could_not_find_is_cancelled_when_it_would_start(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let hello = upload(&h.store, "acme", "hello").await;
    let now = h.store.now();
    let parent = Execution::queued("acme", &hello.id, now + chrono::Duration::hours(1), now);
    h.store.create_execution(&parent).await.expect("create");
    let child = |detached: bool| {
        let mut e = Execution::queued("acme", &hello.id, now, now);
        e.policy.input = serde_json::json!({ "name": "child" });
        e.parent = Some(taskhost_model::workflow::Parent {
            id: parent.id.clone(),
            depth: 1,
            detached,
        });
        e
    };
    let (attached, detached) = (child(false), child(true));
    for e in [&attached, &detached] {
        h.store.create_execution(e).await.expect("create");
    }
    let cancelled = cluster.nodes[0].cancel("acme", &parent.id).await;
    let cancelled = cancelled.expect("cancel").expect("a queued parent");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    cluster.tick().await;
    assert_eq!(
        get(&h, &attached.id).await.status,
        ExecutionStatus::Cancelled
    );
    assert_eq!(
        get(&h, &detached.id).await.status,
        ExecutionStatus::Succeeded
    );
    let starts = cluster.starts.counts();
    assert_eq!(starts.get(&attached.id), None, "never started");
    assert_eq!(starts.get(&detached.id), Some(&1));
}

/// A node set tighter than the defaults (`--workflow-max-depth 2`,
/// `--workflow-max-children 3`, `--workflow-max-lifetime 1h`) holds its
/// workflows to its own bounds, and says so.
pub(crate) async fn a_node_holds_workflows_to_its_tighter_bounds(h: Harness) {
    let mut config = test_config();
    config.workflow_bounds = taskhost_model::workflow::WorkflowBounds {
        max_depth: 2,
        max_children: 3,
        max_lifetime: Duration::from_secs(3600),
        ..Default::default()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let fanout = upload(&h.store, "acme", "fanout").await;
    let nested = submit(
        &cluster.nodes[0],
        workflow(&fanout.id, serde_json::json!({ "nest": true })),
    )
    .await;
    let done = until_ended(&h, &cluster, &nested.id, 30).await;
    let out = output(&done);
    assert_eq!(out["depth"], 2, "{out}");
    let refused = out["refused"].as_str().unwrap_or_default();
    assert!(refused.contains("nest 2 deep"), "{refused}");

    let mut wide = workflow(&fanout.id, serde_json::json!({ "count": 4 }));
    wide.policy.retry = Some(taskhost_model::RetryPolicy::ONCE);
    let wide = submit(&cluster.nodes[0], wide).await;
    cluster.tick().await;
    let error = get(&h, &wide.id).await.outcome.and_then(|o| o.error);
    let message = error.expect("an error").message;
    assert!(message.contains("would pass 3 children"), "{message}");

    let sleeper = upload(&h.store, "acme", "test-workflow").await;
    let input = serde_json::json!({ "sleep_ms": 2 * 3_600_000 });
    let long = submit(&cluster.nodes[0], workflow(&sleeper.id, input)).await;
    cluster.tick().await;
    let asleep = get(&h, &long.id).await;
    assert_eq!(
        asleep.due_at,
        long.created_at + chrono::Duration::hours(1),
        "woken at the node's lifetime"
    );
    h.clock.advance(Duration::from_secs(3600));
    cluster.tick().await;
    let error = get(&h, &long.id).await.outcome.and_then(|o| o.error);
    let message = error.expect("an error").message;
    assert!(message.contains("lifetime of 1 hour"), "{message}");
}

pub(crate) async fn a_workflow_that_would_outlive_its_lifetime_ends_failed(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let plugin = upload(&h.store, "acme", "test-workflow").await;
    let days = |n: i64| chrono::Duration::days(n);
    let input = serde_json::json!({ "sleep_ms": days(31).num_milliseconds() });
    let e = submit(&cluster.nodes[0], workflow(&plugin.id, input)).await;
    cluster.tick().await;
    let asleep = get(&h, &e.id).await;
    assert_eq!(asleep.status, ExecutionStatus::Queued);
    assert_eq!(
        asleep.due_at,
        e.created_at + days(30),
        "woken at its lifetime's end"
    );
    h.clock.advance(Duration::from_secs(30 * 86_400));
    cluster.tick().await;
    let done = get(&h, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    let error = done.outcome.and_then(|o| o.error).expect("an error");
    assert!(
        error.message.contains("lifetime of 30 days"),
        "{}",
        error.message
    );
    assert!(!error.retryable);
}
