//! The chaos suite: several `taskhost serve` nodes on one store, a mixed
//! workload, and a loop that kills, stops and restarts nodes (and the
//! database) at random moments. At the end it checks that every cron fire of
//! the window has exactly one execution, that every execution is final and
//! succeeded, and that no accepted run was lost; it prints a summary and
//! exits non-zero if a check fails.
//!
//! ```text
//! chaos --store sqlite|mongodb [--nodes 3] [--kills 10] [--seed N]
//!     # KILLS SIGKILLs; after every tenth, a SIGSTOP longer than the lease
//! chaos --store mongodb --outage 40      # one long database outage instead
//! ```
//!
//! `scripts/chaos.sh` builds and runs it (the long run: 100 kills per store);
//! `tests/tests/chaos.rs` runs short versions. MongoDB runs use a SecantusDB
//! server of their own, started from the `.secv` venv.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taskhost::api::auth::{Scope, mint_hs256};
use taskhost_tests::procs::{Database, NodeProc, signal};
use taskhost_tests::server::SECRET;

/// Each node's lease: short, so that a killed node's runs come back soon.
const LEASE: &str = "6s";
const LEASE_SECS: u64 = 6;

struct Options {
    mongodb: bool,
    nodes: usize,
    kills: usize,
    seed: u64,
    outage: Option<u64>,
}

fn options() -> Options {
    let mut o = Options {
        mongodb: false,
        nodes: 3,
        kills: 10,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        outage: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--store" => o.mongodb = value == "mongodb",
            "--nodes" => o.nodes = value.parse().expect("--nodes N"),
            "--kills" => o.kills = value.parse().expect("--kills N"),
            "--seed" => o.seed = value.parse().expect("--seed N"),
            "--outage" => o.outage = Some(value.parse().expect("--outage SECONDS")),
            other => panic!("unknown argument {other}; see the module docs"),
        }
        i += 2;
    }
    o
}

/// xorshift64*: enough randomness for choosing moments and victims.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// The API of whichever node answers.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    urls: Vec<String>,
    token: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Option<Value> {
        for url in &self.urls {
            let mut request = self
                .http
                .request(method.clone(), format!("{url}{path}"))
                .bearer_auth(&self.token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            if let Ok(response) = request.send().await
                && response.status().is_success()
            {
                return response.json().await.ok();
            }
        }
        None
    }

    /// Every execution of the tenant, `status` if given.
    async fn executions(&self, status: Option<&str>) -> Option<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = String::from("/v1/executions?limit=1000");
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.call(Method::GET, &path, None).await?;
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Some(all),
            }
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let o = options();
    taskhost::tls::install_provider();
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut db = if o.mongodb {
        Some(Database::start(dir.path()).expect("start SecantusDB"))
    } else {
        None
    };
    let store = match &db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("chaos.db").display()),
    };
    let extra = [
        "--lease",
        LEASE,
        "--heartbeat",
        "3s",
        "--grace",
        "1s",
        "--workers",
        "16",
        "--tenant-limit",
        "16",
    ];
    let mut nodes: Vec<NodeProc> = (0..o.nodes)
        .map(|i| NodeProc::new(&format!("node-{i}"), &store, dir.path(), &extra))
        .collect();
    for node in &mut nodes {
        node.start(Duration::from_secs(60)).expect("start a node");
    }
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client"),
        urls: nodes.iter().map(NodeProc::url).collect(),
        token: mint_hs256(
            SECRET.as_bytes(),
            "chaos",
            "acme",
            &Scope::ALL,
            Duration::from_secs(86_400),
            chrono::Utc::now(),
        )
        .expect("token"),
    };
    let started = Instant::now();
    let plugin = upload(&api).await;
    let report = match o.outage {
        Some(seconds) => outage(&o, &api, &plugin, &mut nodes, &mut db, seconds).await,
        None => kills(&o, &api, &plugin, &mut nodes, &mut db).await,
    };
    let elapsed = started.elapsed().as_secs();
    println!(
        "{}",
        json!({"store": if o.mongodb {"mongodb"} else {"sqlite"}, "seed": o.seed, "seconds": elapsed, "report": report.summary})
    );
    if report.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        for failure in &report.failures {
            eprintln!("chaos: FAILED: {failure}");
        }
        eprintln!("chaos: node logs in {}", dir.keep().display());
        std::process::ExitCode::FAILURE
    }
}

async fn upload(api: &Api) -> String {
    let wasm = taskhost_tests::plugin("test-count");
    let response = api
        .http
        .post(format!(
            "{}/v1/plugins?name=count&version=1.0.0",
            api.urls[0]
        ))
        .bearer_auth(&api.token)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED, "upload");
    let record: Value = response.json().await.expect("json");
    record["id"].as_str().expect("id").to_owned()
}

/// Ad hoc runs, one every 150 ms until `stop`: short, long (past the
/// lease), and failing once before they succeed. Returns the accepted ids.
fn workload(api: Api, plugin: String, seed: u64, stop: Arc<AtomicBool>) -> Arc<Mutex<Vec<String>>> {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let ids = accepted.clone();
    tokio::spawn(async move {
        let mut rng = Rng(seed | 1);
        while !stop.load(Ordering::Acquire) {
            let ms = match rng.below(10) {
                0 => 4000 + rng.below(4000),
                _ => rng.below(800),
            };
            let body = json!({
                "plugin_id": plugin,
                "input": {"ms": ms, "fail_attempts": u32::from(rng.below(4) == 0)},
                "retry": {"max_attempts": 3, "initial_backoff": "200ms", "max_backoff": "1s"},
                "limits": {"timeout": "60s"},
            });
            if let Some(e) = api.call(Method::POST, "/v1/executions", Some(body)).await
                && let Some(id) = e["id"].as_str()
            {
                ids.lock().expect("ids").push(id.to_owned());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    accepted
}

struct Report {
    summary: Value,
    failures: Vec<String>,
}

async fn kills(
    o: &Options,
    api: &Api,
    plugin: &str,
    nodes: &mut [NodeProc],
    db: &mut Option<Database>,
) -> Report {
    // Every second, all fires caught up after an outage, overlaps allowed:
    // each fire of the window must have exactly one execution.
    let schedule = api
        .call(
            Method::POST,
            "/v1/schedules",
            Some(json!({
                "name": "every-second",
                "plugin_id": plugin,
                "trigger": {"kind": "cron", "expr": "* * * * * *"},
                "input": {"ms": 300},
                "overlap": "allow",
                "catch_up": {"mode": "all", "window": "1h"},
                "retry": {"max_attempts": 3, "initial_backoff": "200ms", "max_backoff": "1s"},
            })),
        )
        .await
        .expect("create the schedule");
    let schedule_id = schedule["id"].as_str().expect("id").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = workload(api.clone(), plugin.to_owned(), o.seed, stop.clone());
    let mut rng = Rng(o.seed.rotate_left(17) | 1);
    let (mut killed, mut stopped, mut db_restarts) = (0, 0, 0);
    for round in 0..o.kills {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(2500))).await;
        let victim = rng.below(nodes.len() as u64) as usize;
        let node = &mut nodes[victim];
        node.kill();
        killed += 1;
        tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
        if let Err(e) = node.start(Duration::from_secs(60)) {
            eprintln!("chaos: {} did not come back: {e}", node.id);
        }
        if round % 10 == 9 {
            // Another node frozen for longer than its lease: its runs are
            // taken over, and it must not write when it wakes.
            let frozen = &nodes[(victim + 1) % nodes.len()];
            if let Some(pid) = frozen.pid() {
                signal(pid, "STOP");
                tokio::time::sleep(Duration::from_secs(LEASE_SECS + 2)).await;
                signal(pid, "CONT");
                stopped += 1;
            }
        }
        if let Some(db) = db.as_mut()
            && round % 8 == 7
        {
            db.kill();
            tokio::time::sleep(Duration::from_millis(2000 + rng.below(4000))).await;
            db.restart().expect("restart SecantusDB");
            db_restarts += 1;
        }
        eprintln!("chaos: round {}/{} done", round + 1, o.kills);
    }
    stop.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = api
        .call(
            Method::POST,
            &format!("/v1/schedules/{schedule_id}/pause"),
            None,
        )
        .await;
    let paused_at = chrono::Utc::now();
    let mut failures = Vec::new();
    if paused.is_none() {
        failures.push("could not pause the schedule".to_owned());
    }
    let executions = settle(api, &mut failures).await;
    let accepted = accepted.lock().expect("ids").clone();
    let mut summary = check(
        &executions,
        &schedule_id,
        &accepted,
        paused_at,
        &mut failures,
    );
    summary["kills"] = json!(killed);
    summary["stops"] = json!(stopped);
    summary["db_restarts"] = json!(db_restarts);
    for node in nodes.iter_mut() {
        if !node.alive() {
            failures.push(format!("{} is not running at the end", node.id));
        }
    }
    Report { summary, failures }
}

/// Waits (up to 3 minutes) until nothing is queued or running; returns every
/// execution.
async fn settle(api: &Api, failures: &mut Vec<String>) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let queued = api.executions(Some("queued")).await.map(|v| v.len());
        let running = api.executions(Some("running")).await.map(|v| v.len());
        if queued == Some(0) && running == Some(0) {
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!(
                "not settled after 3 minutes: {queued:?} queued, {running:?} running"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api.executions(None).await.unwrap_or_default()
}

/// The checks: fires once each and without gaps, everything final and
/// succeeded, nothing accepted lost. Returns the counts.
fn check(
    executions: &[Value],
    schedule_id: &str,
    accepted: &[String],
    paused_at: chrono::DateTime<chrono::Utc>,
    failures: &mut Vec<String>,
) -> Value {
    let mut fires: BTreeMap<String, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut reruns = 0;
    for e in executions {
        let status = e["status"].as_str().unwrap_or("?").to_owned();
        if status != "succeeded" {
            failures.push(format!(
                "execution {} ended {status}: {}",
                e["id"], e["outcome"]["error"]
            ));
        }
        *statuses.entry(status).or_default() += 1;
        if e["outcome"]["output"].as_u64().is_some_and(|runs| runs > 1) {
            reruns += 1;
        }
        if e["schedule_id"].as_str() == Some(schedule_id)
            && let Some(fire) = e["fire_time"].as_str()
        {
            *fires.entry(fire.to_owned()).or_default() += 1;
        }
    }
    let duplicates: usize = fires.values().map(|n| n - 1).sum();
    if duplicates > 0 {
        failures.push(format!("{duplicates} fires have more than one execution"));
    }
    let times: Vec<chrono::DateTime<chrono::Utc>> = fires
        .keys()
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .collect();
    let missing = match (times.first(), times.last()) {
        (Some(first), Some(last)) => {
            let expected = (*last - *first).num_seconds() + 1;
            if *last < paused_at - chrono::Duration::seconds(5) {
                failures.push(format!(
                    "the last fire {last} is long before the pause {paused_at}"
                ));
            }
            expected - times.len() as i64
        }
        _ => {
            failures.push("no cron fire has an execution".to_owned());
            0
        }
    };
    if missing != 0 {
        failures.push(format!(
            "{missing} cron fires of the window have no execution"
        ));
    }
    let ids: HashSet<&str> = executions.iter().filter_map(|e| e["id"].as_str()).collect();
    let lost = accepted
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .count();
    if lost > 0 {
        failures.push(format!("{lost} accepted runs have no execution"));
    }
    json!({
        "executions": executions.len(),
        "fires": fires.len(),
        "duplicate_fires": duplicates,
        "missing_fires": missing,
        "ad_hoc_accepted": accepted.len(),
        "lost": lost,
        "statuses": statuses,
        "reran_to_completion": reruns,
    })
}

/// One database outage of `seconds` while runs are queued and running: the
/// nodes answer 503 (readiness and API), are not restarted, and finish
/// everything once the database is back.
async fn outage(
    o: &Options,
    api: &Api,
    plugin: &str,
    nodes: &mut [NodeProc],
    db: &mut Option<Database>,
    seconds: u64,
) -> Report {
    let Some(db) = db.as_mut() else {
        panic!("--outage needs --store mongodb");
    };
    let mut failures = Vec::new();
    let pids: Vec<Option<u32>> = nodes.iter().map(NodeProc::pid).collect();
    let mut accepted = Vec::new();
    for i in 0..30u64 {
        let body = json!({
            "plugin_id": plugin,
            "input": {"ms": if i % 3 == 0 { 3000 } else { 200 }},
            "retry": {"max_attempts": 1, "initial_backoff": "1s", "max_backoff": "1s"},
        });
        if let Some(e) = api.call(Method::POST, "/v1/executions", Some(body)).await {
            accepted.push(e["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.kill();
    let down = Instant::now();
    let (mut unready, mut api_503) = (0, 0);
    while down.elapsed() < Duration::from_secs(seconds) {
        let ready = api.http.get(format!("{}/readyz", api.urls[0])).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE) {
            unready += 1;
        }
        let listed = api
            .http
            .get(format!("{}/v1/executions?limit=1", api.urls[0]))
            .bearer_auth(&api.token)
            .send()
            .await;
        if let Ok(r) = listed
            && r.status() == StatusCode::SERVICE_UNAVAILABLE
        {
            let body: Value = r.json().await.unwrap_or_default();
            if body["error"]["code"] == "unavailable" {
                api_503 += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    db.restart().expect("restart SecantusDB");
    if unready == 0 {
        failures.push("/readyz never answered 503 during the outage".to_owned());
    }
    if api_503 == 0 {
        failures.push("the API never answered 503 during the outage".to_owned());
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = api.http.get(format!("{}/readyz", api.urls[0])).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        if Instant::now() > ready_by {
            failures.push("/readyz not 200 a minute after the database came back".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let executions = settle(api, &mut failures).await;
    let mut summary = check_all_final(&executions, &accepted, &mut failures);
    for (node, pid) in nodes.iter_mut().zip(pids) {
        if !node.alive() || node.pid() != pid {
            failures.push(format!("{} was restarted or died", node.id));
        }
    }
    summary["outage_seconds"] = json!(seconds);
    summary["unready_answers"] = json!(unready);
    summary["api_503_answers"] = json!(api_503);
    summary["nodes"] = json!(o.nodes);
    Report { summary, failures }
}

fn check_all_final(executions: &[Value], accepted: &[String], failures: &mut Vec<String>) -> Value {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for e in executions {
        let status = e["status"].as_str().unwrap_or("?").to_owned();
        if status != "succeeded" {
            failures.push(format!("execution {} ended {status}", e["id"]));
        }
        if e["attempt"].as_u64() != Some(1) {
            failures.push(format!(
                "execution {} used attempt {}",
                e["id"], e["attempt"]
            ));
        }
        *statuses.entry(status).or_default() += 1;
    }
    let ids: HashSet<&str> = executions.iter().filter_map(|e| e["id"].as_str()).collect();
    let lost = accepted
        .iter()
        .filter(|id| !ids.contains(id.as_str()))
        .count();
    if lost > 0 || accepted.len() != 30 {
        failures.push(format!("{lost} of {} accepted runs lost", accepted.len()));
    }
    json!({"executions": executions.len(), "lost": lost, "statuses": statuses})
}
