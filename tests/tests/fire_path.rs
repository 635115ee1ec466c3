//! The fire path at scale, driven by a manual clock: a fire decided late
//! because the node was busy runs late (and says by how much), one missed
//! while the node was down follows the catch-up policy; fires made ahead
//! within the horizon start on their instant and a pause skips them;
//! partitions spread over the nodes and move when one dies.

use chrono::{DateTime, Duration as Span, Utc};
use std::collections::HashSet;
use std::time::Duration;
use taskhost_model::{
    CatchUp, CatchUpMode, Execution, ExecutionStatus, FireFate, FireReason, OverlapPolicy,
    PARTITIONS, Trigger, partition_of,
};
use taskhost_scheduler::SchedulerConfig;
use taskhost_store::{ExecutionFilter, FireFilter, PageRequest, Store};
use taskhost_tests::cluster::{Cluster, schedule, test_config, upload};
use taskhost_tests::stores::Harness;

fn every_second() -> Trigger {
    Trigger::Cron {
        expr: "* * * * * *".into(),
        timezone: "UTC".into(),
    }
}

async fn all_executions(store: &Store, tenant: &str) -> Vec<Execution> {
    let mut all = Vec::new();
    let mut request = PageRequest {
        cursor: None,
        limit: Some(1000),
    };
    loop {
        let page = store
            .list_executions(tenant, &ExecutionFilter::default(), &request)
            .await
            .expect("list");
        all.extend(page.items);
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => return all,
        }
    }
}

/// A schedule's whole fire ledger: the runs and the fires that did not run.
async fn ledger_of(store: &Store, tenant: &str, schedule_id: &str) -> Vec<Execution> {
    store
        .fire_rows(tenant, schedule_id, &FireFilter::default(), 10_000)
        .await
        .expect("fire rows")
}

fn fires_in(all: &[Execution], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<&Execution> {
    all.iter()
        .filter(|e| e.fire_time.is_some_and(|t| t > from && t <= to))
        .collect()
}

/// Five every-second schedules (catch-up `skip`, grace 1 s) on a node that
/// reads one schedule a pass: each falls up to five seconds behind, yet
/// every fire runs, marked late. Then the node is down for a minute: those
/// fires were missed, and `skip` skips them.
#[tokio::test]
async fn busy_is_late_not_missed_and_downtime_follows_catch_up() {
    let h = Harness::sqlite().await;
    let config = SchedulerConfig {
        catch_up_grace: Duration::from_secs(1),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let node = &cluster.nodes[0];
    let hello = upload(&h.store, "acme", "hello").await;
    let start = h.store.now();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut s = schedule("acme", &hello.id, every_second(), start);
        s.catch_up = CatchUp {
            mode: CatchUpMode::Skip,
            ..s.catch_up
        };
        h.store.create_schedule(&s).await.expect("schedule");
        ids.push(s.id);
    }
    node.materialize_due(1000).await.expect("first pass");
    // Busy: a pass every second, each reading only the most overdue one.
    for _ in 0..30 {
        h.clock.advance(Duration::from_secs(1));
        node.materialize_due(1).await.expect("a small pass");
    }
    let busy_end = h.store.now() - Span::seconds(10);
    let all = all_executions(&h.store, "acme").await;
    let busy = fires_in(&all, start, busy_end);
    assert_eq!(busy.len(), 5 * 20, "every fire of the busy time recorded");
    assert!(
        busy.iter().all(|e| e.status != ExecutionStatus::Skipped
            && e.fire.as_ref().is_some_and(|f| f.fate == FireFate::Ran)),
        "busy, not down: every fire runs"
    );
    let late = busy
        .iter()
        .filter(|e| {
            e.fire
                .as_ref()
                .and_then(|f| f.late_ms)
                .is_some_and(|ms| ms > 1000)
        })
        .count();
    assert!(late > 50, "most were late and say so ({late} of 100)");

    // Down: no pass for a minute, then one that reads everything.
    for _ in 0..6 {
        node.materialize_due(1000)
            .await
            .expect("catch up the backlog");
    }
    let down_from = h.store.now();
    h.clock.advance(Duration::from_secs(60));
    node.materialize_due(1000)
        .await
        .expect("the pass after downtime");
    let to = h.store.now() - Span::seconds(2);
    for id in &ids {
        let ledger = ledger_of(&h.store, "acme", id).await;
        let down = fires_in(&ledger, down_from, to);
        assert_eq!(down.len(), 58, "every missed fire has its record");
        assert!(
            down.iter().all(|e| e.status == ExecutionStatus::Skipped
                && e.fire.as_ref().is_some_and(|f| matches!(
                    (f.fate, f.reason),
                    (FireFate::Skipped, Some(FireReason::CatchUpSkip))
                        | (FireFate::Missed, Some(FireReason::OutsideWindow))
                ))),
            "missed while down: catch-up skip (or outside its window)"
        );
    }
}

/// With a horizon, an `allow` schedule's fires are made ahead and start on
/// their instant, not before; an overlap `skip` schedule's are made when
/// due; a pause turns fires made ahead into `skipped: paused`.
#[tokio::test]
async fn fires_made_ahead_start_on_time_and_a_pause_skips_them() {
    let h = Harness::sqlite().await;
    let config = SchedulerConfig {
        fire_horizon: Duration::from_secs(3),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let node = &cluster.nodes[0];
    let hello = upload(&h.store, "acme", "hello").await;
    let start = h.store.now();
    let ahead = schedule("acme", &hello.id, every_second(), start);
    let mut when_due = schedule("acme", &hello.id, every_second(), start);
    when_due.overlap = OverlapPolicy::Skip;
    h.store.create_schedule(&ahead).await.expect("schedule");
    h.store.create_schedule(&when_due).await.expect("schedule");

    cluster.tick().await;
    let all = all_executions(&h.store, "acme").await;
    let of = |id: &str| -> Vec<&Execution> {
        all.iter()
            .filter(|e| e.schedule_id.as_deref() == Some(id))
            .collect()
    };
    assert_eq!(of(&ahead.id).len(), 4, "now and the next three seconds");
    assert_eq!(of(&when_due.id).len(), 1, "overlap skip: only the due one");
    let started: Vec<_> = all.iter().filter(|e| e.started_at.is_some()).collect();
    assert_eq!(started.len(), 2, "only the fires due now started");
    assert!(started.iter().all(|e| e.fire_time == Some(start)));

    h.clock.advance(Duration::from_secs(1));
    cluster.tick().await;
    let all = all_executions(&h.store, "acme").await;
    for e in all.iter().filter(|e| e.started_at.is_some()) {
        let fire = e.fire_time.expect("a fire");
        assert!(e.started_at >= Some(fire), "never before its instant");
    }
    assert_eq!(
        all.iter().filter(|e| e.started_at.is_some()).count(),
        4,
        "second 1 of both"
    );

    node.pause("acme", &ahead.id)
        .await
        .expect("pause")
        .expect("exists");
    let ledger = ledger_of(&h.store, "acme", &ahead.id).await;
    let now = h.store.now();
    let later: Vec<_> = ledger
        .iter()
        .filter(|e| e.fire_time.is_some_and(|t| t > now))
        .collect();
    assert_eq!(later.len(), 3, "made ahead: seconds 2, 3 and 4");
    assert!(
        later.iter().all(|e| e.status == ExecutionStatus::Skipped
            && e.fire.as_ref().and_then(|f| f.reason) == Some(FireReason::Paused)),
        "a pause skips the fires made ahead"
    );
    h.clock.advance(Duration::from_secs(5));
    cluster.tick().await;
    let all = all_executions(&h.store, "acme").await;
    let runs_after_pause = all
        .iter()
        .filter(|e| e.schedule_id.as_deref() == Some(&ahead.id))
        .filter(|e| e.fire_time.is_some_and(|t| t > now) && e.started_at.is_some())
        .count();
    assert_eq!(runs_after_pause, 0, "nothing of a paused schedule runs");
}

/// Two partitioned nodes share the 64 partitions; each makes only the
/// fires of its own; when one dies, the other takes its partitions once
/// their leases expire, and no fire is lost or made twice.
#[tokio::test]
async fn partitions_spread_and_move_when_a_node_dies() {
    let h = Harness::sqlite().await;
    let config = SchedulerConfig {
        partitioned: true,
        partition_lease: Duration::from_secs(10),
        heartbeat_ttl: Duration::from_secs(10),
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 2, config).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.heartbeat().await.expect("heartbeat");
    b.heartbeat().await.expect("heartbeat");
    assert_eq!(a.balance_partitions().await.expect("balance"), 32);
    assert_eq!(b.balance_partitions().await.expect("balance"), 32);
    let (mine, theirs): (HashSet<u32>, HashSet<u32>) = (
        a.owned_partitions().into_iter().collect(),
        b.owned_partitions().into_iter().collect(),
    );
    assert!(mine.is_disjoint(&theirs));
    assert_eq!(mine.len() + theirs.len(), PARTITIONS as usize);

    let hello = upload(&h.store, "acme", "hello").await;
    let start = h.store.now();
    let mut ids = Vec::new();
    for _ in 0..40 {
        let s = schedule("acme", &hello.id, every_second(), start);
        h.store.create_schedule(&s).await.expect("schedule");
        ids.push(s.id);
    }
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(1));
        cluster.tick().await;
    }
    let all = all_executions(&h.store, "acme").await;
    for e in &all {
        let partition = partition_of(e.schedule_id.as_deref().expect("a schedule"));
        let by = &e.fire.as_ref().expect("a fire").decided_by;
        let owner = if mine.contains(&partition) {
            a.id()
        } else {
            b.id()
        };
        assert_eq!(by, owner, "the owner of its partition made the fire");
    }

    // b dies: a keeps beating and passing; b's leases run out.
    for _ in 0..12 {
        h.clock.advance(Duration::from_secs(1));
        a.heartbeat().await.expect("heartbeat");
        a.balance_partitions().await.expect("balance");
        a.tick().await.expect("tick");
        a.drain().await;
    }
    assert_eq!(a.owned_partitions().len(), PARTITIONS as usize);
    let all = all_executions(&h.store, "acme").await;
    let end = h.store.now();
    let mut seen = HashSet::new();
    for e in &all {
        assert!(
            seen.insert((e.schedule_id.clone(), e.fire_time)),
            "no fire twice"
        );
    }
    for id in &ids {
        let fires = all
            .iter()
            .filter(|e| e.schedule_id.as_deref() == Some(id))
            .count();
        assert_eq!(fires as i64, (end - start).num_seconds() + 1, "none lost");
    }
}

/// Tenant A has 300 schedules on the same second, tenant B one: made in
/// the same passes, B's fire starts among the first, not after A's 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_many_schedules_do_not_delay_anothers_fire() {
    let h = Harness::sqlite().await;
    let config = SchedulerConfig {
        workers: 4,
        tenant_limit: 4,
        pass_size: 100,
        ..test_config()
    };
    let cluster = Cluster::new(&h.url, &h.clock, 1, config).await;
    let node = &cluster.nodes[0];
    let a = upload(&h.store, "tenant-a", "hello").await;
    let b = upload(&h.store, "tenant-b", "hello").await;
    let start = h.store.now();
    for _ in 0..300 {
        let s = schedule("tenant-a", &a.id, every_second(), start);
        h.store.create_schedule(&s).await.expect("schedule");
    }
    let theirs = schedule("tenant-b", &b.id, every_second(), start);
    h.store.create_schedule(&theirs).await.expect("schedule");
    h.clock.advance(Duration::from_secs(1));
    node.fire_passes().await.expect("passes");
    node.refill().await.expect("refill");
    assert_eq!(node.dispatch().await, 4, "four workers");
    let b_runs = all_executions(&h.store, "tenant-b").await;
    assert!(!b_runs.is_empty(), "B's fires are made");
    assert!(
        b_runs.iter().any(|e| e.status != ExecutionStatus::Queued),
        "one of B's fires started in the first four, beside A's 600"
    );
    node.drain().await;
}
