//! Running one claimed execution: load the plugin, run it while renewing the
//! lease, and record how it ended — retry with backoff, dead, or done.
//!
//! The plugin's own outcome is kept apart from the host's faults. If the host
//! cannot load the plugin (the store is away) the execution goes back to the
//! queue as a host fault, without using an attempt. A result is saved with
//! retries for as long as the lease is surely ours ([`super::lease`]); past
//! that, or if the lease cannot be renewed in time, the node lets go and the
//! execution runs again. So a plugin runs at least once, and its result is
//! recorded exactly once: every write names the claim's fencing token.

use super::lease::HeldLease;
use super::workflows::StepWriter;
use super::{Node, PluginMeta};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use taskhost_model::effects::{HeldKv, KvEffects};
use taskhost_model::workflow::StepRecord;
use taskhost_model::{Execution, RetryDecision};
use taskhost_runtime::{KvNamespace, KvQuota, Outcome, Plugin, RunRequest, Status};
use taskhost_store::{Completion, Lease, LeaseRenewal, Release, StoreError};
use tokio::time::Instant;

/// Why a run stopped before its plugin returned.
enum Interrupted {
    Cancelled,
    /// Another claim holds the execution now.
    LeaseLost,
    /// The lease could not be renewed before it might have expired.
    LeaseUnsure,
}

/// Why a plugin could not be made ready.
#[derive(Clone)]
enum Unready {
    /// The plugin is missing or invalid: that is the run's outcome.
    Plugin(Box<Outcome>),
    /// The host failed (the store, a compile task): not the plugin's fault.
    Host(Arc<String>),
}

/// A run's secrets by name: the value, or why it cannot have it.
type Secrets = Arc<std::collections::BTreeMap<String, Result<String, String>>>;

/// First wait before saving a result again; it doubles up to [`SAVE_BACKOFF_MAX`].
const SAVE_BACKOFF: Duration = Duration::from_millis(100);
const SAVE_BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Node {
    /// Runs an execution claimed by a request sent at `asked`, to the end,
    /// and records the result.
    pub(crate) async fn run_claimed(&self, mut execution: Execution, asked: Instant) {
        let Some(lease) = Lease::of(&execution) else {
            tracing::error!(execution = %execution.id, "claimed without a lease; not run");
            return;
        };
        let mut held = HeldLease::new(lease, self.inner.config.lease, asked);
        if !held.sure() && !self.confirm_lease(&execution, &mut held).await {
            return;
        }
        if self.orphaned(&execution).await {
            let (cancelled, none) = (Completion::Cancelled(None), KvEffects::default());
            self.finish(&execution, &mut held, cancelled, none).await;
            return;
        }
        let ready = match self.plugin_for(&execution).await {
            Ok((plugin, name)) => match self.secrets_for(&execution).await {
                Ok(secrets) => Ok((plugin, name, secrets)),
                Err(e) => Err(Unready::Host(Arc::new(format!(
                    "could not load the run's secrets: {e}"
                )))),
            },
            Err(unready) => Err(unready),
        };
        let (outcome, effects) = match ready {
            Ok((plugin, name, secrets)) => {
                if let Some(observer) = &self.inner.observer {
                    observer(&execution);
                }
                let late =
                    (self.inner.store.now() - execution.due_at).num_milliseconds() as f64 / 1e3;
                self.inner.metrics.started(late);
                match self
                    .run_with_lease(&execution, &mut held, plugin, name, secrets)
                    .await
                {
                    Ok((outcome, effects, steps)) => {
                        // The steps it recorded, so that its result (written
                        // from this copy) keeps them.
                        execution.steps.extend(steps);
                        (outcome, effects)
                    }
                    // A run cut short keeps none of its kv writes.
                    Err(Interrupted::Cancelled) => {
                        let (cancelled, none) = (Completion::Cancelled(None), KvEffects::default());
                        self.finish(&execution, &mut held, cancelled, none).await;
                        return;
                    }
                    Err(Interrupted::LeaseLost) => {
                        self.inner.metrics.lease_lost("mid_run");
                        tracing::warn!(execution = %execution.id, "lease lost mid-run; dropping the result");
                        return;
                    }
                    Err(Interrupted::LeaseUnsure) => {
                        self.inner.metrics.lease_lost("unconfirmed");
                        tracing::warn!(execution = %execution.id,
                            "could not renew the lease in time; stopped the run, which will run again");
                        return;
                    }
                }
            }
            Err(Unready::Plugin(outcome)) => (*outcome, KvEffects::default()),
            Err(Unready::Host(why)) => {
                self.host_fault(&execution, &held, &why).await;
                return;
            }
        };
        self.inner.metrics.finished(
            outcome.status.as_str(),
            outcome.duration_us as f64 / 1e6,
            outcome.fuel_used,
        );
        let span = tracing::Span::current();
        span.record("status", outcome.status.as_str());
        span.record("fuel", outcome.fuel_used);
        self.inner
            .metrics
            .http(&outcome.http, outcome.http_unrecorded);
        tracing::debug!(
            status = outcome.status.as_str(),
            duration_us = outcome.duration_us,
            fuel = outcome.fuel_used,
            attempt = execution.attempt,
            "run finished"
        );
        let bounds = &self.inner.config.workflow_bounds;
        let completion = decide(&execution, outcome, self.inner.store.now(), bounds);
        self.finish(&execution, &mut held, completion, effects)
            .await;
    }

    /// The host could not run this execution: back to the queue after the
    /// host-fault backoff, no attempt used. If even that cannot be written,
    /// the lease runs out and the execution is re-queued the same way.
    async fn host_fault(&self, execution: &Execution, held: &HeldLease, why: &str) {
        self.inner.metrics.host_fault();
        tracing::warn!(execution = %execution.id, error = why, "host fault before the run; it goes back to the queue");
        match self
            .inner
            .store
            .release(&execution.id, &held.lease, Release::HostFault)
            .await
        {
            Ok(Some(e)) if e.status.is_final() => {
                self.ended(&e);
                self.after_saved(&e).await;
            }
            Ok(Some(e)) => self.offer(&e),
            Ok(None) => self.inner.metrics.lease_lost("at_completion"),
            Err(e) => {
                self.inner.metrics.store_error("release");
                tracing::warn!(execution = %execution.id, error = %e, "could not release; the lease will expire");
            }
        }
    }

    /// Records how the run ended, retrying while the lease is surely ours
    /// (and renewing it meanwhile). Gives up only when it no longer is: then
    /// the execution runs again, and this result is never written.
    ///
    /// The run's kv writes (`effects`) are written with its result. If they
    /// now break a quota (other runs wrote meanwhile), the run fails with
    /// that reason and none of them is kept.
    async fn finish(
        &self,
        execution: &Execution,
        held: &mut HeldLease,
        mut completion: Completion,
        mut effects: KvEffects,
    ) {
        let store = &self.inner.store;
        let mut backoff = SAVE_BACKOFF;
        loop {
            let saved = store
                .complete_committing(execution, &held.lease, completion.clone(), &effects)
                .await;
            let error = match saved {
                Err(StoreError::Quota(q)) if !effects.is_empty() => {
                    let why =
                        format!("the run's kv writes were refused when its result was saved: {q}");
                    tracing::warn!(execution = %execution.id, "{why}");
                    completion = kv_refused(completion, why);
                    effects = KvEffects::default();
                    continue;
                }
                Ok(Some(done)) => {
                    if done.status == taskhost_model::ExecutionStatus::Queued {
                        self.offer(&done);
                    } else {
                        self.ended(&done);
                    }
                    self.after_saved(&done).await;
                    return;
                }
                Ok(None) => {
                    self.inner.metrics.lease_lost("at_completion");
                    tracing::warn!(execution = %execution.id, "lease lost before completion; result dropped");
                    return;
                }
                Err(e) => e,
            };
            self.inner.metrics.store_error("complete");
            if !held.sure() {
                self.inner.metrics.result_unsaved();
                tracing::error!(execution = %execution.id, error = %error,
                    "could not record the result while the lease held; the execution will run again");
                return;
            }
            tracing::warn!(execution = %execution.id, error = %error, "could not record the result; retrying");
            tokio::time::sleep(backoff.min(held.remaining())).await;
            backoff = (backoff * 2).min(SAVE_BACKOFF_MAX);
            // (A cancel that comes after the run ended changes nothing.)
            if let Ok(LeaseRenewal::Lost) = self.renew(execution, held, held.remaining()).await {
                self.inner.metrics.lease_lost("at_completion");
                tracing::warn!(execution = %execution.id, "lease lost while saving; result dropped");
                return;
            }
        }
    }

    /// Confirms a claim whose lease this node is no longer sure of before
    /// its run starts. A claim batch that took long (a slow store) can hand
    /// out a run whose lease already lapsed, which another node may have
    /// re-queued and claimed, or whose concurrency slot it may have counted
    /// free: such a run must not start. `false` if it must not.
    async fn confirm_lease(&self, execution: &Execution, held: &mut HeldLease) -> bool {
        let within = crate::lease::trusted(self.inner.config.lease);
        match self.renew(execution, held, within).await {
            Ok(LeaseRenewal::Renewed(_) | LeaseRenewal::CancelRequested) => true,
            answer => {
                self.inner.metrics.lease_lost("before_start");
                tracing::warn!(execution = %execution.id, lost = matches!(answer, Ok(LeaseRenewal::Lost)),
                    "the claim's lease lapsed before its run started and could not be confirmed; not run");
                false
            }
        }
    }

    /// Renews `held`, waiting at most `within` for the answer (mid-run:
    /// as long as the lease is surely ours).
    async fn renew(
        &self,
        execution: &Execution,
        held: &mut HeldLease,
        within: Duration,
    ) -> Result<LeaseRenewal, StoreError> {
        let asked = Instant::now();
        let renewal =
            self.inner
                .store
                .renew_lease(&execution.id, &held.lease, self.inner.config.lease);
        let answer = match tokio::time::timeout(within, renewal).await {
            Ok(answer) => answer,
            Err(_) => Err(StoreError::unavailable("the lease renewal timed out")),
        };
        match &answer {
            Ok(LeaseRenewal::Renewed(_) | LeaseRenewal::CancelRequested) => held.renewed(asked),
            Ok(LeaseRenewal::Lost) => {}
            Err(_) => self.inner.metrics.store_error("renew"),
        }
        answer
    }

    /// The secrets the execution names, opened (see [`taskhost_model::secrets`]).
    async fn secrets_for(&self, e: &Execution) -> Result<Secrets, StoreError> {
        if e.policy.secrets.is_empty() {
            return Ok(Secrets::default());
        }
        let key = self.inner.config.secrets_key.as_ref();
        let opened = self
            .inner
            .store
            .open_secrets(key, &e.tenant, &e.policy.secrets)
            .await?;
        Ok(Arc::new(opened))
    }

    /// The prepared plugin and its name, an `invalid_plugin` outcome, or a
    /// host fault.
    /// The compiled code comes from the runtime's cache (bounded by bytes);
    /// a miss loads the wasm from the store and prepares it once per node,
    /// however many runs ask at the same time.
    async fn plugin_for(&self, execution: &Execution) -> Result<(Plugin, String), Unready> {
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

    async fn load_plugin(&self, execution: &Execution) -> Result<(Plugin, String), Unready> {
        let store = &self.inner.store;
        let missing = || {
            Unready::Plugin(Box::new(Outcome::not_run(
                Status::InvalidPlugin,
                format!("plugin {} not found", execution.plugin_id),
            )))
        };
        let host = |what: String| Unready::Host(Arc::new(what));
        let record = match store
            .get_plugin(&execution.tenant, &execution.plugin_id)
            .await
        {
            Ok(Some(record)) => record,
            Ok(None) => return Err(missing()),
            Err(e) => return Err(host(format!("could not load the plugin: {e}"))),
        };
        let wasm = match store
            .plugin_wasm(&execution.tenant, &execution.plugin_id)
            .await
        {
            Ok(Some(wasm)) => wasm,
            Ok(None) => return Err(missing()),
            Err(e) => return Err(host(format!("could not load the plugin: {e}"))),
        };
        let runtime = self.inner.runtime.clone();
        let prepared = tokio::task::spawn_blocking(move || runtime.prepare(&wasm)).await;
        let plugin = match prepared {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(invalid)) => {
                return Err(Unready::Plugin(Box::new(Outcome::not_run(
                    Status::InvalidPlugin,
                    invalid.to_string(),
                ))));
            }
            Err(e) => return Err(host(format!("the compile task failed: {e}"))),
        };
        Ok((plugin, record.name))
    }

    /// Runs the plugin while renewing the lease; stops it when the lease is
    /// lost or a cancel is requested.
    async fn run_with_lease(
        &self,
        e: &Execution,
        held: &mut HeldLease,
        plugin: Plugin,
        name: String,
        secrets: Secrets,
    ) -> Result<(Outcome, KvEffects, Vec<StepRecord>), Interrupted> {
        let mut request = RunRequest::new(if e.policy.input.is_null() {
            Vec::new()
        } else {
            e.policy.input.to_string().into_bytes()
        });
        request.execution_id = e.id.clone();
        request.schedule_id = e.schedule_id.clone();
        request.attempt = e.attempt;
        request.scheduled_at_ms = e.fire_time.unwrap_or(e.due_at).timestamp_millis();
        request.limits = e.policy.limits;
        request.config = Arc::new(e.policy.config.clone());
        request.namespace = KvNamespace::new(&e.tenant, name);
        request.secrets = secrets;
        request.network = e
            .policy
            .network
            .as_ref()
            .map(|grant| taskhost_runtime::RunNetwork {
                egress: self.inner.config.egress.clone(),
                tenant: e.tenant.clone(),
                // Checked when the run was made; a pattern that no longer parses
                // grants nothing.
                allow: taskhost_net::pattern::parse_all(&grant.allow).unwrap_or_default(),
            });
        let quotas = self.inner.config.quotas.for_tenant(&e.tenant);
        request.kv_quota = Some(KvQuota {
            keys: quotas.kv_keys,
            bytes: quotas.kv_bytes,
        });
        // The run's kv writes are held until its result is saved.
        let store: Arc<dyn taskhost_model::kv::KvStore> = Arc::new(self.inner.store.clone());
        let kv = Arc::new(HeldKv::new(store));
        request.kv = Some(taskhost_runtime::RunKv(kv.clone()));
        let sink = Arc::new(StepWriter::new(self, e, held.lease.clone(), kv.clone()));
        request.workflow = Some(taskhost_runtime::RunWorkflow {
            steps: e.steps.clone(),
            sink: sink.clone(),
            clock: self.inner.store.clock().clone(),
            inbox: e.inbox.clone(),
            waiting: e.waiting.clone(),
            bounds: self.inner.config.workflow_bounds,
        });
        let run = self.inner.runtime.run(&plugin, request);
        tokio::pin!(run);
        let every = self.inner.config.lease / 3;
        // After a failed renewal, try again this soon.
        let again = every.min(Duration::from_secs(1));
        let mut renew_at = Instant::now() + every;
        loop {
            tokio::select! {
                outcome = &mut run => return Ok((outcome, kv.take(), sink.take())),
                () = tokio::time::sleep_until(renew_at) => {
                    match self.renew(e, held, held.remaining()).await {
                        Ok(LeaseRenewal::Renewed(_)) => renew_at = Instant::now() + every,
                        Ok(LeaseRenewal::CancelRequested) => return Err(Interrupted::Cancelled),
                        Ok(LeaseRenewal::Lost) => return Err(Interrupted::LeaseLost),
                        Err(err) if held.sure() => {
                            tracing::warn!(execution = %e.id, error = %err, "lease renewal failed; retrying");
                            renew_at = Instant::now() + again.min(held.remaining());
                        }
                        Err(_) => return Err(Interrupted::LeaseUnsure),
                    }
                }
                // The wall clock stepped: renew at once, on the new time.
                () = self.inner.clock_stepped.notified() => renew_at = Instant::now(),
            }
        }
    }
}

/// What to record for an attempt's outcome: done, retry after backoff, or
/// dead. The retry decision itself is [`RetryPolicy::after_attempt`](taskhost_model::RetryPolicy::after_attempt).
pub(crate) fn decide(
    e: &Execution,
    outcome: Outcome,
    now: DateTime<Utc>,
    bounds: &taskhost_model::workflow::WorkflowBounds,
) -> Completion {
    if outcome.status == Status::Suspended {
        let at = outcome.suspended_until.unwrap_or(now);
        return match taskhost_model::workflow::suspension(e, outcome.fuel_used, at, now, bounds) {
            Ok(at) => Completion::Suspend(at, outcome),
            Err(bound) => Completion::Finished(ended_by(outcome, bound.to_string())),
        };
    }
    let retryable = outcome.status != Status::Succeeded
        && outcome.error.as_ref().is_some_and(|err| err.retryable);
    if !retryable {
        return Completion::Finished(outcome);
    }
    match e.policy.retry().after_attempt(e.attempt, &e.id, now) {
        RetryDecision::GiveUp => Completion::Dead(outcome),
        RetryDecision::RetryAt(at) => Completion::RetryAt(at, outcome),
    }
}

/// `completion` with its run failed because its kv writes were refused at
/// the save: final (trying again would not fit them either).
fn kv_refused(completion: Completion, why: String) -> Completion {
    let outcome = match completion {
        Completion::Finished(o)
        | Completion::RetryAt(_, o)
        | Completion::Suspend(_, o)
        | Completion::Dead(o) => o,
        Completion::Cancelled(o) => return Completion::Cancelled(o),
    };
    Completion::Finished(ended_by(outcome, why))
}

/// `outcome` failed for `why`, not to be retried.
fn ended_by(outcome: Outcome, why: String) -> Outcome {
    Outcome {
        status: Status::Failed,
        error: Some(taskhost_model::RunError {
            message: why,
            retryable: false,
            backtrace: None,
        }),
        suspended_until: None,
        waiting: None,
        ..outcome
    }
}
