//! Where a running workflow's steps go: [`StepWriter`] writes each to the
//! store with the run's kv writes since the step before, fenced by the
//! run's lease, and makes and reads the run's children through its node.

use crate::Node;
use std::sync::{Arc, Mutex};
use taskhost_model::Execution;
use taskhost_model::effects::HeldKv;
use taskhost_model::workflow::{ChildOutcome, ChildRun, StepRecord, StepSink};
use taskhost_store::Lease;

/// One run's [`StepSink`].
pub(crate) struct StepWriter {
    node: Node,
    /// What a spawn needs of the execution: id, tenant, parent, grants.
    execution: Arc<Spawner>,
    lease: Lease,
    kv: Arc<HeldKv>,
    /// The steps this run recorded.
    recorded: Mutex<Vec<StepRecord>>,
}

/// The parts of a running execution its children are made from.
pub(crate) struct Spawner {
    pub id: String,
    pub tenant: String,
    /// Its own depth (0 unless it is a child).
    pub depth: u32,
    /// The secrets it may read: a child may be granted no others.
    pub secrets: Vec<String>,
    /// The hosts it may reach: a child may be granted no others.
    pub allow: Vec<String>,
    /// Where its end is told: a child may be given no others.
    pub notify: Vec<taskhost_model::NotifyTarget>,
}

impl StepWriter {
    pub(crate) fn new(node: &Node, e: &Execution, lease: Lease, kv: Arc<HeldKv>) -> StepWriter {
        let execution = Spawner {
            id: e.id.clone(),
            tenant: e.tenant.clone(),
            depth: e.parent.as_ref().map_or(0, |p| p.depth),
            secrets: e.policy.secrets.clone(),
            allow: e
                .policy
                .network
                .as_ref()
                .map(|g| g.allow.clone())
                .unwrap_or_default(),
            notify: e.policy.notify.clone(),
        };
        StepWriter {
            node: node.clone(),
            execution: Arc::new(execution),
            lease,
            kv,
            recorded: Mutex::default(),
        }
    }

    /// The steps this run recorded.
    pub(crate) fn take(&self) -> Vec<StepRecord> {
        std::mem::take(&mut *self.recorded.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait::async_trait]
impl StepSink for StepWriter {
    async fn record(&self, step: &StepRecord) -> Result<(), String> {
        let effects = self.kv.take();
        match self
            .node
            .inner
            .store
            .record_step(&self.execution.id, &self.lease, step, &effects)
            .await
        {
            Ok(true) => {
                let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
                recorded.push(step.clone());
                Ok(())
            }
            Ok(false) => Err("the run's lease was lost".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn spawn(
        &self,
        position: usize,
        name: &str,
        children: Vec<ChildRun>,
    ) -> Result<Vec<String>, String> {
        self.node
            .spawn_children(&self.execution, position, name, children)
            .await
    }

    async fn outcomes(&self, ids: &[String]) -> Result<Vec<ChildOutcome>, String> {
        self.node
            .child_outcomes(&self.execution.tenant, ids)
            .await
            .map_err(|e| e.to_string())
    }
}
