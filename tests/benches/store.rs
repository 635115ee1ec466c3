//! SQLite store benchmark: `cargo bench -p taskhost-tests --bench store`.
//!
//! Inserts, claims and completes executions through the `Store` API, one at a
//! time (one caller) and with many concurrent callers (which the SQLite
//! backend group-commits), and prints operations per second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::Execution;
use taskhost_model::clock::SystemClock;
use taskhost_runtime::{Outcome, Status};
use taskhost_store::{Completion, Lease, Store};

const LEASE: Duration = Duration::from_secs(60);

fn rate(n: usize, elapsed: Duration) -> String {
    format!("{:>8.0}/s", n as f64 / elapsed.as_secs_f64())
}

fn outcome() -> Outcome {
    let mut outcome = Outcome::not_run(Status::Succeeded, "");
    outcome.error = None;
    outcome.output = Some(br#""Hello, bench!""#.to_vec());
    outcome
}

/// Runs `op` over `ids` with `callers` concurrent tasks; returns the wall time.
async fn drive<F, Fut>(ids: &[String], callers: usize, op: F) -> Duration
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let chunks: Vec<Vec<String>> = ids
        .chunks(ids.len().div_ceil(callers))
        .map(<[String]>::to_vec)
        .collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let op = op.clone();
        tasks.spawn(async move {
            for id in chunk {
                op(id).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    started.elapsed()
}

async fn round(store: &Store, n: usize, callers: usize) {
    let now = store.now();
    let executions: Vec<Execution> = (0..n)
        .map(|_| Execution::queued("bench", "p", now, now))
        .collect();
    let ids: Vec<String> = executions.iter().map(|e| e.id.clone()).collect();
    let by_id: Arc<std::collections::HashMap<String, Execution>> =
        Arc::new(executions.into_iter().map(|e| (e.id.clone(), e)).collect());

    let s = store.clone();
    let insert = drive(&ids, callers, move |id| {
        let (s, by_id) = (s.clone(), by_id.clone());
        async move { s.create_execution(&by_id[&id]).await.expect("insert") }
    })
    .await;
    let s = store.clone();
    let leases = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let held = leases.clone();
    let claim = drive(&ids, callers, move |id| {
        let (s, held) = (s.clone(), held.clone());
        async move {
            let claimed = s
                .claim(&id, "bench-node", LEASE)
                .await
                .expect("claim")
                .expect("claimed");
            let lease = Lease::of(&claimed).expect("a lease");
            held.lock().expect("leases").insert(id, lease);
        }
    })
    .await;
    let s = store.clone();
    let complete = drive(&ids, callers, move |id| {
        let (s, leases) = (s.clone(), leases.clone());
        async move {
            let lease = leases.lock().expect("leases")[&id].clone();
            let done = s
                .complete(&id, &lease, Completion::Finished(outcome()))
                .await
                .expect("complete");
            assert!(done.is_some());
        }
    })
    .await;
    println!(
        "  {callers:>3} caller(s), n={n}: insert {}  claim {}  complete {}  claim+complete {}",
        rate(n, insert),
        rate(n, claim),
        rate(n, complete),
        rate(n, claim + complete)
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 20_000 };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = Store::open(&url, Arc::new(SystemClock))
            .await
            .expect("open");
        println!("taskhost SQLite store benchmark (WAL, synchronous=NORMAL, group commit)");
        round(&store, n, 1).await;
        round(&store, n, 64).await;
    });
}
