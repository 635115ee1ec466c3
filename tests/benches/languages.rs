//! The hello plugin in each language: `cargo bench -p taskhost-tests --bench languages`.
//!
//! For Rust (`plugins/hello`), Python (`plugins/hello-py`, componentize-py)
//! and JavaScript (`plugins/hello-js`, ComponentizeJS), prints: component
//! size, compile time (validate + compile + link, on a fresh runtime; median
//! of 3), loading the precompiled artifact (median of 5), instantiate+call
//! from the pooled, cached instance (median and p99 of sequential runs; each
//! run a fresh instance with copy-on-write memory), and the peak linear memory
//! and fuel of one run. Python and JavaScript are built first, with the
//! pinned tools (`scripts/plugin-tools.sh`).

use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_runtime::{
    MemoryArtifacts, MemoryKv, Prepared, RunRequest, Runtime, RuntimeConfig, Status,
};
use taskhost_tests::langs::{self, Lang};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn runtime(artifacts: Arc<MemoryArtifacts>) -> Runtime {
    let config = RuntimeConfig {
        max_concurrent_runs: 16,
        instance_cache_bytes: 1,
        ..RuntimeConfig::default()
    };
    Runtime::with_stores(config, artifacts, Arc::new(MemoryKv::default())).expect("runtime")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    langs::tools().expect("the Python and JavaScript tools (scripts/plugin-tools.sh)");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let plugins = [
        ("Rust", taskhost_tests::plugin("hello")),
        (
            "Python",
            std::fs::read(langs::build(Lang::Python, "hello-py")).expect("hello-py"),
        ),
        (
            "JavaScript",
            std::fs::read(langs::build(Lang::Js, "hello-js")).expect("hello-js"),
        ),
    ];
    let other = taskhost_tests::plugin("rollup");
    let input = br#"{"name":"bench"}"#.to_vec();
    println!(
        "| language | component | compile | load precompiled | instantiate+call median | p99 | peak memory | fuel |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (language, wasm) in &plugins {
        let mut compile = Vec::new();
        for _ in 0..if quick { 1 } else { 3 } {
            let fresh = runtime(Arc::new(MemoryArtifacts::default()));
            let started = Instant::now();
            let (_, how) = fresh.prepare_traced(wasm).expect("valid");
            compile.push(started.elapsed());
            assert_eq!(how, Prepared::Compiled);
        }
        compile.sort();

        let runtime = runtime(Arc::new(MemoryArtifacts::default()));
        runtime.prepare(wasm).expect("valid");
        runtime.prepare(&other).expect("valid");
        let mut load = Vec::new();
        for _ in 0..if quick { 1 } else { 5 } {
            // The instance cache holds one plugin: preparing the other evicts
            // this one, so the next prepare loads its artifact.
            runtime.prepare(&other).expect("valid");
            let started = Instant::now();
            let (_, how) = runtime.prepare_traced(wasm).expect("valid");
            load.push(started.elapsed());
            assert_eq!(how, Prepared::Loaded);
        }
        load.sort();

        let plugin = runtime.prepare(wasm).expect("valid");
        let iterations = if quick { 50 } else { 1_000 };
        let mut latencies = Vec::with_capacity(iterations);
        let (mut peak, mut fuel) = (0, 0);
        tokio.block_on(async {
            for _ in 0..iterations / 10 {
                runtime.run(&plugin, RunRequest::new(input.clone())).await;
            }
            for _ in 0..iterations {
                let started = Instant::now();
                let outcome = runtime.run(&plugin, RunRequest::new(input.clone())).await;
                latencies.push(started.elapsed());
                assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
                peak = outcome.peak_memory_bytes;
                fuel = outcome.fuel_used;
            }
        });
        latencies.sort();
        println!(
            "| {language} | {:.1} MiB | {:.2} s | {:.0} ms | {:.0} µs | {:.0} µs | {:.1} MiB | {:.2} M |",
            wasm.len() as f64 / (1 << 20) as f64,
            percentile(&compile, 0.5).as_secs_f64(),
            percentile(&load, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.5).as_secs_f64() * 1e6,
            percentile(&latencies, 0.99).as_secs_f64() * 1e6,
            peak as f64 / (1 << 20) as f64,
            fuel as f64 / 1e6,
        );
    }
}
