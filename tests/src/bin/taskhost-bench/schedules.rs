//! `taskhost-bench schedules`: the fire path at scale, through the real
//! binary on one or two nodes sharing a store.
//!
//! - **every second**: `--schedules N` (default 10,000) schedules
//!   `* * * * * *` (UTC) of the no-op `bench` plugin, for `--seconds S` (default 60);
//!   then, read from the store, every fire of the middle of the run: how
//!   many ran and were skipped, none twice, each node's share, and the start
//!   lag (`started_at − fire time`, p50/p99/max). `--kill` SIGKILLs the
//!   second node halfway (its partitions move; the schedules catch up every
//!   missed fire, so none is lost).
//! - **minute**: `--minute N` (default 100,000) schedules `0 * * * * *`; the
//!   time from the minute to the last of their runs' starts.
//!
//! Each node's CPU time and peak resident memory are reported. `--store
//! URL` runs on another store (MongoDB) instead of a fresh SQLite file.

use super::{Bench, median_of, percentile};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::clock::SystemClock;
use taskhost_model::{Execution, ExecutionStatus, FireFate};
use taskhost_store::{ExecutionFilter, PageRequest, Store};
use taskhost_tests::procs::NodeProc;

/// What a run of the benchmark is asked to do.
pub struct Options {
    pub schedules: usize,
    pub seconds: u64,
    pub nodes: usize,
    pub kill: bool,
    pub store: Option<String>,
    /// Each node's `--workers` and `--tenant-limit` (default 128).
    pub workers: usize,
}

/// Flags each node starts with: `workers` run slots, one tenant may use
/// them all.
fn node_flags(workers: usize) -> Vec<String> {
    let n = workers.to_string();
    ["--workers", &n, "--tenant-limit", &n]
        .map(String::from)
        .to_vec()
}

/// Every-second schedules for `seconds`; prints the report.
pub async fn every_second(o: &Options) {
    let bench = Bench::new();
    let store_url = o.store.clone().unwrap_or_else(|| bench.store());
    let flags = node_flags(o.workers);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut nodes: Vec<NodeProc> = (0..o.nodes)
        .map(|i| bench.node_on(&store_url, &format!("n{i}"), &flags))
        .collect();
    let plugin = bench.upload(&nodes[0]).await;
    let created = Instant::now();
    create(&bench, &nodes[0], &plugin, o.schedules, "* * * * * *").await;
    println!(
        "  created {} every-second schedules in {:.1} s",
        o.schedules,
        created.elapsed().as_secs_f64()
    );
    let start = Utc::now();
    let half = Duration::from_secs(o.seconds / 2);
    tokio::time::sleep(half).await;
    if o.kill && nodes.len() > 1 {
        let dead = nodes.pop().expect("a second node");
        report_usage("killed node", &dead);
        let mut dead = dead;
        dead.kill();
        println!(
            "  killed node n{} at {}",
            o.nodes - 1,
            Utc::now().format("%H:%M:%S%.3f")
        );
    }
    tokio::time::sleep(Duration::from_secs(o.seconds) - half).await;
    let end = Utc::now();
    for node in &nodes {
        report_usage(&format!("node {}", node.id), node);
    }
    // Fires of the middle: 10 s in, to 10 s before the end, settled for 5 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(nodes);
    let margin = chrono::Duration::seconds(10.min(o.seconds as i64 / 4));
    let (from, to) = (start + margin, end - margin);
    let rows = fires(&store_url, from, to).await;
    report_fires(&rows, o.schedules, from, to);
}

/// Minute schedules: all due at the same instant; prints the report.
pub async fn minute(o: &Options) {
    let bench = Bench::new();
    let store_url = o.store.clone().unwrap_or_else(|| bench.store());
    let flags = node_flags(o.workers);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nodes: Vec<NodeProc> = (0..o.nodes)
        .map(|i| bench.node_on(&store_url, &format!("n{i}"), &flags))
        .collect();
    let plugin = bench.upload(&nodes[0]).await;
    let created = Instant::now();
    create(&bench, &nodes[0], &plugin, o.schedules, "0 * * * * *").await;
    println!(
        "  created {} minute schedules in {:.1} s",
        o.schedules,
        created.elapsed().as_secs_f64()
    );
    // The next minute that is at least 10 s away, then 30 s for the runs.
    let now = Utc::now();
    let next = next_minute(now + chrono::Duration::seconds(10));
    let wait = (next - now).to_std().unwrap_or_default() + Duration::from_secs(30);
    tokio::time::sleep(wait).await;
    for node in &nodes {
        report_usage(&format!("node {}", node.id), node);
    }
    drop(nodes);
    let rows = fires(&store_url, next, next + chrono::Duration::seconds(1)).await;
    let lags: Vec<f64> = rows.iter().filter_map(lag_ms).collect();
    let last = lags.iter().copied().fold(0.0, f64::max);
    println!(
        "  minute: {} of {} fires at {} started; start lag p50 {:.0} ms, p99 {:.0} ms, last start {:.2} s after the minute (bound 5 s, goal 2 s)",
        lags.len(),
        o.schedules,
        next.format("%H:%M:%S"),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        last / 1000.0
    );
}

fn next_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis((ms / 60_000 + 1) * 60_000).unwrap_or(t)
}

/// Creates `n` schedules of `plugin` on `cron`, 32 requests at a time.
async fn create(bench: &Bench, node: &NodeProc, plugin: &str, n: usize, cron: &str) {
    let url = format!("{}/v1/schedules", node.url());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (client, url, token) = (bench.client.clone(), url.clone(), bench.token.clone());
        let (next, plugin, cron) = (next.clone(), plugin.to_owned(), cron.to_owned());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = json!({
                    "name": format!("s{i}"), "plugin_id": plugin,
                    "trigger": {"kind": "cron", "expr": cron, "timezone": "UTC"},
                    "input": {"n": i},
                    "catch_up": {"mode": "all", "window": "10m"},
                });
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                let response = response.expect("create a schedule");
                assert!(
                    response.status().is_success(),
                    "create: {}",
                    response.status()
                );
                let _ = response.bytes().await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One fire as the store has it.
struct FireRow {
    schedule: String,
    fire: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    node: Option<String>,
    fate: Option<FireFate>,
}

fn lag_ms(r: &FireRow) -> Option<f64> {
    Some((r.started? - r.fire).num_microseconds()? as f64 / 1000.0)
}

/// The records (run and skipped) of every fire in `[from, to)`.
async fn fires(url: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<FireRow> {
    let store = Store::open(url, Arc::new(SystemClock))
        .await
        .expect("open the store");
    let mut rows = Vec::new();
    for status in [None, Some(ExecutionStatus::Skipped)] {
        let filter = ExecutionFilter {
            status,
            since: Some(from - chrono::Duration::seconds(5)),
            ..ExecutionFilter::default()
        };
        let mut cursor = None;
        loop {
            let request = PageRequest {
                cursor: cursor.take(),
                limit: Some(1000),
            };
            let page = store
                .list_executions(super::TENANT, &filter, &request)
                .await
                .expect("list");
            rows.extend(page.items.iter().filter_map(|e| row(e, from, to)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    rows
}

fn row(e: &Execution, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<FireRow> {
    let fire = e.fire_time.filter(|t| *t >= from && *t < to)?;
    Some(FireRow {
        schedule: e.schedule_id.clone()?,
        fire,
        started: e.started_at,
        node: e.node.clone(),
        fate: e.fire.as_ref().map(|f| f.fate),
    })
}

fn report_fires(rows: &[FireRow], schedules: usize, from: DateTime<Utc>, to: DateTime<Utc>) {
    // Whole seconds t with from <= t < to: the fire times in the window.
    let ceil = |t: DateTime<Utc>| t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    let seconds = (ceil(to) - ceil(from)).max(0) as usize;
    let expected = schedules * seconds;
    let mut keys = HashSet::new();
    let twice = rows
        .iter()
        .filter(|r| !keys.insert((&r.schedule, r.fire)))
        .count();
    let mut fates: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for r in rows {
        let fate = r.fate.map_or("?".to_owned(), |f| f.as_str().to_owned());
        *fates.entry(fate).or_default() += 1;
        if r.started.is_some() {
            *by_node
                .entry(r.node.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    let lags: Vec<f64> = rows.iter().filter_map(lag_ms).collect();
    println!(
        "  every second, {schedules} schedules, the {seconds} s from {} to {}: {} fires of {expected} recorded, {} twice; fates {fates:?}; runs by node {by_node:?}",
        from.format("%H:%M:%S"),
        to.format("%H:%M:%S"),
        rows.len(),
        twice,
    );
    println!(
        "  start lag (started_at - fire time): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} runs (bound p99 <= 100 ms); median {:.1} ms",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.iter().copied().fold(0.0, f64::max),
        lags.len(),
        median_of(&lags),
    );
}

/// A node's CPU time (user + system) and peak resident memory so far.
fn report_usage(what: &str, node: &NodeProc) {
    let Some(pid) = node.pid() else { return };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 12th and 13th fields after the command name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    println!("  {what}: CPU {cpu:.1} s, peak RSS {hwm}");
}
