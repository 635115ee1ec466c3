//! Plugins' key-value state: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(
    kv_scoped_and_backing_the_runtime,
    kv_quota_counts_keys_and_bytes,
    held_kv_writes_are_committed_with_the_result_or_not_at_all,
);

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

/// A run's held kv writes go in with its result, fenced by its lease: a
/// stale lease writes neither, a quota the writes break writes neither,
/// and the lease's own completion writes both.
async fn held_kv_writes_are_committed_with_the_result_or_not_at_all(h: Harness) {
    use std::collections::BTreeMap;
    use taskhost_model::effects::KvEffects;
    use taskhost_runtime::KvQuota;
    let store = &h.store;
    let ns = KvNamespace::new("acme", "counter");
    store.kv_set(&ns, "gone", b"x", None).await.expect("set");
    let e = queued(&h, "acme").await;
    let lease = claim(&h, &e.id, "node-a").await;
    let claimed = store
        .get_execution("acme", &e.id)
        .await
        .expect("get")
        .expect("it");
    let effects = |quota| KvEffects {
        namespace: Some(ns.clone()),
        writes: BTreeMap::from([
            ("count".to_owned(), Some(b"1".to_vec())),
            ("gone".to_owned(), None),
        ]),
        quota,
    };
    let done = || Completion::Finished(Outcome::not_run(Status::Succeeded, "ok"));
    let stale = Lease {
        owner: "node-a".into(),
        token: "an-earlier-claim".into(),
    };
    let written = store
        .complete_committing(&claimed, &stale, done(), &effects(None))
        .await
        .expect("a stale lease");
    assert!(written.is_none());
    // SQLite checks the quota again in the commit's transaction; MongoDB
    // commits in two writes and relies on the check made as the plugin wrote
    // (see the store's `mongo::effects`).
    if store.kind() == "sqlite" {
        let tight = Some(KvQuota { keys: 1, bytes: 2 });
        let refused = store
            .complete_committing(&claimed, &lease, done(), &effects(tight))
            .await;
        assert!(matches!(refused, Err(StoreError::Quota(_))), "{refused:?}");
    }
    for (what, key, value) in [
        ("stale", "count", None),
        ("refused", "gone", Some(b"x".to_vec())),
    ] {
        assert_eq!(store.kv_get(&ns, key).await.expect("get"), value, "{what}");
    }
    let running = store
        .get_execution("acme", &e.id)
        .await
        .expect("get")
        .expect("it");
    assert_eq!(
        running.status,
        ExecutionStatus::Running,
        "no result written"
    );

    let done = store
        .complete_committing(&claimed, &lease, done(), &effects(None))
        .await
        .expect("complete")
        .expect("its lease");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    assert_eq!(
        store.kv_get(&ns, "count").await.expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(store.kv_get(&ns, "gone").await.expect("get"), None);
    // The usage counts the committed writes: one key of 6 bytes.
    assert_eq!(store.kv_usage("acme").await.expect("usage"), (1, 6));
}
