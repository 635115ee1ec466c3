//! The queue's queries on MongoDB: what a node's heap loads (ids, tenants,
//! priorities and due times, never whole documents), batch inserts, and the
//! change stream that tells nodes of executions queued elsewhere.

use crate::backend::Queued;
use chrono::DateTime;
use mongodb::bson::Document;

/// What a queue keeps of a whole execution document, if it is queued.
pub(super) fn queued_now(d: &Document) -> Option<Queued> {
    if d.get_str("status").ok()? != "queued" {
        return None;
    }
    queued(d, d.get_str("tenant").ok()?)
}

/// What a queue keeps, from a document with `_id`, `priority` and `due_at`.
pub(super) fn queued(d: &Document, tenant: &str) -> Option<Queued> {
    Some(Queued {
        id: d.get_str("_id").ok()?.to_owned(),
        tenant: tenant.to_owned(),
        priority: i32::try_from(d.get_i64("priority").ok()?).ok()?,
        due_at: DateTime::from_timestamp_millis(d.get_i64("due_at").ok()?)?,
    })
}
