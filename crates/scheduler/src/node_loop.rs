//! The node's loops: what `Node::run` keeps going until shutdown — the
//! heartbeat, the materializer, the expired-lease reaper, the retention
//! sweeper, the clock watch, the webhook deliverer and the dispatcher — and
//! the graceful stop.

use super::Node;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use taskhost_store::StoreError;
use tokio::task::JoinSet;

impl Node {
    /// Runs the node until `shutdown` completes, then stops claiming, lets
    /// runs finish for up to `grace`, and releases the leases of the rest.
    pub async fn run(&self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let mut loops = JoinSet::new();
        let config = &self.inner.config;
        self.every(
            &mut loops,
            config.heartbeat_ttl / 3,
            "heartbeat",
            |n| async move { n.heartbeat().await },
        );
        if !config.role.runs() {
            // An API node only says it is alive.
            shutdown.await;
            loops.shutdown().await;
            let _ = self.inner.store.remove_node(&config.node_id).await;
            return;
        }
        if config.partitioned {
            let every = config.partition_lease / 3;
            self.every(&mut loops, every, "partitions", |n| async move {
                n.balance_partitions().await.map(drop)
            });
        }
        self.every(
            &mut loops,
            config.materialize_every,
            "materialize",
            |n| async move {
                match n.draining() {
                    true => Ok(()),
                    false => n.fire_passes().await.map(drop),
                }
            },
        );
        self.every(
            &mut loops,
            config.lease / 2,
            "requeue_expired",
            |n| async move { n.requeue_expired().await.map(drop) },
        );
        self.every(
            &mut loops,
            Duration::from_secs(1),
            "clock",
            |n| async move {
                n.watch_clock();
                Ok(())
            },
        );
        self.every(&mut loops, config.sweep_every, "sweep", |n| async move {
            n.sweep_expired().await.map(drop)
        });
        let deliverer = Arc::new(self.deliverer());
        self.every(
            &mut loops,
            Duration::from_millis(500),
            "webhooks",
            move |_| {
                let deliverer = deliverer.clone();
                async move { deliverer.pass().await.map(drop) }
            },
        );
        let node = self.clone();
        loops.spawn(async move { node.dispatch_loop().await });
        shutdown.await;
        loops.shutdown().await;
        self.shut_down(grace).await;
    }

    /// Keeps `step` going every `period` until the loops are shut down; a
    /// failed step is counted as a store error named `what`, and logged.
    fn every<F, Fut>(&self, loops: &mut JoinSet<()>, period: Duration, what: &'static str, step: F)
    where
        F: Fn(Node) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), StoreError>> + Send,
    {
        let node = self.clone();
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loops.spawn(async move {
            loop {
                interval.tick().await;
                if let Err(e) = step(node.clone()).await {
                    node.inner.metrics.store_error(what);
                    tracing::warn!(error = %e, "{what} failed");
                }
            }
        });
    }

    /// The webhook deliverer of this node.
    fn deliverer(&self) -> crate::webhooks::deliver::Deliverer {
        let node = self.clone();
        crate::webhooks::deliver::Deliverer {
            store: self.inner.store.clone(),
            egress: self.inner.config.egress.clone(),
            key: self.inner.config.secrets_key.clone(),
            node_id: self.inner.config.node_id.clone(),
            on_attempt: Arc::new(move |outcome| node.inner.metrics.webhook_attempt(outcome)),
            slots: Arc::default(),
            breakers: Arc::default(),
        }
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

    /// Graceful stop: runs get `grace` to finish; the rest are released,
    /// and so are the node's partitions.
    async fn shut_down(&self, grace: Duration) {
        self.release_partitions().await;
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
