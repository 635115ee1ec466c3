//! Locks and node heartbeats: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(lock_race_never_two_holders, lock_expiry, node_heartbeats,);

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

async fn node_heartbeats(h: Harness) {
    let store = &h.store;
    let node = |id: &str| NodeInfo {
        id: id.into(),
        description: "test".into(),
        role: taskhost_model::Role::All,
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
