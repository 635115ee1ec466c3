//! Runtime benchmark: `cargo bench -p taskhost-tests --bench runtime`.
//!
//! Reports, for the `hello` plugin:
//! - instantiate + call latency from a cached, pooled `InstancePre` (median, p99);
//! - wall time of 1,000 concurrent runs;
//! - compiling a plugin vs loading its precompiled artifact.
//!
//! A plain binary rather than criterion: we want percentiles and whole-batch
//! wall times, printed as a table to paste into notes.

use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_runtime::{
    MemoryArtifacts, MemoryKv, Prepared, RunRequest, Runtime, RuntimeConfig, Status,
};
use taskhost_tests::plugin;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else useful.
    let quick = std::env::args().any(|a| a == "--quick");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let hello = plugin("hello");
    let input = br#"{"name":"bench"}"#.to_vec();

    // Compile vs load.
    let artifacts = Arc::new(MemoryArtifacts::default());
    let config = RuntimeConfig {
        max_concurrent_runs: 1000,
        instance_cache_bytes: 1,
        ..RuntimeConfig::default()
    };
    let make = |artifacts: Arc<MemoryArtifacts>| {
        Runtime::with_stores(config.clone(), artifacts, Arc::new(MemoryKv::default()))
            .expect("runtime")
    };
    let mut compile = Vec::new();
    for _ in 0..if quick { 1 } else { 5 } {
        let fresh = make(Arc::new(MemoryArtifacts::default()));
        let started = Instant::now();
        let (_, how) = fresh.prepare_traced(&hello).expect("valid");
        compile.push(started.elapsed());
        assert_eq!(how, Prepared::Compiled);
    }
    let runtime = make(artifacts.clone());
    runtime.prepare(&hello).expect("valid");
    let other = plugin("rollup");
    runtime.prepare(&other).expect("valid");
    let mut load = Vec::new();
    for _ in 0..if quick { 5 } else { 50 } {
        // The instance cache holds one plugin, so each prepare of hello loads
        // its artifact again (and links it).
        runtime.prepare(&other).expect("valid");
        let started = Instant::now();
        let (_, how) = runtime.prepare_traced(&hello).expect("valid");
        load.push(started.elapsed());
        assert_eq!(how, Prepared::Loaded);
    }
    compile.sort();
    load.sort();

    // Sequential instantiate + call.
    let plugin = runtime.prepare(&hello).expect("valid");
    let iterations = if quick { 1_000 } else { 20_000 };
    let mut latencies = Vec::with_capacity(iterations);
    tokio.block_on(async {
        for _ in 0..iterations / 10 {
            runtime.run(&plugin, RunRequest::new(input.clone())).await;
        }
        for _ in 0..iterations {
            let request = RunRequest::new(input.clone());
            let started = Instant::now();
            let outcome = runtime.run(&plugin, request).await;
            latencies.push(started.elapsed());
            assert_eq!(outcome.status, Status::Succeeded);
        }
    });
    latencies.sort();

    // 1,000 concurrent runs.
    let mut batches = Vec::new();
    for _ in 0..if quick { 1 } else { 5 } {
        let started = Instant::now();
        tokio.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..1000 {
                let (runtime, plugin, input) = (runtime.clone(), plugin.clone(), input.clone());
                set.spawn(async move { runtime.run(&plugin, RunRequest::new(input)).await.status });
            }
            while let Some(status) = set.join_next().await {
                assert_eq!(status.expect("joined"), Status::Succeeded);
            }
        });
        batches.push(started.elapsed());
    }
    batches.sort();

    println!(
        "taskhost runtime benchmark (hello plugin, {} bytes)",
        hello.len()
    );
    println!("  instantiate+call, sequential, n={iterations}:");
    println!(
        "    median {}  p90 {}  p99 {}  max {}",
        micros(percentile(&latencies, 0.5)),
        micros(percentile(&latencies, 0.9)),
        micros(percentile(&latencies, 0.99)),
        micros(latencies[latencies.len() - 1])
    );
    println!(
        "  1,000 concurrent runs: median wall {} (best {}, {:.0} runs/s)",
        millis(percentile(&batches, 0.5)),
        millis(batches[0]),
        1000.0 / percentile(&batches, 0.5).as_secs_f64()
    );
    println!(
        "  compile (Component::new + checks + link): median {}",
        millis(percentile(&compile, 0.5))
    );
    println!(
        "  load precompiled (deserialize + checks + link): median {}",
        millis(percentile(&load, 0.5))
    );
}
