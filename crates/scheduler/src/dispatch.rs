//! The dispatcher's step: take ready executions off the heap (priority,
//! then fairness across tenants, within the worker and tenant limits), claim
//! them from the store in one call, and start a run task for each claimed.

use super::{CLAIM_BATCH, Node, RunSlot};
use std::collections::HashMap;
use taskhost_model::Execution;
use taskhost_store::{Lease, Release};
use tracing::Instrument;

impl Node {
    /// Claims and starts every ready execution the limits allow, fairly across
    /// tenants, a batch per store call. Returns how many it started.
    pub async fn dispatch(&self) -> usize {
        let mut started = 0;
        while self.claims() {
            let slots = self.take_ready();
            if slots.is_empty() {
                break;
            }
            let ids: Vec<String> = slots.iter().map(|s| s.id.clone()).collect();
            let asked = tokio::time::Instant::now();
            let config = &self.inner.config;
            let claimed = self
                .inner
                .store
                .claim_many(&ids, &config.node_id, config.lease)
                .await;
            {
                let mut queue = self.queue();
                for id in &ids {
                    queue.forget(id);
                }
            }
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(e) => {
                    // The next refill brings them back; wait for it rather
                    // than hammer a store that fails.
                    self.inner.metrics.store_error("claim");
                    tracing::warn!(executions = ids.len(), error = %e, "claim failed");
                    break;
                }
            };
            let mut slots: HashMap<String, RunSlot> =
                slots.into_iter().map(|s| (s.id.clone(), s)).collect();
            for execution in claimed {
                let Some(slot) = slots.remove(&execution.id) else {
                    continue;
                };
                self.count_dequeued(&execution.tenant);
                self.start_run(execution, slot, asked);
                started += 1;
            }
            // The slots of executions not claimed (another node took them,
            // or they were cancelled) are given back as they drop here.
        }
        started
    }

    /// Takes up to [`CLAIM_BATCH`] ready executions off the heap, each with
    /// a worker and a slot of its tenant's limit.
    fn take_ready(&self) -> Vec<RunSlot> {
        let limit = self.inner.config.tenant_limit.max(1);
        let mut queue = self.queue();
        queue.promote(self.inner.store.now());
        let mut tenants = self.tenants();
        let mut slots = Vec::new();
        while slots.len() < CLAIM_BATCH {
            let Ok(permit) = self.inner.workers.clone().try_acquire_owned() else {
                break;
            };
            let Some(entry) = queue.pop_ready(|t| tenants.get(t).copied().unwrap_or(0) < limit)
            else {
                break;
            };
            *tenants.entry(entry.tenant.clone()).or_default() += 1;
            slots.push(RunSlot {
                node: self.clone(),
                tenant: entry.tenant,
                id: entry.id,
                permit: Some(permit),
            });
        }
        slots
    }

    /// For a new execution due now: if this node has a worker and a slot of
    /// the tenant's limit free, and no ready execution waits in its heap
    /// (which would come first), takes them and marks `e` claimed by this
    /// node, so that it is stored claimed. Dropping the slot gives them back.
    pub(super) fn reserve_new(&self, e: &mut Execution) -> Option<RunSlot> {
        let now = self.inner.store.now();
        // A keyed run waits for its key's slot, which only a claim takes.
        let keyed = e.policy.concurrency.is_some() || e.policy.rate_limit.is_some();
        if !self.inner.config.start_on_enqueue || !self.claims() || e.due_at > now || keyed {
            return None;
        }
        let limit = self.inner.config.tenant_limit.max(1);
        let mut queue = self.queue();
        queue.promote(now);
        if queue.has_ready() {
            return None;
        }
        let mut tenants = self.tenants();
        if tenants.get(&e.tenant).copied().unwrap_or(0) >= limit {
            return None;
        }
        let permit = self.inner.workers.clone().try_acquire_owned().ok()?;
        *tenants.entry(e.tenant.clone()).or_default() += 1;
        let owner = self.inner.config.node_id.clone();
        e.status = taskhost_model::ExecutionStatus::Running;
        e.lease_owner = Some(owner.clone());
        e.node = Some(owner);
        e.lease_token = Some(taskhost_model::new_id());
        e.lease_expires_at = Some(taskhost_model::time::add_saturating(
            now,
            self.inner.config.lease,
        ));
        e.started_at = Some(now);
        Some(RunSlot {
            node: self.clone(),
            tenant: e.tenant.clone(),
            id: e.id.clone(),
            permit: Some(permit),
        })
    }

    /// Starts a claimed execution's run in its own task.
    pub(super) fn start_run(
        &self,
        execution: Execution,
        slot: RunSlot,
        asked: tokio::time::Instant,
    ) {
        self.active().insert(execution.id.clone());
        let node = self.clone();
        let stop = self.inner.stop_runs.clone();
        // Its trace, when the request or event that made it was traced: a
        // child of the enqueue span. Status and fuel are set at its end.
        let span = tracing::info_span!("run", execution = %execution.id,
            tenant = %execution.tenant, node = %self.inner.config.node_id,
            plugin = %execution.plugin_id, attempt = execution.attempt,
            queued_ms = (execution.started_at.unwrap_or(execution.due_at)
                - execution.created_at.max(execution.due_at)).num_milliseconds(),
            status = tracing::field::Empty, fuel = tracing::field::Empty);
        if let Some(trace) = &execution.trace {
            trace.parent(&span);
        }
        self.inner.running.spawn(
            async move {
                let _slot = slot;
                let (id, lease) = (execution.id.clone(), Lease::of(&execution));
                tokio::select! {
                    () = node.run_claimed(execution, asked) => {}
                    () = stop.cancelled() => {
                        if let Some(lease) = lease {
                            node.give_back(&id, &lease).await;
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Gives an unfinished run's execution back to the queue (shutdown).
    async fn give_back(&self, id: &str, lease: &Lease) {
        if let Err(e) = self.inner.store.release(id, lease, Release::Shutdown).await {
            self.inner.metrics.store_error("release");
            tracing::warn!(execution = %id, error = %e, "could not release a lease at shutdown");
        }
    }
}
