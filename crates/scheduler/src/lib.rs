//! The scheduler: turns schedules into executions at the right instants and
//! runs them in priority order, on as many nodes as share a store.
//!
//! One [`Node`] per process. Its parts, each a step that tests can drive by
//! hand with a [`ManualClock`](taskhost_model::clock::ManualClock) and that
//! [`Node::run`] drives in production:
//!
//! - [`Node::materialize_due`] ([`materializer`]): due fires → executions;
//! - [`Node::refill`]: the store's due-soon executions → the in-memory heap
//!   ([`queue`]); executions created on this node enter it at once;
//! - [`Node::dispatch`]: claim ready executions (priority, then due time) up
//!   to the node's worker limit and the per-tenant limit, and run them
//!   ([`worker`]): the lease is renewed while they run;
//! - [`Node::requeue_expired`]: executions of dead nodes go back to the queue;
//! - [`Node::sweep_expired`] ([`retention`]): finished executions past their
//!   retention are removed, by one node at a time;
//! - [`Node::heartbeat`]: the node's liveness record.
//!
//! [`Node::run`] ([`node_loop`]) keeps each going, with the webhook
//! deliverer ([`webhooks`]) and what the node counts ([`metrics`]), on its own interval until
//! shutdown, then stops gracefully.
//!
//! Every execution is made by [`Node::intake`] ([`intake`]), which resolves
//! its plugin, checks its policy and the tenant's quota, writes it and
//! queues it. Exactly-once rests on
//! the store: unique fire keys, and claims and completions by compare-and-swap
//! with the lease (owner and fencing token) checked; [`lease`] says how a
//! node holds a lease safely.

mod dispatch;
mod events;
mod fires;
mod health;
pub mod intake;
mod lease;
mod materializer;
pub mod metrics;
mod node_loop;
pub mod partitions;
mod queue;
mod retention;
mod watch;
pub mod webhooks;
mod worker;
mod workflows;
pub use workflows::{Delivered, DeliveryError};

pub use events::EventFire;
pub use fires::{BackfillError, BackfillReport, MAX_BACKFILL_FIRES};
pub use intake::{Admission, Decision, IntakeError, Origin, PluginRef, Refusal, Resolved, Work};
pub use materializer::{DEFAULT_GRACE, LEDGER_CHUNK, first_fire};
pub use retention::SWEEPER_LOCK;
pub use watch::Watch;

use chrono::{DateTime, Utc};
use lru::LruCache;
use queue::Queue;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use taskhost_model::quota::QuotaConfig;
use taskhost_model::{DEFAULT_RETENTION, Execution, NodeInfo, Role};
use taskhost_runtime::{Limits, Plugin, Runtime};
use taskhost_store::{Queued, Store, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Node settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This node's id in leases and heartbeats; unique per process.
    pub node_id: String,
    /// What this node does.
    pub role: Role,
    /// Runs at once on this node; more wait in the queue.
    pub workers: usize,
    /// Runs at once per tenant on this node. Below `workers`, so that no one
    /// tenant can hold every worker.
    pub tenant_limit: usize,
    /// How long a claim holds; renewed every third of it while running.
    pub lease: Duration,
    /// How far ahead the in-memory heap holds executions.
    pub horizon: Duration,
    /// How often the heap is refilled from the store (other nodes' executions).
    pub refill_every: Duration,
    /// Most executions fetched per refill, shared equally by the tenants
    /// with due work, so that one tenant's backlog cannot fill the heap.
    pub refill_limit: u32,
    /// How often due schedules are materialized.
    pub materialize_every: Duration,
    /// Most schedules one pass of the fire path reads (a node makes passes
    /// back to back while they come full).
    pub pass_size: u32,
    /// How far ahead fires are made: their executions wait in the store and
    /// the heap, and the dispatcher starts them on their instant. Schedules
    /// whose overlap policy looks at running work, and paused ones, are
    /// decided at their instant. Zero: each fire when due.
    pub fire_horizon: Duration,
    /// Own partitions of the fire path under leases in the store
    /// ([`partitions`]), so each schedule's fires are made by one node and
    /// nodes add capacity. Off, the node makes every schedule's fires
    /// (tests driving a node by hand; racing nodes stay correct).
    pub partitioned: bool,
    /// How long a partition's lease holds; renewed every third of it.
    pub partition_lease: Duration,
    /// Fires later than this are "missed" and follow the catch-up policy.
    pub catch_up_grace: Duration,
    /// A node not heard from for this long is dead.
    pub heartbeat_ttl: Duration,
    /// The most any run may ask for: per-run limits above these are refused.
    pub caps: Limits,
    /// What workflows are held to: steps, children, depth, lifetime, fuel.
    pub workflow_bounds: taskhost_model::workflow::WorkflowBounds,
    /// Per-tenant quotas.
    pub quotas: QuotaConfig,
    /// How long finished executions are kept unless their schedule says.
    pub retention: Duration,
    /// How often a node tries to sweep expired executions.
    pub sweep_every: Duration,
    /// Plugins whose name and hash this node remembers (the compiled code is
    /// in the runtime's cache, bounded by bytes).
    pub plugin_cache_entries: usize,
    /// The key tenant secrets are sealed under; without one, runs that
    /// name secrets cannot read them.
    pub secrets_key: Option<taskhost_model::secrets::SecretKey>,
    /// Start a new run in [`Node::enqueue`] itself when a worker is free and
    /// nothing ready waits ahead of it, storing it already claimed (`serve`
    /// does). Off, every run goes through the heap and [`Node::dispatch`],
    /// which is what tests driving a node step by step expect.
    pub start_on_enqueue: bool,
    /// The node's way out: its network policy and HTTP client, for runs'
    /// requests and webhooks. The default reaches nothing.
    pub egress: taskhost_net::Egress,
}

/// Per-run caps a node allows by default. Output and log caps keep the
/// stored outcome of a run well under its ceiling
/// ([`taskhost_runtime::MAX_STORED_OUTCOME_BYTES`]).
pub const DEFAULT_CAPS: Limits = Limits {
    fuel: 100_000_000_000,
    memory_bytes: 1 << 30,
    timeout: Duration::from_secs(15 * 60),
    output_bytes: 4 << 20,
    log_bytes: 1 << 20,
    http_requests: taskhost_runtime::MAX_HTTP_RECORDS as u32,
    http_sent_bytes: 64 << 20,
    http_received_bytes: 256 << 20,
    http_timeout: Duration::from_secs(5 * 60),
};

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            node_id: format!("node-{}", taskhost_model::new_id()),
            role: Role::All,
            workers: 64,
            tenant_limit: 16,
            lease: Duration::from_secs(30),
            horizon: Duration::from_secs(5),
            refill_every: Duration::from_millis(500),
            refill_limit: 10_000,
            materialize_every: Duration::from_millis(250),
            pass_size: 2000,
            fire_horizon: Duration::ZERO,
            partitioned: false,
            partition_lease: Duration::from_secs(10),
            catch_up_grace: DEFAULT_GRACE,
            heartbeat_ttl: Duration::from_secs(15),
            caps: DEFAULT_CAPS,
            workflow_bounds: Default::default(),
            quotas: QuotaConfig::default(),
            retention: DEFAULT_RETENTION,
            sweep_every: Duration::from_secs(60),
            plugin_cache_entries: 4096,
            secrets_key: None,
            start_on_enqueue: false,
            egress: taskhost_net::Egress::deny_all(),
        }
    }
}

/// What a node remembers of a plugin: its wasm hash (the runtime caches the
/// compiled code by it) and its name (the kv namespace).
#[derive(Clone)]
struct PluginMeta {
    sha256: String,
    name: String,
}

/// A plugin being loaded, shared by every run that waits for it.
type Loading = Arc<tokio::sync::OnceCell<(Plugin, String)>>;

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
    /// Executions this node runs now.
    active: Mutex<HashSet<String>>,
    /// Plugins seen, bounded; the compiled code lives in the runtime's cache.
    plugins: Mutex<LruCache<String, PluginMeta>>,
    /// What the intake remembers: plugins found lately, queued counts.
    intake: intake::memory::Memory,
    /// The partitions this node owns, and its passes' coverage.
    partitions: partitions::Partitions,
    /// Who waits for which run's end.
    watchers: watch::Watchers,
    /// Joining parents this node made due, and when: a child ending before
    /// then need not wake its parent again.
    woken: Mutex<LruCache<String, DateTime<Utc>>>,
    /// Parents this node read as not cancelled, and until when it trusts
    /// that: the children of one fan-out read their parent about once.
    live_parents: Mutex<LruCache<String, tokio::time::Instant>>,
    /// The last heartbeat's outcome: readiness.
    health: health::Health,
    /// Plugins being loaded now (single flight); removed once loaded.
    loading: Mutex<HashMap<String, Loading>>,
    /// Run tasks; finished ones are reaped as they end.
    running: TaskTracker,
    /// Cancelled at the end of a graceful shutdown: unfinished runs stop and
    /// give their executions back.
    stop_runs: CancellationToken,
    /// Wakes the dispatcher: new local work, or a worker freed.
    wake: Notify,
    /// The last refill found more due work than it loaded.
    backlog: std::sync::atomic::AtomicBool,
    /// Asked to drain (seen at a heartbeat): claims nothing more.
    draining: std::sync::atomic::AtomicBool,
    observer: Option<RunObserver>,
    metrics: crate::metrics::Metrics,
    started_at: DateTime<Utc>,
    /// Watches the wall clock for steps.
    clock: lease::ClockWatch,
    /// Notified when the wall clock stepped: runs renew their leases at once.
    clock_stepped: Notify,
}

/// Most executions claimed in one store call.
const CLAIM_BATCH: usize = 256;

/// A claimed run's hold on a worker and a tenant slot. Dropping it — when the
/// run ends, or if its task panics — gives both back and wakes the dispatcher.
struct RunSlot {
    node: Node,
    tenant: String,
    id: String,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        {
            let mut tenants = self.node.tenants();
            if let Some(n) = tenants.get_mut(&self.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    tenants.remove(&self.tenant);
                }
            }
        }
        self.node.active().remove(&self.id);
        // Give the worker back before waking the dispatcher, so that it finds it.
        drop(self.permit.take());
        self.node.inner.wake.notify_one();
    }
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
        let cache = NonZeroUsize::new(config.plugin_cache_entries).unwrap_or(NonZeroUsize::MIN);
        Node {
            inner: Arc::new(NodeInner {
                workers: Arc::new(Semaphore::new(config.workers.max(1))),
                config,
                store,
                runtime,
                queue: Mutex::new(Queue::default()),
                tenants: Mutex::new(HashMap::new()),
                active: Mutex::new(HashSet::new()),
                plugins: Mutex::new(LruCache::new(cache)),
                loading: Mutex::new(HashMap::new()),
                intake: intake::memory::Memory::new(cache),
                partitions: partitions::Partitions::default(),
                watchers: watch::Watchers::default(),
                woken: Mutex::new(LruCache::new(
                    std::num::NonZeroUsize::new(4096).expect("non-zero"),
                )),
                live_parents: Mutex::new(LruCache::new(
                    std::num::NonZeroUsize::new(4096).expect("non-zero"),
                )),
                health: health::Health::default(),
                running: TaskTracker::new(),
                stop_runs: CancellationToken::new(),
                wake: Notify::new(),
                backlog: std::sync::atomic::AtomicBool::new(false),
                draining: std::sync::atomic::AtomicBool::new(false),
                observer,
                metrics: crate::metrics::Metrics::new(),
                started_at,
                clock: lease::ClockWatch::new(started_at),
                clock_stepped: Notify::new(),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.config.node_id
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// What this node has run.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active(&self) -> MutexGuard<'_, HashSet<String>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tenants(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node claims work now: it runs executions and is not draining.
    pub fn claims(&self) -> bool {
        self.inner.config.role.runs() && !self.draining()
    }

    /// Whether this node was asked to drain.
    pub fn draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Puts an execution into this node's heap if it is due within the horizon.
    pub(crate) fn offer(&self, e: &Execution) {
        self.offer_queued(&Queued::of(e));
    }

    /// [`Node::offer`] for what a queue keeps of an execution.
    pub(crate) fn offer_queued(&self, e: &Queued) {
        if !self.claims() {
            return; // another node will find it in the store
        }
        let horizon =
            taskhost_model::time::add_saturating(self.inner.store.now(), self.inner.config.horizon);
        if e.due_at <= horizon && self.queue().offer(e) {
            self.inner.wake.notify_one();
        }
    }

    /// Forgets a deleted plugin: its name and its compiled code.
    pub fn forget_plugin(&self, plugin_id: &str, sha256: &str) {
        self.inner
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop(plugin_id);
        self.inner.intake.forget(plugin_id);
        self.inner.runtime.evict(sha256);
    }

    /// Loads the store's due-soon executions into the heap, an equal share
    /// per tenant. Returns how many were new.
    pub async fn refill(&self) -> Result<usize, StoreError> {
        let config = &self.inner.config;
        let due = self
            .inner
            .store
            .due_soon(config.horizon, config.refill_limit)
            .await?;
        // A full load means more is waiting: refill again as soon as the heap runs low.
        self.inner.backlog.store(
            due.len() as u64 >= u64::from(config.refill_limit) / 2,
            std::sync::atomic::Ordering::Relaxed,
        );
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

    /// Workers free now, and the tenants holding slots (for checks that
    /// nothing leaked).
    pub fn slots(&self) -> (usize, usize) {
        (self.inner.workers.available_permits(), self.tenants().len())
    }

    /// Waits until every run started so far has finished.
    pub async fn drain(&self) {
        self.inner.running.close();
        self.inner.running.wait().await;
        self.inner.running.reopen();
    }

    /// Re-queues executions whose lease expired (their node died).
    pub async fn requeue_expired(&self) -> Result<usize, StoreError> {
        // This node's own runs are alive whatever the clock says (it stops
        // a run whose lease it cannot renew in time).
        let ours = self.active().clone();
        let changed = self.inner.store.requeue_expired(1000, &ours).await?;
        for e in &changed {
            self.offer(e);
        }
        Ok(changed.len())
    }

    /// Compares the wall clock with the monotonic one; on a step, says so
    /// and has every run renew its lease at once.
    pub fn watch_clock(&self) {
        if let Some(step) = self.inner.clock.look(self.inner.store.now()) {
            self.inner.metrics.clock_step();
            tracing::warn!(
                step_ms = step.num_milliseconds(),
                "the wall clock stepped; renewing leases now"
            );
            self.inner.clock_stepped.notify_waiters();
        }
    }

    /// Records that this node is alive, and learns whether it was asked to drain.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        let now = self.inner.store.now();
        let config = &self.inner.config;
        let info = NodeInfo {
            id: config.node_id.clone(),
            description: format!(
                "taskhost {} role={} workers={}",
                env!("CARGO_PKG_VERSION"),
                config.role.as_str(),
                config.workers
            ),
            role: config.role,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            workers: if config.role.runs() {
                config.workers
            } else {
                0
            },
            in_flight: self.in_flight(),
            draining: false,
            started_at: self.inner.started_at,
            last_seen: now,
            expires_at: now,
        };
        let seen = self
            .inner
            .store
            .heartbeat(&info, config.heartbeat_ttl)
            .await;
        self.inner.health.record(&seen);
        let seen = seen?;
        match self.inner.store.live_nodes().await {
            Ok(live) => self.inner.health.saw_live_nodes(live.len()),
            Err(_) => self.inner.metrics.store_error("live_nodes"),
        }
        if seen.draining && !self.draining() {
            tracing::info!(node = %config.node_id, "draining: claiming nothing more; runs in progress finish");
            self.inner
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.queue().clear();
        }
        Ok(())
    }

    /// One pass of everything, for tests driving a manual clock: materialize,
    /// re-queue expired, refill, dispatch. Returns the runs started.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        self.materialize_due(1000).await?;
        self.requeue_expired().await?;
        self.refill().await?;
        Ok(self.dispatch().await)
    }
}
