//! Revoked tokens: this concern's part of the store conformance suite.

use super::*;
use taskhost_model::apikey::{self, ApiKeyRecord};

taskhost_tests::conformance!(
    revocations_are_per_tenant_and_expire,
    api_keys_are_per_tenant_counted_and_deleted,
);

/// A revocation is kept per tenant until it expires; revoking twice is no
/// new revocation.
async fn revocations_are_per_tenant_and_expire(h: Harness) {
    let store = &h.store;
    let until = store.now() + chrono::Duration::hours(1);
    let (first, new) = store
        .revoke_token("acme", "jti-1", "alice", until, 2)
        .await
        .expect("revoke");
    assert!(new);
    assert_eq!(
        (first.tenant.as_str(), first.jti.as_str()),
        ("acme", "jti-1")
    );
    let (_, again) = store
        .revoke_token("acme", "jti-1", "alice", until, 2)
        .await
        .expect("revoke again");
    assert!(!again, "the second revocation of one jti is not new");
    h.clock.advance(Duration::from_secs(1));
    let later = store.now() + chrono::Duration::minutes(30);
    store
        .revoke_token("acme", "jti-2", "alice", later, 2)
        .await
        .expect("revoke");
    store
        .revoke_token("globex", "jti-1", "bob", until, 2)
        .await
        .expect("another tenant's jti of the same name");

    let acme: Vec<String> = store
        .revoked_tokens(Some("acme"))
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.jti)
        .collect();
    assert_eq!(acme, ["jti-1", "jti-2"], "oldest first");
    // A third of acme's is over its quota of two; nothing is stored.
    let Err(StoreError::Quota(q)) = store.revoke_token("acme", "jti-3", "alice", until, 2).await
    else {
        panic!("a third revocation must be refused");
    };
    assert_eq!(q.quota.as_str(), "revoked_tokens");
    assert_eq!((q.limit, q.wanted), (2, 3));
    assert_eq!(store.revoked_tokens(None).await.expect("all").len(), 3);

    // Past jti-2's end, only it is gone.
    h.clock.advance(Duration::from_secs(45 * 60));
    let acme = store.revoked_tokens(Some("acme")).await.expect("list");
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].jti, "jti-1");
    assert_eq!(acme[0].revoked_by, "alice");
    // The expired one no longer counts: room for another.
    store
        .revoke_token("acme", "jti-3", "alice", until, 2)
        .await
        .expect("room once one expired");
}

fn api_key(tenant: &str, id: &str) -> ApiKeyRecord {
    let (_, hash) = apikey::generate(id);
    ApiKeyRecord {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("key {id}"),
        scopes: vec!["executions:write".into()],
        hash,
        created_at: chrono::Utc::now(),
        created_by: "alice".into(),
        expires_at: None,
        last_used_at: None,
    }
}

/// API keys: found by id, listed per tenant newest first, at most `max`
/// per tenant, touched in place, deleted by their tenant only.
async fn api_keys_are_per_tenant_counted_and_deleted(h: Harness) {
    let keys = h.store.api_keys();
    keys.api_key_insert(&api_key("acme", "k1"), 2)
        .await
        .expect("insert");
    keys.api_key_insert(&api_key("acme", "k2"), 2)
        .await
        .expect("insert");
    keys.api_key_insert(&api_key("globex", "k3"), 2)
        .await
        .expect("another tenant's");
    let Err(StoreError::Quota(q)) = keys.api_key_insert(&api_key("acme", "k4"), 2).await else {
        panic!("a third key of acme must be refused");
    };
    assert_eq!(q.quota.as_str(), "api_keys");
    let listed: Vec<String> = keys
        .api_key_list("acme")
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, ["k2", "k1"], "newest first");

    let mut k1 = keys.api_key_get("k1").await.expect("get").expect("k1");
    assert_eq!((k1.tenant.as_str(), k1.name.as_str()), ("acme", "key k1"));
    assert_eq!(k1.scopes, ["executions:write"]);
    k1.last_used_at = Some(h.store.now());
    keys.api_key_touch(&k1).await.expect("touch");
    assert_eq!(keys.api_key_get("k1").await.expect("get"), Some(k1.clone()));

    assert!(!keys.api_key_delete("globex", "k1").await.expect("delete"));
    assert!(keys.api_key_delete("acme", "k1").await.expect("delete"));
    assert_eq!(keys.api_key_get("k1").await.expect("get"), None);
    // Touching a deleted key does not bring it back.
    keys.api_key_touch(&k1).await.expect("touch");
    assert_eq!(keys.api_key_get("k1").await.expect("get"), None);
    keys.api_key_insert(&api_key("acme", "k4"), 2)
        .await
        .expect("room once one is deleted");
}
