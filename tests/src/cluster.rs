//! Scheduler nodes for tests: several nodes sharing one store (each with its
//! own connection, as separate processes would have), one manual clock, and a
//! record of every run start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use taskhost_model::clock::ManualClock;
use taskhost_model::{PluginRecord, new_id};
use taskhost_runtime::{Runtime, RuntimeConfig};
use taskhost_scheduler::{Node, SchedulerConfig};
use taskhost_store::Store;

/// One runtime per test process, shared by its nodes (each pool is large).
pub fn shared_runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(RuntimeConfig {
                max_concurrent_runs: 256,
                ..RuntimeConfig::default()
            })
            .expect("runtime")
        })
        .clone()
}

/// Run starts seen by the nodes, per execution id.
#[derive(Clone, Default)]
pub struct Starts(Arc<Mutex<HashMap<String, usize>>>);

impl Starts {
    pub fn counts(&self) -> HashMap<String, usize> {
        self.0.lock().expect("starts").clone()
    }

    pub fn total(&self) -> usize {
        self.0.lock().expect("starts").values().sum()
    }
}

/// Nodes sharing one store.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub starts: Starts,
}

impl Cluster {
    /// `n` nodes on the store at `url`, all on `clock`.
    pub async fn new(url: &str, clock: &ManualClock, n: usize, config: SchedulerConfig) -> Cluster {
        let starts = Starts::default();
        let mut nodes = Vec::new();
        for i in 0..n {
            let store = Store::open(url, Arc::new(clock.clone()))
                .await
                .expect("open the store");
            let seen = starts.clone();
            let observer: taskhost_scheduler::RunObserver = Arc::new(move |e| {
                *seen
                    .0
                    .lock()
                    .expect("starts")
                    .entry(e.id.clone())
                    .or_default() += 1;
            });
            let config = SchedulerConfig {
                node_id: format!("node-{i}"),
                ..config.clone()
            };
            nodes.push(Node::with_observer(
                config,
                store,
                shared_runtime(),
                Some(observer),
            ));
        }
        Cluster { nodes, starts }
    }

    /// One tick on every node at once (so they race), then wait for the runs.
    pub async fn tick(&self) {
        let ticks = self.nodes.iter().map(|n| n.tick());
        for result in futures::future::join_all(ticks).await {
            result.expect("tick");
        }
        for node in &self.nodes {
            node.drain().await;
        }
    }
}

/// Stores a built plugin for `tenant` and returns its record.
pub async fn upload(store: &Store, tenant: &str, name: &str) -> PluginRecord {
    let wasm = crate::plugin(name);
    let record = PluginRecord {
        id: new_id(),
        tenant: tenant.into(),
        name: name.into(),
        version: "1.0.0".into(),
        sha256: taskhost_runtime::sha256_hex(&wasm),
        size: wasm.len() as u64,
        world: taskhost_runtime::WORLD.into(),
        created_at: store.now(),
        created_by: "test".into(),
    };
    store.create_plugin(&record, &wasm).await.expect("upload");
    record
}

/// A schedule of `plugin_id` on `trigger`, made at `now` with every other
/// field at its default (overlap `allow`, catch-up `once`), its cursor on its
/// first fire: for tests to adjust and store.
pub fn schedule(
    tenant: &str,
    plugin_id: &str,
    trigger: taskhost_model::Trigger,
    now: chrono::DateTime<chrono::Utc>,
) -> taskhost_model::Schedule {
    let mut s = taskhost_model::Schedule {
        id: new_id(),
        tenant: tenant.into(),
        name: format!("s-{}", new_id()),
        plugin_id: plugin_id.into(),
        plugin_alias: None,
        trigger,
        policy: taskhost_model::RunPolicy {
            retry: Some(Default::default()),
            ..Default::default()
        },
        overlap: Default::default(),
        catch_up: Default::default(),
        jitter: Duration::ZERO,
        starts_at: None,
        ends_at: None,
        paused: false,
        paused_until: None,
        next_fire_at: None,
        last_fire_at: None,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    s.next_fire_at = taskhost_scheduler::first_fire(&s, now).expect("a valid trigger");
    s
}

/// Scheduler settings for tests: short lease, and a tenant may use every
/// worker (most tests have one tenant); everything else default.
pub fn test_config() -> SchedulerConfig {
    SchedulerConfig {
        lease: Duration::from_secs(30),
        workers: 64,
        tenant_limit: 64,
        ..SchedulerConfig::default()
    }
}
