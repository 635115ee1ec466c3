//! The life of an execution: claims, completions, retries, leases, listing, retention, webhooks: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(
    execution_lifecycle,
    retries_and_cancel,
    listing_and_pagination,
    lease_expiry_follows_the_clock,
    reopen_loses_nothing,
    expired_executions_are_deleted,
    webhooks_marked_with_the_end_and_claimed_once,
    a_poison_record_does_not_stop_a_list,
    many_are_read_at_once_in_order,
);

/// `get_executions`: the tenant's executions of the ids, in their order;
/// none for an unknown id or another tenant's.
async fn many_are_read_at_once_in_order(h: Harness) {
    let (a, b) = (queued(&h, "acme").await, queued(&h, "acme").await);
    let theirs = queued(&h, "globex").await;
    let ids = [
        b.id.clone(),
        "nope".into(),
        theirs.id.clone(),
        a.id.clone(),
        b.id.clone(),
    ];
    let found = h
        .store
        .get_executions("acme", &ids)
        .await
        .expect("get many");
    let got: Vec<Option<&str>> = found
        .iter()
        .map(|e| e.as_ref().map(|e| e.id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            Some(b.id.as_str()),
            None,
            None,
            Some(a.id.as_str()),
            Some(b.id.as_str())
        ]
    );
}

/// A stored execution no reader can parse is left out of lists (and
/// counted), not a failure of the whole list; read by its id, it says so.
async fn a_poison_record_does_not_stop_a_list(h: Harness) {
    let store = &h.store;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(queued(&h, "acme").await.id);
    }
    h.corrupt_execution(&ids[1]).await;
    let before = taskhost_store::unreadable_records();
    let page = store
        .list_executions("acme", &ExecutionFilter::default(), &PageRequest::default())
        .await
        .expect("the list survives");
    let listed: HashSet<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(listed, HashSet::from([ids[0].as_str(), ids[2].as_str()]));
    assert!(taskhost_store::unreadable_records() > before, "counted");
    match store.get_execution("acme", &ids[1]).await {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("expected the record to be reported corrupt, got {other:?}"),
    }

    // The webhook queue (oldest first, every tenant): a poison run of one
    // tenant does not hide another's delivery.
    let mut due = Vec::new();
    for tenant in ["acme", "globex"] {
        let mut e = Execution::queued(tenant, "p", store.now(), store.now());
        e.policy.notify = vec![taskhost_model::NotifyTarget {
            url: "https://hooks.example.com/x".into(),
            on: Vec::new(),
        }];
        store.create_execution(&e).await.expect("insert");
        let claimed = store.claim(&e.id, "node-1", LEASE).await.expect("claim");
        let claimed = claimed.expect("claimed");
        let lease = Lease::of(&claimed).expect("lease");
        store
            .complete_claimed(&claimed, &lease, Completion::Finished(succeeded()))
            .await
            .expect("complete")
            .expect("held");
        due.push(e.id);
    }
    h.corrupt_execution(&due[0]).await;
    let found = store.notify_due(store.now(), 10, &[]).await.expect("due");
    assert_eq!(
        found.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [due[1].as_str()],
        "globex's delivery is still found"
    );
    // A tenant whose delivery slots are full is left out.
    let others = store
        .notify_due(store.now(), 10, &["globex".to_owned()])
        .await
        .expect("due");
    assert!(others.is_empty(), "{others:?}");
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
    let due = store.notify_due(store.now(), 10, &[]).await.expect("due");
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
    assert!(
        store
            .notify_due(now, 10, &[])
            .await
            .expect("due")
            .is_empty()
    );
    h.clock.advance(Duration::from_secs(31));
    assert_eq!(
        store
            .notify_due(store.now(), 10, &[])
            .await
            .expect("due")
            .len(),
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
            .notify_due(store.now(), 10, &[])
            .await
            .expect("due")
            .is_empty()
    );
}
