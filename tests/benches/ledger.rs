//! The fire ledger's cost on the embedded store:
//! `cargo bench -p taskhost-tests --bench ledger`.
//!
//! 1. recording a day-long pause of a 1-second schedule (86,400 `skipped`
//!    records, written by materializer passes of up to 2,000 each);
//! 2. a pass over 1,000 due schedules (1,000 executions, each its fire's
//!    record) and the same with every schedule paused (1,000 `skipped`
//!    records);
//! 3. a backfill of 1,000 fires, and the same request again (a no-op);
//! 4. the 24-hour counts by fate over those 86,400 records (the summary on
//!    `GET /v1/schedules/{id}`) and one page of the ledger.

use chrono::{TimeZone, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskhost_model::clock::ManualClock;
use taskhost_model::{Schedule, Trigger};
use taskhost_scheduler::{Node, SchedulerConfig};
use taskhost_store::{FireFilter, PageRequest, Store};
use taskhost_tests::cluster::{shared_runtime, upload};

fn schedule(tenant: &str, plugin: &str, now: chrono::DateTime<Utc>) -> Schedule {
    let trigger = Trigger::Cron {
        expr: "* * * * * *".into(),
        timezone: "UTC".into(),
    };
    taskhost_tests::cluster::schedule(tenant, plugin, trigger, now)
}

fn main() {
    let rt = taskhost_tests::bench_runtime();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
    let store = Store::open(&url, Arc::new(clock.clone()))
        .await
        .expect("store");
    let node = Node::new(SchedulerConfig::default(), store.clone(), shared_runtime());
    let plugin = upload(&store, "acme", "hello").await;

    // 1. A day-long pause of a 1-second schedule.
    let mut paused = schedule("acme", &plugin.id, store.now());
    paused.paused = true;
    store.create_schedule(&paused).await.expect("create");
    clock.advance(Duration::from_secs(86_400));
    let started = Instant::now();
    let mut passes = 0;
    loop {
        let s = store
            .get_schedule("acme", &paused.id)
            .await
            .expect("get")
            .expect("exists");
        if s.next_fire_at.is_none_or(|t| t > store.now()) {
            break;
        }
        node.materialize_due(10).await.expect("materialize");
        passes += 1;
    }
    let took = started.elapsed();
    println!(
        "pause of a day, 1-second schedule: 86,401 skipped records in {passes} passes, {:.2} s ({:.0} records/s)",
        took.as_secs_f64(),
        86_401.0 / took.as_secs_f64()
    );

    // 2. One pass over 1,000 due schedules, running and paused.
    for pause in [false, true] {
        let now = store.now();
        let mut ids = Vec::new();
        for _ in 0..1000 {
            let mut s = schedule("bench", &plugin.id, now);
            s.paused = pause;
            ids.push(s.id.clone());
            store.create_schedule(&s).await.expect("create");
        }
        let started = Instant::now();
        node.materialize_due(1000).await.expect("materialize");
        let took = started.elapsed();
        let what = if pause {
            "skipped records"
        } else {
            "executions"
        };
        println!(
            "one pass over 1,000 due schedules: 1,000 {what} in {:.0} ms ({:.0} µs per fire)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / 1000.0
        );
        for id in ids {
            store.delete_schedule("bench", &id).await.expect("delete");
        }
        clock.advance(Duration::from_secs(1));
    }

    // 3. A backfill of 1,000 fires, twice.
    let target = schedule("acme", &plugin.id, store.now());
    store.create_schedule(&target).await.expect("create");
    let to = store.now();
    let from = to - chrono::Duration::seconds(1000);
    for round in ["first", "again"] {
        let started = Instant::now();
        let report = node.backfill(&target, from, to).await.expect("backfill");
        println!(
            "backfill of 1,000 fires ({round}): {} created in {:.0} ms",
            report.created.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    // 4. The summary's counts and a page of the ledger.
    let since = store.now() - chrono::Duration::hours(24);
    let started = Instant::now();
    let counts = store.fire_counts(&paused.id, since).await.expect("counts");
    println!(
        "24-hour counts by fate over {} records: {:.1} ms",
        counts.skipped,
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = Instant::now();
    let page = store
        .list_fires(
            "acme",
            &paused.id,
            &FireFilter::default(),
            &PageRequest::default(),
        )
        .await
        .expect("page");
    println!(
        "a page of {} ledger records: {:.2} ms",
        page.items.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
}
