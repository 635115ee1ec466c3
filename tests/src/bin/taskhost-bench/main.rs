//! The end-to-end benchmark: the real `taskhost serve` on the embedded store,
//! driven through its HTTP API by a keep-alive Rust client.
//!
//! ```text
//! cargo run --release -p taskhost-tests --bin taskhost-bench -- [a] [b] [ingest [--backlog N]] [wait] [--reps 3] [--quick]
//! cargo run --release -p taskhost-tests --bin taskhost-bench -- schedules [--schedules 10000] [--seconds 60] [--nodes 1] [--kill] [--store URL] [--workers 128]
//! cargo run --release -p taskhost-tests --bin taskhost-bench -- minute [--schedules 100000] [--nodes 1] [--store URL] [--workers 128]
//! ```
//!
//! - **a** (throughput): N = 20,000 runs of the no-op `bench` plugin queued
//!   through the batch endpoint on an API-only node; then a worker node
//!   starts on the same store; time from starting its process until its
//!   metrics count N finished runs.
//! - **b** (latency): one run every 5 ms (open loop) for 2,000 runs on an
//!   idle node; each run's latency is from just before its POST to the
//!   plugin's entry (the plugin reads the wall clock and returns it).
//! - **ingest**: single POSTs (32 keep-alive connections) and batches of
//!   1,000 (4 connections) to an API-only node with 0, 20,000 and 200,000
//!   runs already queued.
//!
//! - **wait**: 1,000 runs one after another, each POSTed with `wait` and
//!   answered when it ends: the request's time, and the response's time
//!   after the plugin's entry and after the stored `finished_at`.
//! - **schedules** and **minute**: the fire path at scale; see the
//!   `schedules` module.
//!
//! Each of a, b and ingest runs `--reps` times (default 3); the median is reported.
//! Every run is a fresh sandbox with fuel and memory limits, and every state
//! change is committed (WAL) before it is acknowledged.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use taskhost::api::auth::{Scope, mint_hs256};
use taskhost_tests::procs::NodeProc;
use taskhost_tests::server::SECRET;

mod schedules;

/// Raised quotas: the benchmark is one tenant with a large backlog.
const CONFIG: &str = "[quotas.default]\nqueued_executions = 100000000\nrequests_per_second = 100000000\nrequest_burst = 100000000\nschedules = 10000000\n";
const TENANT: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3usize);
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["a", "b", "ingest", "wait"].contains(a))
        .collect();
    let part = |name: &str| named.is_empty() || named.contains(&name);
    taskhost::tls::install_provider();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    if let Some(which) = args.iter().find(|a| *a == "schedules" || *a == "minute") {
        let flag = |name: &str| {
            let i = args.iter().position(|a| a == name)?;
            args.get(i + 1).cloned()
        };
        let number =
            |name: &str, default: usize| flag(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let minute = which == "minute";
        let options = schedules::Options {
            schedules: number("--schedules", if minute { 100_000 } else { 10_000 }),
            seconds: number("--seconds", 60) as u64,
            nodes: number("--nodes", 1).max(1),
            kill: args.iter().any(|a| a == "--kill"),
            store: flag("--store"),
            workers: number("--workers", 128),
        };
        println!(
            "taskhost fire-path benchmark: {} schedules, {} node(s), {}",
            options.schedules,
            options.nodes,
            options.store.as_deref().unwrap_or("a fresh SQLite file")
        );
        if minute {
            tokio.block_on(schedules::minute(&options));
        } else {
            tokio.block_on(schedules::every_second(&options));
        }
        return;
    }
    println!(
        "taskhost end-to-end benchmark (HTTP, embedded SQLite store, bench plugin), {reps} reps"
    );
    if part("a") {
        let n = if quick { 2_000 } else { 20_000 };
        let rates: Vec<f64> = (0..reps).map(|_| tokio.block_on(workload_a(n))).collect();
        println!(
            "  A: {n} queued no-op runs, worker start → all completed: median {:.0} runs/s ({})",
            median(&rates),
            list(&rates, 0)
        );
    }
    if part("b") {
        let n = if quick { 200 } else { 2_000 };
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for _ in 0..reps {
            let (p50, p99, max) = tokio.block_on(workload_b(n));
            println!("    B rep: p50 {p50:.3} ms  p99 {p99:.3} ms  max {max:.3} ms");
            p50s.push(p50);
            p99s.push(p99);
        }
        println!(
            "  B: one run every 5 ms, POST → plugin entry, n={n}: median p50 {:.3} ms, p99 {:.3} ms",
            median(&p50s),
            median(&p99s)
        );
    }
    if part("wait") {
        let n = if quick { 100 } else { 1_000 };
        for _ in 0..reps {
            let (total, after_entry, after_end) = tokio.block_on(wait_latency(n));
            println!(
                "  wait: {n} hello runs one after another, POST with wait → 200: p50 {:.2} ms, p99 {:.2} ms; plugin entry → response p50 {:.2} ms, p99 {:.2} ms; finished_at (ms) → response p50 {:.2} ms, p99 {:.2} ms",
                total.0, total.1, after_entry.0, after_entry.1, after_end.0, after_end.1
            );
        }
    }
    if part("ingest") {
        let chosen: Vec<usize> = args
            .iter()
            .position(|a| a == "--backlog")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .into_iter()
            .collect();
        let backlogs: &[usize] = if !chosen.is_empty() {
            &chosen
        } else if quick {
            &[0, 20_000]
        } else {
            &[0, 20_000, 200_000]
        };
        let singles = if quick { 5_000 } else { 20_000 };
        for &backlog in backlogs {
            let mut single = Vec::new();
            let mut batch = Vec::new();
            for _ in 0..reps {
                let (s, b) = tokio.block_on(ingest(backlog, singles, quick));
                single.push(s);
                batch.push(b);
            }
            println!(
                "  ingest with {backlog} queued: single POSTs median {:.0}/s ({}); batches of 1,000 median {:.0} runs/s ({})",
                median(&single),
                list(&single, 0),
                median(&batch),
                list(&batch, 0)
            );
        }
    }
}

fn median_of(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    median(values)
}

/// The `p` quantile (0..=1) of `values` by rank; 0 when there are none.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes out the page cache's dirty pages (`sync`) before a timed part, so
/// that it does not pay for the set-up's writes, or another program's.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A folder with the benchmark's config file, and a client.
struct Bench {
    dir: tempfile::TempDir,
    client: reqwest::Client,
    token: String,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().expect("temporary folder");
        std::fs::write(dir.path().join("bench.toml"), CONFIG).expect("config");
        let token = mint_hs256(
            SECRET.as_bytes(),
            "bench",
            TENANT,
            &[Scope::Admin],
            Duration::from_secs(3600),
            chrono::Utc::now(),
        )
        .expect("token");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        Bench { dir, client, token }
    }

    fn store(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("bench.db").display())
    }

    /// A node sharing the benchmark's store and data folder.
    fn node(&self, id: &str, extra: &[&str]) -> NodeProc {
        self.node_on(&self.store(), id, extra)
    }

    /// A node on `store` sharing the benchmark's data folder.
    fn node_on(&self, store: &str, id: &str, extra: &[&str]) -> NodeProc {
        let config = self.dir.path().join("bench.toml");
        let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let mut node = NodeProc::new(id, store, self.dir.path(), &args);
        node.share_data_dir(&self.dir.path().join("data"));
        node.start(Duration::from_secs(30)).expect("node starts");
        node
    }

    async fn upload(&self, node: &NodeProc) -> String {
        let response = self
            .client
            .post(format!(
                "{}/v1/plugins?name=bench&version=1.0.0",
                node.url()
            ))
            .bearer_auth(&self.token)
            .body(taskhost_tests::plugin("bench"))
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::CREATED, "upload");
        let plugin: Value = response.json().await.expect("json");
        plugin["id"].as_str().expect("id").to_owned()
    }

    /// Queues `n` runs through the batch endpoint, 4 requests at a time.
    async fn queue(&self, node: &NodeProc, plugin: &str, n: usize) -> Duration {
        let started = Instant::now();
        let url = format!("{}/v1/executions/batch", node.url());
        let chunks: Vec<usize> = (0..n)
            .step_by(1000)
            .map(|from| (n - from).min(1000))
            .collect();
        let next = Arc::new(AtomicUsize::new(0));
        let chunks = Arc::new(chunks);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (client, url, token) = (self.client.clone(), url.clone(), self.token.clone());
            let (next, chunks, plugin) = (next.clone(), chunks.clone(), plugin.to_owned());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&size) = chunks.get(i) else { break };
                    let runs: Vec<Value> = (0..size)
                        .map(|k| json!({"plugin_id": plugin, "input": {"n": i * 1000 + k}}))
                        .collect();
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "runs": runs }))
                        .send()
                        .await
                        .expect("batch");
                    assert_eq!(response.status(), StatusCode::ACCEPTED, "batch");
                    let _ = response.bytes().await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        started.elapsed()
    }

    async fn finished(&self, node: &NodeProc) -> f64 {
        let Ok(response) = self
            .client
            .get(format!("{}/metrics", node.url()))
            .send()
            .await
        else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("taskhost_runs_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Workload A; returns runs/s.
async fn workload_a(n: usize) -> f64 {
    let bench = Bench::new();
    let api = bench.node("api", &["--role", "api"]);
    let plugin = bench.upload(&api).await;
    bench.queue(&api, &plugin, n).await;
    settle();
    let started = Instant::now();
    let worker = bench.node(
        "worker",
        &[
            "--role",
            "worker",
            "--workers",
            "128",
            "--tenant-limit",
            "128",
        ],
    );
    let listening = started.elapsed();
    let trace = std::env::var_os("BENCH_TRACE").is_some();
    loop {
        let done = bench.finished(&worker).await;
        if trace {
            eprintln!("{:>5} ms {done}", started.elapsed().as_millis());
        }
        if done >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "workload A timed out"
        );
    }
    let elapsed = started.elapsed();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "    A rep: {n} runs in {:.3} s = {rate:.0} runs/s (the worker listened after {} ms)",
        elapsed.as_secs_f64(),
        listening.as_millis()
    );
    drop(worker);
    drop(api);
    rate
}

/// `wait`: runs submitted one at a time with `wait`, each answered when it
/// ends. Returns (p50, p99) in ms of: the whole request; from the plugin's
/// entry to the response; from the stored `finished_at` to the response.
async fn wait_latency(n: usize) -> ((f64, f64), (f64, f64), (f64, f64)) {
    let bench = Bench::new();
    let node = bench.node("node", &[]);
    let plugin = bench.upload(&node).await;
    let url = format!("{}/v1/executions", node.url());
    for _ in 0..20 {
        post_one(&bench, &url, &plugin).await;
    }
    settle();
    let (mut total, mut after_entry, mut after_end) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let sent = now_us();
        let response = bench
            .client
            .post(&url)
            .bearer_auth(&bench.token)
            .json(&json!({"plugin_id": plugin, "input": {"i": i}, "wait": "10s"}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::OK, "ended within the wait");
        let body = response.bytes().await.expect("body");
        let answered = now_us();
        let execution: Value = serde_json::from_slice(&body).expect("json");
        total.push((answered - sent) as f64 / 1000.0);
        if let Some(entered) = execution["outcome"]["output"].as_u64() {
            after_entry.push(answered.saturating_sub(entered) as f64 / 1000.0);
        }
        let finished = execution["finished_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        if let Some(finished) = finished {
            let finished_us = finished.timestamp_micros() as u64;
            after_end.push(answered.saturating_sub(finished_us) as f64 / 1000.0);
        }
    }
    let p = |v: &[f64]| (percentile(v, 0.5), percentile(v, 0.99));
    (p(&total), p(&after_entry), p(&after_end))
}

/// Workload B; returns p50, p99 and max in milliseconds.
async fn workload_b(n: usize) -> (f64, f64, f64) {
    let bench = Bench::new();
    let node = bench.node("node", &[]);
    let plugin = bench.upload(&node).await;
    let url = format!("{}/v1/executions", node.url());
    // Warm the connection pool and the plugin.
    for _ in 0..20 {
        post_one(&bench, &url, &plugin).await;
    }
    settle();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until(began + Duration::from_millis(5 * i as u64)).await;
        let (client, url, token) = (bench.client.clone(), url.clone(), bench.token.clone());
        let plugin = plugin.clone();
        tasks.spawn(async move {
            let sent = now_us();
            let response = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"plugin_id": plugin, "input": {"i": i}}))
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let execution: Value = response.json().await.expect("json");
            (execution["id"].as_str().expect("id").to_owned(), sent)
        });
    }
    let mut sent = Vec::new();
    while let Some(r) = tasks.join_next().await {
        sent.push(r.expect("post task"));
    }
    let mut latencies = Vec::new();
    for (id, at) in sent {
        let entered = loop {
            let response = bench
                .client
                .get(format!("{url}/{id}"))
                .bearer_auth(&bench.token)
                .send()
                .await
                .expect("get");
            let execution: Value = response.json().await.expect("json");
            if let Some(entered) = execution["outcome"]["output"].as_u64() {
                break entered;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        latencies.push(entered.saturating_sub(at) as f64 / 1000.0);
    }
    let max = latencies.iter().copied().fold(0.0, f64::max);
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        max,
    )
}

async fn post_one(bench: &Bench, url: &str, plugin: &str) {
    let response = bench
        .client
        .post(url)
        .bearer_auth(&bench.token)
        .json(&json!({"plugin_id": plugin}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let _ = response.bytes().await;
}

/// Ingest on an API-only node with `backlog` runs queued; returns single
/// POSTs/s and batched runs/s.
async fn ingest(backlog: usize, singles: usize, quick: bool) -> (f64, f64) {
    let bench = Bench::new();
    let node = bench.node("api", &["--role", "api"]);
    let plugin = bench.upload(&node).await;
    if backlog > 0 {
        bench.queue(&node, &plugin, backlog).await;
        // A standing backlog, not one being loaded: the store copies what
        // was just written from its WAL into the database file in the
        // background (checkpoints every 500 ms); give it the time to.
        tokio::time::sleep(Duration::from_millis(backlog as u64 / 100)).await;
    }
    let url = format!("{}/v1/executions", node.url());
    settle();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (client, url, token) = (bench.client.clone(), url.clone(), bench.token.clone());
        let (next, plugin) = (next.clone(), plugin.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < singles {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"plugin_id": plugin, "input": {"n": 1}}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                let _ = response.bytes().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let single = singles as f64 / started.elapsed().as_secs_f64();
    let batched = if quick { 10_000 } else { 100_000 };
    let took = bench.queue(&node, &plugin, batched).await;
    let batch = batched as f64 / took.as_secs_f64();
    println!("    ingest rep ({backlog} queued): {single:.0} POSTs/s, {batch:.0} batched runs/s");
    (single, batch)
}
