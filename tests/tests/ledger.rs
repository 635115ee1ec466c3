//! The fire ledger (issue 16), driven by a manual clock on both stores:
//! every fire time of a schedule has exactly one record with the right fate
//! through overlap skips, a pause, downtimes under each catch-up mode, bounds
//! and a backfill; the records that ran are the schedule's executions, one to
//! one; two racing nodes write the same ledger. Backfill of an hour creates
//! its 60 runs once. Moving a plugin alias changes the next fire's plugin.

use chrono::{DateTime, Duration as Span, Utc};
use std::collections::BTreeMap;
use std::time::Duration;
use taskhost_model::{
    CatchUp, CatchUpMode, Execution, ExecutionStatus, FireFate, FireReason, FireRecord,
    OverlapPolicy, PluginRecord, Schedule, Trigger, new_id,
};
use taskhost_scheduler::Node;
use taskhost_store::{AliasMove, ExecutionFilter, FireFilter, PageRequest, Store, StoreError};
use taskhost_tests::cluster::{Cluster, test_config, upload};
use taskhost_tests::stores::Harness;

taskhost_tests::conformance!(
    ledger_tells_every_fire,
    racing_nodes_write_the_same_ledger,
    backfill_an_hour_once,
    alias_moves_the_next_fire,
);

/// (fate, reason, coalesced_into) of one fire.
type Fate = (FireFate, Option<FireReason>, Option<DateTime<Utc>>);

fn schedule(tenant: &str, plugin: &PluginRecord, trigger: Trigger, now: DateTime<Utc>) -> Schedule {
    let mut s = taskhost_tests::cluster::schedule(tenant, &plugin.id, trigger, now);
    s.policy.input = serde_json::json!({"name": "ledger"});
    s.overlap = OverlapPolicy::Skip;
    s
}

fn every_second() -> Trigger {
    Trigger::Cron {
        expr: "* * * * * *".into(),
        timezone: "UTC".into(),
    }
}

/// Every record of a schedule's ledger, by fire time.
async fn ledger(store: &Store, tenant: &str, id: &str) -> BTreeMap<DateTime<Utc>, FireRecord> {
    let mut all = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_fires(
                tenant,
                id,
                &FireFilter::default(),
                &PageRequest {
                    cursor,
                    limit: Some(7),
                },
            )
            .await
            .expect("fires");
        for r in page.items {
            assert!(
                all.insert(r.fire_at, r.clone()).is_none(),
                "one record per fire: {r:?}"
            );
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

async fn executions_of(store: &Store, tenant: &str, schedule: &str) -> Vec<Execution> {
    let filter = ExecutionFilter {
        schedule_id: Some(schedule.into()),
        ..Default::default()
    };
    store
        .list_executions(
            tenant,
            &filter,
            &PageRequest {
                cursor: None,
                limit: Some(1000),
            },
        )
        .await
        .expect("list")
        .items
}

/// Cancels the schedule's queued runs (as if they had finished), so the
/// next fire is free under overlap `skip`.
async fn finish_runs(store: &Store, tenant: &str, schedule: &str) {
    for e in executions_of(store, tenant, schedule).await {
        if e.status == ExecutionStatus::Queued {
            store.cancel(tenant, &e.id).await.expect("cancel");
        }
    }
}

async fn change(store: &Store, id: &str, f: impl FnMut(&mut Schedule) -> bool + Send) {
    store
        .modify_schedule(None, id, f)
        .await
        .expect("modify")
        .expect("exists");
}

/// One materializer pass on every node at once (racing).
async fn pass(nodes: &[Node]) {
    let passes = nodes.iter().map(|n| n.materialize_due(100));
    for r in futures::future::join_all(passes).await {
        r.expect("materialize");
    }
}

/// The script of acceptance point 1 on `n` nodes; returns the ledger
/// (fate, reason, coalesced_into by fire time), having checked that it is
/// exactly one record per fire time and that its runs are the executions.
async fn drive(h: &Harness, n: usize) -> BTreeMap<DateTime<Utc>, Fate> {
    let mut config = test_config();
    config.catch_up_grace = Duration::ZERO;
    let cluster = Cluster::new(&h.url, &h.clock, n, config).await;
    let nodes = &cluster.nodes;
    let store = &h.store;
    let plugin = upload(store, "acme", "hello").await;
    let t0 = store.now();
    let s = schedule("acme", &plugin, every_second(), t0);
    store.create_schedule(&s).await.expect("create");
    let at = |k: i64| t0 + Span::seconds(k);
    let step = |secs: u64| h.clock.advance(Duration::from_secs(secs));

    // Overlap `skip`: 0 runs and stays queued, 1 and 2 are skipped.
    pass(nodes).await;
    step(1);
    pass(nodes).await;
    step(1);
    pass(nodes).await;
    finish_runs(store, "acme", &s.id).await;
    step(1);
    pass(nodes).await; // 3 runs
    finish_runs(store, "acme", &s.id).await;
    change(store, &s.id, |s| {
        s.overlap = OverlapPolicy::Allow;
        true
    })
    .await;

    // A pause over 4, 5, 6; resumed half a second after 6.
    nodes[0].pause("acme", &s.id).await.expect("pause");
    for _ in 0..3 {
        step(1);
        pass(nodes).await;
    }
    h.clock.advance(Duration::from_millis(500));
    let resumed = nodes[0]
        .resume("acme", &s.id)
        .await
        .expect("resume")
        .expect("exists");
    assert_eq!(resumed.next_fire_at, Some(at(7)));
    h.clock.advance(Duration::from_millis(500));
    pass(nodes).await; // 7 runs

    // Downtime with catch-up `skip`: 8..11 skipped, 12 on time.
    change(store, &s.id, |s| {
        s.catch_up = CatchUp {
            mode: CatchUpMode::Skip,
            window: Duration::from_secs(3),
        };
        true
    })
    .await;
    step(5);
    pass(nodes).await;
    // `once` (window 3 s): 13 outside the window, 14 and 15 folded into 16.
    change(store, &s.id, |s| {
        s.catch_up.mode = CatchUpMode::Once;
        true
    })
    .await;
    step(5);
    pass(nodes).await;
    // `all` (window 3 s): 18 outside the window, 19..21 caught up.
    change(store, &s.id, |s| {
        s.catch_up.mode = CatchUpMode::All;
        true
    })
    .await;
    step(5);
    pass(nodes).await;
    // A downtime across `ends_at` (24): 23, 24 caught up, 25..27 outside.
    change(store, &s.id, |s| {
        s.catch_up.window = Duration::from_secs(60);
        s.ends_at = Some(at(24));
        true
    })
    .await;
    step(5);
    pass(nodes).await;
    let ended = store.get_schedule("acme", &s.id).await.expect("get");
    assert_eq!(ended.expect("exists").next_fire_at, None, "ended");
    // Backfill of the pause (4, 5, 6) from every node at once: once.
    let current = store
        .get_schedule("acme", &s.id)
        .await
        .expect("get")
        .expect("exists");
    let backfills = nodes.iter().map(|n| n.backfill(&current, at(4), at(7)));
    let mut created = 0;
    for report in futures::future::join_all(backfills).await {
        created += report.expect("backfill").created.len();
    }
    assert_eq!(created, 3, "the pause's three fires run once");

    let records = ledger(store, "acme", &s.id).await;
    let times: Vec<DateTime<Utc>> = records.keys().copied().collect();
    assert_eq!(
        times,
        (0..=27).map(at).collect::<Vec<_>>(),
        "every fire time"
    );
    // The records that ran are the schedule's executions, one to one.
    let executions = executions_of(store, "acme", &s.id).await;
    let mut ran: Vec<(DateTime<Utc>, String)> = records
        .values()
        .filter(|r| r.fate.runs())
        .map(|r| (r.fire_at, r.execution_id.clone().expect("an execution")))
        .collect();
    let mut made: Vec<(DateTime<Utc>, String)> = executions
        .iter()
        .map(|e| (e.fire_time.expect("a fire"), e.id.clone()))
        .collect();
    ran.sort();
    made.sort();
    assert_eq!(ran, made, "ran records = executions");
    // Backfilled fires keep what they were.
    for k in 4..7 {
        let was = records[&at(k)].was.as_ref().expect("was");
        assert_eq!(
            (was.fate, was.reason),
            (FireFate::Skipped, Some(FireReason::Paused))
        );
    }
    // Overlap skips name the run they met.
    let first = &records[&at(0)];
    assert_eq!(records[&at(1)].blocked_by, first.execution_id);
    // Counts by fate (the schedule's summary).
    let counts = store.fire_counts(&s.id, at(0)).await.expect("counts");
    assert_eq!(
        counts.ran + counts.caught_up + counts.backfilled + counts.skipped + counts.missed,
        28
    );
    assert_eq!(counts.backfilled, 3);
    records
        .into_iter()
        .map(|(t, r)| (t, (r.fate, r.reason, r.coalesced_into)))
        .collect()
}

/// What the script must record, fire by fire.
fn expected(t0: DateTime<Utc>) -> BTreeMap<DateTime<Utc>, Fate> {
    use FireFate::*;
    use FireReason::*;
    let at = |k: i64| t0 + Span::seconds(k);
    let skip = |r| (Skipped, Some(r), None);
    let missed = |r| (Missed, Some(r), None);
    let mut e = BTreeMap::new();
    e.insert(at(0), (Ran, None, None));
    e.insert(at(1), skip(Overlap));
    e.insert(at(2), skip(Overlap));
    e.insert(at(3), (Ran, None, None));
    for k in 4..7 {
        e.insert(at(k), (Backfilled, None, None));
    }
    e.insert(at(7), (Ran, None, None));
    for k in 8..12 {
        e.insert(at(k), skip(CatchUpSkip));
    }
    e.insert(at(12), (Ran, None, None));
    e.insert(at(13), missed(OutsideWindow));
    e.insert(at(14), (Skipped, Some(CoalescedInto), Some(at(16))));
    e.insert(at(15), (Skipped, Some(CoalescedInto), Some(at(16))));
    e.insert(at(16), (CaughtUp, None, None));
    e.insert(at(17), (Ran, None, None));
    e.insert(at(18), missed(OutsideWindow));
    for k in 19..22 {
        e.insert(at(k), (CaughtUp, None, None));
    }
    e.insert(at(22), (Ran, None, None));
    e.insert(at(23), (CaughtUp, None, None));
    e.insert(at(24), (CaughtUp, None, None));
    for k in 25..28 {
        e.insert(at(k), skip(OutsideBounds));
    }
    e
}

async fn ledger_tells_every_fire(h: Harness) {
    let t0 = h.store.now();
    let got = drive(&h, 1).await;
    assert_eq!(got, expected(t0));
}

async fn racing_nodes_write_the_same_ledger(h: Harness) {
    let t0 = h.store.now();
    let got = drive(&h, 2).await;
    assert_eq!(got, expected(t0));
}

async fn backfill_an_hour_once(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let store = &h.store;
    let plugin = upload(store, "acme", "hello").await;
    h.clock.advance(Duration::from_millis(1234));
    let now = store.now();
    let cron = Trigger::Cron {
        expr: "* * * * *".into(),
        timezone: "Europe/Paris".into(),
    };
    let interval = Trigger::Interval {
        every: Duration::from_secs(60),
        start_at: None,
    };
    for trigger in [cron, interval] {
        let s = schedule("acme", &plugin, trigger, now);
        store.create_schedule(&s).await.expect("create");
        let hour_ago = now - Span::hours(1);
        let first = node.backfill(&s, hour_ago, now).await.expect("backfill");
        assert_eq!((first.fires, first.created.len()), (60, 60), "{first:?}");
        let again = node.backfill(&s, hour_ago, now).await.expect("again");
        assert_eq!(
            (again.fires, again.created.len(), again.already_ran),
            (60, 0, 60)
        );
        let made = executions_of(store, "acme", &s.id).await;
        assert_eq!(made.len(), 60);
        let fates = ledger(store, "acme", &s.id).await;
        assert!(fates.values().all(|r| r.fate == FireFate::Backfilled));
        assert_eq!(fates.len(), 60);
        // In fire order: due times rise with fire times.
        let mut by_fire: Vec<&Execution> = made.iter().collect();
        by_fire.sort_by_key(|e| e.fire_time);
        assert!(by_fire.windows(2).all(|w| w[0].due_at < w[1].due_at));
        // A window in the future or reversed is refused.
        assert!(node.backfill(&s, now, now + Span::hours(1)).await.is_err());
        assert!(node.backfill(&s, now, hour_ago).await.is_err());
    }
    // More than 1,000 fires in one request is refused.
    let s = schedule("acme", &plugin, every_second(), now);
    store.create_schedule(&s).await.expect("create");
    let too_big = node.backfill(&s, now - Span::hours(1), now).await;
    assert!(
        matches!(
            too_big,
            Err(taskhost_scheduler::BackfillError::TooLarge { .. })
        ),
        "{too_big:?}"
    );
    // They run.
    cluster.tick().await;
    assert!(cluster.starts.total() > 0);
}

async fn alias_moves_the_next_fire(h: Harness) {
    let cluster = Cluster::new(&h.url, &h.clock, 1, test_config()).await;
    let node = &cluster.nodes[0];
    let store = &h.store;
    let v1 = upload(store, "acme", "hello").await;
    let mut v2 = v1.clone();
    v2.id = new_id();
    v2.version = "2.0.0".into();
    store
        .create_plugin(&v2, &taskhost_tests::plugin("hello"))
        .await
        .expect("upload v2");
    let moved = store
        .move_alias("acme", "hello", "stable", "1.0.0", "ops")
        .await
        .expect("move");
    assert!(matches!(moved, AliasMove::Moved(ref a) if a.plugin_id == v1.id));
    // Reserved names, and a version that does not exist.
    assert!(matches!(
        store
            .move_alias("acme", "hello", "latest", "1.0.0", "ops")
            .await,
        Ok(AliasMove::Refused(_))
    ));
    assert!(matches!(
        store
            .move_alias("acme", "hello", "2.0.0", "1.0.0", "ops")
            .await,
        Ok(AliasMove::Refused(_))
    ));
    assert!(matches!(
        store
            .move_alias("acme", "hello", "beta", "9.9.9", "ops")
            .await,
        Ok(AliasMove::NoSuchVersion)
    ));
    // Resolution: an alias and latest are followed, a version is pinned.
    let r = store
        .resolve_plugin("acme", "hello@stable")
        .await
        .expect("r");
    let r = r.expect("resolves");
    assert_eq!(
        (r.plugin.id.as_str(), r.follows.as_deref()),
        (v1.id.as_str(), Some("hello@stable"))
    );
    let r = store
        .resolve_plugin("acme", "hello@latest")
        .await
        .expect("r");
    assert_eq!(r.expect("resolves").plugin.id, v2.id);
    let r = store
        .resolve_plugin("acme", "hello@1.0.0")
        .await
        .expect("r");
    let r = r.expect("resolves");
    assert_eq!((r.plugin.id.as_str(), r.follows), (v1.id.as_str(), None));
    assert!(
        store
            .resolve_plugin("globex", "hello@stable")
            .await
            .expect("r")
            .is_none()
    );

    // Two schedules follow hello@stable.
    let now = store.now();
    let mut followers = Vec::new();
    for _ in 0..2 {
        let mut s = schedule("acme", &v1, every_second(), now);
        s.overlap = OverlapPolicy::Allow;
        s.plugin_alias = Some("hello@stable".into());
        store.create_schedule(&s).await.expect("create");
        followers.push(s);
    }
    node.materialize_due(10).await.expect("materialize");
    let before: Vec<Execution> = executions_of(store, "acme", &followers[0].id).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].plugin_id, v1.id);
    // Move to v2: every follower's next fire runs v2; what was made keeps v1.
    store
        .move_alias("acme", "hello", "stable", "2.0.0", "ops")
        .await
        .expect("move");
    h.clock.advance(Duration::from_secs(1));
    node.materialize_due(10).await.expect("materialize");
    for s in &followers {
        let mut made = executions_of(store, "acme", &s.id).await;
        made.sort_by_key(|e| e.fire_time);
        let plugins: Vec<&str> = made.iter().map(|e| e.plugin_id.as_str()).collect();
        assert_eq!(plugins, vec![v1.id.as_str(), v2.id.as_str()]);
        let records = ledger(store, "acme", &s.id).await;
        let last = records.values().last().expect("a record");
        assert_eq!(last.plugin_id.as_deref(), Some(v2.id.as_str()));
        assert_eq!(last.plugin_ref.as_deref(), Some("hello@stable"));
        let current = store.get_schedule("acme", &s.id).await.expect("get");
        assert_eq!(current.expect("exists").plugin_id, v2.id);
    }
    cluster.tick().await;
    for e in executions_of(store, "acme", &followers[0].id).await {
        assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:?}");
    }
    // Deleting a version an alias points to is refused; the old one may go.
    let refused = store.delete_plugin("acme", &v2.id).await;
    assert!(
        matches!(refused, Err(StoreError::InUse(ref why)) if why.contains("hello@stable")),
        "{refused:?}"
    );
    assert!(
        store
            .delete_plugin("acme", &v1.id)
            .await
            .expect("delete v1")
    );
    // The newest version, followed through hello@latest, is refused too.
    let mut v3 = v2.clone();
    v3.id = new_id();
    v3.version = "3.0.0".into();
    store
        .create_plugin(&v3, &taskhost_tests::plugin("hello"))
        .await
        .expect("upload v3");
    let mut latest = schedule("acme", &v3, every_second(), store.now());
    latest.plugin_alias = Some("hello@latest".into());
    store.create_schedule(&latest).await.expect("create");
    let refused = store.delete_plugin("acme", &v3.id).await;
    assert!(
        matches!(refused, Err(StoreError::InUse(ref why)) if why.contains("hello@latest")),
        "{refused:?}"
    );
}
