//! Test helper for the node-crash test: runs one scheduler node on a store
//! until killed. Prints `ready` once it runs.
//!
//! Usage: scheduler-node STORE_URL NODE_ID

use std::sync::Arc;
use std::time::Duration;
use taskhost_model::clock::SystemClock;
use taskhost_runtime::{Runtime, RuntimeConfig};
use taskhost_scheduler::{Node, SchedulerConfig};
use taskhost_store::Store;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: scheduler-node STORE_URL NODE_ID");
    let node_id = args
        .next()
        .expect("usage: scheduler-node STORE_URL NODE_ID");
    let store = Store::open(&url, Arc::new(SystemClock))
        .await
        .expect("open the store");
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 64,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let config = SchedulerConfig {
        node_id,
        lease: Duration::from_secs(30),
        tenant_limit: 64,
        ..SchedulerConfig::default()
    };
    let node = Node::new(config, store, runtime);
    println!("ready");
    node.run(std::future::pending(), Duration::from_secs(1))
        .await;
}
