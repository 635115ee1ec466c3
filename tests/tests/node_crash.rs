//! A node killed mid-run (SIGKILL): after its leases expire a surviving node
//! re-runs its executions; none is lost and none completes twice.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use taskhost_model::{Execution, ExecutionStatus};
use taskhost_store::{ExecutionFilter, PageRequest};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::stores::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_reruns_a_killed_nodes_executions() {
    let h = Harness::sqlite().await;
    // The child runs on the real clock; align ours with it.
    h.clock.set(chrono::Utc::now());
    let sleep = upload(&h.store, "acme", "test-sleep").await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let now = h.store.now();
        let mut e = Execution::queued("acme", &sleep.id, now, now);
        // Waits a minute (the child dies in it); the re-run is told not to.
        e.policy.input = serde_json::json!({"ms": 60_000, "first_attempt_only": true});
        e.policy.limits.timeout = Duration::from_secs(120);
        h.store.create_execution(&e).await.expect("create");
        ids.push(e.id);
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_scheduler-node"))
        .args([&h.url, "doomed"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the node");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(out.next().expect("line").expect("read"), "ready");
    // Wait (real time: it is another process) until the child runs them all.
    let running = ExecutionFilter {
        status: Some(ExecutionStatus::Running),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = h
            .store
            .list_executions("acme", &running, &PageRequest::default())
            .await
            .expect("list");
        if page.items.len() == 20 {
            assert!(
                page.items
                    .iter()
                    .all(|e| e.lease_owner.as_deref() == Some("doomed"))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child did not claim all executions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // A lost lease is a host fault: the re-run is the same attempt, so tell
    // it not to wait (the store's own records, changed as an operator could).
    for id in &ids {
        h.store
            .modify_execution(id, |e| {
                e.policy.input = serde_json::json!({"ms": 0});
                true
            })
            .await
            .expect("modify")
            .expect("exists");
    }

    let survivor = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    survivor.tick().await;
    assert_eq!(
        survivor.starts.total(),
        0,
        "leases still valid: nothing re-run yet"
    );
    h.clock.advance(Duration::from_secs(31));
    survivor.tick().await;
    for id in &ids {
        let e = h
            .store
            .get_execution("acme", id)
            .await
            .expect("get")
            .expect("exists");
        // A lost lease is the host's fault: same attempt, one host fault.
        assert_eq!(
            (e.status, e.attempt, e.host_faults),
            (ExecutionStatus::Succeeded, 1, 1),
            "{id}"
        );
        assert!(e.finished_at.is_some());
    }
    let starts = survivor.starts.counts();
    assert_eq!(starts.len(), 20);
    assert!(starts.values().all(|&n| n == 1), "each re-run once");
}
