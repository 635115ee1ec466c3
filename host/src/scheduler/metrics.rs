//! Counters and histograms a node keeps about its runs, rendered in the
//! Prometheus text format by the API's `/metrics`.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency and duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

/// What a node has run.
#[derive(Default)]
pub struct Metrics {
    finished: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    start_latency: Mutex<Histogram>,
    duration: Mutex<Histogram>,
    fuel: AtomicU64,
    fires_skipped: AtomicU64,
    swept: AtomicU64,
}

impl Metrics {
    /// A run started `late` seconds after it was due.
    pub(crate) fn started(&self, late: f64) {
        self.start_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(late.max(0.0));
    }

    /// A run ended with `status` (the run's own status, e.g. `out_of_fuel`).
    pub(crate) fn finished(&self, status: &'static str, seconds: f64, fuel: u64) {
        *self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
        self.duration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(seconds);
        self.fuel.fetch_add(fuel, Ordering::Relaxed);
    }

    /// A schedule's fire was refused (quota or policy) and skipped.
    pub(crate) fn fire_skipped(&self) {
        self.fires_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// The retention sweeper removed `n` executions.
    pub(crate) fn swept(&self, n: u64) {
        self.swept.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text for this node's counters.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP taskhost_runs_total Runs finished on this node, by status.\n# TYPE taskhost_runs_total counter"
        );
        for (status, n) in self
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "taskhost_runs_total{{status=\"{status}\"}} {n}");
        }
        self.start_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(
                out,
                "taskhost_schedule_to_start_seconds",
                "Delay from an execution's due time to its start.",
            );
        self.duration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(
                out,
                "taskhost_run_duration_seconds",
                "Wall-clock time of runs.",
            );
        let _ = writeln!(
            out,
            "# HELP taskhost_fuel_consumed_total Fuel burned by runs on this node.\n# TYPE taskhost_fuel_consumed_total counter\ntaskhost_fuel_consumed_total {}",
            self.fuel.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP taskhost_fires_skipped_total Schedule fires refused by a quota or policy.\n# TYPE taskhost_fires_skipped_total counter\ntaskhost_fires_skipped_total {}",
            self.fires_skipped.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP taskhost_executions_swept_total Finished executions removed after their retention.\n# TYPE taskhost_executions_swept_total counter\ntaskhost_executions_swept_total {}",
            self.swept.load(Ordering::Relaxed)
        );
    }
}
