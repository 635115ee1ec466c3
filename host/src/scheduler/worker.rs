//! Running one claimed execution: load the plugin, run it while renewing the
//! lease, and record how it ended — retry with backoff, dead, or done.

use super::Node;
use crate::model::{Execution, RetryPolicy};
use crate::runtime::{KvNamespace, Outcome, Plugin, RunRequest, Status};
use crate::store::{Completion, LeaseRenewal};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Why a run stopped before its plugin returned.
enum Interrupted {
    Cancelled,
    LeaseLost,
}

impl Node {
    /// Runs a claimed execution to the end and records the result.
    pub(crate) async fn run_claimed(&self, execution: Execution) {
        if let Some(observer) = &self.inner.observer {
            observer(&execution);
        }
        let late = (self.inner.store.now() - execution.due_at).num_milliseconds() as f64 / 1e3;
        self.inner.metrics.started(late);
        let outcome = match self.plugin_for(&execution).await {
            Ok((plugin, name)) => match self.run_with_lease(&execution, plugin, name).await {
                Ok(outcome) => outcome,
                Err(Interrupted::Cancelled) => {
                    self.finish(&execution, Completion::Cancelled(None)).await;
                    return;
                }
                Err(Interrupted::LeaseLost) => {
                    tracing::warn!(execution = %execution.id, "lease lost mid-run; dropping the result");
                    return;
                }
            },
            Err(outcome) => outcome,
        };
        self.inner.metrics.finished(
            outcome.status.as_str(),
            outcome.duration_us as f64 / 1e6,
            outcome.fuel_used,
        );
        let completion = decide(&execution, outcome, self.inner.store.now());
        self.finish(&execution, completion).await;
    }

    async fn finish(&self, execution: &Execution, completion: Completion) {
        let node = &self.inner.config.node_id;
        match self
            .inner
            .store
            .complete(&execution.id, node, completion)
            .await
        {
            Ok(Some(done)) if done.status == crate::model::ExecutionStatus::Queued => {
                self.offer(&done)
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(execution = %execution.id, "lease lost before completion; result dropped")
            }
            Err(e) => {
                tracing::error!(execution = %execution.id, error = %e, "could not record a result")
            }
        }
    }

    /// The prepared plugin and its name, or an `invalid_plugin` outcome. Loaded
    /// and compiled once per plugin, however many runs ask at the same time.
    async fn plugin_for(&self, execution: &Execution) -> Result<(Plugin, String), Outcome> {
        let slot = self
            .inner
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(execution.plugin_id.clone())
            .or_default()
            .clone();
        slot.get_or_try_init(|| self.load_plugin(execution))
            .await
            .cloned()
    }

    async fn load_plugin(&self, execution: &Execution) -> Result<(Plugin, String), Outcome> {
        let store = &self.inner.store;
        let missing = || {
            Outcome::not_run(
                Status::InvalidPlugin,
                format!("plugin {} not found", execution.plugin_id),
            )
        };
        let record = match store
            .get_plugin(&execution.tenant, &execution.plugin_id)
            .await
        {
            Ok(Some(record)) => record,
            Ok(None) => return Err(missing()),
            Err(e) => {
                return Err(Outcome::not_run(
                    Status::Trapped,
                    format!("store error: {e}"),
                ));
            }
        };
        let wasm = match store
            .plugin_wasm(&execution.tenant, &execution.plugin_id)
            .await
        {
            Ok(Some(wasm)) => wasm,
            Ok(None) => return Err(missing()),
            Err(e) => {
                return Err(Outcome::not_run(
                    Status::Trapped,
                    format!("store error: {e}"),
                ));
            }
        };
        let runtime = self.inner.runtime.clone();
        let prepared = tokio::task::spawn_blocking(move || runtime.prepare(&wasm)).await;
        let plugin = match prepared {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(invalid)) => {
                return Err(Outcome::not_run(Status::InvalidPlugin, invalid.to_string()));
            }
            Err(e) => {
                return Err(Outcome::not_run(
                    Status::Trapped,
                    format!("compile task failed: {e}"),
                ));
            }
        };
        Ok((plugin, record.name))
    }

    /// Runs the plugin while renewing the lease; stops it when the lease is
    /// lost or a cancel is requested.
    async fn run_with_lease(
        &self,
        e: &Execution,
        plugin: Plugin,
        name: String,
    ) -> Result<Outcome, Interrupted> {
        let mut request = RunRequest::new(if e.input.is_null() {
            Vec::new()
        } else {
            e.input.to_string().into_bytes()
        });
        request.execution_id = e.id.clone();
        request.schedule_id = e.schedule_id.clone();
        request.attempt = e.attempt;
        request.scheduled_at_ms = e.fire_time.unwrap_or(e.due_at).timestamp_millis();
        request.limits = e.limits;
        request.config = Arc::new(e.config.clone());
        request.namespace = KvNamespace::new(&e.tenant, name);
        let run = self.inner.runtime.run(&plugin, request);
        tokio::pin!(run);
        let every = self.inner.config.lease / 3;
        loop {
            tokio::select! {
                outcome = &mut run => return Ok(outcome),
                () = tokio::time::sleep(every) => {
                    let node = &self.inner.config.node_id;
                    match self.inner.store.renew_lease(&e.id, node, self.inner.config.lease).await {
                        Ok(LeaseRenewal::Renewed(_)) => {}
                        Ok(LeaseRenewal::CancelRequested) => return Err(Interrupted::Cancelled),
                        Ok(LeaseRenewal::Lost) => return Err(Interrupted::LeaseLost),
                        Err(err) => tracing::warn!(execution = %e.id, error = %err, "lease renewal failed; retrying"),
                    }
                }
            }
        }
    }
}

/// What to record for an attempt's outcome: done, retry after backoff, or dead.
pub(crate) fn decide(e: &Execution, outcome: Outcome, now: DateTime<Utc>) -> Completion {
    let retryable = outcome.status != Status::Succeeded
        && outcome.error.as_ref().is_some_and(|err| err.retryable);
    if !retryable {
        return Completion::Finished(outcome);
    }
    if e.attempt >= e.retry.max_attempts {
        return Completion::Dead(outcome);
    }
    let delay = backoff(&e.retry, e.attempt, &e.id);
    Completion::RetryAt(
        now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
        outcome,
    )
}

/// Exponential backoff with jitter: `initial * 2^(attempt-1)`, capped at
/// `max_backoff`, then scaled into [50%, 100%) by a spread that is stable per
/// execution and attempt (so every node computes the same retry time).
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32, id: &str) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let full = policy
        .initial_backoff
        .saturating_mul(1 << exponent)
        .min(policy.max_backoff);
    full.mul_f64(0.5 + 0.5 * super::spread(&format!("{id}#{attempt}")))
}
