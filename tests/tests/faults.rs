//! Host faults are not plugin faults, on both stores: a result save that
//! fails for a while is retried and recorded once; a store error before the
//! plugin starts costs no attempt; a node that cannot renew its lease stops
//! its run and another node's claim wins; a stale claim's late write is
//! refused; a wall-clock step makes a node renew at once, not run twice; and
//! a claim that comes back late is confirmed before its run starts.
//!
//! Faults are injected into the real store ([`taskhost_store::faults`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};
use taskhost_model::{Execution, ExecutionStatus, RetryPolicy};
use taskhost_scheduler::{Node, SchedulerConfig, Work};
use taskhost_store::faults::Op;
use taskhost_store::{Completion, Lease, Release};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::metric_value;
use taskhost_tests::stores::Harness;

/// One attempt only, as ad hoc runs have by default: a host fault that used
/// it up would fail the execution for good.
fn once(plugin_id: &str, input: serde_json::Value) -> Work {
    let mut spec = Work::ad_hoc("acme", plugin_id);
    spec.policy.retry = Some(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    spec.policy.input = input;
    spec.policy.limits.timeout = Duration::from_secs(60);
    spec
}

async fn submit(node: &Node, spec: Work) -> Execution {
    node.submit(spec).await.expect("a new execution")
}

async fn get(h: &Harness, id: &str) -> Execution {
    h.store
        .get_execution("acme", id)
        .await
        .expect("get")
        .expect("exists")
}

/// The value of one series in a node's /metrics text.
fn metric(node: &Node, series: &str) -> f64 {
    metric_value(&node.metrics().render(Default::default()), series)
}

async fn a_result_save_failing_for_5s_is_retried_and_recorded_once(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let hello = upload(&h.store, "acme", "hello").await;
    let e = submit(node, once(&hello.id, serde_json::json!({"name": "f"}))).await;
    node.store()
        .faults()
        .fail_for(Op::Complete, Duration::from_secs(5));
    cluster.tick().await;
    let e = get(&h, &e.id).await;
    assert_eq!(
        (e.status, e.attempt, e.host_faults),
        (ExecutionStatus::Succeeded, 1, 0),
        "{e:?}"
    );
    assert_eq!(cluster.starts.total(), 1, "ran once");
    assert!(metric(node, r#"taskhost_store_errors_total{op="complete"}"#) >= 1.0);
    cluster.tick().await;
    assert_eq!(cluster.starts.total(), 1, "nothing re-runs");
}

async fn a_store_error_before_the_plugin_starts_uses_no_attempt(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let hello = upload(&h.store, "acme", "hello").await;
    let e = submit(node, once(&hello.id, serde_json::json!({"name": "f"}))).await;
    node.store().faults().fail_times(Op::LoadPlugin, 1);
    cluster.tick().await;
    let back = get(&h, &e.id).await;
    assert_eq!(
        (back.status, back.attempt, back.host_faults, back.outcome),
        (ExecutionStatus::Queued, 1, 1, None),
        "back in the queue, no attempt used, no plugin outcome"
    );
    assert_eq!(cluster.starts.total(), 0, "the plugin never started");
    cluster.tick().await;
    let done = get(&h, &e.id).await;
    assert_eq!(
        (done.status, done.attempt, done.host_faults),
        (ExecutionStatus::Succeeded, 1, 1)
    );
    assert_eq!(metric(node, "taskhost_host_faults_total"), 1.0);
}

async fn a_node_that_cannot_renew_stops_its_run_and_another_claim_wins(h: Harness) {
    // A 3 s lease: renewed every second, trusted for 2 s.
    let config = SchedulerConfig {
        lease: Duration::from_secs(3),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 2, config).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let sleep = upload(&h.store, "acme", "test-sleep").await;
    let e = submit(a, once(&sleep.id, serde_json::json!({"ms": 4000}))).await;
    a.store()
        .faults()
        .fail_for(Op::Renew, Duration::from_secs(600));
    a.tick().await.expect("tick");
    a.drain().await;
    assert_eq!(
        metric(a, r#"taskhost_lease_losses_total{when="unconfirmed"}"#),
        1.0,
        "node A stopped its run when it could not renew"
    );
    let stopped = get(&h, &e.id).await;
    assert_eq!(stopped.status, ExecutionStatus::Running, "A wrote nothing");

    // Once the lease is over (by the store's clock), node B takes it over.
    h.clock.advance(Duration::from_secs(4));
    b.tick().await.expect("tick");
    b.drain().await;
    let done = get(&h, &e.id).await;
    assert_eq!(
        (
            done.status,
            done.attempt,
            done.host_faults,
            done.node.as_deref()
        ),
        (ExecutionStatus::Succeeded, 1, 1, Some("node-1"))
    );
    assert_eq!(
        cluster.starts.counts()[&e.id],
        2,
        "A's stopped run, B's run"
    );
}

async fn a_stale_claims_late_write_is_refused(h: Harness) {
    let store = &h.store;
    let e = Execution::queued("acme", "p", store.now(), store.now());
    store.create_execution(&e).await.expect("create");
    let lease = Duration::from_secs(30);
    let first = store
        .claim(&e.id, "node-a", lease)
        .await
        .expect("claim")
        .expect("claimed");
    let first = Lease::of(&first).expect("lease");
    // Node A loses touch; its lease expires and the execution is re-queued;
    // node A (same id, e.g. restarted) claims it again.
    h.clock.advance(Duration::from_secs(31));
    store
        .requeue_expired(10, &HashSet::new())
        .await
        .expect("requeue");
    let second = store
        .claim(&e.id, "node-a", lease)
        .await
        .expect("claim")
        .expect("claimed again");
    let second = Lease::of(&second).expect("lease");
    assert_ne!(first.token, second.token);
    let outcome = taskhost_runtime::Outcome::not_run(taskhost_runtime::Status::Failed, "late");
    assert!(
        store
            .complete(&e.id, &first, Completion::Finished(outcome.clone()))
            .await
            .expect("complete")
            .is_none(),
        "the first claim's late result is refused"
    );
    assert!(
        store
            .release(&e.id, &first, Release::HostFault)
            .await
            .expect("release")
            .is_none()
    );
    let done = store
        .complete(&e.id, &second, Completion::Finished(outcome))
        .await
        .expect("complete")
        .expect("the current claim writes");
    assert_eq!(done.status, ExecutionStatus::Failed);
}

async fn a_clock_step_past_the_lease_makes_the_node_renew_not_run_twice(h: Harness) {
    let config = SchedulerConfig {
        lease: Duration::from_secs(3),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let node = cluster.nodes[0].clone();
    let sleep = upload(&h.store, "acme", "test-sleep").await;
    let e = submit(&node, once(&sleep.id, serde_json::json!({"ms": 4000}))).await;
    let (store, id, clock, starts) = (
        h.store.clone(),
        e.id.clone(),
        h.clock.clone(),
        cluster.starts.clone(),
    );
    let watcher = node.clone();
    let driver = async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while starts.total() < 1 {
            assert!(Instant::now() < deadline, "the run did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Step this node's wall clock forward by more than the lease.
        clock.advance(Duration::from_secs(10));
        let stepped = store.now();
        let renewed_by = Instant::now() + Duration::from_secs(5);
        loop {
            let e = store.get_execution("acme", &id).await.expect("get");
            let e = e.expect("exists");
            if e.status.is_final() {
                break;
            }
            if e.lease_expires_at.is_some_and(|until| until > stepped) {
                break;
            }
            assert!(Instant::now() < renewed_by, "no renewal after the step");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The watch looks once a second: on a loaded machine a regular
        // renewal may come first.
        while metric(&watcher, "taskhost_clock_steps_total") < 1.0 {
            assert!(Instant::now() < renewed_by, "the clock step was not seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let e = store.get_execution("acme", &id).await.expect("get");
            if e.is_some_and(|e| e.status.is_final()) {
                break;
            }
            assert!(Instant::now() < deadline, "the run did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    node.run(driver, Duration::from_secs(5)).await;
    let done = get(&h, &e.id).await;
    assert_eq!(
        (done.status, done.attempt, done.host_faults),
        (ExecutionStatus::Succeeded, 1, 0),
        "{done:?}"
    );
    assert_eq!(cluster.starts.counts()[&e.id], 1, "ran once");
}

taskhost_tests::conformance!(
    a_result_save_failing_for_5s_is_retried_and_recorded_once,
    a_store_error_before_the_plugin_starts_uses_no_attempt,
    a_node_that_cannot_renew_stops_its_run_and_another_claim_wins,
    a_stale_claims_late_write_is_refused,
    a_clock_step_past_the_lease_makes_the_node_renew_not_run_twice,
    a_node_whose_store_refuses_writes_is_not_ready,
    a_run_whose_result_is_lost_leaves_none_of_its_kv_writes,
    a_claim_that_comes_back_late_is_confirmed_before_its_run,
);

/// A claim whose answer came back later than the node trusts its lease (a
/// slow store) is confirmed before its run starts: the run starts on the
/// renewed lease if nobody took it, and not at all if another node
/// re-queued it meanwhile (it may already run elsewhere).
async fn a_claim_that_comes_back_late_is_confirmed_before_its_run(h: Harness) {
    // A 3 s lease, trusted for 2 s; each claim's answer 2.5 s late.
    let config = SchedulerConfig {
        lease: Duration::from_secs(3),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 2, config).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let late = || {
        let delay = Duration::from_millis(2500);
        a.store().faults().slow_times(Op::Claim, delay, 1);
    };
    let before_start = r#"taskhost_lease_losses_total{when="before_start"}"#;
    let hello = upload(&h.store, "acme", "hello").await;

    let kept = submit(a, once(&hello.id, serde_json::json!({"name": "kept"}))).await;
    late();
    a.tick().await.expect("tick");
    a.drain().await;
    assert_eq!(get(&h, &kept.id).await.status, ExecutionStatus::Succeeded);
    assert_eq!(metric(a, before_start), 0.0, "confirmed, and run");
    assert_eq!(cluster.starts.total(), 1);

    let taken = submit(a, once(&hello.id, serde_json::json!({"name": "taken"}))).await;
    late();
    let claiming = {
        let a = a.clone();
        tokio::spawn(async move {
            a.tick().await.expect("tick");
            a.drain().await;
        })
    };
    let claimed_by = Instant::now() + Duration::from_secs(2);
    while get(&h, &taken.id).await.status != ExecutionStatus::Running {
        assert!(Instant::now() < claimed_by, "node A never claimed it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While A waits for its claim's answer, the lease runs out by the
    // store's clock, and node B re-queues the run.
    h.clock.advance(Duration::from_secs(4));
    assert_eq!(b.requeue_expired().await.expect("requeue"), 1);
    claiming.await.expect("node A's tick");
    assert_eq!(metric(a, before_start), 1.0, "A did not start it");
    assert_eq!(cluster.starts.total(), 1, "the re-queued run never started");
    let back = get(&h, &taken.id).await;
    assert_eq!(
        (back.status, back.attempt, back.host_faults),
        (ExecutionStatus::Queued, 1, 1),
        "{back:?}"
    );
}

/// Readiness follows the heartbeat, the node's regular store write: not
/// ready before the first, nor after one the store refused (a full disk),
/// ready again after the next that lands.
async fn a_node_whose_store_refuses_writes_is_not_ready(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    assert!(node.readiness().is_err(), "no heartbeat yet");
    node.heartbeat().await.expect("heartbeat");
    assert_eq!(node.readiness(), Ok(()));
    node.store().faults().fail_times(Op::Heartbeat, 1);
    assert!(node.heartbeat().await.is_err());
    let why = node.readiness().expect_err("not ready");
    assert!(why.contains("could not be written"), "{why}");
    node.heartbeat().await.expect("heartbeat");
    assert_eq!(node.readiness(), Ok(()));
}

/// Effects commit with the result: a run that wrote kv, but whose result
/// could not be saved before its lease lapsed, runs again — and sees the
/// state as it was, not its earlier try's writes (`count` is 1, not 2).
async fn a_run_whose_result_is_lost_leaves_none_of_its_kv_writes(h: Harness) {
    use taskhost_runtime::{KvNamespace, KvStore};
    let config = SchedulerConfig {
        lease: Duration::from_secs(3),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 2, config).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let kv = upload(&h.store, "acme", "test-kv").await;
    let e = submit(a, once(&kv.id, serde_json::json!({}))).await;
    // Node A runs it, and can neither save its result nor renew its lease.
    for op in [Op::Complete, Op::Renew] {
        a.store().faults().fail_for(op, Duration::from_secs(600));
    }
    a.tick().await.expect("tick");
    a.drain().await;
    assert_eq!(metric(a, "taskhost_results_unsaved_total"), 1.0);
    let ns = KvNamespace::new("acme", "test-kv");
    assert_eq!(h.store.kv_get(&ns, "count").await.expect("get"), None);

    h.clock.advance(Duration::from_secs(4));
    b.tick().await.expect("tick");
    b.drain().await;
    let done = get(&h, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let output: serde_json::Value = serde_json::from_slice(
        done.outcome
            .and_then(|o| o.output)
            .as_deref()
            .unwrap_or(b"null"),
    )
    .expect("JSON output");
    assert_eq!(
        output["count"], 1,
        "the second try saw none of the first's writes"
    );
    assert_eq!(cluster.starts.counts()[&e.id], 2, "ran twice");
    let count = h.store.kv_get(&ns, "count").await.expect("get");
    assert_eq!(count.as_deref(), Some(&b"1"[..]), "one try's writes");
}
