//! What a concurrency key costs a run: `cargo bench -p taskhost-tests
//! --bench flow` (SQLite; with `TASKHOST_TEST_MONGODB_URI` set, MongoDB too).
//!
//! Each round claims and completes the same number of runs without a key
//! and with one (its limit high enough never to hold a run back, so only the
//! slot's cost shows), one run at a time; rounds alternate so the machine's
//! drift hits both alike. Printed: the median round, in microseconds per
//! run (claim + completion).

use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::clock::SystemClock;
use taskhost_model::flow::Concurrency;
use taskhost_model::{Execution, Outcome, Status};
use taskhost_store::{Completion, Lease, Store};
use taskhost_tests::median;

const LEASE: Duration = Duration::from_secs(30);

async fn round(store: &Store, runs: usize, key: Option<&str>) -> f64 {
    let now = store.now();
    let mut ids = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut e = Execution::queued("bench", "p", now, now);
        e.policy.concurrency = key.map(|k| Concurrency {
            key: Some(k.into()),
            key_from: None,
            limit: 1000,
        });
        store.create_execution(&e).await.expect("create");
        ids.push(e.id);
    }
    let started = Instant::now();
    for id in &ids {
        let e = store
            .claim(id, "bench", LEASE)
            .await
            .expect("claim")
            .expect("claimed");
        let held = Lease::of(&e).expect("lease");
        let outcome = Outcome::not_run(Status::Succeeded, "");
        store
            .complete(id, &held, Completion::Finished(outcome))
            .await
            .expect("complete")
            .expect("completed");
    }
    started.elapsed().as_secs_f64() * 1e6 / runs as f64
}

async fn compare(store: &Store, label: &str, runs: usize, rounds: usize) {
    let (mut plain, mut keyed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(round(store, runs, None).await);
        keyed.push(round(store, runs, Some("customer-42")).await);
    }
    let (p, k) = (median(plain), median(keyed));
    println!(
        "{label:8} claim + complete, median of {rounds} rounds of {runs}: no key {p:.1} µs, \
         with a concurrency key {k:.1} µs (+{:.1} µs per run)",
        k - p
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
        compare(&store, "sqlite", 1000, 9).await;
        let db = format!(
            "taskhost_bench_{}",
            taskhost_model::new_id().replace('-', "")
        );
        if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
            let store = Store::open(&url, Arc::new(SystemClock))
                .await
                .expect("store");
            compare(&store, "mongodb", 100, 5).await;
        }
    });
}
