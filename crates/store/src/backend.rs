//! What the backends share: the filters and answers of their queries (the
//! queries themselves are [`crate::traits`]), and how a record becomes a row.
//!
//! A backend keeps records as documents with a few indexed fields and answers
//! simple queries. Changing a record is a compare-and-swap on its `version`:
//! `*_replace(record, expected)` writes only if the stored version is still
//! `expected`, so of several racing writers exactly one wins, on any backend.

use super::StoreError;
use chrono::{DateTime, Utc};
use taskhost_model::{Execution, ExecutionStatus, FireFate, NodeInfo, PluginRecord, Schedule};

pub type Result<T> = std::result::Result<T, StoreError>;

/// A change to an execution, applied by [`Backend::execution_update`]; false
/// means "leave it as it is". It also bumps the version.
pub type ExecutionChange = Box<dyn FnMut(&mut Execution) -> bool + Send>;

/// A page request: records with ids before `before` (newest first), at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub before: Option<String>,
    pub limit: u32,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub schedule_id: Option<String>,
    pub plugin_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Suspended waiting for an event of this name.
    pub waiting_for: Option<String>,
}

/// Filters for listing a schedule's fire ledger.
#[derive(Debug, Clone, Default)]
pub struct FireFilter {
    /// Fire times at or after.
    pub since: Option<DateTime<Utc>>,
    /// Fire times before.
    pub until: Option<DateTime<Utc>>,
    pub fate: Option<FireFate>,
    /// Only these fire times (none: any).
    pub at: Vec<DateTime<Utc>>,
}

/// Filters for listing schedules.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFilter {
    pub plugin_id: Option<String>,
    pub paused: Option<bool>,
    /// Schedules following this alias (`name@alias`).
    pub plugin_alias: Option<String>,
    /// Schedules fired by this event.
    pub event: Option<String>,
}

/// What a tenant keeps, for its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub plugins: u64,
    pub plugin_bytes: u64,
    pub schedules: u64,
}

/// Filters for listing plugins.
#[derive(Debug, Clone, Default)]
pub struct PluginFilter {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// What [`crate::ScheduleStore::fires_record`] wrote: per row, whether it
/// was inserted (false: the fire had a record); per move, whether the
/// schedule was still as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassWritten {
    pub inserted: Vec<bool>,
    pub moved: Vec<bool>,
}

/// What a node's in-memory queue keeps of a queued execution: enough to
/// order it and to claim it, never the whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub tenant: String,
    pub priority: i32,
    pub due_at: DateTime<Utc>,
}

impl Queued {
    pub fn of(e: &Execution) -> Queued {
        Queued {
            id: e.id.clone(),
            tenant: e.tenant.clone(),
            priority: e.policy.priority,
            due_at: e.due_at,
        }
    }
}

/// A claim of queued, due executions by one node, in one go
/// ([`Backend::executions_claim`]).
#[derive(Debug, Clone)]
pub struct ClaimOrder {
    pub owner: String,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}

/// The unique key of an execution's fire: `schedule-id@fire-time` for a
/// fire of a clock, `schedule-id#event-id` for a fire of an event (so an
/// event sent again fires nothing again), the execution's own id otherwise
/// (never a conflict).
pub(crate) fn fire_key(e: &Execution) -> String {
    let event = e.fire.as_ref().and_then(|f| f.event.as_ref());
    match (&e.schedule_id, e.fire_time, event) {
        (Some(schedule), _, Some(event)) => format!("{schedule}#{}", event.id),
        (Some(schedule), Some(fire), None) => format!("{schedule}@{}", fire.timestamp_millis()),
        _ => e.id.clone(),
    }
}

/// A record as every backend stores it: the fields queries filter and sort
/// on (times as Unix milliseconds), and the whole record as a JSON document.
/// Both backends build their rows here, so they index exactly the same data.
pub(crate) struct Row {
    pub id: String,
    pub doc: String,
    pub fields: Vec<(&'static str, Field)>,
}

/// One indexed field's value.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    Text(String),
    Int(i64),
    Null,
}

impl Field {
    fn time(t: Option<DateTime<Utc>>) -> Field {
        t.map_or(Field::Null, |t| Field::Int(t.timestamp_millis()))
    }
    fn text(t: Option<&str>) -> Field {
        t.map_or(Field::Null, |t| Field::Text(t.to_owned()))
    }
}

/// A record as its stored JSON document.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads a record back from its JSON document.
pub(crate) fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Records a batch read left out because they could not be read (see
/// [`readable`]), since the process started.
static UNREADABLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many stored records batch reads have left out as unreadable since the
/// process started (`store_unreadable_records_total` in `/metrics`).
pub fn unreadable_records() -> u64 {
    UNREADABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Keeps what a batch read could parse. A record that cannot be read
/// (corrupt, or written by something else) is left out, logged and counted,
/// so that one bad row never stops a whole list, the dispatcher or the
/// webhook deliverer for everyone; reading it by its id still says what is
/// wrong with it. Errors of the store itself still fail the read.
pub(crate) fn readable<T>(what: &str, rows: impl Iterator<Item = Result<T>>) -> Result<Vec<T>> {
    let mut kept = Vec::new();
    for row in rows {
        match row {
            Ok(row) => kept.push(row),
            Err(StoreError::Corrupt(e)) => {
                UNREADABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "a stored {what} cannot be read; it is left out");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(kept)
}

pub(crate) fn plugin_row(p: &PluginRecord) -> Result<Row> {
    Ok(Row {
        id: p.id.clone(),
        doc: json(p)?,
        fields: vec![
            ("tenant", Field::Text(p.tenant.clone())),
            ("name", Field::Text(p.name.clone())),
            ("version", Field::Text(p.version.clone())),
        ],
    })
}

pub(crate) fn schedule_row(s: &Schedule) -> Result<Row> {
    Ok(Row {
        id: s.id.clone(),
        doc: json(s)?,
        fields: vec![
            ("tenant", Field::Text(s.tenant.clone())),
            ("name", Field::Text(s.name.clone())),
            ("plugin_id", Field::Text(s.plugin_id.clone())),
            ("plugin_alias", Field::text(s.plugin_alias.as_deref())),
            ("event_name", Field::text(event_name(&s.trigger))),
            ("paused", Field::Int(s.paused as i64)),
            ("next_fire_at", Field::time(s.next_fire_at)),
            ("version", Field::Int(s.version as i64)),
            (
                "partition_no",
                Field::Int(taskhost_model::partition_of(&s.id).into()),
            ),
        ],
    })
}

/// The event that fires a schedule, if its trigger is an event's.
fn event_name(trigger: &taskhost_model::Trigger) -> Option<&str> {
    match trigger {
        taskhost_model::Trigger::Event { name, .. } => Some(name),
        _ => None,
    }
}

pub(crate) fn execution_row(e: &Execution) -> Result<Row> {
    let fate = e.schedule_id.as_ref().and_then(|_| e.fire_fate());
    // The concurrency key it holds while it runs, and the key's limit.
    let slot = e.policy.concurrency.as_ref();
    let slot = slot.and_then(|c| Some((c.key.as_deref()?, i64::from(c.limit))));
    // The rate-limit key its start counts against: the key, limit, period (ms).
    let rate = e.policy.rate_limit.as_ref();
    let rate = rate.and_then(|r| {
        Some((
            r.key.as_deref()?,
            i64::from(r.limit),
            r.per.as_millis() as i64,
        ))
    });
    let doc = json(e)?;
    // The stored size, summed by the tenant's storage quotas.
    let bytes = Field::Int(doc.len() as i64);
    Ok(Row {
        id: e.id.clone(),
        doc,
        fields: vec![
            ("bytes", bytes),
            ("tenant", Field::Text(e.tenant.clone())),
            ("fire_key", Field::Text(fire_key(e))),
            ("schedule_id", Field::text(e.schedule_id.as_deref())),
            ("plugin_id", Field::Text(e.plugin_id.clone())),
            ("status", Field::Text(e.status.as_str().to_owned())),
            ("priority", Field::Int(e.policy.priority.into())),
            ("due_at", Field::time(Some(e.due_at))),
            ("lease_expires_at", Field::time(e.lease_expires_at)),
            ("lease_owner", Field::text(e.lease_owner.as_deref())),
            ("lease_token", Field::text(e.lease_token.as_deref())),
            ("node", Field::text(e.node.as_deref())),
            ("started_at", Field::time(e.started_at)),
            ("finished_at", Field::time(e.finished_at)),
            ("created_at", Field::time(Some(e.created_at))),
            ("expires_at", Field::time(e.expires_at)),
            ("notify_due_at", Field::time(e.notify_due_at)),
            (
                "fire_at",
                Field::time(e.fire_time.filter(|_| e.schedule_id.is_some())),
            ),
            ("fate", Field::text(fate.map(|(f, _)| f.as_str()))),
            ("ckey", Field::text(slot.map(|(key, _)| key))),
            ("climit", slot.map_or(Field::Null, |(_, n)| Field::Int(n))),
            ("rkey", Field::text(rate.map(|(key, ..)| key))),
            (
                "rlimit",
                rate.map_or(Field::Null, |(_, n, _)| Field::Int(n)),
            ),
            (
                "rper",
                rate.map_or(Field::Null, |(.., per)| Field::Int(per)),
            ),
            (
                "fire_reason",
                Field::text(fate.and_then(|(_, r)| r).map(|r| r.as_str())),
            ),
            (
                "waiting_event",
                Field::text(
                    e.waiting
                        .as_ref()
                        .map(|w| w.event.as_str())
                        .filter(|name| !name.is_empty()),
                ),
            ),
            ("version", Field::Int(e.version as i64)),
        ],
    })
}

pub(crate) fn hook_row(h: &taskhost_model::HookRecord) -> Result<Row> {
    Ok(Row {
        id: h.id.clone(),
        doc: json(h)?,
        fields: vec![
            ("tenant", Field::Text(h.tenant.clone())),
            ("version", Field::Int(h.version as i64)),
        ],
    })
}

pub(crate) fn api_key_row(k: &taskhost_model::apikey::ApiKeyRecord) -> Result<Row> {
    Ok(Row {
        id: k.id.clone(),
        doc: json(k)?,
        fields: vec![("tenant", Field::Text(k.tenant.clone()))],
    })
}

pub(crate) fn node_row(n: &NodeInfo) -> Result<Row> {
    Ok(Row {
        id: n.id.clone(),
        doc: json(n)?,
        fields: vec![("expires_at", Field::time(Some(n.expires_at)))],
    })
}
