//! Partitions of the fire path: which schedules' fires this node makes.
//!
//! Schedules fall into [`PARTITIONS`] partitions by a hash of their id
//! ([`partition_of`]). A partitioned node (`serve`) owns some of them, each
//! under a lease in the store (a named lock, `partition/N`, renewed every
//! third of [`SchedulerConfig::partition_lease`](crate::SchedulerConfig)),
//! and its passes read only the schedules of those. Every pass, each live
//! node that runs work evens out: it keeps its own, gives back what is over
//! its fair share (`⌈partitions / nodes⌉`, so a node that joins gets some),
//! and takes free or expired ones up to it (so a dead node's partitions
//! move within the lease). A node that drains or stops gives all of its
//! back; an API-only node owns none. Two nodes that briefly both believe
//! they own a partition do no harm: every fire is one insert under its
//! unique key, and a cursor moves by compare-and-swap.
//!
//! A node also knows since when its passes have covered each partition
//! without a gap longer than the catch-up grace ([`Node::covered_since`]):
//! a fire due after that is late because the node was busy, never missed;
//! catch-up policies apply to fires due before it (downtime).

use crate::Node;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use taskhost_model::{PARTITIONS, partition_of};
use taskhost_store::StoreError;

/// The lock that is a partition's lease.
pub fn partition_lock(partition: u32) -> String {
    format!("partition/{partition}")
}

/// What a node knows of its partitions.
#[derive(Default)]
pub(crate) struct Partitions {
    /// Owned partitions, and when this node took each.
    owned: Mutex<BTreeMap<u32, DateTime<Utc>>>,
    coverage: Mutex<Coverage>,
}

/// This node's passes: the last one's time, and since when they have come
/// without a gap longer than the grace.
#[derive(Default)]
struct Coverage {
    last_pass: Option<DateTime<Utc>>,
    since: Option<DateTime<Utc>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// The partitions this node's passes read: its own when it is
    /// partitioned (possibly none), else every one (`None`).
    pub(crate) fn pass_partitions(&self) -> Option<Vec<u32>> {
        self.inner
            .config
            .partitioned
            .then(|| lock(&self.inner.partitions.owned).keys().copied().collect())
    }

    /// The partitions this node owns now.
    pub fn owned_partitions(&self) -> Vec<u32> {
        lock(&self.inner.partitions.owned).keys().copied().collect()
    }

    /// A pass starts at `now`: its coverage goes on, or starts again after
    /// a gap longer than the grace (the node was down or stopped).
    pub(crate) fn pass_started(&self, now: DateTime<Utc>) {
        let grace = self.inner.config.catch_up_grace;
        let mut coverage = lock(&self.inner.partitions.coverage);
        let gap = coverage
            .last_pass
            .is_none_or(|last| (now - last).to_std().is_ok_and(|gap| gap > grace));
        if gap {
            coverage.since = Some(now);
        }
        coverage.last_pass = Some(now);
    }

    /// Since when this node's passes have covered `schedule_id`'s partition
    /// without a gap: from the start of its current run of passes, or from
    /// when it took the partition, whichever is later.
    pub(crate) fn covered_since(&self, schedule_id: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let since = lock(&self.inner.partitions.coverage).since.unwrap_or(now);
        if !self.inner.config.partitioned {
            return since;
        }
        let partition = partition_of(schedule_id);
        let taken = lock(&self.inner.partitions.owned).get(&partition).copied();
        taken.map_or(now, |taken| taken.max(since))
    }

    /// Renews this node's partitions, gives back what is over its fair
    /// share, and takes free ones up to it. Returns how many it owns.
    pub async fn balance_partitions(&self) -> Result<usize, StoreError> {
        if !self.claims() {
            self.release_partitions().await;
            return Ok(0);
        }
        self.renew_partitions().await;
        let share = self.fair_share().await?;
        let owned = self.owned_partitions();
        for &extra in owned.iter().skip(share) {
            self.give_back_partition(extra).await;
        }
        if owned.len() < share {
            self.take_partitions(share - owned.len()).await;
        }
        Ok(lock(&self.inner.partitions.owned).len())
    }

    /// `⌈partitions / live nodes that run work⌉`, this node counted.
    async fn fair_share(&self) -> Result<usize, StoreError> {
        let id = self.id();
        let live = self.inner.store.live_nodes().await?;
        let others = live
            .iter()
            .filter(|n| n.id != id && n.role.runs() && !n.draining)
            .count();
        Ok((PARTITIONS as usize).div_ceil(others + 1))
    }

    async fn renew_partitions(&self) {
        let (store, id, ttl) = (
            &self.inner.store,
            self.id(),
            self.inner.config.partition_lease,
        );
        let renewals = self
            .owned_partitions()
            .into_iter()
            .map(|p| async move { (p, store.renew_lock(&partition_lock(p), id, ttl).await) });
        for (partition, renewed) in futures::future::join_all(renewals).await {
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(partition, "partition lease lost; another node owns it now");
                    lock(&self.inner.partitions.owned).remove(&partition);
                }
                // Kept while the lease may still hold: the next try decides.
                Err(e) => {
                    tracing::warn!(partition, error = %e, "could not renew a partition lease")
                }
            }
        }
    }

    /// Tries to take up to `wanted` partitions that no live node holds,
    /// starting from a place of its own so that nodes spread.
    async fn take_partitions(&self, wanted: usize) {
        let (store, id, ttl) = (
            &self.inner.store,
            self.id(),
            self.inner.config.partition_lease,
        );
        let start = partition_of(id);
        let now = store.now();
        let mut taken = 0;
        for i in 0..PARTITIONS {
            let partition = (start + i) % PARTITIONS;
            if taken >= wanted {
                break;
            }
            if lock(&self.inner.partitions.owned).contains_key(&partition) {
                continue;
            }
            match store
                .acquire_lock(&partition_lock(partition), id, ttl)
                .await
            {
                Ok(true) => {
                    tracing::info!(partition, "took a partition");
                    lock(&self.inner.partitions.owned).insert(partition, now);
                    taken += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(partition, error = %e, "could not take a partition");
                    break;
                }
            }
        }
    }

    async fn give_back_partition(&self, partition: u32) {
        lock(&self.inner.partitions.owned).remove(&partition);
        let released = self
            .inner
            .store
            .release_lock(&partition_lock(partition), self.id())
            .await;
        if let Err(e) = released {
            tracing::warn!(partition, error = %e, "could not give a partition back; its lease will expire");
        }
    }

    /// Gives every partition back (a drain, a shutdown).
    pub async fn release_partitions(&self) {
        for partition in self.owned_partitions() {
            self.give_back_partition(partition).await;
        }
    }
}
