//! The store conformance suite: every case runs against SQLite and against
//! MongoDB (SecantusDB in CI). One suite, both backends, in one module per
//! concern of the store's contract (`taskhost_store::traits`).

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use taskhost_model::{
    Execution, ExecutionStatus, NodeInfo, PluginRecord, Schedule, Trigger, new_id,
};
use taskhost_runtime::{KvNamespace, KvStore, Outcome, RunRequest, Runtime, RuntimeConfig, Status};
use taskhost_store::{
    Completion, ExecutionFilter, FireDecided, Lease, LeaseRenewal, PageRequest, PluginFilter,
    Release, ScheduleFilter, StoreError,
};
use taskhost_tests::stores::Harness;

// Each case once per backend: `<concern>::sqlite::case` and
// `<concern>::mongodb::case`.

mod audit;
mod cluster;
mod events;
mod executions;
mod flow;
mod idempotency;
mod plugins;
mod queue;
mod quotas;
mod schedules;
mod secrets;
mod state;
mod tokens;

const LEASE: Duration = Duration::from_secs(30);

fn plugin(tenant: &str, name: &str, version: &str, now: DateTime<Utc>) -> PluginRecord {
    PluginRecord {
        id: new_id(),
        tenant: tenant.into(),
        name: name.into(),
        version: version.into(),
        sha256: "00".repeat(32),
        size: 3,
        world: taskhost_runtime::WORLD.into(),
        created_at: now,
        created_by: "tester".into(),
    }
}

fn schedule(tenant: &str, name: &str, plugin_id: &str, now: DateTime<Utc>) -> Schedule {
    Schedule {
        id: new_id(),
        tenant: tenant.into(),
        name: name.into(),
        plugin_id: plugin_id.into(),
        plugin_alias: None,
        trigger: Trigger::Cron {
            expr: "*/5 * * * *".into(),
            timezone: "Europe/London".into(),
        },
        policy: taskhost_model::RunPolicy {
            input: serde_json::json!({"k": 1}),
            retry: Some(Default::default()),
            ..Default::default()
        },
        overlap: Default::default(),
        catch_up: Default::default(),
        jitter: Duration::ZERO,
        starts_at: None,
        ends_at: None,
        paused: false,
        paused_until: None,
        next_fire_at: Some(now),
        last_fire_at: None,
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

fn succeeded() -> Outcome {
    let mut outcome = Outcome::not_run(Status::Succeeded, "");
    outcome.error = None;
    outcome.output = Some(b"\"ok\"".to_vec());
    outcome
}

async fn queued(h: &Harness, tenant: &str) -> Execution {
    let execution = Execution::queued(tenant, "plugin-1", h.store.now(), h.store.now());
    h.store
        .create_execution(&execution)
        .await
        .expect("create execution");
    execution
}

/// Claims `id` for `owner`; returns its lease.
async fn claim(h: &Harness, id: &str, owner: &str) -> Lease {
    let claimed = h
        .store
        .claim(id, owner, LEASE)
        .await
        .expect("claim")
        .expect("claimed");
    Lease::of(&claimed).expect("a lease")
}
