//! Retention through the scheduler, on both stores, driven by the injected
//! clock: finished executions go after their retention (the schedule's or the
//! node's), and only the holder of the sweeper lock sweeps.

use std::time::Duration;
use taskhost_model::{Execution, ExecutionStatus};
use taskhost_scheduler::{SWEEPER_LOCK, Work};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::stores::Harness;

taskhost_tests::conformance!(
    finished_runs_expire_after_their_retention,
    one_node_sweeps_at_a_time
);

async fn finished_runs_expire_after_their_retention(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let hello = upload(&h.store, "acme", "hello").await;
    let mut short = Vec::new();
    let mut long = Vec::new();
    for i in 0..6 {
        let mut spec = Work::ad_hoc("acme", &hello.id);
        spec.policy.input = serde_json::json!({"name": format!("r{i}")});
        if i % 2 == 0 {
            spec.policy.retention = Some(Duration::from_secs(3600));
        }
        let e = node.submit(spec).await.expect("enqueue");
        if i % 2 == 0 {
            short.push(e.id)
        } else {
            long.push(e.id)
        }
    }
    cluster.tick().await;
    for id in short.iter().chain(&long) {
        let e = h
            .store
            .get_execution("acme", id)
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(e.status, ExecutionStatus::Succeeded);
        assert!(
            e.expires_at
                .is_some_and(|t| t > e.finished_at.expect("finished"))
        );
    }
    assert_eq!(node.sweep_expired().await.expect("sweep"), Some(0));
    h.clock.advance(Duration::from_secs(3601));
    assert_eq!(node.sweep_expired().await.expect("sweep"), Some(3));
    for id in &short {
        assert!(
            h.store
                .get_execution("acme", id)
                .await
                .expect("get")
                .is_none()
        );
    }
    // The node's default: seven days.
    h.clock.advance(Duration::from_secs(7 * 86_400));
    assert_eq!(node.sweep_expired().await.expect("sweep"), Some(3));
    for id in &long {
        assert!(
            h.store
                .get_execution("acme", id)
                .await
                .expect("get")
                .is_none()
        );
    }
}

async fn one_node_sweeps_at_a_time(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 2, test_config()).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let now = h.store.now();
    for _ in 0..2500 {
        let mut e = Execution::queued("acme", "p", now, now);
        e.policy.retention = Some(Duration::from_secs(60));
        e.finish(ExecutionStatus::Succeeded, now);
        h.store.create_execution(&e).await.expect("create");
    }
    h.clock.advance(Duration::from_secs(120));
    // While node A holds the sweeper lock, node B does not sweep.
    assert!(
        h.store
            .acquire_lock(SWEEPER_LOCK, a.id(), Duration::from_secs(60))
            .await
            .expect("lock")
    );
    assert_eq!(b.sweep_expired().await.expect("sweep"), None);
    // A lock whose holder stopped renewing it is taken over once it expires.
    h.clock.advance(Duration::from_secs(61));
    let first = b.sweep_expired().await.expect("sweep");
    assert!(first.is_some_and(|n| n > 0), "{first:?}");
    // Racing nodes: whoever holds the lock sweeps; together they remove the rest once.
    let mut removed = first.unwrap_or(0);
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.sweep_expired(), b.sweep_expired());
        removed += x.expect("sweep").unwrap_or(0) + y.expect("sweep").unwrap_or(0);
    }
    assert_eq!(removed, 2500);
}
