//! Soak: 200,000 `hello` runs through one node on the embedded store, in
//! waves of 20,000, checking that a long-lived node does not grow:
//! `cargo bench -p taskhost-tests --bench soak` (`-- --quick` for 2 waves).
//!
//! Prints the resident memory after each wave; the node must end within 10%
//! of where it was after the first wave (run tasks are reaped, caches are
//! bounded), and the throughput of each wave.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use taskhost_model::Execution;
use taskhost_model::clock::SystemClock;
use taskhost_runtime::{Runtime, RuntimeConfig};
use taskhost_scheduler::{Node, RunObserver, SchedulerConfig, Work};
use taskhost_store::Store;
use taskhost_tests::cluster::upload;

const WAVE: usize = 20_000;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn soak(waves: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("soak.db").display());
    let store = Store::open(&url, Arc::new(SystemClock))
        .await
        .expect("store");
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 256,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let observer: RunObserver = Arc::new(move |_: &Execution| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let config = SchedulerConfig {
        workers: 128,
        tenant_limit: 128,
        ..SchedulerConfig::default()
    };
    let node = Node::with_observer(config, store.clone(), runtime, Some(observer));
    let hello = upload(&store, "soak", "hello").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let node = node.clone();
        tokio::spawn(async move {
            node.run(
                async {
                    let _ = stopped.await;
                },
                Duration::from_secs(30),
            )
            .await
        })
    };
    let mut first = 0.0;
    for wave in 1..=waves {
        let began = Instant::now();
        let mut submits = tokio::task::JoinSet::new();
        for lane in 0..32 {
            let (node, plugin) = (node.clone(), hello.id.clone());
            submits.spawn(async move {
                for i in (lane..WAVE).step_by(32) {
                    let mut spec = Work::ad_hoc("soak", &plugin);
                    spec.policy.input = serde_json::json!({"name": format!("w{wave}-{i}")});
                    node.submit(spec).await.expect("enqueue");
                }
            });
        }
        while submits.join_next().await.is_some() {}
        while count.load(Ordering::Relaxed) < wave * WAVE || node.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rss = rss_mib();
        if wave == 1 {
            first = rss;
        }
        println!(
            "  wave {wave:2}: {} runs in {:.2} s ({:.0} runs/s, enqueue included); RSS {rss:.0} MiB ({:+.1}% of wave 1)",
            wave * WAVE,
            began.elapsed().as_secs_f64(),
            WAVE as f64 / began.elapsed().as_secs_f64(),
            (rss - first) / first * 100.0
        );
    }
    let last = rss_mib();
    println!(
        "  RSS after wave 1: {first:.0} MiB; after {} runs: {last:.0} MiB ({:+.1}%)",
        waves * WAVE,
        (last - first) / first * 100.0
    );
    let _ = stop.send(());
    running.await.expect("node");
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(soak(if quick { 2 } else { 10 }));
}
