//! Schedules and their fire ledger: this concern's part of the store conformance suite.

use super::*;

taskhost_tests::conformance!(
    schedules,
    materialize_fire_once_under_races,
    fire_records_insert_once_list_count_and_expire,
);

async fn schedules(h: Harness) {
    let store = &h.store;
    let now = store.now();
    let s = schedule("acme", "nightly", "p1", now);
    store.create_schedule(&s).await.expect("create");
    assert_eq!(
        store.get_schedule("acme", &s.id).await.expect("get"),
        Some(s.clone())
    );
    assert_eq!(
        store.get_schedule("globex", &s.id).await.expect("get"),
        None
    );
    let dup = schedule("acme", "nightly", "p1", now);
    assert!(matches!(
        store.create_schedule(&dup).await,
        Err(StoreError::Conflict(_))
    ));

    let paused = store
        .modify_schedule(Some("acme"), &s.id, |s| {
            s.paused = true;
            true
        })
        .await
        .expect("modify")
        .expect("exists");
    assert!(paused.paused);
    assert_eq!(paused.version, 1);
    assert_eq!(
        store.get_schedule("acme", &s.id).await.expect("get"),
        Some(paused.clone())
    );
    let other = store
        .modify_schedule(Some("globex"), &s.id, |_| true)
        .await
        .expect("modify");
    assert_eq!(other, None, "another tenant cannot modify");

    // Due: next_fire_at <= now, paused or not (a paused schedule's fires
    // are recorded as skipped).
    let mut later = schedule("acme", "later", "p1", now);
    later.next_fire_at = Some(now + chrono::Duration::minutes(5));
    store.create_schedule(&later).await.expect("create");
    let due_now = schedule("globex", "now", "p2", now);
    store.create_schedule(&due_now).await.expect("create");
    let due: Vec<String> = store
        .due_schedules(store.now(), None, 10)
        .await
        .expect("due")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(due.len(), 2);
    assert!(due.contains(&due_now.id) && due.contains(&s.id), "{due:?}");
    // Only the schedules of the partitions asked for.
    let part = taskhost_model::partition_of(&due_now.id);
    let mine = store
        .due_schedules(store.now(), Some(&[part]), 10)
        .await
        .expect("due");
    assert!(mine.iter().any(|x| x.id == due_now.id));
    assert!(
        mine.iter()
            .all(|x| taskhost_model::partition_of(&x.id) == part)
    );
    let none = store
        .due_schedules(store.now(), Some(&[]), 10)
        .await
        .expect("due");
    assert!(none.is_empty());
    // Ahead: what is due within five minutes.
    let ahead = now + chrono::Duration::minutes(5);
    assert_eq!(
        store
            .due_schedules(ahead, None, 10)
            .await
            .expect("due")
            .len(),
        3
    );
    h.clock.advance(Duration::from_secs(300));
    let due = store
        .due_schedules(store.now(), None, 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 3);

    let filter = ScheduleFilter {
        paused: Some(true),
        ..Default::default()
    };
    let page = store
        .list_schedules("acme", &filter, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&s.id]
    );
    let filter = ScheduleFilter {
        plugin_id: Some("p1".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_schedules("acme", &filter, &PageRequest::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    assert!(
        !store
            .delete_schedule("globex", &s.id)
            .await
            .expect("delete")
    );
    assert!(store.delete_schedule("acme", &s.id).await.expect("delete"));
    assert_eq!(store.get_schedule("acme", &s.id).await.expect("get"), None);
}

async fn materialize_fire_once_under_races(h: Harness) {
    let fire_base = h.store.now();
    let inserted = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for racer in 0..8 {
        let (store, inserted) = (h.store.clone(), inserted.clone());
        tasks.spawn(async move {
            for fire in 0..50i64 {
                let fire_time = fire_base + chrono::Duration::seconds(fire);
                let mut e = Execution::queued("acme", "p", fire_time, fire_time);
                e.schedule_id = Some("racy".into());
                e.fire_time = Some(fire_time);
                e.policy.config.insert("racer".into(), racer.to_string());
                if matches!(
                    store.decide_fire(&e).await.expect("materialize"),
                    FireDecided::Ours(_)
                ) {
                    inserted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("racer");
    }
    assert_eq!(
        inserted.load(Ordering::SeqCst),
        50,
        "exactly one execution per fire"
    );
    let filter = ExecutionFilter {
        schedule_id: Some("racy".into()),
        ..Default::default()
    };
    let all = h
        .store
        .list_executions(
            "acme",
            &filter,
            &PageRequest {
                cursor: None,
                limit: Some(1000),
            },
        )
        .await;
    let mut fires: Vec<_> = all
        .expect("list")
        .items
        .into_iter()
        .map(|e| e.fire_time)
        .collect();
    fires.sort();
    fires.dedup();
    assert_eq!(fires.len(), 50);
}

/// The fire ledger's store part: records of fires (executions and
/// `skipped` rows) are inserted once per fire key, in bulk or one by one;
/// listed newest fire first with filters and a fire-time cursor; counted by
/// fate; hidden from the executions list unless asked for; and swept with
/// the executions when their retention ends.
async fn fire_records_insert_once_list_count_and_expire(h: Harness) {
    cursor_moves_with_the_records(&h).await;
    use taskhost_model::{FireFate, FireInfo, FireReason};
    use taskhost_store::FireFilter;
    let store = &h.store;
    let now = store.now();
    let at = |k: i64| now + chrono::Duration::seconds(k);
    let record = |k: i64, skipped: bool| {
        let mut e = Execution::queued("acme", "p", at(k), now);
        e.schedule_id = Some("s1".into());
        e.fire_time = Some(at(k));
        e.policy.retention = Some(Duration::from_secs(60));
        if skipped {
            e.fire = Some(FireInfo::dropped(FireReason::Paused, "n1"));
            e.finish(ExecutionStatus::Skipped, now);
        } else {
            e.fire = Some(FireInfo::run(FireFate::Ran, "n1"));
        }
        e
    };
    // Bulk: 0..10 skipped, each once; a second batch overlapping it
    // inserts only the new fires; a retried row (its own id) counts as ours.
    let first: Vec<Execution> = (0..10).map(|k| record(k, true)).collect();
    assert_eq!(
        store
            .record_fires(&first, &[])
            .await
            .expect("insert")
            .inserted,
        vec![true; 10]
    );
    let mut second: Vec<Execution> = (5..15).map(|k| record(k, true)).collect();
    second[0] = first[5].clone();
    let inserted = store
        .record_fires(&second, &[])
        .await
        .expect("insert")
        .inserted;
    assert!(inserted[0], "its own earlier insert");
    assert_eq!(&inserted[1..5], &[false; 4]);
    assert_eq!(&inserted[5..], &[true; 5]);
    // One by one: a run of a fire already recorded is not inserted.
    assert!(matches!(
        store.decide_fire(&record(3, false)).await,
        Ok(FireDecided::Theirs)
    ));
    assert!(matches!(
        store.decide_fire(&record(20, false)).await,
        Ok(FireDecided::Ours(_))
    ));
    // Listed newest first, paged by fire time, filtered.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_fires(
                "acme",
                "s1",
                &FireFilter::default(),
                &PageRequest {
                    cursor,
                    limit: Some(4),
                },
            )
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|r| r.fire_at));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<_> = (0..15).chain([20]).map(at).collect();
    expected.reverse();
    assert_eq!(seen, expected);
    let window = FireFilter {
        since: Some(at(2)),
        until: Some(at(5)),
        ..FireFilter::default()
    };
    let page = store
        .list_fires("acme", "s1", &window, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|r| r.fire_at).collect::<Vec<_>>(),
        vec![at(4), at(3), at(2)]
    );
    let ran = FireFilter {
        fate: Some(FireFate::Ran),
        ..FireFilter::default()
    };
    let page = store
        .list_fires("acme", "s1", &ran, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].status, Some(ExecutionStatus::Queued));
    let page = store
        .list_fires(
            "globex",
            "s1",
            &FireFilter::default(),
            &PageRequest::default(),
        )
        .await
        .expect("list");
    assert!(page.items.is_empty(), "another tenant sees none");
    // Counted by fate and reason.
    let counts = store.fire_counts("s1", at(0)).await.expect("count");
    assert_eq!((counts.skipped, counts.ran), (15, 1));
    assert_eq!(counts.by_reason.get("paused"), Some(&15));
    // Hidden from the executions list unless asked for.
    let all = store
        .list_executions("acme", &ExecutionFilter::default(), &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(all.items.len(), 1);
    let skipped = ExecutionFilter {
        status: Some(ExecutionStatus::Skipped),
        ..Default::default()
    };
    let page = PageRequest {
        cursor: None,
        limit: Some(100),
    };
    let listed = store
        .list_executions("acme", &skipped, &page)
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 15);
    // Swept with the executions when the retention ends.
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(store.delete_expired(100).await.expect("sweep"), 15);
    let left = store
        .list_fires(
            "acme",
            "s1",
            &FireFilter::default(),
            &PageRequest::default(),
        )
        .await;
    assert_eq!(
        left.expect("list").items.len(),
        1,
        "the run stays until it ends"
    );
}

/// A pass's write moves each schedule's cursor in the same call as its
/// records, only where the schedule is still the version the pass read.
async fn cursor_moves_with_the_records(h: &Harness) {
    let store = &h.store;
    let now = store.now();
    let a = schedule("acme", "moves-a", "p", now);
    let b = schedule("acme", "moves-b", "p", now);
    for s in [&a, &b] {
        store.create_schedule(s).await.expect("create");
    }
    // b changes after the pass read it: its move is refused.
    store
        .modify_schedule(None, &b.id, |s| {
            s.name = "moves-b2".into();
            true
        })
        .await
        .expect("modify");
    let moved = |s: &Schedule| {
        let mut s = s.clone();
        s.next_fire_at = Some(now + chrono::Duration::hours(1));
        s.version += 1;
        s
    };
    let written = store
        .record_fires(&[], &[moved(&a), moved(&b)])
        .await
        .expect("record");
    assert_eq!(written.moved, vec![true, false]);
    let a = store
        .get_schedule("acme", &a.id)
        .await
        .expect("get")
        .expect("a");
    assert_eq!(a.next_fire_at, Some(now + chrono::Duration::hours(1)));
    let b = store
        .get_schedule("acme", &b.id)
        .await
        .expect("get")
        .expect("b");
    assert_eq!(b.next_fire_at, Some(now));
}
