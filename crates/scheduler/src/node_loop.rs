//! The node's loops: what `Node::run` keeps going until shutdown — the
//! heartbeat, the materializer, the expired-lease reaper, the retention
//! sweeper, the clock watch, the webhook deliverer and the dispatcher — and
//! the graceful stop.

use super::Node;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;

impl Node {
    /// Runs the node until `shutdown` completes, then stops claiming, lets
    /// runs finish for up to `grace`, and releases the leases of the rest.
    pub async fn run(&self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let mut loops = JoinSet::new();
        let every = |d: Duration| {
            let mut t = tokio::time::interval(d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        };
        let node = self.clone();
        let mut beat = every(self.inner.config.heartbeat_ttl / 3);
        loops.spawn(async move {
            loop {
                beat.tick().await;
                if let Err(e) = node.heartbeat().await {
                    node.inner.metrics.store_error("heartbeat");
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        });
        if !self.inner.config.role.runs() {
            // An API node only says it is alive.
            shutdown.await;
            loops.shutdown().await;
            let _ = self
                .inner
                .store
                .remove_node(&self.inner.config.node_id)
                .await;
            return;
        }
        let node = self.clone();
        let mut tick = every(self.inner.config.materialize_every);
        loops.spawn(async move {
            loop {
                tick.tick().await;
                if node.draining() {
                    continue;
                }
                if let Err(e) = node.materialize_due(1000).await {
                    node.inner.metrics.store_error("materialize");
                    tracing::warn!(error = %e, "materializer pass failed");
                }
            }
        });
        let node = self.clone();
        let mut reap = every(self.inner.config.lease / 2);
        loops.spawn(async move {
            loop {
                reap.tick().await;
                if let Err(e) = node.requeue_expired().await {
                    node.inner.metrics.store_error("requeue_expired");
                    tracing::warn!(error = %e, "re-queueing expired leases failed");
                }
            }
        });
        let node = self.clone();
        let mut look = every(Duration::from_secs(1));
        loops.spawn(async move {
            loop {
                look.tick().await;
                node.watch_clock();
            }
        });
        let node = self.clone();
        let mut sweep = every(self.inner.config.sweep_every);
        loops.spawn(async move {
            loop {
                sweep.tick().await;
                if let Err(e) = node.sweep_expired().await {
                    node.inner.metrics.store_error("sweep");
                    tracing::warn!(error = %e, "sweeping expired executions failed");
                }
            }
        });
        let deliverer = crate::webhooks::deliver::Deliverer {
            store: self.inner.store.clone(),
            egress: self.inner.config.egress.clone(),
            key: self.inner.config.secrets_key.clone(),
            node_id: self.inner.config.node_id.clone(),
            on_attempt: {
                let node = self.clone();
                std::sync::Arc::new(move |outcome| node.inner.metrics.webhook_attempt(outcome))
            },
        };
        let node = self.clone();
        let mut deliver = every(Duration::from_millis(500));
        loops.spawn(async move {
            loop {
                deliver.tick().await;
                if let Err(e) = deliverer.pass().await {
                    node.inner.metrics.store_error("webhooks");
                    tracing::warn!(error = %e, "delivering webhooks failed");
                }
            }
        });
        let node = self.clone();
        loops.spawn(async move { node.dispatch_loop().await });
        shutdown.await;
        loops.shutdown().await;
        self.shut_down(grace).await;
    }

    /// Sleeps until the next due execution, new work, a free worker or the
    /// next refill; then dispatches.
    async fn dispatch_loop(&self) {
        let news = self.inner.store.news();
        let mut refill_at = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= refill_at && self.claims() {
                if let Err(e) = self.refill().await {
                    self.inner.metrics.store_error("refill");
                    tracing::warn!(error = %e, "refill failed");
                }
                refill_at = tokio::time::Instant::now() + self.inner.config.refill_every;
            }
            self.dispatch().await;
            let low = self.queued() < (self.inner.config.refill_limit / 4) as usize;
            if low
                && self
                    .inner
                    .backlog
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                refill_at = tokio::time::Instant::now();
            }
            let mut until = refill_at;
            if let Some(due) = self.queue().next_due() {
                let wait = (due - self.inner.store.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                until = until.min(tokio::time::Instant::now() + wait);
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = self.inner.wake.notified() => {}
                () = news.arrived() => {
                    // Executions queued by other nodes: into the heap as
                    // they are, or a refill if some news was missed.
                    let (queued, missed) = news.take();
                    for q in &queued {
                        self.offer_queued(q);
                    }
                    if missed {
                        refill_at = tokio::time::Instant::now();
                    }
                }
            }
        }
    }

    /// Graceful stop: runs get `grace` to finish; the rest are released.
    async fn shut_down(&self, grace: Duration) {
        self.inner.running.close();
        if tokio::time::timeout(grace, self.inner.running.wait())
            .await
            .is_err()
        {
            self.inner.stop_runs.cancel();
            self.inner.running.wait().await;
        }
        let _ = self
            .inner
            .store
            .remove_node(&self.inner.config.node_id)
            .await;
    }
}
