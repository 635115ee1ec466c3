//! What durable workflows cost: `cargo bench -p taskhost-tests --bench
//! workflows`.
//!
//! - A replayed step: runs of `test-workflow` with 200 trivial steps, all
//!   recorded already (replayed) or none (each recorded, in memory), against
//!   a run with none; per step, median of interleaved rounds.
//! - A suspend and resume: on SQLite, in-process, a three-step workflow
//!   with a durable sleep (its run to the sleep, then its run after it)
//!   against the same workflow without the sleep (one run); the difference
//!   is what the suspend and the resume add.
//! - A fan-out: on SQLite, in-process, one node of 64 workers, `fanout`
//!   spawning 1,000 children and joining them, end to end, against the same
//!   1,000 runs submitted as one batch and run to their end (no parent);
//!   the difference is what the workflow adds. The clock moves a second a
//!   tick, so the join's coalesced wake costs no wall time.

use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::clock::{ManualClock, SystemClock};
use taskhost_model::workflow::{NoSink, StepRecord};
use taskhost_runtime::{RunRequest, RunWorkflow, Runtime, RuntimeConfig};
use taskhost_scheduler::Work;
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::median;

const STEPS: usize = 200;

async fn run_ms(
    runtime: &Runtime,
    plugin: &taskhost_runtime::Plugin,
    steps: usize,
    recorded: Vec<StepRecord>,
) -> f64 {
    let mut request = RunRequest::new(format!("{{\"steps\": {steps}}}").into_bytes());
    request.workflow = Some(RunWorkflow {
        steps: recorded,
        sink: Arc::new(NoSink),
        clock: Arc::new(SystemClock),
        inbox: Vec::new(),
        waiting: None,
        bounds: Default::default(),
    });
    let started = Instant::now();
    let outcome = runtime.run(plugin, request).await;
    assert_eq!(outcome.status.as_str(), "succeeded", "{outcome:?}");
    started.elapsed().as_secs_f64() * 1e3
}

async fn replayed_step() {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let wasm = taskhost_tests::plugin("test-workflow");
    let plugin = runtime.prepare(&wasm).expect("plugin");
    let recorded: Vec<StepRecord> = (0..STEPS)
        .map(|i| StepRecord {
            name: format!("s{i}"),
            kind: Default::default(),
            bytes: 1,
            result: i.to_string(),
            completed_at: chrono::Utc::now(),
            attempt: 1,
        })
        .collect();
    let (mut none, mut fresh, mut replay) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..21 {
        none.push(run_ms(&runtime, &plugin, 0, Vec::new()).await);
        fresh.push(run_ms(&runtime, &plugin, STEPS, Vec::new()).await);
        replay.push(run_ms(&runtime, &plugin, STEPS, recorded.clone()).await);
    }
    let (base, fresh, replay) = (median(none), median(fresh), median(replay));
    let per = |t: f64| (t - base) * 1e3 / STEPS as f64;
    println!(
        "a run of {STEPS} steps: none {base:.2} ms; each recorded (in memory) {fresh:.2} ms = {:.1} µs a step; \
         each replayed {replay:.2} ms = {:.1} µs a step",
        per(fresh),
        per(replay)
    );
}

/// One node on a fresh SQLite file (kept while the folder lives), on an
/// injected clock.
async fn one_node() -> (tempfile::TempDir, ManualClock, Cluster) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let clock = ManualClock::new(chrono::Utc::now());
    let cluster = Cluster::new(&url, &clock, 1, test_config()).await;
    (dir, clock, cluster)
}

async fn suspend_and_resume() {
    let (_dir, clock, cluster) = one_node().await;
    let node = &cluster.nodes[0];
    let store = node.store().clone();
    let plugin = upload(&store, "acme", "test-workflow").await;
    let (mut plain, mut slept) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let mut work = Work::ad_hoc("acme", &plugin.id);
        work.policy.input = serde_json::json!({});
        node.submit(work).await.expect("submit");
        let started = Instant::now();
        cluster.tick().await;
        plain.push(started.elapsed().as_secs_f64() * 1e3);

        let mut work = Work::ad_hoc("acme", &plugin.id);
        work.policy.input = serde_json::json!({ "sleep_ms": 1 });
        node.submit(work).await.expect("submit");
        let started = Instant::now();
        cluster.tick().await;
        let to_sleep = started.elapsed();
        clock.advance(Duration::from_millis(1));
        let woken = Instant::now();
        cluster.tick().await;
        slept.push((to_sleep + woken.elapsed()).as_secs_f64() * 1e3);
    }
    let (plain, slept) = (median(plain), median(slept));
    println!(
        "sqlite: a three-step workflow, one run {plain:.2} ms; with a durable sleep (two runs) {slept:.2} ms: \
         the suspend and resume add {:.2} ms",
        slept - plain
    );
}

/// Ticks `cluster` (the clock a second a tick) until `done` says so.
async fn until(cluster: &Cluster, clock: &ManualClock, done: impl AsyncFn() -> bool) {
    for _ in 0..1_000 {
        cluster.tick().await;
        if done().await {
            return;
        }
        clock.advance(Duration::from_secs(1));
    }
    panic!("not done in 1,000 ticks");
}

async fn fan_out() {
    const CHILDREN: usize = 1_000;
    let (mut batch, mut workflow) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (_dir, clock, cluster) = one_node().await;
        let node = &cluster.nodes[0];
        let store = node.store().clone();
        let plugin = upload(&store, "acme", "fanout").await;

        let started = Instant::now();
        let work: Vec<Work> = (0..CHILDREN)
            .map(|i| {
                let mut w = Work::ad_hoc("acme", &plugin.id);
                w.policy.input = serde_json::json!({ "item": i });
                w
            })
            .collect();
        let ids: Vec<String> = node
            .intake(work, taskhost_scheduler::Admission::Submit)
            .await
            .expect("batch")
            .into_iter()
            .filter_map(|d| d.run().map(|e| e.id))
            .collect();
        let last = ids.last().expect("ids").clone();
        until(&cluster, &clock, async || {
            let e = store.get_execution("acme", &last).await.expect("get");
            e.is_some_and(|e| e.status.is_final())
        })
        .await;
        batch.push(started.elapsed().as_secs_f64() * 1e3);

        let started = Instant::now();
        let mut work = Work::ad_hoc("acme", &plugin.id);
        work.policy.input = serde_json::json!({ "count": CHILDREN });
        let parent = node.submit(work).await.expect("submit");
        until(&cluster, &clock, async || {
            let e = store.get_execution("acme", &parent.id).await.expect("get");
            e.is_some_and(|e| e.status.is_final())
        })
        .await;
        workflow.push(started.elapsed().as_secs_f64() * 1e3);
        let e = store
            .get_execution("acme", &parent.id)
            .await
            .expect("get")
            .expect("parent");
        assert_eq!(e.status.as_str(), "succeeded", "{:?}", e.outcome);
    }
    let (batch, workflow) = (median(batch), median(workflow));
    println!(
        "sqlite: {CHILDREN} runs as one batch, to their end, {batch:.0} ms; as the children of one \
         workflow (spawn, join, sum) {workflow:.0} ms: the workflow adds {:.0} ms ({:.2} ms a child)",
        workflow - batch,
        (workflow - batch) / CHILDREN as f64
    );
}

fn main() {
    let rt = taskhost_tests::bench_runtime();
    rt.block_on(async {
        replayed_step().await;
        suspend_and_resume().await;
        fan_out().await;
    });
}
