//! Test helper for the crash test: writes executions to a SQLite store as fast
//! as it can and prints `ack ID` after each write the store acknowledged. The
//! test kills it with SIGKILL and checks that every acknowledged id survived.
//!
//! Usage: store-writer sqlite://PATH

use std::io::Write;
use std::sync::Arc;
use taskhost_model::Execution;
use taskhost_model::clock::SystemClock;
use taskhost_store::Store;

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .expect("usage: store-writer sqlite://PATH");
    let store = Store::open(&url, Arc::new(SystemClock))
        .await
        .expect("open the store");
    let mut tasks = tokio::task::JoinSet::new();
    // Several writers at once, so acknowledged writes span group commits.
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            loop {
                let now = store.now();
                let execution = Execution::queued("crash", "writer", now, now);
                store.create_execution(&execution).await.expect("write");
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {}", execution.id).expect("stdout");
                out.flush().expect("flush");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
