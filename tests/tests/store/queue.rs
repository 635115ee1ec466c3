//! The queue: claims under races, batches, wake-ups, fair refills: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(
    claim_race_each_claimed_once,
    wakeups_across_processes,
    due_soon_shares_the_heap_across_tenants,
    batch_claims_and_fenced_completions,
    batch_inserts_all_or_nothing,
);

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

/// A batch insert writes nothing when one of its executions' ids is taken
/// by another record.
async fn batch_inserts_all_or_nothing(h: Harness) {
    let store = &h.store;
    let existing = queued(&h, "acme").await;
    let mut clash = existing.clone();
    clash.policy.input = serde_json::json!({"another": "record"});
    let mut batch = vec![clash];
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
