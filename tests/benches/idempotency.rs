//! What an `Idempotency-Key` costs: `cargo bench -p taskhost-tests --bench
//! idempotency` (SQLite; with `TASKHOST_TEST_MONGODB_URI` set, MongoDB too).
//!
//! 1. The store: recording a new key (a lookup and an insert under the
//!    unique index) and finding an existing one, one caller and 64 at once,
//!    in microseconds per key.
//! 2. The API, through the real binary: `POST /v1/executions` of the no-op
//!    `bench` plugin without a key, with a new key, and a retry of a key,
//!    in rounds that alternate (the machine's drift hits all three alike);
//!    the median per request.

use chrono::Utc;
use std::sync::Arc;
use std::time::Instant;
use taskhost_model::IdempotencyRecord;
use taskhost_model::clock::SystemClock;
use taskhost_store::Store;
use taskhost_tests::median;
use taskhost_tests::server::Server;

const KEYS: usize = 5_000;

fn record(tenant: &str, key: String) -> IdempotencyRecord {
    let now = Utc::now();
    IdempotencyRecord {
        tenant: tenant.into(),
        key,
        request: "0".repeat(64),
        ids: vec![taskhost_model::new_id()],
        created_at: now,
        expires_at: now + chrono::Duration::hours(24),
    }
}

async fn keys(store: &Store, label: &str, callers: usize) {
    let run = taskhost_model::new_id();
    let records: Vec<IdempotencyRecord> = (0..KEYS)
        .map(|i| record("bench", format!("{run}-{i}")))
        .collect();
    for (what, expect_first) in [("new key", true), ("existing key", false)] {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in records.chunks(KEYS.div_ceil(callers)) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for r in chunk {
                    let found = store.idempotency_first(&r).await.expect("put");
                    assert_eq!(found.is_none(), expect_first);
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("task");
        }
        let each = started.elapsed().as_secs_f64() * 1e6 / KEYS as f64;
        println!("{label:8} {what:13} {callers:>3} callers: {each:>8.1} µs per key");
    }
}

async fn api() {
    let s = Server::start_with(None, &["--workers", "8"], None);
    let token = s.admin("bench");
    let plugin = s.upload(&token, "bench").await["id"].clone();
    let body = serde_json::json!({ "plugin_id": plugin });
    let post = async |key: Option<&str>| {
        let mut request = s
            .client
            .post(s.at("/v1/executions"))
            .bearer_auth(&token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let started = Instant::now();
        let response = request.send().await.expect("post");
        assert!(response.status().is_success(), "{}", response.status());
        started.elapsed()
    };
    let (mut plain, mut keyed, mut retried) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..10 {
        for i in 0..100 {
            let key = format!("round-{round}-{i}");
            plain.push(post(None).await);
            keyed.push(post(Some(&key)).await);
            retried.push(post(Some(&key)).await);
        }
    }
    println!(
        "api      POST /v1/executions, median of 1,000: no key {:?}, new key {:?}, retry {:?}",
        median(plain),
        median(keyed),
        median(retried)
    );
}

fn main() {
    let rt = taskhost_tests::bench_runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = Store::open(&url, Arc::new(SystemClock))
            .await
            .expect("store");
        keys(&store, "sqlite", 1).await;
        keys(&store, "sqlite", 64).await;
        let db = format!(
            "taskhost_bench_{}",
            taskhost_model::new_id().replace('-', "")
        );
        if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
            let store = Store::open(&url, Arc::new(SystemClock))
                .await
                .expect("store");
            keys(&store, "mongodb", 1).await;
        }
        api().await;
    });
}
