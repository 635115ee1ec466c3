//! Quotas inside the writes: this concern's part of the store conformance
//! suite. Racing uploads and creates at a tenant's edge: only as many as fit
//! are stored, the rest refused with the quota's name and value; a delete
//! makes room again; another tenant is not counted.

use super::*;
use taskhost_model::quota::{QuotaConfig, QuotaKind, QuotaOverrides};

taskhost_tests::conformance!(
    racing_writes_cannot_pass_a_quota,
    stored_executions_are_counted_with_their_bytes,
);

fn limits() -> QuotaConfig {
    let mut config = QuotaConfig::default();
    config.tenants.insert(
        "acme".into(),
        QuotaOverrides {
            plugins: Some(3),
            plugin_bytes: Some(1 << 20),
            schedules: Some(2),
            ..QuotaOverrides::default()
        },
    );
    config
}

fn refused_by(result: &Result<(), StoreError>) -> Option<QuotaKind> {
    match result {
        Err(StoreError::Quota(q)) => Some(q.quota),
        _ => None,
    }
}

async fn racing_writes_cannot_pass_a_quota(h: Harness) {
    let store = h.store.clone().with_quotas(limits());
    let now = store.now();
    // Ten uploads at once against a quota of three.
    let uploads = (0..10).map(|i| {
        let store = store.clone();
        let p = plugin("acme", "racer", &format!("1.0.{i}"), now);
        async move { (store.create_plugin(&p, b"abc").await, p.id) }
    });
    let results = futures::future::join_all(uploads).await;
    let stored: Vec<&String> = results
        .iter()
        .filter(|(r, _)| r.is_ok())
        .map(|(_, id)| id)
        .collect();
    assert_eq!(stored.len(), 3, "{results:?}");
    for (result, _) in &results {
        if result.is_err() {
            assert_eq!(refused_by(result), Some(QuotaKind::Plugins), "{result:?}");
        }
    }
    let Err(StoreError::Quota(q)) = store
        .create_plugin(&plugin("acme", "racer", "2.0.0", now), b"abc")
        .await
    else {
        panic!("a fourth plugin must be refused");
    };
    assert_eq!((q.quota, q.limit, q.wanted), (QuotaKind::Plugins, 3, 4));
    let page = PageRequest {
        cursor: None,
        limit: None,
    };
    let kept = store
        .list_plugins("acme", &PluginFilter::default(), &page)
        .await
        .expect("list");
    assert_eq!(kept.items.len(), 3, "nothing refused was stored");

    // Bytes: a plugin over the byte quota is refused by `plugin_bytes`.
    assert!(
        store
            .delete_plugin("acme", stored[0])
            .await
            .expect("delete")
    );
    let big = vec![0_u8; (1 << 20) + 1];
    let result = store
        .create_plugin(&plugin("acme", "big", "1.0.0", now), &big)
        .await;
    assert_eq!(refused_by(&result), Some(QuotaKind::PluginBytes));
    // The delete made room for one more.
    store
        .create_plugin(&plugin("acme", "racer", "3.0.0", now), b"abc")
        .await
        .expect("room after a delete");
    // Another tenant has its own (default) quota.
    store
        .create_plugin(&plugin("globex", "racer", "1.0.0", now), b"abc")
        .await
        .expect("another tenant");

    // Schedules: five creates at once against two.
    let target = stored[1].clone();
    let creates = (0..5).map(|i| {
        let store = store.clone();
        let s = schedule("acme", &format!("s{i}"), &target, now);
        async move { (store.create_schedule(&s).await, s.id) }
    });
    let results = futures::future::join_all(creates).await;
    let made: Vec<&String> = results
        .iter()
        .filter(|(r, _)| r.is_ok())
        .map(|(_, id)| id)
        .collect();
    assert_eq!(made.len(), 2, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(r, _)| r.is_ok() || refused_by(r) == Some(QuotaKind::Schedules))
    );
    assert!(
        store
            .delete_schedule("acme", made[0])
            .await
            .expect("delete")
    );
    store
        .create_schedule(&schedule("acme", "after", &target, now))
        .await
        .expect("room after a delete");
}

/// A tenant's stored executions and their bytes: every record counts,
/// with its whole document; other tenants' do not.
async fn stored_executions_are_counted_with_their_bytes(h: Harness) {
    assert_eq!(h.store.stored_usage("acme").await.expect("usage"), (0, 0));
    queued(&h, "acme").await;
    let (n, small_bytes) = h.store.stored_usage("acme").await.expect("usage");
    assert_eq!(n, 1);
    assert!(small_bytes > 100, "the whole record: {small_bytes}");
    let mut big = Execution::queued("acme", "plugin-1", h.store.now(), h.store.now());
    big.policy.input = serde_json::json!({ "pad": "x".repeat(10_000) });
    h.store.create_execution(&big).await.expect("insert");
    queued(&h, "globex").await;
    let (n, bytes) = h.store.stored_usage("acme").await.expect("usage");
    assert_eq!(n, 2);
    assert!(bytes > small_bytes + 10_000, "{bytes}");
}
