//! Child runs: made by a workflow's spawn step, read by its join, waking
//! their parent as they end, cancelled with it (see
//! [`taskhost_model::workflow::children`] for the rules).
//!
//! A child is made by the intake like any submission — the tenant's queue
//! quota, its run limits and the dispatcher's fairness between tenants
//! apply to it as to any run — with an id derived from its spawn step, so a
//! spawn made again after a crash finds its children made. A child whose
//! parent was cancelled does not start: the cascade cancels the children
//! its parent recorded, and a child it could not find is cancelled when it
//! would start.

use super::steps::Spawner;
use crate::Node;
use crate::intake::{Admission, IntakeError, PluginRef, Work};
use taskhost_model::outcome::Status;
use taskhost_model::time::add_saturating;
use taskhost_model::workflow::children::{SpawnError, WAKE_COALESCE, child_id, spawned_by};
use taskhost_model::workflow::{ChildOutcome, ChildRun, Parent};
use taskhost_model::{Execution, ExecutionStatus, RetryPolicy, RunPolicy};
use taskhost_store::StoreError;

/// How long a parent read as not cancelled is trusted by its children.
const LIVE_PARENT: std::time::Duration = std::time::Duration::from_secs(1);

impl Node {
    /// Makes the children of `parent`'s spawn step `name` at `position`:
    /// their ids, or why none was made (the plugin gets the message).
    pub(crate) async fn spawn_children(
        &self,
        parent: &Spawner,
        position: usize,
        name: &str,
        children: Vec<ChildRun>,
    ) -> Result<Vec<String>, String> {
        let max = self.inner.config.workflow_bounds.max_depth;
        if parent.depth >= max {
            let depth = parent.depth;
            return Err(SpawnError::TooDeep { depth, max }.to_string());
        }
        check_grants(parent, &children)?;
        let ids: Vec<String> = (0..children.len())
            .map(|i| child_id(&parent.id, position, name, i))
            .collect();
        // Some or all made by an earlier run of this step, cut before its
        // record (on MongoDB a batch's writes are not one transaction, so
        // some may be): make only those missing. Once more after a
        // conflict: another run of this step (its lease lost) made them.
        for _ in 0..2 {
            let made = self
                .inner
                .store
                .get_executions(&parent.tenant, &ids)
                .await
                .map_err(|e| e.to_string())?;
            let work: Vec<Work> = children
                .iter()
                .zip(&ids)
                .zip(&made)
                .filter(|(_, found)| found.is_none())
                .map(|((child, id), _)| child_work(parent, child.clone(), id))
                .collect();
            if work.is_empty() {
                return Ok(ids);
            }
            match self.intake(work, Admission::Submit).await {
                Ok(_) => return Ok(ids),
                Err(IntakeError::Refused(refused)) => {
                    return Err(refused
                        .iter()
                        .map(|(i, why)| format!("child {i}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; "));
                }
                Err(IntakeError::Store(StoreError::Conflict(_))) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the children were being made by another run of this step; try again".into())
    }

    /// How `tenant`'s executions `ids` stand, in order.
    pub(crate) async fn child_outcomes(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<ChildOutcome>, StoreError> {
        let found = self.inner.store.get_executions(tenant, ids).await?;
        Ok(ids
            .iter()
            .zip(&found)
            .map(|(id, e)| outcome_of(id, e.as_ref()))
            .collect())
    }

    /// After `e` was saved ended or suspended: a child that ended wakes its
    /// parent's join; a join that suspended looks once more at its children
    /// (one may have ended while it looked); a cancelled parent's children
    /// are cancelled. Failures are logged: a join looks again after
    /// [`JOIN_RECHECK`](taskhost_model::workflow::children::JOIN_RECHECK).
    pub(crate) async fn after_saved(&self, e: &Execution) {
        let done = async {
            if e.status.is_final()
                && let Some(parent) = &e.parent
            {
                self.wake_join(&parent.id, &e.id).await?;
            }
            if e.status == ExecutionStatus::Cancelled {
                self.cancel_children(e).await?;
            }
            let joining = e.waiting.as_ref().map(|w| w.children.as_slice());
            let suspended = e
                .outcome
                .as_ref()
                .is_some_and(|o| o.status == Status::Suspended);
            if e.status == ExecutionStatus::Queued
                && suspended
                && let Some(children) = joining.filter(|c| !c.is_empty())
            {
                let now = self.child_outcomes(&e.tenant, children).await?;
                if let Some(ended) = now.iter().find(|o| o.ended()) {
                    self.wake_join(&e.id, &ended.id).await?;
                }
            }
            Ok::<_, StoreError>(())
        };
        if let Err(error) = done.await {
            tracing::warn!(execution = %e.id, %error, "could not wake or cancel a workflow's relatives");
        }
    }

    /// Makes `parent` due within [`WAKE_COALESCE`] if it waits on `child`
    /// — unless this node made it due already and that time has not come
    /// (then its run will see this child ended): so the children that end
    /// together cost the store one parent write, not one each.
    async fn wake_join(&self, parent: &str, child: &str) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let now = store.now();
        let pending = self.woken().get(parent).copied();
        if pending.is_some_and(|at| now < at) {
            return Ok(());
        }
        let soon = add_saturating(now, WAKE_COALESCE);
        let child = child.to_owned();
        let woken = store
            .modify_execution(parent, move |p| {
                let waits = p
                    .waiting
                    .as_ref()
                    .is_some_and(|w| w.children.contains(&child));
                if p.status != ExecutionStatus::Queued || !waits || p.due_at <= soon {
                    return false;
                }
                p.due_at = soon;
                true
            })
            .await?;
        if let Some(p) = woken {
            self.woken().put(p.id.clone(), p.due_at);
            self.offer(&p);
        }
        Ok(())
    }

    fn woken(
        &self,
    ) -> std::sync::MutexGuard<'_, lru::LruCache<String, chrono::DateTime<chrono::Utc>>> {
        self.inner.woken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels `tenant`'s execution `id`: a queued one at once, a running
    /// one by request (see [`taskhost_store::Store::cancel`]); with it, its
    /// children not spawned detached, and theirs. `None` if it is unknown or
    /// already ended.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<Option<Execution>, StoreError> {
        let cancelled = self.inner.store.cancel(tenant, id).await?;
        if let Some(e) = &cancelled
            && e.status.is_final()
        {
            self.ended(e);
            // In a task of its own, so that a caller that goes away (an
            // API client hanging up) does not cut the cascade halfway.
            let (node, e) = (self.clone(), e.clone());
            let cascade = tokio::spawn(async move { node.after_saved(&e).await });
            if let Err(e) = cascade.await {
                tracing::warn!(error = %e, "the cancel's cascade to the children stopped");
            }
        }
        Ok(cancelled)
    }

    /// Whether `e` is a child, not detached, whose parent was cancelled.
    /// The cascade finds children by their parent's recorded spawns, so it
    /// misses those of a spawn not recorded yet when the cancel came (a node
    /// killed between making the children and recording the step): such a
    /// child is cancelled when it would start. A parent read as not
    /// cancelled is trusted for [`LIVE_PARENT`], so the children of a
    /// fan-out read it about once (a cancel the cascade missed is that rare).
    pub(crate) async fn orphaned(&self, e: &Execution) -> bool {
        let Some(parent) = e.parent.as_ref().filter(|p| !p.detached) else {
            return false;
        };
        let now = tokio::time::Instant::now();
        let trusted = self.live_parents().get(&parent.id).copied();
        if trusted.is_some_and(|until| now < until) {
            return false;
        }
        let read = self.inner.store.get_execution(&e.tenant, &parent.id).await;
        if matches!(&read, Ok(Some(p)) if p.status == ExecutionStatus::Cancelled) {
            return true;
        }
        self.live_parents()
            .put(parent.id.clone(), now + LIVE_PARENT);
        false
    }

    fn live_parents(
        &self,
    ) -> std::sync::MutexGuard<'_, lru::LruCache<String, tokio::time::Instant>> {
        self.inner
            .live_parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels the children `e` spawned, but those detached, and theirs: a
    /// queued one at once, a running one by request (its node cancels its
    /// own children when its run stops).
    async fn cancel_children(&self, e: &Execution) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let mut parents = vec![e.clone()];
        while let Some(parent) = parents.pop() {
            for id in spawned_by(&parent.steps) {
                let child = store.get_execution(&parent.tenant, &id).await?;
                let attached = child.as_ref().is_some_and(|c| {
                    !c.status.is_final() && c.parent.as_ref().is_some_and(|p| !p.detached)
                });
                if !attached {
                    continue;
                }
                if let Some(c) = store.cancel(&parent.tenant, &id).await?
                    && c.status.is_final()
                {
                    self.ended(&c);
                    parents.push(c);
                }
            }
        }
        Ok(())
    }
}

/// A child may be granted only secrets, hosts and webhooks its parent's run
/// holds.
fn check_grants(parent: &Spawner, children: &[ChildRun]) -> Result<(), String> {
    for (i, child) in children.iter().enumerate() {
        if let Some(s) = child
            .policy
            .secrets
            .iter()
            .find(|s| !parent.secrets.contains(s))
        {
            return Err(format!(
                "child {i}: secret `{s}` is not granted to this run, so it cannot grant it"
            ));
        }
        if let Some(target) = child
            .policy
            .notify
            .iter()
            .find(|t| !parent.notify.contains(t))
        {
            return Err(format!(
                "child {i}: webhook {} is not one of this run's, so it cannot give it",
                target.url
            ));
        }
        let allow = child.policy.network.iter().flat_map(|g| &g.allow);
        if let Some(host) = allow.into_iter().find(|h| !parent.allow.contains(h)) {
            return Err(format!(
                "child {i}: host `{host}` is not granted to this run, so it cannot grant it"
            ));
        }
    }
    Ok(())
}

/// The work of one child: a single attempt unless its options ask more.
fn child_work(parent: &Spawner, child: ChildRun, id: &str) -> Work {
    let mut work = Work::ad_hoc(&parent.tenant, "");
    work.id = id.to_owned();
    work.plugin = plugin_ref(&child.plugin);
    let retry = child.policy.retry.unwrap_or(RetryPolicy::ONCE);
    work.policy = RunPolicy {
        retry: Some(retry),
        ..child.policy
    };
    work.parent = Some(Parent {
        id: parent.id.clone(),
        depth: parent.depth + 1,
        detached: child.detach,
    });
    work
}

/// A plugin named by id, `name@…`, or name alone (its latest version).
fn plugin_ref(text: &str) -> PluginRef {
    if text.contains('@') {
        PluginRef::Ref(text.to_owned())
    } else if uuid::Uuid::parse_str(text).is_ok() {
        PluginRef::Id(text.to_owned())
    } else {
        PluginRef::Ref(format!("{text}@latest"))
    }
}

/// What a join returns of child `id`.
fn outcome_of(id: &str, found: Option<&Execution>) -> ChildOutcome {
    let Some(e) = found else {
        return ChildOutcome {
            id: id.to_owned(),
            status: "missing".into(),
            output: serde_json::Value::Null,
            error: None,
        };
    };
    let status = match e.status {
        s if s.is_final() => s.as_str(),
        ExecutionStatus::Running => "running",
        _ => "queued",
    };
    let outcome = e.outcome.as_ref().filter(|_| e.status.is_final());
    let output = outcome.and_then(|o| o.output_value()).unwrap_or_default();
    let error = outcome
        .and_then(|o| o.error.as_ref())
        .map(|r| r.message.clone());
    ChildOutcome {
        id: id.to_owned(),
        status: status.to_owned(),
        output,
        error,
    }
}
