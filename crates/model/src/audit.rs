//! The audit log: one record per write request through the API (and so
//! through the console, whose changes are API calls): who, for which tenant,
//! what, when, from where, and how it ended. Request bodies are never
//! recorded, so a secret's value never is.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long an audit record is kept.
pub const RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// One write request, as it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Time-ordered: newer records have greater ids.
    pub id: String,
    /// The tenant it acted for. (Requests refused before their caller is
    /// known — no valid token, an unknown hook — are not recorded; records
    /// of earlier versions may have it empty.)
    pub tenant: String,
    /// The token's subject (`hook:ID` for a hook's request); none without a
    /// valid token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The token's id (`jti`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The method and route, e.g. `POST /v1/schedules/{id}/pause`.
    pub operation: String,
    /// The path as requested, with its resource ids.
    pub path: String,
    /// The request's id (`x-request-id`).
    pub request_id: String,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The answer's HTTP status.
    pub status: u16,
    /// The error code of a refused request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub at: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub expires_at: DateTime<Utc>,
}
