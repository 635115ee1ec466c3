//! Running one claimed execution: load the plugin, run it while renewing the
//! lease, and record how it ended — retry with backoff, dead, or done.

use super::{Node, PluginMeta};
use crate::model::{Execution, RetryDecision};
use crate::runtime::{KvNamespace, KvQuota, Outcome, Plugin, RunRequest, Status};
use crate::store::{Completion, LeaseRenewal};
use chrono::{DateTime, Utc};
use std::sync::Arc;

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
                    self.inner.metrics.lease_lost("mid_run");
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
        tracing::debug!(
            status = outcome.status.as_str(),
            duration_us = outcome.duration_us,
            fuel = outcome.fuel_used,
            attempt = execution.attempt,
            "run finished"
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
                self.inner.metrics.lease_lost("at_completion");
                tracing::warn!(execution = %execution.id, "lease lost before completion; result dropped")
            }
            Err(e) => {
                self.inner.metrics.store_error("complete");
                tracing::error!(execution = %execution.id, error = %e, "could not record a result")
            }
        }
    }

    /// The prepared plugin and its name, or an `invalid_plugin` outcome.
    /// The compiled code comes from the runtime's cache (bounded by bytes);
    /// a miss loads the wasm from the store and prepares it once per node,
    /// however many runs ask at the same time.
    async fn plugin_for(&self, execution: &Execution) -> Result<(Plugin, String), Outcome> {
        let id = &execution.plugin_id;
        let meta = self
            .inner
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(meta) = meta
            && let Some(plugin) = self.inner.runtime.cached(&meta.sha256)
        {
            return Ok((plugin, meta.name));
        }
        let loading = self
            .inner
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .clone();
        let loaded = loading
            .get_or_try_init(|| self.load_plugin(execution))
            .await
            .cloned();
        {
            let mut map = self.inner.loading.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(id).is_some_and(|l| Arc::ptr_eq(l, &loading)) {
                map.remove(id);
            }
        }
        if let Ok((plugin, name)) = &loaded {
            let meta = PluginMeta {
                sha256: plugin.sha256().to_owned(),
                name: name.clone(),
            };
            self.inner
                .plugins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(id.clone(), meta);
        }
        loaded
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
        let quotas = self.inner.config.quotas.for_tenant(&e.tenant);
        request.kv_quota = Some(KvQuota {
            keys: quotas.kv_keys,
            bytes: quotas.kv_bytes,
        });
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
                        Err(err) => {
                            self.inner.metrics.store_error("renew");
                            tracing::warn!(execution = %e.id, error = %err, "lease renewal failed; retrying")
                        }
                    }
                }
            }
        }
    }
}

/// What to record for an attempt's outcome: done, retry after backoff, or
/// dead. The retry decision itself is [`RetryPolicy::after_attempt`](crate::model::RetryPolicy::after_attempt).
pub(crate) fn decide(e: &Execution, outcome: Outcome, now: DateTime<Utc>) -> Completion {
    let retryable = outcome.status != Status::Succeeded
        && outcome.error.as_ref().is_some_and(|err| err.retryable);
    if !retryable {
        return Completion::Finished(outcome);
    }
    match e.retry.after_attempt(e.attempt, &e.id, now) {
        RetryDecision::GiveUp => Completion::Dead(outcome),
        RetryDecision::RetryAt(at) => Completion::RetryAt(at, outcome),
    }
}
