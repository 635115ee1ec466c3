//! `/v1/schedules/{id}/fires` and `/backfill`: a schedule's fire ledger, and
//! runs of its past fires.
//!
//! Every fire time a schedule's trigger produced has one record: `ran`,
//! `caught_up`, `backfilled`, `skipped` (with a reason) or `missed` (see
//! [`taskhost_model::FireRecord`]). A backfill runs the fires of a past window
//! that have not run, once: repeating it creates nothing.

use super::error::{ApiError, ApiResult, Json, Query};
use super::scoped::{Caller, need};
use super::wire::BackfillRequest;
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taskhost_model::error::ErrorCode;
use taskhost_model::trigger;
use taskhost_model::{FireCounts, FireFate, FireRecord, Schedule, Trigger};
use taskhost_scheduler::{BackfillError, BackfillReport};
use taskhost_store::{FireFilter, Page, PageRequest, Store, StoreError};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fires))
        .routes(routes!(backfill))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct FireParams {
    /// Fires at or after this time.
    since: Option<DateTime<Utc>>,
    /// Fires before this time.
    until: Option<DateTime<Utc>>,
    /// Only fires with this fate.
    fate: Option<FireFate>,
    /// The `next` cursor of the previous page.
    cursor: Option<String>,
    /// Page size: 1 to 1,000 (default 50).
    #[serde(default, deserialize_with = "super::wire::page_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A schedule's fire ledger, newest fire first: one record per fire time,
/// with its fate (and the execution, for fires that ran).
#[utoipa::path(get, path = "/v1/schedules/{id}/fires", tag = "schedules", params(FireParams),
    responses((status = 200, body = Page<FireRecord>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn fires(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesRead>,
    Path(id): Path<String>,
    Query(p): Query<FireParams>,
) -> ApiResult<Json<Page<FireRecord>>> {
    let schedule = owned(&state.store, &principal.tenant, &id).await?;
    if let Some(cursor) = &p.cursor
        && cursor.parse::<i64>().is_err()
    {
        return Err(ApiError::new(
            ErrorCode::InvalidCursor,
            "cursor must be the `next` of a previous page",
        ));
    }
    let filter = FireFilter {
        since: p.since,
        until: p.until,
        fate: p.fate,
        at: Vec::new(),
    };
    let page = PageRequest {
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(Json(
        state
            .store
            .list_fires(&principal.tenant, &schedule.id, &filter, &page)
            .await?,
    ))
}

/// Run the fires of a past window that have not run (at most 1,000 fires),
/// in fire order at the schedule's priority. Fires that ran are left alone,
/// so repeating a backfill creates nothing; fires recorded as skipped or
/// missed run, and their record becomes `backfilled`.
#[utoipa::path(post, path = "/v1/schedules/{id}/backfill", tag = "schedules",
    request_body = BackfillRequest,
    responses((status = 202, body = BackfillReport), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
async fn backfill(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
    Json(request): Json<BackfillRequest>,
) -> ApiResult<(StatusCode, Json<BackfillReport>)> {
    if let Some(overlap) = request.overlap.as_deref()
        && overlap != "allow"
    {
        let message = format!("overlap {overlap:?} is not supported for a backfill; use \"allow\"");
        return Err(ApiError::new(ErrorCode::InvalidOverlap, message).on_field("overlap"));
    }
    let schedule = owned(&state.store, &principal.tenant, &id).await?;
    let report = state
        .node
        .backfill(&schedule, request.from, request.to)
        .await
        .map_err(|e| match e {
            BackfillError::InvalidWindow => ApiError::new(ErrorCode::InvalidWindow, e.to_string()),
            BackfillError::TooLarge { max } => {
                ApiError::new(ErrorCode::BackfillTooLarge, e.to_string())
                    .with_details(serde_json::json!({ "max": max }))
            }
            BackfillError::Trigger(e) => ApiError::new(ErrorCode::InvalidTrigger, e.to_string()),
            BackfillError::Intake(e) => e.into(),
        })?;
    Ok((StatusCode::ACCEPTED, Json(report)))
}

async fn owned(store: &Store, tenant: &str, id: &str) -> ApiResult<Schedule> {
    store
        .get_schedule(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// A schedule with what its ledger says.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ScheduleDetail {
    #[serde(flatten)]
    schedule: Schedule,
    fires: FireSummary,
}

/// A schedule's recent and coming fires.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FireSummary {
    /// Its latest fire's record.
    last: Option<FireRecord>,
    /// Its next 5 fires (none while paused or ended).
    next: Vec<UpcomingFire>,
    /// Its fires of the last 24 hours, by fate and reason.
    last_24h: FireCounts,
}

/// A coming fire, in UTC and in the trigger's time zone.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UpcomingFire {
    #[serde(with = "taskhost_model::time::utc")]
    utc: DateTime<Utc>,
    /// Local time in the trigger's zone (UTC for intervals), RFC 3339.
    local: String,
}

pub(super) async fn detail(
    store: &Store,
    schedule: Schedule,
) -> Result<ScheduleDetail, StoreError> {
    let now = store.now();
    let last = store
        .list_fires(
            &schedule.tenant,
            &schedule.id,
            &FireFilter::default(),
            &PageRequest {
                cursor: None,
                limit: Some(1),
            },
        )
        .await?
        .items
        .into_iter()
        .next();
    let last_24h = store
        .fire_counts(&schedule.id, now - chrono::Duration::hours(24))
        .await?;
    Ok(ScheduleDetail {
        fires: FireSummary {
            last,
            next: upcoming(&schedule, 5),
            last_24h,
        },
        schedule,
    })
}

fn upcoming(s: &Schedule, n: usize) -> Vec<UpcomingFire> {
    let Some(next) = s.next_fire_at.filter(|_| !s.paused) else {
        return Vec::new();
    };
    let until = s.ends_at.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let after = next - chrono::Duration::milliseconds(1);
    let fires =
        trigger::fires_between(&s.trigger, s.created_at, after, until, n).unwrap_or_default();
    let zone: chrono_tz::Tz = match &s.trigger {
        Trigger::Cron { timezone, .. } => timezone.parse().unwrap_or(chrono_tz::UTC),
        _ => chrono_tz::UTC,
    };
    fires
        .into_iter()
        .map(|utc| {
            let local = utc.with_timezone(&zone);
            UpcomingFire {
                utc,
                local: local.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            }
        })
        .collect()
}
