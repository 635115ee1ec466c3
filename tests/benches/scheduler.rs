//! Scheduler benchmark on the embedded store with the `hello` plugin:
//! `cargo bench -p taskhost-tests --bench scheduler`.
//!
//! 1. schedule-to-start latency of executions due now (p50/p99): from just
//!    before `submit` (which writes the execution to the store) to the moment
//!    a worker starts running it;
//! 2. end-to-end executions/s for 20,000 queued `hello` runs;
//! 3. peak resident memory with 10,000 in-flight runs of a plugin that waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskhost_model::Execution;
use taskhost_model::clock::SystemClock;
use taskhost_runtime::{Runtime, RuntimeConfig};
use taskhost_scheduler::{Node, RunObserver, SchedulerConfig, Work};
use taskhost_store::Store;
use taskhost_tests::cluster::upload;

type Started = Arc<Mutex<HashMap<String, Instant>>>;

struct Bench {
    node: Node,
    store: Store,
    started: Started,
    count: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn bench(workers: usize, slots: u32) -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::open(&url, Arc::new(SystemClock))
        .await
        .expect("store");
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: slots,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let started: Started = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let (seen, n) = (started.clone(), count.clone());
    let observer: RunObserver = Arc::new(move |e: &Execution| {
        seen.lock()
            .expect("lock")
            .insert(e.id.clone(), Instant::now());
        n.fetch_add(1, Ordering::SeqCst);
    });
    let config = SchedulerConfig {
        workers,
        tenant_limit: workers,
        ..SchedulerConfig::default()
    };
    let node = Node::with_observer(config, store.clone(), runtime, Some(observer));
    Bench {
        node,
        store,
        started,
        count,
        _dir: dir,
    }
}

/// Starts the node; sending on the result stops it, and the handle finishes
/// once every run has (graceful shutdown).
fn start(
    node: &Node,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = node.clone();
    let handle = tokio::spawn(async move {
        node.run(
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(30),
        )
        .await
    });
    (stop, handle)
}

async fn wait_for(count: &AtomicUsize, n: usize) {
    while count.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn latency(quick: bool) {
    let b = bench(64, 256).await;
    let hello = upload(&b.store, "bench", "hello").await;
    let (stop, _) = start(&b.node);
    // Warm up: the first run compiles the plugin (once per node).
    b.node
        .submit(Work::ad_hoc("bench", &hello.id))
        .await
        .expect("submit");
    wait_for(&b.count, 1).await;
    let n = if quick { 200 } else { 2000 };
    let mut submitted = HashMap::new();
    for i in 0..n {
        let mut e = Work::ad_hoc("bench", &hello.id);
        e.policy.input = serde_json::json!({"name": format!("n{i}")});
        let at = Instant::now();
        let e = b.node.submit(e).await.expect("submit");
        submitted.insert(e.id, at);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_for(&b.count, n + 1).await;
    let started = b.started.lock().expect("lock").clone();
    let mut delays: Vec<Duration> = submitted
        .iter()
        .map(|(id, at)| started[id].duration_since(*at))
        .collect();
    delays.sort();
    println!(
        "  schedule-to-start (due now, n={n}): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3
    );
    let _ = stop.send(());
}

async fn throughput(quick: bool) {
    let b = bench(128, 256).await;
    let hello = upload(&b.store, "bench", "hello").await;
    let n = if quick { 2000 } else { 20_000 };
    let now = b.store.now();
    let mut writes = tokio::task::JoinSet::new();
    for chunk in 0..64 {
        let (store, plugin) = (b.store.clone(), hello.id.clone());
        writes.spawn(async move {
            for i in (chunk..n).step_by(64) {
                let mut e = Execution::queued("bench", &plugin, now, now);
                e.policy.input = serde_json::json!({"name": format!("n{i}")});
                store.create_execution(&e).await.expect("create");
            }
        });
    }
    while writes.join_next().await.is_some() {}
    let began = Instant::now();
    let (stop, stopped) = start(&b.node);
    wait_for(&b.count, n).await;
    // All started; a graceful stop returns once every run has finished.
    let _ = stop.send(());
    stopped.await.expect("node");
    let elapsed = began.elapsed();
    println!(
        "  end-to-end: {n} queued hello runs in {:.2} s = {:.0} executions/s (128 workers)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

async fn memory(quick: bool) {
    let n = if quick { 1000 } else { 10_000 };
    let b = bench(n, n as u32).await;
    let sleep = upload(&b.store, "bench", "test-sleep").await;
    let before = peak_rss_mib();
    let now = b.store.now();
    for _ in 0..n {
        let mut e = Execution::queued("bench", &sleep.id, now, now);
        e.policy.input = serde_json::json!({"ms": 5000});
        e.policy.limits.timeout = Duration::from_secs(120);
        b.store.create_execution(&e).await.expect("create");
    }
    let (stop, _) = start(&b.node);
    wait_for(&b.count, n).await;
    let in_flight = b.node.in_flight();
    let peak = peak_rss_mib();
    println!(
        "  {n} in-flight waiting runs ({in_flight} at once): peak RSS {peak:.0} MiB (before {before:.0} MiB, {:.1} KiB per run)",
        (peak - before) * 1024.0 / n as f64
    );
    let _ = stop.send(());
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    // Parts named on the command line run alone (e.g. `throughput`, to profile it).
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let part = |name: &str| named.is_empty() || named.iter().any(|n| n == name);
    println!("taskhost scheduler benchmark (embedded SQLite store, hello plugin)");
    if part("latency") {
        tokio.block_on(latency(quick));
    }
    if part("throughput") {
        tokio.block_on(throughput(quick));
    }
    if part("memory") {
        tokio.block_on(memory(quick));
    }
}
