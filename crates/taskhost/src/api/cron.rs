//! `GET /v1/cron/preview`: the next fire times of a cron expression in a
//! time zone, in local time and UTC, with the daylight-saving changes marked.
//! The console's schedule form and `taskhost cron next` use it.

use super::error::{ApiError, ApiResult, Json, Query};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::State;
use chrono::{DateTime, Offset, Utc};
use serde::{Deserialize, Serialize};
use taskhost_model::Trigger;
use taskhost_model::error::ErrorCode;
use taskhost_model::trigger;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The most fire times one preview lists.
pub const MAX_PREVIEW: u32 = 100;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(preview))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct PreviewParams {
    /// A cron expression: 5 fields, or 6 with seconds first.
    expr: String,
    /// An IANA time zone (default UTC).
    #[serde(default)]
    timezone: Option<String>,
    /// How many fire times (1-100, default 10).
    #[serde(default)]
    count: Option<u32>,
    /// List the fires after this time (RFC 3339; default now).
    #[serde(default)]
    after: Option<DateTime<Utc>>,
}

/// The next fires of a cron expression.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Preview {
    expr: String,
    timezone: String,
    fires: Vec<Fire>,
}

/// One fire time.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Fire {
    /// The instant, in UTC.
    utc: DateTime<Utc>,
    /// The same instant as the zone's wall clock shows it, with its offset.
    local: String,
    /// The zone's offset from UTC at that instant, e.g. `+01:00`.
    offset: String,
    /// The offset differs from the previous fire's (a daylight-saving change
    /// lies between them).
    offset_changed: bool,
}

/// Preview a cron expression's next fire times in its time zone (local and
/// UTC), marking daylight-saving changes.
#[utoipa::path(get, path = "/v1/cron/preview", tag = "schedules", params(PreviewParams),
    responses((status = 200, body = Preview), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid cron expression or time zone, or count out of range")))]
async fn preview(
    State(state): State<AppState>,
    _principal: Caller<need::SchedulesRead>,
    Query(p): Query<PreviewParams>,
) -> ApiResult<Json<Preview>> {
    let count = p.count.unwrap_or(10);
    if !(1..=MAX_PREVIEW).contains(&count) {
        return Err(ApiError::new(
            ErrorCode::InvalidCount,
            format!("count must be 1-{MAX_PREVIEW}"),
        )
        .with_details(serde_json::json!({ "field": "count" })));
    }
    let timezone = p.timezone.unwrap_or_else(|| "UTC".to_owned());
    let invalid = |e: trigger::TriggerError| {
        ApiError::new(ErrorCode::InvalidTrigger, e.to_string())
            .with_details(serde_json::json!({ "field": "expr" }))
    };
    let cron = Trigger::Cron {
        expr: p.expr.clone(),
        timezone: timezone.clone(),
    };
    trigger::validate(&cron).map_err(invalid)?;
    let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
        invalid(trigger::TriggerError::UnknownTimeZone {
            zone: timezone.clone(),
        })
    })?;
    let mut after = p.after.unwrap_or_else(|| state.store.now());
    let mut previous = after.with_timezone(&zone).offset().fix();
    let mut fires = Vec::new();
    while fires.len() < count as usize {
        let Some(next) = trigger::next_fire(&cron, after, after).map_err(invalid)? else {
            break;
        };
        let local = next.with_timezone(&zone);
        let offset = local.offset().fix();
        fires.push(Fire {
            utc: next,
            local: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            offset: offset.to_string(),
            offset_changed: offset != previous,
        });
        previous = offset;
        after = next;
    }
    Ok(Json(Preview {
        expr: p.expr,
        timezone,
        fires,
    }))
}
