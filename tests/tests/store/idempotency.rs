//! Idempotency keys: this concern's part of the store conformance suite.

use super::*;
use taskhost_model::IdempotencyRecord;

taskhost_tests::conformance!(a_key_keeps_its_first_record_until_it_expires,);

fn record(h: &Harness, tenant: &str, key: &str, request: &str) -> IdempotencyRecord {
    let now = h.store.now();
    IdempotencyRecord {
        tenant: tenant.into(),
        key: key.into(),
        request: request.into(),
        ids: vec![new_id()],
        created_at: now,
        expires_at: now + chrono::Duration::hours(24),
    }
}

/// The first record of a key is kept and returned to later puts; another
/// tenant's key of the same name is its own; an expired one is replaced.
async fn a_key_keeps_its_first_record_until_it_expires(h: Harness) {
    let store = &h.store;
    let first = record(&h, "acme", "k", "hash-1");
    assert_eq!(store.idempotency_first(&first).await.expect("put"), None);
    let later = record(&h, "acme", "k", "hash-2");
    let found = store.idempotency_first(&later).await.expect("put");
    assert_eq!(found.as_ref(), Some(&first), "the first is kept");
    let theirs = record(&h, "globex", "k", "hash-3");
    assert_eq!(store.idempotency_first(&theirs).await.expect("put"), None);

    // Racing puts of one key: exactly one is first.
    let racers = (0..8).map(|i| {
        let (store, r) = (store.clone(), record(&h, "acme", "race", &format!("h{i}")));
        async move { store.idempotency_first(&r).await.expect("put") }
    });
    let results = futures::future::join_all(racers).await;
    assert_eq!(results.iter().filter(|r| r.is_none()).count(), 1);

    h.clock.advance(Duration::from_secs(25 * 3600));
    let fresh = record(&h, "acme", "k", "hash-4");
    assert_eq!(
        store.idempotency_first(&fresh).await.expect("put"),
        None,
        "expired: replaced"
    );
    let found = store.idempotency_first(&later).await.expect("put");
    assert_eq!(found.map(|r| r.request), Some("hash-4".to_owned()));
}
