//! Plugins and their aliases: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(plugins,);

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
