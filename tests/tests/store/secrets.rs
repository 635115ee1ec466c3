//! Tenant secrets: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(secrets_sealed_versioned_and_scoped,);

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
