//! What a node counts, in one Prometheus registry (`prometheus-client`),
//! served by the API's `/metrics` in the OpenMetrics text format.
//!
//! Every metric is registered here, with its help text, so this file is the
//! list of what an operator can watch. Counters are bumped where things
//! happen (runs, fires, sweeps, and every error path: store errors by
//! operation, lease losses, refused uploads, error responses by code, failed
//! TLS reloads); gauges of the node's state are sampled at scrape time
//! ([`Snapshot`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency and duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The store operations whose failures are counted (`store_errors{op}`).
pub const STORE_OPS: [&str; 13] = [
    "claim",
    "renew",
    "complete",
    "release",
    "refill",
    "heartbeat",
    "materialize",
    "partitions",
    "requeue_expired",
    "sweep",
    "live_nodes",
    "ping",
    "api",
];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct When {
    when: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Fate {
    fate: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

/// The node's state at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub queued: usize,
    pub in_flight: usize,
    pub workers_free: usize,
    pub tenants_running: usize,
    /// `None` when the store could not tell.
    pub live_nodes: Option<usize>,
    /// Plugin compilations in progress, and the most there were at once.
    pub compiling: usize,
    pub compiling_peak: usize,
}

/// A node's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<Status, Counter>,
    start_latency: Histogram,
    duration: Histogram,
    fuel: Counter,
    fires_skipped: Counter,
    fires: Family<Fate, Counter>,
    swept: Counter,
    store_errors: Family<Op, Counter>,
    lease_losses: Family<When, Counter>,
    uploads_refused: Family<Code, Counter>,
    api_errors: Family<Code, Counter>,
    tls_reload_failures: Counter,
    host_faults: Counter,
    results_unsaved: Counter,
    clock_steps: Counter,
    http_requests: Family<Outcome, Counter>,
    http_bytes: Family<Direction, Counter>,
    webhook_attempts: Family<Outcome, Counter>,
    queue_depth: Gauge,
    in_flight: Gauge,
    workers_free: Gauge,
    tenants_running: Gauge,
    live_nodes: Gauge,
    compiling: Gauge,
    compiling_peak: Gauge,
    unreadable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("taskhost");
        let m = Metrics {
            runs: Family::default(),
            start_latency: Histogram::new(BUCKETS),
            duration: Histogram::new(BUCKETS),
            fuel: Counter::default(),
            fires_skipped: Counter::default(),
            fires: Family::default(),
            swept: Counter::default(),
            store_errors: Family::default(),
            lease_losses: Family::default(),
            uploads_refused: Family::default(),
            api_errors: Family::default(),
            tls_reload_failures: Counter::default(),
            host_faults: Counter::default(),
            results_unsaved: Counter::default(),
            clock_steps: Counter::default(),
            http_requests: Family::default(),
            http_bytes: Family::default(),
            webhook_attempts: Family::default(),
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            workers_free: Gauge::default(),
            tenants_running: Gauge::default(),
            live_nodes: Gauge::default(),
            compiling: Gauge::default(),
            compiling_peak: Gauge::default(),
            unreadable: Gauge::default(),
            registry: Registry::default(),
        };
        m.register_runs(&mut registry);
        m.register_errors(&mut registry);
        m.register_state(&mut registry);
        // Known series start at zero, so that alerts on them need no
        // "absent" clause.
        for op in STORE_OPS {
            drop(m.store_errors.get_or_create(&Op { op }));
        }
        for when in ["before_start", "mid_run", "at_completion", "unconfirmed"] {
            drop(m.lease_losses.get_or_create(&When { when }));
        }
        Metrics { registry, ..m }
    }

    /// Registers runs, fires and retention.
    fn register_runs(&self, r: &mut Registry) {
        r.register(
            "runs",
            "Runs finished on this node, by status",
            self.runs.clone(),
        );
        r.register(
            "schedule_to_start_seconds",
            "Delay from an execution's due time to its start",
            self.start_latency.clone(),
        );
        r.register(
            "run_duration_seconds",
            "Wall-clock time of runs",
            self.duration.clone(),
        );
        r.register(
            "fuel_consumed",
            "Fuel burned by runs on this node",
            self.fuel.clone(),
        );
        r.register(
            "fires_skipped",
            "Schedule fires refused by a quota or policy",
            self.fires_skipped.clone(),
        );
        r.register(
            "fires",
            "Schedule fires by fate and reason (the ledger's records), counted by the node that decided them",
            self.fires.clone(),
        );
        r.register(
            "executions_swept",
            "Finished executions removed after their retention",
            self.swept.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed, by operation",
            self.store_errors.clone(),
        );
        r.register(
            "lease_losses",
            "Runs whose lease another node took over, by when it was noticed",
            self.lease_losses.clone(),
        );
    }

    /// Registers what went wrong, by kind; outbound HTTP and webhooks.
    fn register_errors(&self, r: &mut Registry) {
        r.register(
            "uploads_refused",
            "Plugin uploads refused, by error code",
            self.uploads_refused.clone(),
        );
        r.register(
            "api_errors",
            "Error responses of the API, by error code",
            self.api_errors.clone(),
        );
        r.register(
            "tls_reload_failures",
            "Certificate reloads (SIGHUP) that failed; the previous pair stays",
            self.tls_reload_failures.clone(),
        );
        r.register(
            "host_faults",
            "Executions this node could not run for a host reason (store, compile task); re-queued without using an attempt",
            self.host_faults.clone(),
        );
        r.register(
            "results_unsaved",
            "Results that could not be saved while the lease held; those executions run again",
            self.results_unsaved.clone(),
        );
        r.register(
            "clock_steps",
            "Steps of the wall clock this node noticed (leases are renewed at once)",
            self.clock_steps.clone(),
        );
        r.register(
            "http_requests",
            "Plugins' outbound HTTP requests, by outcome: answered, failed (no answer), refused (by the network policy or a limit)",
            self.http_requests.clone(),
        );
        r.register(
            "http_bytes",
            "Body bytes of plugins' outbound HTTP requests, by direction (sent, received)",
            self.http_bytes.clone(),
        );
        r.register(
            "webhook_attempts",
            "Webhook delivery attempts, by outcome: delivered, retrying, failed (given up)",
            self.webhook_attempts.clone(),
        );
    }

    /// Registers the node's state, sampled at each scrape.
    fn register_state(&self, r: &mut Registry) {
        r.register(
            "queue_depth",
            "Executions held in this node's queue",
            self.queue_depth.clone(),
        );
        r.register(
            "runs_in_flight",
            "Runs in progress on this node",
            self.in_flight.clone(),
        );
        r.register(
            "workers_free",
            "Workers free on this node",
            self.workers_free.clone(),
        );
        r.register(
            "tenants_running",
            "Tenants holding run slots on this node",
            self.tenants_running.clone(),
        );
        r.register(
            "live_nodes",
            "Nodes with a current heartbeat",
            self.live_nodes.clone(),
        );
        r.register(
            "compilations_in_progress",
            "Plugin compilations running now (at most one per core)",
            self.compiling.clone(),
        );
        r.register(
            "compilations_peak",
            "The most plugin compilations that ran at once since the node started",
            self.compiling_peak.clone(),
        );
        r.register(
            "store_unreadable_records",
            "Stored records that batch reads left out because they cannot be read, since the node started (each is logged)",
            self.unreadable.clone(),
        );
    }

    /// A run started `late` seconds after it was due.
    pub(crate) fn started(&self, late: f64) {
        self.start_latency.observe(late.max(0.0));
    }

    /// A run ended with `status` (the run's own status, e.g. `out_of_fuel`).
    pub(crate) fn finished(&self, status: &'static str, seconds: f64, fuel: u64) {
        self.runs.get_or_create(&Status { status }).inc();
        self.duration.observe(seconds);
        self.fuel.inc_by(fuel);
    }

    /// A run's outbound HTTP requests, from its records.
    pub(crate) fn http(&self, records: &[taskhost_runtime::HttpRecord], unrecorded: u64) {
        for r in records {
            let outcome = if r.refused.is_some() {
                "refused"
            } else if r.status.is_some() {
                "answered"
            } else {
                "failed"
            };
            self.http_requests.get_or_create(&Outcome { outcome }).inc();
            self.http_bytes
                .get_or_create(&Direction { direction: "sent" })
                .inc_by(r.sent_bytes);
            self.http_bytes
                .get_or_create(&Direction {
                    direction: "received",
                })
                .inc_by(r.received_bytes);
        }
        if unrecorded > 0 {
            self.http_requests
                .get_or_create(&Outcome { outcome: "refused" })
                .inc_by(unrecorded);
        }
    }

    /// A webhook delivery attempt ended: `delivered`, `retrying` or `failed`.
    pub(crate) fn webhook_attempt(&self, outcome: &'static str) {
        self.webhook_attempts
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    /// A schedule's fire was refused (quota or policy) and skipped.
    pub(crate) fn fire_skipped(&self) {
        self.fires_skipped.inc();
    }

    /// This node recorded a fire's fate.
    pub(crate) fn fire(
        &self,
        fate: taskhost_model::FireFate,
        reason: Option<taskhost_model::FireReason>,
    ) {
        let labels = Fate {
            fate: fate.as_str(),
            reason: reason.map_or("", |r| r.as_str()),
        };
        self.fires.get_or_create(&labels).inc();
    }

    /// The retention sweeper removed `n` executions.
    pub(crate) fn swept(&self, n: u64) {
        self.swept.inc_by(n);
    }

    /// A store operation `op` (one of [`STORE_OPS`]) failed.
    pub fn store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&Op { op }).inc();
    }

    /// A run's lease was found taken over (`before_start`, `mid_run`,
    /// `at_completion`), or could not be renewed in time (`unconfirmed`).
    pub(crate) fn lease_lost(&self, when: &'static str) {
        self.lease_losses.get_or_create(&When { when }).inc();
    }

    /// The host could not run an execution; it went back to the queue.
    pub(crate) fn host_fault(&self) {
        self.host_faults.inc();
    }

    /// A result could not be saved while the lease held.
    pub(crate) fn result_unsaved(&self) {
        self.results_unsaved.inc();
    }

    /// The wall clock stepped.
    pub(crate) fn clock_step(&self) {
        self.clock_steps.inc();
    }

    /// A plugin upload was refused with the API error `code`.
    pub fn upload_refused(&self, code: &'static str) {
        self.uploads_refused.get_or_create(&Code { code }).inc();
    }

    /// The API answered with the error `code`.
    pub fn api_error(&self, code: &'static str) {
        self.api_errors.get_or_create(&Code { code }).inc();
    }

    /// Reloading the TLS certificate failed.
    pub fn tls_reload_failed(&self) {
        self.tls_reload_failures.inc();
    }

    /// The registry as OpenMetrics text, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.queue_depth.set(gauge(now.queued));
        self.in_flight.set(gauge(now.in_flight));
        self.workers_free.set(gauge(now.workers_free));
        self.tenants_running.set(gauge(now.tenants_running));
        self.compiling.set(gauge(now.compiling));
        self.compiling_peak.set(gauge(now.compiling_peak));
        self.unreadable
            .set(i64::try_from(taskhost_store::unreadable_records()).unwrap_or(i64::MAX));
        if let Some(live) = now.live_nodes {
            self.live_nodes.set(gauge(live));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
