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

async fn suspend_and_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let clock = ManualClock::new(chrono::Utc::now());
    let cluster = Cluster::new(&url, &clock, 1, test_config()).await;
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        replayed_step().await;
        suspend_and_resume().await;
    });
}
