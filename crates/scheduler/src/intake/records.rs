//! The records the intake writes, and the write itself: an execution for
//! work that runs, a `skipped` ledger record for a fire that does not.

use super::{Admission, Checked, Decision, IntakeError, Node, Prepared};
use chrono::{DateTime, Utc};
use taskhost_model::time::add_saturating;
use taskhost_model::{Execution, ExecutionStatus, FireReason, RetryPolicy, Schedule};

impl Node {
    /// The record of one checked piece of work.
    pub(super) fn record(
        &self,
        w: &super::Work,
        checked: &Checked,
        now: DateTime<Utc>,
    ) -> Execution {
        let fire_at = w.origin.fire_time();
        let node_retention = self.inner.config.retention;
        match checked {
            Checked::Run { plugin } => {
                let mut due = add_saturating(w.due_at.unwrap_or(now), w.delay);
                // A debounced run waits a period for a later one.
                if let Some(d) = &w.policy.debounce {
                    due = due.max(add_saturating(now, d.period));
                }
                let mut e = Execution::queued(&w.tenant, &plugin.plugin_id, due, now);
                e.id = w.id.clone();
                e.schedule_id = w.origin.schedule_id().map(str::to_owned);
                e.fire_time = fire_at;
                e.policy = w.policy.clone();
                e.parent = w.parent.clone();
                e.policy.retry.get_or_insert(RetryPolicy::ONCE);
                e.policy.retention.get_or_insert(node_retention);
                // Its flow-control keys, as checked (see `check`).
                e.policy.resolve_keys();
                e.fire = w.fire.clone().map(|mut info| {
                    info.plugin_ref = plugin.follows.clone();
                    info
                });
                e
            }
            Checked::Skip { info, plugin_id } => {
                let mut e = Execution::queued(&w.tenant, plugin_id, fire_at.unwrap_or(now), now);
                e.id = w.id.clone();
                e.schedule_id = w.origin.schedule_id().map(str::to_owned);
                e.fire_time = fire_at;
                e.policy.priority = w.policy.priority;
                // Kept as long as the schedule's runs, but at most the node's
                // retention: a paused 1-second schedule cannot fill the
                // store for a year.
                let retention = w.policy.retention.unwrap_or(node_retention);
                e.policy.retention = Some(retention.min(node_retention));
                e.fire = Some(info.as_ref().clone());
                e.finish(ExecutionStatus::Skipped, now);
                e
            }
        }
    }

    /// Writes prepared records as their admission says — fires with the
    /// cursor `moves` of their schedules, in the same write — and offers the
    /// new runs to this node's heap (or starts a lone submission here at
    /// once). The decisions, and per move whether it was written.
    pub(crate) async fn commit(
        &self,
        prepared: Prepared,
        moves: &[Schedule],
    ) -> Result<(Vec<Decision>, Vec<bool>), IntakeError> {
        let Prepared {
            work,
            mut rows,
            admission,
        } = prepared;
        let store = &self.inner.store;
        if admission == Admission::Submit {
            // Work this node can start now, with nothing waiting ahead of
            // it, is stored already claimed: no queue, no claim round trip.
            let asked = tokio::time::Instant::now();
            let slot = match rows.as_mut_slice() {
                [one] => self.reserve_new(one),
                _ => None,
            };
            store.create_executions(&rows).await?;
            self.count_stored(&rows);
            match (slot, rows.first()) {
                (Some(slot), Some(e)) => {
                    tracing::debug!(execution = %e.id, tenant = %e.tenant, due_at = %e.due_at, started = true, "execution created");
                    self.start_run(e.clone(), slot, asked);
                }
                _ => self.enqueued(&rows),
            }
            return Ok((rows.into_iter().map(Decision::Run).collect(), Vec::new()));
        }
        let mut ours = vec![false; rows.len()];
        let (fresh, replacing): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| work[i].replaces.is_none());
        let fresh_rows: Vec<Execution> = fresh.iter().map(|&i| rows[i].clone()).collect();
        let written = store.record_fires(&fresh_rows, moves).await?;
        for (&i, inserted) in fresh.iter().zip(written.inserted) {
            ours[i] = inserted;
        }
        for i in replacing {
            let Some(id) = &work[i].replaces else {
                continue;
            };
            if let Some(e) = store.run_skipped_fire(id, rows[i].clone()).await? {
                rows[i] = e;
                ours[i] = true;
            }
        }
        Ok((self.decided(rows, ours), written.moved))
    }

    /// The decisions of written fires: counted, logged, offered to the heap.
    fn decided(&self, rows: Vec<Execution>, ours: Vec<bool>) -> Vec<Decision> {
        let metrics = &self.inner.metrics;
        let mut runs = Vec::new();
        let decisions = rows
            .into_iter()
            .zip(ours)
            .map(|(e, ours)| {
                if !ours {
                    return Decision::Theirs;
                }
                // A fire's input is its schedule's: counted in bytes at the
                // next recount, not serialized again per fire here.
                self.inner.intake.stored(&e.tenant, 0);
                if let Some((fate, reason)) = e.fire_fate() {
                    metrics.fire(fate, reason);
                }
                if e.status != ExecutionStatus::Skipped {
                    runs.push(e.clone());
                    return Decision::Run(e);
                }
                let info = e.fire.as_ref();
                if info.is_some_and(|f| matches!(f.reason, Some(FireReason::Policy | FireReason::Quota))) {
                    let detail = info.and_then(|f| f.detail.as_deref());
                    tracing::warn!(schedule = ?e.schedule_id, fire = ?e.fire_time, why = ?detail, "fire skipped");
                    metrics.fire_skipped();
                }
                Decision::Skip(e)
            })
            .collect();
        self.enqueued(&runs);
        decisions
    }

    /// New executions were stored: count them and queue them here.
    pub(crate) fn enqueued(&self, executions: &[Execution]) {
        for e in executions {
            self.count_enqueued(&e.tenant);
            self.offer(e);
            tracing::debug!(execution = %e.id, tenant = %e.tenant, due_at = %e.due_at, started = false, "execution created");
        }
    }
}

impl Node {
    /// Submitted executions were stored through this node: count them,
    /// with their inputs' bytes, against their tenants' storage.
    fn count_stored(&self, executions: &[Execution]) {
        for e in executions {
            self.inner
                .intake
                .stored(&e.tenant, json_len(&e.policy.input));
        }
    }
}

/// The length of `value` as JSON, without keeping the text.
fn json_len(value: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}
