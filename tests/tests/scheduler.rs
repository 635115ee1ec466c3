//! The scheduler, driven by a manual clock: exact fires, catch-up after
//! downtime, several nodes on one store, overlap, cancel, retries, pause and
//! per-tenant limits. No test sleeps to wait for the scheduler.

use chrono::{DateTime, Duration as Span, Utc};
use std::collections::HashSet;
use std::time::Duration;
use taskhost_model::{
    CatchUp, CatchUpMode, Execution, ExecutionStatus, OverlapPolicy, RetryPolicy, Schedule, Trigger,
};
use taskhost_scheduler::{self, Node, Work, first_fire};
use taskhost_store::{ExecutionFilter, PageRequest, Store};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::stores::Harness;

fn schedule(tenant: &str, plugin_id: &str, trigger: Trigger, now: DateTime<Utc>) -> Schedule {
    let mut s = taskhost_tests::cluster::schedule(tenant, plugin_id, trigger, now);
    s.policy.input = serde_json::json!({"name": "cron"});
    s
}

/// An ad hoc run with the default retry policy (three attempts).
fn run_of(tenant: &str, plugin_id: &str) -> Work {
    let mut spec = Work::ad_hoc(tenant, plugin_id);
    spec.policy.retry = Some(RetryPolicy::default());
    spec
}

/// Makes an execution through the node's one enqueue path.
async fn submit(node: &Node, spec: Work) -> Execution {
    node.submit(spec).await.expect("a new execution")
}

async fn executions_of(store: &Store, tenant: &str, schedule_id: Option<&str>) -> Vec<Execution> {
    let filter = ExecutionFilter {
        schedule_id: schedule_id.map(str::to_owned),
        ..Default::default()
    };
    let mut all = Vec::new();
    let mut request = PageRequest {
        cursor: None,
        limit: Some(1000),
    };
    loop {
        let page = store
            .list_executions(tenant, &filter, &request)
            .await
            .expect("list");
        all.extend(page.items);
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => return all,
        }
    }
}

fn fire_times(executions: &[Execution]) -> Vec<DateTime<Utc>> {
    let mut fires: Vec<_> = executions.iter().filter_map(|e| e.fire_time).collect();
    fires.sort();
    fires
}

/// Several nodes on one store run a 1-second cron for 10 simulated minutes
/// plus 500 run-now executions: every fire runs exactly once.
/// `nodes` nodes on one store for `seconds` of the injected clock (a fire a
/// second, and an ad hoc run a second for the first five sixths): every
/// fire and run once. MongoDB runs a shorter window: the same checks,
/// within what SecantusDB (in Python) serves in a CI-sized time.
async fn every_fire_exactly_once(harness: Harness, nodes: usize, seconds: u32) {
    let clock = harness.clock.clone();
    let cluster = Cluster::new(&harness.url, &clock, nodes, test_config()).await;
    let store = &harness.store;
    let hello = upload(store, "acme", "hello").await;
    let start = store.now();
    let every_second = schedule(
        "acme",
        &hello.id,
        Trigger::Cron {
            expr: "* * * * * *".into(),
            timezone: "UTC".into(),
        },
        start,
    );
    store
        .create_schedule(&every_second)
        .await
        .expect("schedule");

    let mut adhoc = Vec::new();
    let adhoc_until = seconds * 5 / 6;
    for step in 1..=seconds {
        clock.advance(Duration::from_secs(1));
        if step <= adhoc_until {
            let mut e = run_of("acme", &hello.id);
            e.policy.input = serde_json::json!({"name": format!("adhoc-{step}")});
            let e = submit(&cluster.nodes[step as usize % nodes], e).await;
            adhoc.push(e.id);
        }
        cluster.tick().await;
    }
    cluster.tick().await;

    let fired = executions_of(store, "acme", Some(&every_second.id)).await;
    let expected: Vec<DateTime<Utc>> = (0..=i64::from(seconds))
        .map(|s| start + Span::seconds(s))
        .collect();
    assert_eq!(
        fire_times(&fired),
        expected,
        "one execution per fire, none missing"
    );
    let all = executions_of(store, "acme", None).await;
    let total = (seconds + 1 + adhoc_until) as usize;
    assert_eq!(all.len(), total);
    assert!(
        all.iter()
            .all(|e| e.status == ExecutionStatus::Succeeded && e.attempt == 1),
        "all succeeded once"
    );
    let starts = cluster.starts.counts();
    assert_eq!(starts.len(), total, "every execution ran");
    assert!(starts.values().all(|&n| n == 1), "no execution ran twice");
    let ran: HashSet<&String> = starts.keys().collect();
    assert!(adhoc.iter().all(|id| ran.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_sqlite_run_every_fire_once() {
    every_fire_exactly_once(Harness::sqlite().await, 2, 600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_sqlite_run_every_fire_once() {
    every_fire_exactly_once(Harness::sqlite().await, 3, 600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_mongodb_run_every_fire_once() {
    if let Some(h) = Harness::mongodb().await {
        every_fire_exactly_once(h, 2, 240).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_mongodb_run_every_fire_once() {
    if let Some(h) = Harness::mongodb().await {
        every_fire_exactly_once(h, 3, 240).await;
    }
}

#[tokio::test]
async fn catch_up_policies_after_six_hours_down() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let start = h.store.now();
    let mut ids = Vec::new();
    for mode in [CatchUpMode::Skip, CatchUpMode::Once, CatchUpMode::All] {
        let trigger = Trigger::Cron {
            expr: "*/5 * * * *".into(),
            timezone: "Europe/London".into(),
        };
        let mut s = schedule("acme", "p", trigger, start);
        s.catch_up = CatchUp {
            mode,
            window: Duration::from_secs(3600),
        };
        h.store.create_schedule(&s).await.expect("schedule");
        ids.push((mode, s.id));
    }
    h.clock.advance(Duration::from_secs(6 * 3600));
    cluster.nodes[0]
        .materialize_due(100)
        .await
        .expect("materialize");
    let at = |minutes: i64| start + Span::minutes(minutes);
    for (mode, id) in ids {
        let fires = fire_times(&executions_of(&h.store, "acme", Some(&id)).await);
        let expected: Vec<DateTime<Utc>> = match mode {
            CatchUpMode::Skip => vec![at(360)],
            CatchUpMode::Once => vec![at(355), at(360)],
            CatchUpMode::All => (300..=360).step_by(5).map(at).collect(),
        };
        assert_eq!(fires, expected, "{mode:?}");
        let s = h
            .store
            .get_schedule("acme", &id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            s.next_fire_at,
            Some(at(365)),
            "{mode:?} resumes with the next fire"
        );
        assert_eq!(s.last_fire_at, Some(at(360)));
    }
}

#[tokio::test]
async fn interval_and_once_fire_exactly() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let start = h.store.now();
    let interval = Trigger::Interval {
        every: Duration::from_secs(90),
        start_at: Some(start + Span::seconds(10)),
    };
    let every_90 = schedule("acme", "p", interval, start);
    let once = schedule(
        "acme",
        "p",
        Trigger::Once {
            at: start + Span::seconds(123),
        },
        start,
    );
    let manual = schedule("acme", "p", Trigger::Manual {}, start);
    for s in [&every_90, &once, &manual] {
        h.store.create_schedule(s).await.expect("schedule");
    }
    for _ in 0..120 {
        h.clock.advance(Duration::from_secs(5));
        cluster.nodes[0]
            .materialize_due(100)
            .await
            .expect("materialize");
    }
    let fires = fire_times(&executions_of(&h.store, "acme", Some(&every_90.id)).await);
    let expected: Vec<_> = (0..7).map(|k| start + Span::seconds(10 + 90 * k)).collect();
    assert_eq!(fires, expected);
    let fires = fire_times(&executions_of(&h.store, "acme", Some(&once.id)).await);
    assert_eq!(fires, vec![start + Span::seconds(123)]);
    assert!(
        executions_of(&h.store, "acme", Some(&manual.id))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn overlap_policies() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let start = h.store.now();
    let mut ids = Vec::new();
    for policy in [
        OverlapPolicy::Allow,
        OverlapPolicy::Skip,
        OverlapPolicy::BufferOne,
        OverlapPolicy::CancelPrevious,
    ] {
        let mut s = schedule(
            "acme",
            "p",
            Trigger::Cron {
                expr: "* * * * * *".into(),
                timezone: "UTC".into(),
            },
            start,
        );
        s.overlap = policy;
        h.store.create_schedule(&s).await.expect("schedule");
        ids.push((policy, s.id));
    }
    // Fire 0 materializes for all; then the first execution of each is claimed
    // (running) and fires 1 and 2 arrive while it runs.
    node.materialize_due(100).await.expect("materialize");
    for (_, id) in &ids {
        let first = executions_of(&h.store, "acme", Some(id)).await;
        h.store
            .claim(&first[0].id, "elsewhere", Duration::from_secs(60))
            .await
            .expect("claim")
            .expect("claimed");
    }
    for _ in 0..2 {
        h.clock.advance(Duration::from_secs(1));
        node.materialize_due(100).await.expect("materialize");
    }
    for (policy, id) in ids {
        let all = executions_of(&h.store, "acme", Some(&id)).await;
        let count = |status| all.iter().filter(|e| e.status == status).count();
        let (running, queued, cancelled) = (
            count(ExecutionStatus::Running),
            count(ExecutionStatus::Queued),
            count(ExecutionStatus::Cancelled),
        );
        match policy {
            OverlapPolicy::Allow => assert_eq!((all.len(), running, queued), (3, 1, 2)),
            OverlapPolicy::Skip => assert_eq!((all.len(), running), (1, 1)),
            OverlapPolicy::BufferOne => assert_eq!((all.len(), running, queued), (2, 1, 1)),
            OverlapPolicy::CancelPrevious => {
                // The running one was asked to stop; the queued fire 1 was cancelled by fire 2.
                assert_eq!((all.len(), queued, cancelled), (3, 1, 1));
                assert!(
                    all.iter()
                        .any(|e| e.status == ExecutionStatus::Running && e.cancel_requested)
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_queued_and_running_executions() {
    let h = Harness::sqlite().await;
    // A lease short enough that the cancel is seen soon, long enough that a
    // loaded machine renews it in time.
    let config = taskhost_scheduler::SchedulerConfig {
        lease: Duration::from_secs(2),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let node = &cluster.nodes[0];
    let sleep = upload(&h.store, "acme", "test-sleep").await;
    let now = h.store.now();
    let mut long = run_of("acme", &sleep.id);
    long.policy.input = serde_json::json!({"ms": 20_000});
    long.policy.limits.timeout = Duration::from_secs(60);
    let long = submit(node, long).await;
    let mut later = run_of("acme", &sleep.id);
    later.due_at = Some(now + Span::seconds(60));
    let later = submit(node, later).await;
    assert_eq!(node.tick().await.expect("tick"), 1);
    let queued = h
        .store
        .cancel("acme", &later.id)
        .await
        .expect("cancel")
        .expect("queued");
    assert_eq!(queued.status, ExecutionStatus::Cancelled);
    assert!(
        h.store
            .cancel("acme", &long.id)
            .await
            .expect("cancel")
            .expect("running")
            .cancel_requested
    );
    // The running node sees the request at its next lease renewal (every ~0.7 s)
    // and interrupts the plugin well before its 20 s are up.
    let started = std::time::Instant::now();
    node.drain().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let done = h
        .store
        .get_execution("acme", &long.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(done.status, ExecutionStatus::Cancelled);
}

#[tokio::test]
async fn retries_back_off_then_die_and_can_be_rerun() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let kv = upload(&h.store, "acme", "test-kv").await;
    let now = h.store.now();
    let _ = now;
    let mut flaky = run_of("acme", &kv.id);
    flaky.policy.input = serde_json::json!({"fail": "retryable"});
    flaky.policy.retry = Some(RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(15),
    });
    let flaky = submit(node, flaky).await;
    let mut fatal = run_of("acme", &kv.id);
    fatal.policy.input = serde_json::json!({"fail": "fatal"});
    let fatal = submit(node, fatal).await;

    cluster.tick().await;
    let f = h
        .store
        .get_execution("acme", &fatal.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (f.status, f.attempt),
        (ExecutionStatus::Failed, 1),
        "fatal errors are not retried"
    );
    let e = h
        .store
        .get_execution("acme", &flaky.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((e.status, e.attempt), (ExecutionStatus::Queued, 2));
    let delay = e.due_at - h.store.now();
    assert!(
        delay >= Span::seconds(5) && delay < Span::seconds(10),
        "first backoff in [5s, 10s): {delay}"
    );

    cluster.tick().await;
    assert_eq!(cluster.starts.total(), 2, "not retried before its backoff");
    h.clock.set(e.due_at);
    cluster.tick().await;
    let e = h
        .store
        .get_execution("acme", &flaky.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((e.status, e.attempt), (ExecutionStatus::Queued, 3));
    let delay = e.due_at - h.store.now();
    assert!(
        delay >= Span::milliseconds(7500) && delay < Span::seconds(15),
        "capped second backoff: {delay}"
    );
    h.clock.set(e.due_at);
    cluster.tick().await;
    let e = h
        .store
        .get_execution("acme", &flaky.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (e.status, e.attempt),
        (ExecutionStatus::Dead, 3),
        "dead after max attempts"
    );
    assert_eq!(
        e.outcome.and_then(|o| o.error).map(|err| err.message),
        Some("try me again".into())
    );

    let again = node
        .rerun("acme", &flaky.id)
        .await
        .expect("rerun")
        .expect("finished");
    assert_eq!((again.status, again.attempt), (ExecutionStatus::Queued, 1));
    assert!(
        node.rerun("globex", &flaky.id)
            .await
            .expect("rerun")
            .is_none(),
        "another tenant's id"
    );
}

#[tokio::test]
async fn pause_and_resume() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let start = h.store.now();
    let s = schedule(
        "acme",
        "p",
        Trigger::Cron {
            expr: "*/10 * * * * *".into(),
            timezone: "UTC".into(),
        },
        start,
    );
    h.store.create_schedule(&s).await.expect("schedule");
    let step = |secs| {
        h.clock.advance(Duration::from_secs(secs));
        node.materialize_due(10)
    };
    step(0).await.expect("materialize");
    step(10).await.expect("materialize");
    assert_eq!(executions_of(&h.store, "acme", Some(&s.id)).await.len(), 2);
    assert!(
        node.pause("acme", &s.id)
            .await
            .expect("pause")
            .expect("exists")
            .paused
    );
    assert_eq!(node.pause("globex", &s.id).await.expect("pause"), None);
    for _ in 0..6 {
        step(10).await.expect("materialize");
    }
    assert_eq!(
        executions_of(&h.store, "acme", Some(&s.id)).await.len(),
        2,
        "no fires while paused"
    );
    h.clock.advance(Duration::from_secs(5));
    let resumed = node
        .resume("acme", &s.id)
        .await
        .expect("resume")
        .expect("exists");
    assert_eq!(
        resumed.next_fire_at,
        Some(start + Span::seconds(80)),
        "next fire after now, no catch-up"
    );
    step(5).await.expect("materialize");
    let fires = fire_times(&executions_of(&h.store, "acme", Some(&s.id)).await);
    assert_eq!(
        fires,
        vec![start, start + Span::seconds(10), start + Span::seconds(80)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_limit_makes_work_wait_not_drop() {
    let h = Harness::sqlite().await;
    let config = taskhost_scheduler::SchedulerConfig {
        workers: 10,
        tenant_limit: 2,
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let node = &cluster.nodes[0];
    let a = upload(&h.store, "a", "test-sleep").await;
    let b = upload(&h.store, "b", "test-sleep").await;
    let now = h.store.now();
    for (tenant, plugin, n) in [("a", &a.id, 5), ("b", &b.id, 3)] {
        for _ in 0..n {
            let _ = now;
            let mut e = run_of(tenant, plugin);
            e.policy.input = serde_json::json!({"ms": 300});
            submit(node, e).await;
        }
    }
    assert_eq!(node.tick().await.expect("tick"), 4, "two per tenant");
    assert_eq!(node.in_flight(), 4);
    node.drain().await;
    let mut rounds = 1;
    while cluster.starts.total() < 8 {
        assert!(node.tick().await.expect("tick") <= 4);
        node.drain().await;
        rounds += 1;
    }
    assert_eq!(rounds, 3, "a's five runs need three rounds of two");
    let all: Vec<_> = [
        executions_of(&h.store, "a", None).await,
        executions_of(&h.store, "b", None).await,
    ]
    .concat();
    assert!(all.iter().all(|e| e.status == ExecutionStatus::Succeeded));
}

#[tokio::test]
async fn start_and_end_bounds_and_jitter() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let start = h.store.now();
    let mut s = schedule(
        "acme",
        "p",
        Trigger::Cron {
            expr: "*/10 * * * * *".into(),
            timezone: "UTC".into(),
        },
        start,
    );
    s.starts_at = Some(start + Span::seconds(25));
    s.ends_at = Some(start + Span::seconds(65));
    s.jitter = Duration::from_secs(3);
    s.next_fire_at = first_fire(&s, start).expect("valid");
    assert_eq!(s.next_fire_at, Some(start + Span::seconds(30)));
    h.store.create_schedule(&s).await.expect("schedule");
    for _ in 0..20 {
        h.clock.advance(Duration::from_secs(5));
        cluster.nodes[0]
            .materialize_due(10)
            .await
            .expect("materialize");
    }
    let executions = executions_of(&h.store, "acme", Some(&s.id)).await;
    let expected: Vec<_> = [30, 40, 50, 60].map(|t| start + Span::seconds(t)).to_vec();
    assert_eq!(fire_times(&executions), expected);
    for e in &executions {
        let delay = e.due_at - e.fire_time.expect("fire");
        assert!(
            delay >= Span::zero() && delay < Span::seconds(3),
            "jitter {delay}"
        );
    }
    let s = h
        .store
        .get_schedule("acme", &s.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(s.next_fire_at, None, "no fires after the end bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_unfinished_runs() {
    let h = Harness::sqlite().await;
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = cluster.nodes[0].clone();
    let sleep = upload(&h.store, "acme", "test-sleep").await;
    let now = h.store.now();
    let _ = now;
    let mut quick = run_of("acme", &sleep.id);
    quick.policy.input = serde_json::json!({"ms": 10});
    let mut slow = run_of("acme", &sleep.id);
    slow.policy.input = serde_json::json!({"ms": 30_000});
    slow.policy.limits.timeout = Duration::from_secs(60);
    let quick = submit(&node, quick).await;
    let slow = submit(&node, slow).await;
    node.heartbeat().await.expect("beat");
    assert_eq!(h.store.live_nodes().await.expect("nodes").len(), 1);
    // Shut down as soon as both runs have started; give runs 500 ms to finish.
    let starts = cluster.starts.clone();
    let shutdown = async move {
        while starts.total() < 2 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    node.run(shutdown, Duration::from_millis(500)).await;
    let quick = h
        .store
        .get_execution("acme", &quick.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        quick.status,
        ExecutionStatus::Succeeded,
        "finished within the grace period"
    );
    let slow = h
        .store
        .get_execution("acme", &slow.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (slow.status, slow.attempt, slow.lease_owner),
        (ExecutionStatus::Queued, 1, None),
        "released"
    );
    assert!(
        h.store.live_nodes().await.expect("nodes").is_empty(),
        "the node left"
    );
}

/// A run task that panics (here: the run observer) still gives back its
/// worker and its tenant slot: they are held by a guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_run_task_leaks_no_slot() {
    let h = Harness::sqlite().await;
    let observer: taskhost_scheduler::RunObserver = std::sync::Arc::new(|e: &Execution| {
        if e.policy.input["panic"] == true {
            panic!("a bug in a run task");
        }
    });
    let config = taskhost_scheduler::SchedulerConfig {
        workers: 4,
        tenant_limit: 2,
        ..test_config()
    };
    let node = Node::with_observer(
        config,
        h.store.clone(),
        taskhost_tests::cluster::shared_runtime(),
        Some(observer),
    );
    let hello = upload(&h.store, "acme", "hello").await;
    for i in 0..6 {
        let mut spec = run_of("acme", &hello.id);
        spec.policy.input = serde_json::json!({"panic": i % 2 == 0, "name": "p"});
        submit(&node, spec).await;
    }
    for _ in 0..4 {
        node.tick().await.expect("tick");
        node.drain().await;
    }
    assert_eq!(node.slots(), (4, 0), "every worker and tenant slot is free");
    let done = executions_of(&h.store, "acme", None).await;
    let succeeded = done
        .iter()
        .filter(|e| e.status == ExecutionStatus::Succeeded)
        .count();
    assert_eq!(succeeded, 3, "the runs that did not panic ran");
}
