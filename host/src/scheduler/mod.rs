//! The scheduler: turns schedules into executions at the right instants and
//! runs them in priority order, on as many nodes as share a store.
//!
//! One [`Node`] per process. Its parts, each a step that tests can drive by
//! hand with a [`ManualClock`](crate::clock::ManualClock) and that
//! [`Node::run`] drives in production:
//!
//! - [`Node::materialize_due`] ([`materializer`]): due fires → executions;
//! - [`Node::refill`]: the store's due-soon executions → the in-memory heap
//!   ([`queue`]); executions created on this node enter it at once;
//! - [`Node::dispatch`]: claim ready executions (priority, then due time) up
//!   to the node's worker limit and the per-tenant limit, and run them
//!   ([`worker`]): the lease is renewed while they run;
//! - [`Node::requeue_expired`]: executions of dead nodes go back to the queue;
//! - [`Node::heartbeat`]: the node's liveness record.
//!
//! Exactly-once rests on the store: unique fire keys, and claims and
//! completions by compare-and-swap with the lease owner checked.

mod materializer;
mod metrics;
mod queue;
pub mod trigger;
mod worker;

pub use materializer::{DEFAULT_GRACE, execution_for, first_fire};
pub use metrics::Metrics;

use crate::model::{Execution, NodeInfo, Schedule};
use crate::runtime::{Plugin, Runtime};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use queue::Queue;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

/// Node settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This node's id in leases and heartbeats; unique per process.
    pub node_id: String,
    /// Runs at once on this node; more wait in the queue.
    pub workers: usize,
    /// Runs at once per tenant on this node.
    pub tenant_limit: usize,
    /// How long a claim holds; renewed every third of it while running.
    pub lease: Duration,
    /// How far ahead the in-memory heap holds executions.
    pub horizon: Duration,
    /// How often the heap is refilled from the store (other nodes' executions).
    pub refill_every: Duration,
    /// Most executions fetched per refill.
    pub refill_limit: u32,
    /// How often due schedules are materialized.
    pub materialize_every: Duration,
    /// Fires later than this are "missed" and follow the catch-up policy.
    pub catch_up_grace: Duration,
    /// A node not heard from for this long is dead.
    pub heartbeat_ttl: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            node_id: format!("node-{}", crate::model::new_id()),
            workers: 64,
            tenant_limit: 64,
            lease: Duration::from_secs(30),
            horizon: Duration::from_secs(5),
            refill_every: Duration::from_millis(500),
            refill_limit: 10_000,
            materialize_every: Duration::from_millis(250),
            catch_up_grace: DEFAULT_GRACE,
            heartbeat_ttl: Duration::from_secs(15),
        }
    }
}

/// A plugin prepared once for all runs: the plugin and its name.
type PluginSlot = Arc<tokio::sync::OnceCell<(Plugin, String)>>;

/// Called when a run starts (for metrics and tests).
pub type RunObserver = Arc<dyn Fn(&Execution) + Send + Sync>;

/// A scheduler node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: SchedulerConfig,
    store: Store,
    runtime: Runtime,
    queue: Mutex<Queue>,
    workers: Arc<Semaphore>,
    tenants: Mutex<HashMap<String, usize>>,
    /// Executions this node runs now, for releasing their leases at shutdown.
    active: Mutex<std::collections::HashSet<String>>,
    /// Prepared plugins by id, each loaded once (single flight).
    plugins: Mutex<HashMap<String, PluginSlot>>,
    running: tokio::sync::Mutex<JoinSet<()>>,
    /// Wakes the dispatcher: new local work, or a worker freed.
    wake: Notify,
    observer: Option<RunObserver>,
    metrics: Metrics,
    started_at: DateTime<Utc>,
}

impl Node {
    pub fn new(config: SchedulerConfig, store: Store, runtime: Runtime) -> Node {
        Node::with_observer(config, store, runtime, None)
    }

    pub fn with_observer(
        config: SchedulerConfig,
        store: Store,
        runtime: Runtime,
        observer: Option<RunObserver>,
    ) -> Node {
        let started_at = store.now();
        Node {
            inner: Arc::new(NodeInner {
                workers: Arc::new(Semaphore::new(config.workers.max(1))),
                config,
                store,
                runtime,
                queue: Mutex::new(Queue::default()),
                tenants: Mutex::new(HashMap::new()),
                active: Mutex::new(std::collections::HashSet::new()),
                plugins: Mutex::new(HashMap::new()),
                running: tokio::sync::Mutex::new(JoinSet::new()),
                wake: Notify::new(),
                observer,
                metrics: Metrics::default(),
                started_at,
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.config.node_id
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// What this node has run.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active(&self) -> MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tenants(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts an execution into this node's heap if it is due within the horizon.
    pub(crate) fn offer(&self, e: &Execution) {
        let horizon = crate::store::after(self.inner.store.now(), self.inner.config.horizon);
        if e.due_at <= horizon && self.queue().offer(e) {
            self.inner.wake.notify_one();
        }
    }

    /// Submits an execution (ad hoc or trigger-now) and queues it here at once.
    pub async fn submit(&self, execution: &Execution) -> Result<(), StoreError> {
        self.inner.store.create_execution(execution).await?;
        self.offer(execution);
        Ok(())
    }

    /// Loads the store's due-soon executions into the heap. Returns how many were new.
    pub async fn refill(&self) -> Result<usize, StoreError> {
        let due = self
            .inner
            .store
            .due_soon(self.inner.config.horizon, self.inner.config.refill_limit)
            .await?;
        let mut queue = self.queue();
        Ok(due.iter().filter(|e| queue.offer(e)).count())
    }

    /// Executions held in the heap.
    pub fn queued(&self) -> usize {
        self.queue().len()
    }

    /// Runs in progress on this node.
    pub fn in_flight(&self) -> usize {
        self.inner.config.workers.max(1) - self.inner.workers.available_permits()
    }

    /// Claims and starts every ready execution the limits allow. Returns how
    /// many it started.
    pub async fn dispatch(&self) -> usize {
        let mut started = 0;
        loop {
            self.queue().promote(self.inner.store.now());
            let Ok(permit) = self.inner.workers.clone().try_acquire_owned() else {
                break;
            };
            let limit = self.inner.config.tenant_limit.max(1);
            let entry = {
                let tenants = self.tenants();
                self.queue()
                    .pop_ready(|t| tenants.get(t).copied().unwrap_or(0) < limit)
            };
            let Some(entry) = entry else { break };
            let claimed = self
                .inner
                .store
                .claim(
                    &entry.id,
                    &self.inner.config.node_id,
                    self.inner.config.lease,
                )
                .await;
            self.queue().forget(&entry.id);
            let execution = match claimed {
                Ok(Some(execution)) => execution,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(execution = %entry.id, error = %e, "claim failed");
                    continue;
                }
            };
            *self.tenants().entry(execution.tenant.clone()).or_default() += 1;
            self.active().insert(execution.id.clone());
            let node = self.clone();
            self.inner.running.lock().await.spawn(async move {
                let (tenant, id) = (execution.tenant.clone(), execution.id.clone());
                node.run_claimed(execution).await;
                if let Some(n) = node.tenants().get_mut(&tenant) {
                    *n = n.saturating_sub(1);
                }
                node.active().remove(&id);
                drop(permit);
                node.inner.wake.notify_one();
            });
            started += 1;
        }
        started
    }

    /// Waits until every run started so far has finished.
    pub async fn drain(&self) {
        let mut running = self.inner.running.lock().await;
        while running.join_next().await.is_some() {}
    }

    /// Re-queues executions whose lease expired (their node died).
    pub async fn requeue_expired(&self) -> Result<usize, StoreError> {
        let changed = self.inner.store.requeue_expired(1000).await?;
        for e in &changed {
            self.offer(e);
        }
        Ok(changed.len())
    }

    /// Records that this node is alive.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        let now = self.inner.store.now();
        let info = NodeInfo {
            id: self.inner.config.node_id.clone(),
            description: format!(
                "taskhost {} workers={}",
                env!("CARGO_PKG_VERSION"),
                self.inner.config.workers
            ),
            started_at: self.inner.started_at,
            last_seen: now,
            expires_at: now,
        };
        self.inner
            .store
            .heartbeat(&info, self.inner.config.heartbeat_ttl)
            .await
            .map(drop)
    }

    /// One pass of everything, for tests driving a manual clock: materialize,
    /// re-queue expired, refill, dispatch. Returns the runs started.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        self.materialize_due(1000).await?;
        self.requeue_expired().await?;
        self.refill().await?;
        Ok(self.dispatch().await)
    }

    /// Runs the node until `shutdown` completes, then stops claiming, lets
    /// runs finish for up to `grace`, and releases the leases of the rest.
    pub async fn run(&self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let mut loops = JoinSet::new();
        let every = |d: Duration| {
            let mut t = tokio::time::interval(d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let node = self.clone();
        let mut beat = every(self.inner.config.heartbeat_ttl / 3);
        loops.spawn(async move {
            loop {
                beat.tick().await;
                if let Err(e) = node.heartbeat().await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        });
        let node = self.clone();
        let mut tick = every(self.inner.config.materialize_every);
        loops.spawn(async move {
            loop {
                tick.tick().await;
                if let Err(e) = node.materialize_due(1000).await {
                    tracing::warn!(error = %e, "materializer pass failed");
                }
            }
        });
        let node = self.clone();
        let mut reap = every(self.inner.config.lease / 2);
        loops.spawn(async move {
            loop {
                reap.tick().await;
                if let Err(e) = node.requeue_expired().await {
                    tracing::warn!(error = %e, "re-queueing expired leases failed");
                }
            }
        });
        let node = self.clone();
        loops.spawn(async move { node.dispatch_loop().await });
        shutdown.await;
        loops.shutdown().await;
        self.shut_down(grace).await;
    }

    /// Sleeps until the next due execution, new work, a free worker or the
    /// next refill; then dispatches.
    async fn dispatch_loop(&self) {
        let store_wake = self.inner.store.wakeups();
        let mut refill_at = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= refill_at {
                if let Err(e) = self.refill().await {
                    tracing::warn!(error = %e, "refill failed");
                }
                refill_at = tokio::time::Instant::now() + self.inner.config.refill_every;
            }
            self.dispatch().await;
            let mut until = refill_at;
            if let Some(due) = self.queue().next_due() {
                let wait = (due - self.inner.store.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                until = until.min(tokio::time::Instant::now() + wait);
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = self.inner.wake.notified() => {}
                () = store_wake.notified() => { refill_at = tokio::time::Instant::now(); }
            }
        }
    }

    /// Graceful stop: runs get `grace` to finish; the rest are released.
    async fn shut_down(&self, grace: Duration) {
        let mut running = self.inner.running.lock().await;
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            running.shutdown().await;
            let unfinished: Vec<String> = self.active().drain().collect();
            for id in unfinished {
                if let Err(e) = self
                    .inner
                    .store
                    .release(&id, &self.inner.config.node_id)
                    .await
                {
                    tracing::warn!(execution = %id, error = %e, "could not release a lease at shutdown");
                }
            }
        }
        let _ = self
            .inner
            .store
            .remove_node(&self.inner.config.node_id)
            .await;
    }
}

/// Pauses a schedule of `tenant`: it fires no more until resumed.
pub async fn pause(store: &Store, tenant: &str, id: &str) -> Result<Option<Schedule>, StoreError> {
    store
        .modify_schedule(Some(tenant), id, |s| {
            s.paused = true;
            true
        })
        .await
}

/// Resumes a paused schedule. It fires again from now on: fires that fell in
/// the pause are not caught up.
pub async fn resume(store: &Store, tenant: &str, id: &str) -> Result<Option<Schedule>, StoreError> {
    let now = store.now();
    store
        .modify_schedule(Some(tenant), id, |s| {
            s.paused = false;
            s.next_fire_at = first_fire(s, now).ok().flatten();
            true
        })
        .await
}

/// A number in [0, 1) derived from `key`: the same on every node.
pub(crate) fn spread(key: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
