//! Concurrency, rate-limit and debounce keys: this concern's part of the store conformance suite.

use super::*;
use taskhost_model::flow::Concurrency;

taskhost_tests::conformance!(
    a_key_is_claimed_at_most_its_limit_at_once,
    a_rate_limited_key_starts_at_most_its_limit_per_period,
    a_debounce_keys_pending_run_is_swapped_once,
);

fn keyed(key: &str, limit: u32, now: DateTime<Utc>) -> Execution {
    let mut e = Execution::queued("acme", "p1", now, now);
    e.policy.concurrency = Some(Concurrency {
        key: Some(key.into()),
        key_from: None,
        limit,
    });
    e
}

/// At most `limit` runs of a key are claimed at once, by one call or many;
/// a slot frees when its run ends or a reaper re-queues it; other keys and
/// other tenants' keys of the same name are apart.
async fn a_key_is_claimed_at_most_its_limit_at_once(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let runs: Vec<Execution> = (0..4).map(|_| keyed("customer-42", 2, now)).collect();
    let mut other = keyed("customer-42", 2, now);
    other.tenant = "globex".into();
    let free = keyed("customer-7", 1, now);
    for e in runs.iter().chain([&other, &free]) {
        store.create_execution(e).await.expect("create");
    }
    let ids: Vec<String> = runs.iter().map(|e| e.id.clone()).collect();
    let first = store
        .claim_many(&ids, "node-a", LEASE)
        .await
        .expect("claim");
    assert_eq!(first.len(), 2, "two of the key at once");
    let again = store
        .claim_many(&ids, "node-b", LEASE)
        .await
        .expect("claim");
    assert!(again.is_empty(), "no third, from another node either");
    for e in [&other, &free] {
        let claimed = store.claim(&e.id, "node-b", LEASE).await.expect("claim");
        assert!(
            claimed.is_some(),
            "another tenant's key and another key are apart"
        );
    }
    let waiting: Vec<&Execution> = runs
        .iter()
        .filter(|e| !first.iter().any(|c| c.id == e.id))
        .collect();
    let queued = store
        .get_execution("acme", &waiting[0].id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        queued.status,
        ExecutionStatus::Queued,
        "a waiting run is left queued"
    );

    // A run that ends frees its slot.
    let held = Lease::of(&first[0]).expect("lease");
    store
        .complete(&first[0].id, &held, Completion::Finished(succeeded()))
        .await
        .expect("complete")
        .expect("completed");
    let third = store
        .claim(&waiting[0].id, "node-b", LEASE)
        .await
        .expect("claim");
    assert!(third.is_some(), "the freed slot is taken");
    assert!(
        store
            .claim(&waiting[1].id, "node-b", LEASE)
            .await
            .expect("claim")
            .is_none()
    );

    // A dead node's run holds its slot past its lease (its node may yet
    // start it: a claim that came back late) until a reaper re-queues it.
    h.clock.advance(LEASE + Duration::from_secs(1));
    let early = store
        .claim(&waiting[1].id, "node-b", LEASE)
        .await
        .expect("claim");
    assert!(early.is_none(), "a lapsed lease still holds its slot");
    let requeued = store
        .requeue_expired(100, &Default::default())
        .await
        .expect("requeue");
    // Two of the key's, another tenant's and another key's.
    assert_eq!(requeued.len(), 4, "every lapsed run is re-queued");
    let fourth = store
        .claim(&waiting[1].id, "node-b", LEASE)
        .await
        .expect("claim");
    assert!(fourth.is_some(), "a re-queued run holds no slot");
}

/// At most `limit` runs of a rate-limited key start within its period; a
/// period later, more may.
async fn a_rate_limited_key_starts_at_most_its_limit_per_period(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let runs: Vec<Execution> = (0..5)
        .map(|_| {
            let mut e = Execution::queued("acme", "p1", now, now);
            e.policy.rate_limit = Some(taskhost_model::flow::RateLimit {
                key: Some("partner".into()),
                key_from: None,
                limit: 2,
                per: Duration::from_secs(10),
            });
            e
        })
        .collect();
    for e in &runs {
        store.create_execution(e).await.expect("create");
    }
    let ids: Vec<String> = runs.iter().map(|e| e.id.clone()).collect();
    let first = store
        .claim_many(&ids, "node-a", LEASE)
        .await
        .expect("claim");
    assert_eq!(first.len(), 2, "two starts in the period");
    // Ending them changes nothing: it is starts that count.
    for e in &first {
        let held = Lease::of(e).expect("lease");
        store
            .complete(&e.id, &held, Completion::Finished(succeeded()))
            .await
            .expect("complete");
    }
    h.clock.advance(Duration::from_secs(5));
    assert!(
        store
            .claim_many(&ids, "node-b", LEASE)
            .await
            .expect("claim")
            .is_empty()
    );
    h.clock.advance(Duration::from_secs(6));
    let next = store
        .claim_many(&ids, "node-b", LEASE)
        .await
        .expect("claim");
    assert_eq!(next.len(), 2, "a period later, two more");
}

/// A debounce key's pending run changes only from the one expected, per
/// tenant; an expired one is as none.
async fn a_debounce_keys_pending_run_is_swapped_once(h: Harness) {
    let store = &h.store;
    let until = store.now() + chrono::Duration::seconds(60);
    assert!(
        store
            .debounce_swap("acme", "k", None, "a", until)
            .await
            .expect("swap")
    );
    assert!(
        !store
            .debounce_swap("acme", "k", None, "x", until)
            .await
            .expect("swap"),
        "taken"
    );
    assert!(
        store
            .debounce_swap("acme", "k", Some("a"), "b", until)
            .await
            .expect("swap")
    );
    assert!(
        !store
            .debounce_swap("acme", "k", Some("a"), "c", until)
            .await
            .expect("swap"),
        "stale"
    );
    assert_eq!(
        store
            .debounce_pending("acme", "k")
            .await
            .expect("get")
            .as_deref(),
        Some("b")
    );
    assert_eq!(
        store.debounce_pending("globex", "k").await.expect("get"),
        None
    );
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(
        store.debounce_pending("acme", "k").await.expect("get"),
        None,
        "expired"
    );
    let later = store.now() + chrono::Duration::seconds(60);
    assert!(
        store
            .debounce_swap("acme", "k", None, "d", later)
            .await
            .expect("swap")
    );
}
