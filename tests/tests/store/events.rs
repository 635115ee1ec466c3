//! Events and hooks: this concern's part of the store conformance suite.

use super::*;
use taskhost_model::HookRecord;
use taskhost_model::event::EventRef;
use taskhost_model::hook::HookMode;

taskhost_tests::conformance!(
    event_schedules_and_fires_are_found_by_event,
    hooks_are_kept_per_tenant,
    waiting_workflows_are_found_by_their_event_also_after_an_upgrade,
);

/// The executions suspended waiting for an event are found by it (the
/// tenant's events wake them), also those a node of an earlier release
/// stored, once a node of this one has opened the store.
async fn waiting_workflows_are_found_by_their_event_also_after_an_upgrade(mut h: Harness) {
    let now = h.store.now();
    let waiting = |event: &str| {
        let mut e = Execution::queued("acme", "p1", now, now);
        e.waiting = Some(taskhost_model::workflow::Wait {
            step: "approve".into(),
            event: event.into(),
            filter: serde_json::Value::Null,
            children: Vec::new(),
            until: now + chrono::Duration::hours(1),
        });
        e
    };
    let (approval, other, plain) = (
        waiting("approval"),
        waiting("other"),
        Execution::queued("acme", "p1", now, now),
    );
    for e in [&approval, &other, &plain] {
        h.store.create_execution(e).await.expect("create");
    }
    let found = |store: taskhost_store::Store| async move {
        let filter = taskhost_store::ExecutionFilter {
            waiting_for: Some("approval".into()),
            ..Default::default()
        };
        let request = taskhost_store::PageRequest {
            cursor: None,
            limit: Some(100),
        };
        let page = store.list_executions("acme", &filter, &request).await;
        let ids: Vec<String> = page
            .expect("list")
            .items
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids
    };
    assert_eq!(found(h.store.clone()).await, vec![approval.id.clone()]);
    h.rewind_waiting_event().await;
    h.reopen().await;
    assert_eq!(
        found(h.store.clone()).await,
        vec![approval.id.clone()],
        "found after the upgrade"
    );
}

/// The schedules an event fires are found by tenant and name, page after
/// page; one event fires a schedule once, whatever its arrival time.
async fn event_schedules_and_fires_are_found_by_event(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let event = |name: &str| Trigger::Event {
        name: name.into(),
        filter: None,
    };
    for (tenant, name, trigger) in [
        ("acme", "a", event("push")),
        ("acme", "b", event("push")),
        ("acme", "c", event("deploy")),
        ("globex", "d", event("push")),
    ] {
        let mut s = schedule(tenant, name, "p1", now);
        s.trigger = trigger;
        s.next_fire_at = None;
        store.create_schedule(&s).await.expect("create");
    }
    let mut names: Vec<String> = store
        .event_schedules("acme", "push")
        .await
        .expect("find")
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);

    // One event, one record per schedule, even if it comes again later.
    let target = store.event_schedules("acme", "deploy").await.expect("find");
    let fire = |at: DateTime<Utc>| {
        let mut e = Execution::queued("acme", "p1", at, at);
        e.schedule_id = Some(target[0].id.clone());
        e.fire_time = Some(at);
        e.fire = Some(taskhost_model::FireInfo {
            event: Some(EventRef {
                id: "evt-1".into(),
                name: "deploy".into(),
                hook: None,
            }),
            ..taskhost_model::FireInfo::run(taskhost_model::FireFate::Ran, "n1")
        });
        e
    };
    let first = store.decide_fire(&fire(now)).await.expect("decide");
    assert!(matches!(first, FireDecided::Ours(_)));
    let later = now + chrono::Duration::seconds(5);
    let again = store.decide_fire(&fire(later)).await.expect("decide");
    assert!(
        matches!(again, FireDecided::Theirs),
        "the same event id again"
    );
    let found = store
        .fire_record("acme", &target[0].id, now)
        .await
        .expect("read")
        .expect("the fire's record");
    let recorded = found.fire.and_then(|f| f.event).map(|e| e.id);
    assert_eq!(recorded.as_deref(), Some("evt-1"));
}

fn hook(tenant: &str, now: DateTime<Utc>) -> HookRecord {
    HookRecord {
        id: new_id(),
        tenant: tenant.into(),
        name: "sender".into(),
        event: "push".into(),
        mode: HookMode::Signed,
        created_at: now,
        created_by: "tester".into(),
        rotated_at: now,
        salt: "s1".into(),
        previous: None,
        version: 0,
    }
}

/// Hooks are found by id from any tenant, listed and deleted per tenant,
/// replaced by version, and limited per tenant.
async fn hooks_are_kept_per_tenant(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let (a, b) = (hook("acme", now), hook("acme", now));
    store.create_hook(&a, 2).await.expect("create");
    store.create_hook(&b, 2).await.expect("create");
    let Err(StoreError::Quota(q)) = store.create_hook(&hook("acme", now), 2).await else {
        panic!("a third hook is over the quota of two");
    };
    assert_eq!(q.quota.as_str(), "hooks");
    store
        .create_hook(&hook("globex", now), 2)
        .await
        .expect("another tenant's");

    assert_eq!(store.hook(&a.id).await.expect("get"), Some(a.clone()));
    let listed: Vec<String> = store
        .hooks("acme")
        .await
        .expect("list")
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(listed, [b.id.clone(), a.id.clone()], "newest first");

    let mut rotated = a.clone();
    rotated.salt = "s2".into();
    rotated.version = 1;
    assert!(store.replace_hook(&rotated, 0).await.expect("replace"));
    assert!(
        !store.replace_hook(&rotated, 0).await.expect("stale"),
        "a stale version loses"
    );
    assert_eq!(
        store
            .hook(&a.id)
            .await
            .expect("get")
            .map(|h| h.salt)
            .as_deref(),
        Some("s2")
    );

    assert!(
        !store.delete_hook("globex", &a.id).await.expect("delete"),
        "not globex's"
    );
    assert!(store.delete_hook("acme", &a.id).await.expect("delete"));
    assert_eq!(store.hook(&a.id).await.expect("get"), None);
}
