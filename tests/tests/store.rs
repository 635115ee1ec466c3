//! The store conformance suite: every case runs against SQLite and against
//! MongoDB (SecantusDB in CI). One suite, both backends.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use taskhost_model::{
    Execution, ExecutionStatus, NodeInfo, PluginRecord, Schedule, Trigger, new_id,
};
use taskhost_runtime::{KvNamespace, KvStore, Outcome, RunRequest, Runtime, RuntimeConfig, Status};
use taskhost_store::{
    Completion, ExecutionFilter, FireDecided, Lease, LeaseRenewal, PageRequest, PluginFilter,
    Release, ScheduleFilter, StoreError,
};
use taskhost_tests::stores::Harness;

// Each case once per backend: `sqlite::case` and `mongodb::case`.
taskhost_tests::conformance!(
    plugins,
    schedules,
    execution_lifecycle,
    retries_and_cancel,
    listing_and_pagination,
    lease_expiry_follows_the_clock,
    materialize_fire_once_under_races,
    claim_race_each_claimed_once,
    lock_race_never_two_holders,
    lock_expiry,
    kv_scoped_and_backing_the_runtime,
    node_heartbeats,
    reopen_loses_nothing,
    wakeups_across_processes,
    expired_executions_are_deleted,
    kv_quota_counts_keys_and_bytes,
    due_soon_shares_the_heap_across_tenants,
    batch_claims_and_fenced_completions,
    batch_inserts_all_or_nothing,
    secrets_sealed_versioned_and_scoped,
    webhooks_marked_with_the_end_and_claimed_once,
    fire_records_insert_once_list_count_and_expire,
);

const LEASE: Duration = Duration::from_secs(30);

fn plugin(tenant: &str, name: &str, version: &str, now: DateTime<Utc>) -> PluginRecord {
    PluginRecord {
        id: new_id(),
        tenant: tenant.into(),
        name: name.into(),
        version: version.into(),
        sha256: "00".repeat(32),
        size: 3,
        world: taskhost_runtime::WORLD.into(),
        created_at: now,
        created_by: "tester".into(),
    }
}

fn schedule(tenant: &str, name: &str, plugin_id: &str, now: DateTime<Utc>) -> Schedule {
    Schedule {
        id: new_id(),
        tenant: tenant.into(),
        name: name.into(),
        plugin_id: plugin_id.into(),
        plugin_alias: None,
        trigger: Trigger::Cron {
            expr: "*/5 * * * *".into(),
            timezone: "Europe/London".into(),
        },
        policy: taskhost_model::RunPolicy {
            input: serde_json::json!({"k": 1}),
            retry: Some(Default::default()),
            ..Default::default()
        },
        overlap: Default::default(),
        catch_up: Default::default(),
        jitter: Duration::ZERO,
        starts_at: None,
        ends_at: None,
        paused: false,
        paused_until: None,
        next_fire_at: Some(now),
        last_fire_at: None,
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

fn succeeded() -> Outcome {
    let mut outcome = Outcome::not_run(Status::Succeeded, "");
    outcome.error = None;
    outcome.output = Some(b"\"ok\"".to_vec());
    outcome
}

async fn queued(h: &Harness, tenant: &str) -> Execution {
    let execution = Execution::queued(tenant, "plugin-1", h.store.now(), h.store.now());
    h.store
        .create_execution(&execution)
        .await
        .expect("create execution");
    execution
}

async fn plugins(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let p = plugin("acme", "hello", "1.0.0", now);
    let wasm: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    store.create_plugin(&p, &wasm).await.expect("create");
    assert_eq!(
        store.get_plugin("acme", &p.id).await.expect("get"),
        Some(p.clone())
    );
    assert_eq!(
        store.get_plugin("globex", &p.id).await.expect("get"),
        None,
        "another tenant sees nothing"
    );
    assert_eq!(
        store.plugin_wasm("acme", &p.id).await.expect("wasm"),
        Some(wasm)
    );
    assert_eq!(
        store.plugin_wasm("globex", &p.id).await.expect("wasm"),
        None
    );

    let dup = plugin("acme", "hello", "1.0.0", now);
    assert!(matches!(
        store.create_plugin(&dup, b"x").await,
        Err(StoreError::Conflict(_))
    ));
    // The same name and version in another tenant is fine.
    store
        .create_plugin(&plugin("globex", "hello", "1.0.0", now), b"x")
        .await
        .expect("other tenant");

    let s = schedule("acme", "uses-hello", &p.id, now);
    store.create_schedule(&s).await.expect("schedule");
    assert!(matches!(
        store.delete_plugin("acme", &p.id).await,
        Err(StoreError::InUse(_))
    ));
    assert!(
        !store.delete_plugin("globex", &p.id).await.expect("delete"),
        "another tenant cannot delete"
    );
    assert!(
        store
            .delete_schedule("acme", &s.id)
            .await
            .expect("delete schedule")
    );
    assert!(store.delete_plugin("acme", &p.id).await.expect("delete"));
    assert_eq!(store.get_plugin("acme", &p.id).await.expect("get"), None);
    assert_eq!(store.plugin_wasm("acme", &p.id).await.expect("wasm"), None);
    assert!(
        !store
            .delete_plugin("acme", &p.id)
            .await
            .expect("delete again")
    );
}

async fn schedules(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let s = schedule("acme", "nightly", "p1", now);
    store.create_schedule(&s).await.expect("create");
    assert_eq!(
        store.get_schedule("acme", &s.id).await.expect("get"),
        Some(s.clone())
    );
    assert_eq!(
        store.get_schedule("globex", &s.id).await.expect("get"),
        None
    );
    let dup = schedule("acme", "nightly", "p1", now);
    assert!(matches!(
        store.create_schedule(&dup).await,
        Err(StoreError::Conflict(_))
    ));

    let paused = store
        .modify_schedule(Some("acme"), &s.id, |s| {
            s.paused = true;
            true
        })
        .await
        .expect("modify")
        .expect("exists");
    assert!(paused.paused);
    assert_eq!(paused.version, 1);
    assert_eq!(
        store.get_schedule("acme", &s.id).await.expect("get"),
        Some(paused.clone())
    );
    let other = store
        .modify_schedule(Some("globex"), &s.id, |_| true)
        .await
        .expect("modify");
    assert_eq!(other, None, "another tenant cannot modify");

    // Due: next_fire_at <= now, paused or not (a paused schedule's fires
    // are recorded as skipped).
    let mut later = schedule("acme", "later", "p1", now);
    later.next_fire_at = Some(now + chrono::Duration::minutes(5));
    store.create_schedule(&later).await.expect("create");
    let due_now = schedule("globex", "now", "p2", now);
    store.create_schedule(&due_now).await.expect("create");
    let due: Vec<String> = store
        .due_schedules(10)
        .await
        .expect("due")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(due.len(), 2);
    assert!(due.contains(&due_now.id) && due.contains(&s.id), "{due:?}");
    h.clock.advance(Duration::from_secs(300));
    let due = store.due_schedules(10).await.expect("due");
    assert_eq!(due.len(), 3);

    let filter = ScheduleFilter {
        paused: Some(true),
        ..Default::default()
    };
    let page = store
        .list_schedules("acme", &filter, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&s.id]
    );
    let filter = ScheduleFilter {
        plugin_id: Some("p1".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_schedules("acme", &filter, &PageRequest::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    assert!(
        !store
            .delete_schedule("globex", &s.id)
            .await
            .expect("delete")
    );
    assert!(store.delete_schedule("acme", &s.id).await.expect("delete"));
    assert_eq!(store.get_schedule("acme", &s.id).await.expect("get"), None);
}

async fn execution_lifecycle(h: Harness) {
    let store = &h.store;
    let mut future = Execution::queued(
        "acme",
        "p1",
        store.now() + chrono::Duration::seconds(60),
        store.now(),
    );
    future.policy.priority = 5;
    store.create_execution(&future).await.expect("create");
    assert_eq!(
        store
            .claim(&future.id, "node-a", LEASE)
            .await
            .expect("claim"),
        None,
        "not due yet"
    );

    let e = queued(&h, "acme").await;
    assert_eq!(
        store.get_execution("acme", &e.id).await.expect("get"),
        Some(e.clone())
    );
    assert_eq!(
        store.get_execution("globex", &e.id).await.expect("get"),
        None
    );

    let claimed = store
        .claim(&e.id, "node-a", LEASE)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.status, ExecutionStatus::Running);
    assert_eq!(claimed.lease_owner.as_deref(), Some("node-a"));
    assert_eq!(claimed.started_at, Some(store.now()));
    let a = Lease::of(&claimed).expect("a lease with a fencing token");
    assert_eq!(
        store.claim(&e.id, "node-b", LEASE).await.expect("claim"),
        None,
        "claimed once"
    );
    // Another node naming the token, or this node naming another claim's
    // token, holds nothing.
    let b = Lease {
        owner: "node-b".into(),
        token: a.token.clone(),
    };
    let stale = Lease {
        owner: "node-a".into(),
        token: "an-earlier-claim".into(),
    };

    h.clock.advance(Duration::from_secs(10));
    let renewed = store.renew_lease(&e.id, &a, LEASE).await.expect("renew");
    assert_eq!(
        renewed,
        LeaseRenewal::Renewed(store.now() + chrono::Duration::seconds(30))
    );
    for other in [&b, &stale] {
        assert_eq!(
            store.renew_lease(&e.id, other, LEASE).await.expect("renew"),
            LeaseRenewal::Lost
        );
        assert_eq!(
            store
                .complete(&e.id, other, Completion::Finished(succeeded()))
                .await
                .expect("complete"),
            None
        );
        assert_eq!(
            store
                .release(&e.id, other, Release::HostFault)
                .await
                .expect("release"),
            None
        );
    }

    let done = store
        .complete(&e.id, &a, Completion::Finished(succeeded()))
        .await
        .expect("complete");
    let done = done.expect("completed");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(done.finished_at, Some(store.now()));
    assert_eq!(done.lease_owner, None);
    assert_eq!(
        done.outcome.as_ref().and_then(|o| o.output_json()),
        Some(serde_json::json!("ok"))
    );
    assert_eq!(
        store
            .complete(&e.id, &a, Completion::Finished(succeeded()))
            .await
            .expect("again"),
        None
    );
    assert_eq!(
        store.get_execution("acme", &e.id).await.expect("get"),
        Some(done)
    );

    // A failed outcome finishes as failed.
    let f = queued(&h, "acme").await;
    let fa = claim(&h, &f.id, "node-a").await;
    let failed = Outcome::not_run(Status::TimedOut, "too slow");
    let f = store
        .complete(&f.id, &fa, Completion::Finished(failed))
        .await
        .expect("complete")
        .expect("done");
    assert_eq!(f.status, ExecutionStatus::Failed);
    assert_eq!(f.outcome.map(|o| o.status), Some(Status::TimedOut));
}

async fn retries_and_cancel(h: Harness) {
    let store = &h.store;
    let e = queued(&h, "acme").await;
    let a = claim(&h, &e.id, "node-a").await;
    let retry_at = store.now() + chrono::Duration::seconds(4);
    let failed = Outcome::not_run(Status::Failed, "flaky");
    let retried = store
        .complete(&e.id, &a, Completion::RetryAt(retry_at, failed.clone()))
        .await
        .expect("complete")
        .expect("owner");
    assert_eq!(
        (retried.status, retried.attempt, retried.due_at),
        (ExecutionStatus::Queued, 2, retry_at)
    );
    assert_eq!(
        store.claim(&e.id, "node-a", LEASE).await.expect("claim"),
        None,
        "backoff not over"
    );
    h.clock.advance(Duration::from_secs(4));
    let b = claim(&h, &e.id, "node-b").await;
    let dead = store
        .complete(&e.id, &b, Completion::Dead(failed))
        .await
        .expect("complete")
        .expect("owner");
    assert_eq!(dead.status, ExecutionStatus::Dead);

    // Cancel: queued at once; running by request; finished not at all.
    let q = queued(&h, "acme").await;
    assert_eq!(
        store.cancel("globex", &q.id).await.expect("cancel"),
        None,
        "another tenant cannot cancel"
    );
    let cancelled = store
        .cancel("acme", &q.id)
        .await
        .expect("cancel")
        .expect("queued");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    assert_eq!(
        store.claim(&q.id, "node-a", LEASE).await.expect("claim"),
        None
    );
    let r = queued(&h, "acme").await;
    let ra = claim(&h, &r.id, "node-a").await;
    let requested = store
        .cancel("acme", &r.id)
        .await
        .expect("cancel")
        .expect("running");
    assert!(requested.cancel_requested);
    assert_eq!(requested.status, ExecutionStatus::Running);
    assert_eq!(
        store.renew_lease(&r.id, &ra, LEASE).await.expect("renew"),
        LeaseRenewal::CancelRequested
    );
    let stopped = store
        .complete(&r.id, &ra, Completion::Cancelled(None))
        .await
        .expect("complete");
    assert_eq!(stopped.map(|e| e.status), Some(ExecutionStatus::Cancelled));
    assert_eq!(
        store.cancel("acme", &r.id).await.expect("cancel"),
        None,
        "already finished"
    );
}

async fn listing_and_pagination(h: Harness) {
    let store = &h.store;
    let start = store.now();
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut e = Execution::queued(
            "acme",
            if i % 2 == 0 { "even" } else { "odd" },
            start,
            store.now(),
        );
        e.schedule_id = Some("s1".into());
        e.fire_time = Some(store.now());
        store.create_execution(&e).await.expect("create");
        ids.push(e.id);
        h.clock.advance(Duration::from_secs(1));
    }
    queued(&h, "globex").await;
    // Newest first, in pages of 3, each id once.
    let mut seen = Vec::new();
    let mut request = PageRequest {
        cursor: None,
        limit: Some(3),
    };
    loop {
        let page = store
            .list_executions("acme", &ExecutionFilter::default(), &request)
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|e| e.id.clone()));
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let by_plugin = ExecutionFilter {
        plugin_id: Some("odd".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_executions("acme", &by_plugin, &PageRequest::default())
            .await
            .expect("list")
            .items
            .len(),
        3
    );
    let window = ExecutionFilter {
        since: Some(start + chrono::Duration::seconds(2)),
        until: Some(start + chrono::Duration::seconds(4)),
        ..Default::default()
    };
    let in_window = store
        .list_executions("acme", &window, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(
        in_window.items.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&ids[3], &ids[2]]
    );
    store
        .claim(&ids[0], "n", LEASE)
        .await
        .expect("claim")
        .expect("claimed");
    let running = ExecutionFilter {
        status: Some(ExecutionStatus::Running),
        ..Default::default()
    };
    let running = store
        .list_executions("acme", &running, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(running.items.len(), 1);
    let by_schedule = ExecutionFilter {
        schedule_id: Some("s1".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_executions("globex", &by_schedule, &PageRequest::default())
            .await
            .expect("list")
            .items
            .len(),
        0
    );

    // Due-soon order: priority first, then due time.
    let base = store.now();
    let mut expected = Vec::new();
    for (priority, offset) in [(0, 1), (9, 3), (9, 2), (-1, 0)] {
        let mut e = Execution::queued("acme", "p", base + chrono::Duration::seconds(offset), base);
        e.policy.priority = priority;
        store.create_execution(&e).await.expect("create");
        expected.push((priority, offset, e.id));
    }
    expected.sort_by_key(|(p, o, _)| (-p, *o));
    let due = store
        .due_soon(Duration::from_secs(10), 100)
        .await
        .expect("due");
    let new_ones: Vec<&String> = due
        .iter()
        .map(|e| &e.id)
        .filter(|id| expected.iter().any(|x| &x.2 == *id))
        .collect();
    assert_eq!(new_ones, expected.iter().map(|x| &x.2).collect::<Vec<_>>());
    let soon = store
        .due_soon(Duration::from_millis(1500), 100)
        .await
        .expect("due");
    assert!(
        !soon.iter().any(|e| e.id == expected[0].2),
        "due in 2s is not within 1.5s"
    );
}

async fn lease_expiry_follows_the_clock(h: Harness) {
    let store = &h.store;
    let none = HashSet::new();
    let e = Execution::queued("acme", "p", store.now(), store.now());
    store.create_execution(&e).await.expect("create");
    let dead_node = claim(&h, &e.id, "dead-node").await;
    h.clock.advance(Duration::from_secs(29));
    assert!(
        store
            .requeue_expired(100, &none)
            .await
            .expect("requeue")
            .is_empty(),
        "lease still valid"
    );
    // The holder's own runs are left alone whatever the clock says.
    h.clock.advance(Duration::from_secs(2));
    let alive = HashSet::from([e.id.clone()]);
    assert!(
        store
            .requeue_expired(100, &alive)
            .await
            .expect("requeue")
            .is_empty()
    );
    // A lost lease is a host fault: the same attempt again, after a backoff.
    let requeued = store.requeue_expired(100, &none).await.expect("requeue");
    assert_eq!(requeued.len(), 1);
    assert_eq!(
        (
            requeued[0].status,
            requeued[0].attempt,
            requeued[0].host_faults
        ),
        (ExecutionStatus::Queued, 1, 1)
    );
    assert_eq!(requeued[0].due_at, store.now(), "the first at once");
    assert_eq!(
        store
            .renew_lease(&e.id, &dead_node, LEASE)
            .await
            .expect("renew"),
        LeaseRenewal::Lost
    );
    assert_eq!(
        store
            .complete(&e.id, &dead_node, Completion::Finished(succeeded()))
            .await
            .expect("complete"),
        None
    );
    // A host fault on release counts the same way; past the limit, dead.
    let mut faults = 1;
    while faults < taskhost_model::MAX_HOST_FAULTS {
        h.clock.advance(taskhost_model::MAX_HOST_FAULT_BACKOFF);
        let held = claim(&h, &e.id, "survivor").await;
        let released = store
            .release(&e.id, &held, Release::HostFault)
            .await
            .expect("release")
            .expect("held");
        faults += 1;
        assert_eq!(released.host_faults, faults);
        assert_eq!(released.attempt, 1, "host faults use no attempt");
    }
    let last = store.get_execution("acme", &e.id).await.expect("get");
    assert_eq!(last.map(|e| e.status), Some(ExecutionStatus::Dead));
}

/// Claims `id` for `owner`; returns its lease.
async fn claim(h: &Harness, id: &str, owner: &str) -> Lease {
    let claimed = h
        .store
        .claim(id, owner, LEASE)
        .await
        .expect("claim")
        .expect("claimed");
    Lease::of(&claimed).expect("a lease")
}

async fn materialize_fire_once_under_races(h: Harness) {
    let fire_base = h.store.now();
    let inserted = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for racer in 0..8 {
        let (store, inserted) = (h.store.clone(), inserted.clone());
        tasks.spawn(async move {
            for fire in 0..50i64 {
                let fire_time = fire_base + chrono::Duration::seconds(fire);
                let mut e = Execution::queued("acme", "p", fire_time, fire_time);
                e.schedule_id = Some("racy".into());
                e.fire_time = Some(fire_time);
                e.policy.config.insert("racer".into(), racer.to_string());
                if matches!(
                    store.decide_fire(&e).await.expect("materialize"),
                    FireDecided::Ours(_)
                ) {
                    inserted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("racer");
    }
    assert_eq!(
        inserted.load(Ordering::SeqCst),
        50,
        "exactly one execution per fire"
    );
    let filter = ExecutionFilter {
        schedule_id: Some("racy".into()),
        ..Default::default()
    };
    let all = h
        .store
        .list_executions(
            "acme",
            &filter,
            &PageRequest {
                cursor: None,
                limit: Some(1000),
            },
        )
        .await;
    let mut fires: Vec<_> = all
        .expect("list")
        .items
        .into_iter()
        .map(|e| e.fire_time)
        .collect();
    fires.sort();
    fires.dedup();
    assert_eq!(fires.len(), 50);
}

async fn claim_race_each_claimed_once(h: Harness) {
    let mut ids = Vec::new();
    for _ in 0..1000 {
        ids.push(queued(&h, "acme").await.id);
    }
    let ids = Arc::new(ids);
    let mut tasks = tokio::task::JoinSet::new();
    for claimant in 0..16 {
        let (store, ids) = (h.store.clone(), ids.clone());
        tasks.spawn(async move {
            let owner = format!("node-{claimant}");
            let mut won = Vec::new();
            // Start at different offsets so claimants really collide.
            for i in 0..ids.len() {
                let id = &ids[(i + claimant * 61) % ids.len()];
                if let Some(e) = store.claim(id, &owner, LEASE).await.expect("claim") {
                    assert_eq!(e.lease_owner.as_deref(), Some(owner.as_str()));
                    won.push(e.id);
                }
            }
            won
        });
    }
    let mut claims: HashMap<String, usize> = HashMap::new();
    while let Some(won) = tasks.join_next().await {
        for id in won.expect("claimant") {
            *claims.entry(id).or_default() += 1;
        }
    }
    assert_eq!(claims.len(), 1000, "every execution was claimed");
    assert!(
        claims.values().all(|&n| n == 1),
        "no execution was claimed twice"
    );
}

async fn lock_race_never_two_holders(h: Harness) {
    let holders = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for racer in 0..8 {
        let (store, holders, acquired) = (h.store.clone(), holders.clone(), acquired.clone());
        tasks.spawn(async move {
            let owner = format!("racer-{racer}");
            for _ in 0..250 {
                if store
                    .acquire_lock("the-lock", &owner, Duration::from_secs(60))
                    .await
                    .expect("acquire")
                {
                    assert_eq!(
                        holders.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders at once"
                    );
                    acquired.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    assert!(
                        store
                            .release_lock("the-lock", &owner)
                            .await
                            .expect("release")
                    );
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("racer");
    }
    assert!(acquired.load(Ordering::SeqCst) > 0);
}

async fn lock_expiry(h: Harness) {
    let store = &h.store;
    let ttl = Duration::from_secs(10);
    assert!(
        store
            .acquire_lock("leader", "a", ttl)
            .await
            .expect("acquire")
    );
    assert!(
        store
            .acquire_lock("leader", "a", ttl)
            .await
            .expect("re-entrant")
    );
    assert!(!store.acquire_lock("leader", "b", ttl).await.expect("held"));
    h.clock.advance(Duration::from_secs(5));
    assert!(store.renew_lock("leader", "a", ttl).await.expect("renew"));
    h.clock.advance(Duration::from_secs(9));
    assert!(
        !store
            .acquire_lock("leader", "b", ttl)
            .await
            .expect("renewed, still held")
    );
    h.clock.advance(Duration::from_secs(2));
    assert!(
        store
            .acquire_lock("leader", "b", ttl)
            .await
            .expect("expired: free")
    );
    assert!(
        !store
            .renew_lock("leader", "a", ttl)
            .await
            .expect("a lost it")
    );
    assert!(
        !store
            .release_lock("leader", "a")
            .await
            .expect("a cannot release")
    );
    assert!(store.release_lock("leader", "b").await.expect("b releases"));
    assert!(
        store
            .acquire_lock("leader", "a", ttl)
            .await
            .expect("free again")
    );
}

async fn kv_scoped_and_backing_the_runtime(h: Harness) {
    let store = &h.store;
    let acme = KvNamespace::new("acme", "counter");
    let globex = KvNamespace::new("globex", "counter");
    let other_plugin = KvNamespace::new("acme", "other");
    assert_eq!(store.kv_get(&acme, "k").await.expect("get"), None);
    store.kv_set(&acme, "k", b"1", None).await.expect("set");
    store
        .kv_set(&acme, "k", b"2", None)
        .await
        .expect("overwrite");
    assert_eq!(
        store.kv_get(&acme, "k").await.expect("get"),
        Some(b"2".to_vec())
    );
    assert_eq!(store.kv_get(&globex, "k").await.expect("get"), None);
    assert_eq!(store.kv_get(&other_plugin, "k").await.expect("get"), None);
    assert!(store.kv_delete(&acme, "k").await.expect("delete"));
    assert!(!store.kv_delete(&acme, "k").await.expect("delete again"));

    // The runtime's kv import is backed by the store.
    let runtime = Runtime::with_stores(
        RuntimeConfig {
            max_concurrent_runs: 4,
            ..RuntimeConfig::default()
        },
        Arc::new(taskhost_runtime::MemoryArtifacts::default()),
        Arc::new(store.clone()),
    )
    .expect("runtime");
    let plugin = runtime
        .prepare(&taskhost_tests::plugin("test-kv"))
        .expect("valid");
    for expected in 1..=2 {
        let mut request = RunRequest::new("{}");
        request.namespace = KvNamespace::new("acme", "test-kv");
        let outcome = runtime.run(&plugin, request).await;
        assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
        assert_eq!(outcome.output_json().expect("json")["count"], expected);
    }
    let stored = store
        .kv_get(&KvNamespace::new("acme", "test-kv"), "count")
        .await
        .expect("get");
    assert_eq!(stored, Some(b"2".to_vec()));
}

async fn node_heartbeats(h: Harness) {
    let store = &h.store;
    let node = |id: &str| NodeInfo {
        id: id.into(),
        description: "test".into(),
        role: "all".into(),
        version: "0".into(),
        workers: 4,
        in_flight: 0,
        draining: false,
        started_at: store.now(),
        last_seen: store.now(),
        expires_at: store.now(),
    };
    store
        .heartbeat(&node("n1"), Duration::from_secs(15))
        .await
        .expect("beat");
    store
        .heartbeat(&node("n2"), Duration::from_secs(5))
        .await
        .expect("beat");
    let alive: Vec<String> = store
        .live_nodes()
        .await
        .expect("live")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(alive, vec!["n1", "n2"]);
    // A drain request survives the node's own heartbeats, which report it.
    assert!(store.drain_node("n1").await.expect("drain").is_some());
    assert!(store.drain_node("nope").await.expect("drain").is_none());
    let beat = store
        .heartbeat(&node("n1"), Duration::from_secs(15))
        .await
        .expect("beat");
    assert!(beat.draining, "the heartbeat answers the drain");
    let draining: Vec<bool> = store
        .live_nodes()
        .await
        .expect("live")
        .into_iter()
        .map(|n| n.draining)
        .collect();
    assert_eq!(draining, vec![true, false]);
    h.clock.advance(Duration::from_secs(10));
    let alive: Vec<String> = store
        .live_nodes()
        .await
        .expect("live")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(alive, vec!["n1"], "n2 stopped beating");
    store
        .heartbeat(&node("n2"), Duration::from_secs(5))
        .await
        .expect("beat");
    assert!(store.remove_node("n1").await.expect("remove"));
    let alive: Vec<String> = store
        .live_nodes()
        .await
        .expect("live")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(alive, vec!["n2"]);
}

async fn reopen_loses_nothing(mut h: Harness) {
    let now = h.store.now();
    let p = plugin("acme", "keep", "1", now);
    h.store.create_plugin(&p, b"\0asm").await.expect("plugin");
    let s = schedule("acme", "keep", &p.id, now);
    h.store.create_schedule(&s).await.expect("schedule");
    let e = queued(&h, "acme").await;
    let ns = KvNamespace::new("acme", "keep");
    h.store.kv_set(&ns, "k", b"v", None).await.expect("kv");
    assert!(
        h.store
            .acquire_lock("l", "me", Duration::from_secs(60))
            .await
            .expect("lock")
    );
    h.reopen().await;
    assert_eq!(
        h.store.get_plugin("acme", &p.id).await.expect("plugin"),
        Some(p.clone())
    );
    assert_eq!(
        h.store.plugin_wasm("acme", &p.id).await.expect("wasm"),
        Some(b"\0asm".to_vec())
    );
    assert_eq!(
        h.store.get_schedule("acme", &s.id).await.expect("schedule"),
        Some(s)
    );
    assert_eq!(
        h.store
            .get_execution("acme", &e.id)
            .await
            .expect("execution"),
        Some(e)
    );
    assert_eq!(
        h.store.kv_get(&ns, "k").await.expect("kv"),
        Some(b"v".to_vec())
    );
    assert!(
        !h.store
            .acquire_lock("l", "other", Duration::from_secs(60))
            .await
            .expect("lock kept")
    );
    let filter = PluginFilter {
        name: Some("keep".into()),
        version: None,
    };
    assert_eq!(
        h.store
            .list_plugins("acme", &filter, &PageRequest::default())
            .await
            .expect("list")
            .items,
        vec![p]
    );
}

async fn wakeups_across_processes(h: Harness) {
    // A second store on the same data, as another node would have.
    let other = taskhost_store::Store::open(&h.url, Arc::new(h.clock.clone()))
        .await
        .expect("open");
    let news = other.news();
    let e = queued(&h, "acme").await;
    match other.kind() {
        // MongoDB servers with change streams tell every node of new work,
        // with what its queue keeps; a claim is not news.
        "mongodb" if other.watches_others() => {
            let heard = async {
                loop {
                    news.arrived().await;
                    let (queued, _) = news.take();
                    if let Some(q) = queued.iter().find(|q| q.id == e.id) {
                        return q.clone();
                    }
                }
            };
            let q = tokio::time::timeout(Duration::from_secs(10), heard)
                .await
                .expect("the change stream told the other store");
            assert_eq!(
                (q.tenant.as_str(), q.priority, q.due_at),
                ("acme", e.policy.priority, e.due_at)
            );
            claim(&h, &e.id, "node-a").await;
            let quiet = async {
                loop {
                    news.arrived().await;
                    if news.take().0.iter().any(|q| q.id == e.id) {
                        return;
                    }
                }
            };
            assert!(
                tokio::time::timeout(Duration::from_secs(1), quiet)
                    .await
                    .is_err(),
                "a claim is not news"
            );
        }
        // Without them (and on SQLite) the other node finds it at its next refill.
        _ => {
            assert!(!other.watches_others());
            assert_eq!(
                other
                    .due_soon(Duration::from_secs(1), 10)
                    .await
                    .expect("due")
                    .len(),
                1
            );
        }
    }
}

async fn expired_executions_are_deleted(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let mut finished = Vec::new();
    for i in 0..30 {
        let mut e = Execution::queued("acme", "p", now, now);
        e.policy.retention = Some(Duration::from_secs(if i < 10 { 3600 } else { 7 * 86_400 }));
        e.finish(ExecutionStatus::Succeeded, now);
        store.create_execution(&e).await.expect("create");
        finished.push(e);
    }
    let waiting = Execution::queued("acme", "p", now + chrono::Duration::days(30), now);
    store.create_execution(&waiting).await.expect("create");
    assert_eq!(store.delete_expired(1000).await.expect("sweep"), 0);
    h.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(store.delete_expired(4).await.expect("sweep"), 4, "batches");
    assert_eq!(store.delete_expired(1000).await.expect("sweep"), 6);
    assert!(
        store
            .get_execution("acme", &finished[0].id)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_execution("acme", &finished[10].id)
            .await
            .expect("get")
            .is_some()
    );
    h.clock.advance(Duration::from_secs(8 * 86_400));
    assert_eq!(store.delete_expired(1000).await.expect("sweep"), 20);
    assert!(
        store
            .get_execution("acme", &waiting.id)
            .await
            .expect("get")
            .is_some(),
        "unfinished executions never expire"
    );
}

async fn kv_quota_counts_keys_and_bytes(h: Harness) {
    use taskhost_runtime::{KvError, KvQuota};
    let store = &h.store;
    let a = KvNamespace::new("acme", "one");
    let b = KvNamespace::new("acme", "two");
    let quota = Some(KvQuota {
        keys: 3,
        bytes: 100,
    });
    store.kv_set(&a, "k1", &[0; 10], quota).await.expect("set");
    store.kv_set(&b, "k2", &[0; 10], quota).await.expect("set");
    // Overwriting is not a new key, and frees the old value's bytes.
    store
        .kv_set(&a, "k1", &[0; 40], quota)
        .await
        .expect("overwrite");
    store
        .kv_set(&a, "k3", &[0; 10], quota)
        .await
        .expect("third key");
    let refused = store.kv_set(&b, "k4", &[0; 1], quota).await;
    assert!(
        matches!(&refused, Err(KvError::Quota(q)) if q.quota.as_str() == "kv_keys"),
        "{refused:?}"
    );
    // 42 + 12 + 12 = 66 bytes; 40 more is over 100.
    let refused = store.kv_set(&a, "k1", &[0; 90], quota).await;
    assert!(
        matches!(&refused, Err(KvError::Quota(q)) if q.quota.as_str() == "kv_bytes"),
        "{refused:?}"
    );
    assert_eq!(
        store.kv_get(&a, "k1").await.expect("get"),
        Some(vec![0; 40]),
        "kept"
    );
    assert!(store.kv_delete(&a, "k3").await.expect("delete"));
    store
        .kv_set(&b, "k4", &[0; 1], quota)
        .await
        .expect("room again");
    // Another tenant has its own usage.
    let other = KvNamespace::new("globex", "one");
    store
        .kv_set(&other, "k", &[0; 90], quota)
        .await
        .expect("own quota");
}

async fn due_soon_shares_the_heap_across_tenants(h: Harness) {
    let store = &h.store;
    let now = store.now();
    for i in 0..50 {
        let mut e = Execution::queued("flood", "p", now, now);
        e.policy.priority = 100;
        e.id = format!("{}-{i:03}", e.id);
        store.create_execution(&e).await.expect("create");
    }
    let quiet = Execution::queued("quiet", "p", now, now);
    store.create_execution(&quiet).await.expect("create");
    let due = store
        .due_soon(Duration::from_secs(1), 10)
        .await
        .expect("due");
    assert!(
        due.iter().any(|e| e.id == quiet.id),
        "the quiet tenant is loaded"
    );
    assert_eq!(
        due.iter().filter(|e| e.tenant == "flood").count(),
        5,
        "an equal share"
    );
    assert_eq!(store.queued_count("flood").await.expect("count"), 50);
    assert_eq!(store.queued_count("quiet").await.expect("count"), 1);
}

/// The hot path: claims in batches (racing claimants, each execution claimed
/// once, the record read back as claimed), completions written from the
/// claimant's copy and fenced by its lease.
async fn batch_claims_and_fenced_completions(h: Harness) {
    let store = &h.store;
    let mut all = Vec::new();
    for _ in 0..300 {
        all.push(Execution::queued("acme", "p", store.now(), store.now()));
    }
    store.create_executions(&all).await.expect("insert");
    let ids: Arc<Vec<String>> = Arc::new(all.iter().map(|e| e.id.clone()).collect());
    let mut tasks = tokio::task::JoinSet::new();
    for claimant in 0..4usize {
        let (store, ids) = (store.clone(), ids.clone());
        tasks.spawn(async move {
            let owner = format!("node-{claimant}");
            let mut rotated = ids.to_vec();
            rotated.rotate_left(claimant * 77);
            let mut won = Vec::new();
            for chunk in rotated.chunks(100) {
                for e in store.claim_many(chunk, &owner, LEASE).await.expect("claim") {
                    assert_eq!(e.status, ExecutionStatus::Running);
                    assert_eq!(e.lease_owner.as_deref(), Some(owner.as_str()));
                    assert!(e.lease_token.is_some() && e.started_at.is_some());
                    won.push(e);
                }
            }
            won
        });
    }
    let mut claimed: HashMap<String, Execution> = HashMap::new();
    while let Some(won) = tasks.join_next().await {
        for e in won.expect("claimant") {
            assert!(claimed.insert(e.id.clone(), e).is_none(), "claimed twice");
        }
    }
    assert_eq!(claimed.len(), 300, "every execution was claimed");
    let first = claimed.values().next().expect("one").clone();
    let stored = store.get_execution("acme", &first.id).await.expect("get");
    assert_eq!(stored.as_ref(), Some(&first), "read back as claimed");

    // A renewal in between (a new version) does not stop the completion.
    let lease = Lease::of(&first).expect("lease");
    store
        .renew_lease(&first.id, &lease, LEASE)
        .await
        .expect("renew");
    let done = store
        .complete_claimed(&first, &lease, Completion::Finished(succeeded()))
        .await
        .expect("complete")
        .expect("held");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let stored = store
        .get_execution("acme", &first.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(stored, done, "stored as returned");
    assert_eq!(stored.lease_owner, None);
    assert_eq!(stored.lease_token, None);
    assert!(stored.started_at.is_some() && stored.finished_at.is_some());
    assert_eq!(
        store
            .complete_claimed(&first, &lease, Completion::Finished(succeeded()))
            .await
            .expect("complete"),
        None,
        "a second completion under the same lease is refused"
    );

    // A claimant whose lease was taken over cannot complete.
    let second = claimed
        .values()
        .find(|e| e.id != first.id)
        .expect("two")
        .clone();
    h.clock.advance(LEASE + Duration::from_secs(1));
    store
        .requeue_expired(1000, &HashSet::new())
        .await
        .expect("requeue");
    let later = h.store.now() + chrono::Duration::seconds(120);
    h.clock.set(later);
    let retaken = store
        .claim_many(std::slice::from_ref(&second.id), "node-new", LEASE)
        .await
        .expect("claim");
    assert_eq!(retaken.len(), 1, "re-queued and claimed again");
    let old = Lease::of(&second).expect("lease");
    assert_eq!(
        store
            .complete_claimed(&second, &old, Completion::Finished(succeeded()))
            .await
            .expect("complete"),
        None,
        "the old claimant's result is dropped"
    );
    let new = Lease::of(&retaken[0]).expect("lease");
    let outcome = Outcome::not_run(Status::Failed, "boom");
    let failed = store
        .complete_claimed(&retaken[0], &new, Completion::Finished(outcome))
        .await
        .expect("complete")
        .expect("held");
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.node.as_deref(), Some("node-new"));
}

/// A batch insert writes nothing when one of its executions exists.
async fn batch_inserts_all_or_nothing(h: Harness) {
    let store = &h.store;
    let existing = queued(&h, "acme").await;
    let mut batch = vec![existing.clone()];
    for _ in 0..10 {
        batch.push(Execution::queued("acme", "p", store.now(), store.now()));
    }
    match store.create_executions(&batch).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    for e in &batch[1..] {
        assert_eq!(store.get_execution("acme", &e.id).await.expect("get"), None);
    }
    store.create_executions(&batch[1..]).await.expect("insert");
    assert_eq!(store.queued_count("acme").await.expect("count"), 11);
}

/// Secrets: sealed under the key, versioned, per tenant, counted.
async fn secrets_sealed_versioned_and_scoped(h: Harness) {
    use taskhost_model::secrets::SecretKey;
    let store = &h.store;
    let key = SecretKey::parse(&SecretKey::generate()).expect("key");
    let first = store
        .put_secret(&key, "acme", "API_TOKEN", b"one")
        .await
        .expect("put");
    assert_eq!((first.name.as_str(), first.version), ("API_TOKEN", 1));
    h.clock.advance(Duration::from_secs(5));
    let second = store
        .put_secret(&key, "acme", "API_TOKEN", b"two")
        .await
        .expect("put");
    assert_eq!(second.version, 2);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    store
        .put_secret(&key, "acme", "OTHER", b"x")
        .await
        .expect("put");
    let names: Vec<String> = store
        .list_secrets("acme")
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["API_TOKEN", "OTHER"]);
    assert!(store.list_secrets("globex").await.expect("list").is_empty());

    let wanted = ["API_TOKEN".to_owned(), "MISSING".to_owned()];
    let opened = store
        .open_secrets(Some(&key), "acme", &wanted)
        .await
        .expect("open");
    assert_eq!(opened["API_TOKEN"], Ok("two".to_owned()));
    assert!(opened["MISSING"].is_err());
    let elsewhere = store
        .open_secrets(Some(&key), "globex", &wanted)
        .await
        .expect("open");
    assert!(elsewhere["API_TOKEN"].is_err(), "another tenant's secret");
    let other_key = SecretKey::parse(&SecretKey::generate()).expect("key");
    let wrong = store
        .open_secrets(Some(&other_key), "acme", &wanted)
        .await
        .expect("open");
    assert!(wrong["API_TOKEN"].is_err(), "opened under another key");

    assert!(store.delete_secret("acme", "OTHER").await.expect("delete"));
    assert!(!store.delete_secret("acme", "OTHER").await.expect("delete"));
    assert!(
        !store
            .delete_secret("globex", "API_TOKEN")
            .await
            .expect("delete")
    );
}

/// An execution with webhooks is marked due in the same write as its end
/// (the fenced completion), found by `notify_due` until its deliveries are
/// done, and claimed by one of two racing deliverers.
async fn webhooks_marked_with_the_end_and_claimed_once(h: Harness) {
    let store = &h.store;
    let mut e = Execution::queued("acme", "p", store.now(), store.now());
    e.policy.notify = vec![taskhost_model::NotifyTarget {
        url: "https://hooks.example.com/x".into(),
        on: Vec::new(),
    }];
    let plain = Execution::queued("acme", "p", store.now(), store.now());
    store
        .create_executions(&[e.clone(), plain.clone()])
        .await
        .expect("insert");
    let claimed = store
        .claim_many(&[e.id.clone(), plain.id.clone()], "node-1", LEASE)
        .await
        .expect("claim");
    for c in &claimed {
        let lease = Lease::of(c).expect("lease");
        store
            .complete_claimed(c, &lease, Completion::Finished(succeeded()))
            .await
            .expect("complete")
            .expect("held");
    }
    let due = store.notify_due(store.now(), 10).await.expect("due");
    assert_eq!(
        due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [e.id.as_str()],
        "only the execution with targets"
    );
    // Two deliverers race to claim it: one wins.
    let now = store.now();
    let later = now + chrono::Duration::seconds(30);
    let mut wins = 0;
    for _ in 0..2 {
        let won = store
            .modify_execution(&e.id, move |x| {
                if x.notify_due_at.is_none_or(|t| t > now) {
                    return false;
                }
                x.notify_due_at = Some(later);
                true
            })
            .await
            .expect("modify");
        wins += usize::from(won.is_some());
    }
    assert_eq!(wins, 1);
    assert!(store.notify_due(now, 10).await.expect("due").is_empty());
    h.clock.advance(Duration::from_secs(31));
    assert_eq!(
        store.notify_due(store.now(), 10).await.expect("due").len(),
        1
    );
    store
        .modify_execution(&e.id, |x| {
            x.notify_due_at = None;
            true
        })
        .await
        .expect("done");
    assert!(
        store
            .notify_due(store.now(), 10)
            .await
            .expect("due")
            .is_empty()
    );
}

/// The fire ledger's store part: records of fires (executions and
/// `skipped` rows) are inserted once per fire key, in bulk or one by one;
/// listed newest fire first with filters and a fire-time cursor; counted by
/// fate; hidden from the executions list unless asked for; and swept with
/// the executions when their retention ends.
async fn fire_records_insert_once_list_count_and_expire(h: Harness) {
    use taskhost_model::{FireFate, FireInfo, FireReason};
    use taskhost_store::FireFilter;
    let store = &h.store;
    let now = store.now();
    let at = |k: i64| now + chrono::Duration::seconds(k);
    let record = |k: i64, skipped: bool| {
        let mut e = Execution::queued("acme", "p", at(k), now);
        e.schedule_id = Some("s1".into());
        e.fire_time = Some(at(k));
        e.policy.retention = Some(Duration::from_secs(60));
        if skipped {
            e.fire = Some(FireInfo::dropped(FireReason::Paused, "n1"));
            e.finish(ExecutionStatus::Skipped, now);
        } else {
            e.fire = Some(FireInfo::run(FireFate::Ran, "n1"));
        }
        e
    };
    // Bulk: 0..10 skipped, each once; a second batch overlapping it
    // inserts only the new fires; a retried row (its own id) counts as ours.
    let first: Vec<Execution> = (0..10).map(|k| record(k, true)).collect();
    assert_eq!(
        store.decide_fires(&first).await.expect("insert"),
        vec![true; 10]
    );
    let mut second: Vec<Execution> = (5..15).map(|k| record(k, true)).collect();
    second[0] = first[5].clone();
    let inserted = store.decide_fires(&second).await.expect("insert");
    assert!(inserted[0], "its own earlier insert");
    assert_eq!(&inserted[1..5], &[false; 4]);
    assert_eq!(&inserted[5..], &[true; 5]);
    // One by one: a run of a fire already recorded is not inserted.
    assert!(matches!(
        store.decide_fire(&record(3, false)).await,
        Ok(FireDecided::Theirs)
    ));
    assert!(matches!(
        store.decide_fire(&record(20, false)).await,
        Ok(FireDecided::Ours(_))
    ));
    // Listed newest first, paged by fire time, filtered.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_fires(
                "acme",
                "s1",
                &FireFilter::default(),
                &PageRequest {
                    cursor,
                    limit: Some(4),
                },
            )
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|r| r.fire_at));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<_> = (0..15).chain([20]).map(at).collect();
    expected.reverse();
    assert_eq!(seen, expected);
    let window = FireFilter {
        since: Some(at(2)),
        until: Some(at(5)),
        ..FireFilter::default()
    };
    let page = store
        .list_fires("acme", "s1", &window, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|r| r.fire_at).collect::<Vec<_>>(),
        vec![at(4), at(3), at(2)]
    );
    let ran = FireFilter {
        fate: Some(FireFate::Ran),
        ..FireFilter::default()
    };
    let page = store
        .list_fires("acme", "s1", &ran, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].status, Some(ExecutionStatus::Queued));
    let page = store
        .list_fires(
            "globex",
            "s1",
            &FireFilter::default(),
            &PageRequest::default(),
        )
        .await
        .expect("list");
    assert!(page.items.is_empty(), "another tenant sees none");
    // Counted by fate and reason.
    let counts = store.fire_counts("s1", at(0)).await.expect("count");
    assert_eq!((counts.skipped, counts.ran), (15, 1));
    assert_eq!(counts.by_reason.get("paused"), Some(&15));
    // Hidden from the executions list unless asked for.
    let all = store
        .list_executions("acme", &ExecutionFilter::default(), &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(all.items.len(), 1);
    let skipped = ExecutionFilter {
        status: Some(ExecutionStatus::Skipped),
        ..Default::default()
    };
    let page = PageRequest {
        cursor: None,
        limit: Some(100),
    };
    let listed = store
        .list_executions("acme", &skipped, &page)
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 15);
    // Swept with the executions when the retention ends.
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(store.delete_expired(100).await.expect("sweep"), 15);
    let left = store
        .list_fires(
            "acme",
            "s1",
            &FireFilter::default(),
            &PageRequest::default(),
        )
        .await;
    assert_eq!(
        left.expect("list").items.len(),
        1,
        "the run stays until it ends"
    );
}
