//! `/v1/schedules`: create, list, get, patch, delete, pause, resume, trigger.

use super::auth::Scope;
use super::error::{ApiError, ApiResult, Json, Query};
use super::fires::ScheduleDetail;
use super::scoped::may_use_secrets;
use super::scoped::{Caller, need};
use super::wire::{NewSchedule, SchedulePatch};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use taskhost_model::error::ErrorCode;
use taskhost_model::policy::{self, PolicyContext, PolicyError};
use taskhost_model::quota::{QuotaExceeded, QuotaKind};
use taskhost_model::{Execution, Schedule, new_id};
use taskhost_scheduler::{self, PluginRef, Refusal, Work, first_fire};
use taskhost_store::{Page, PageRequest, ScheduleFilter};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, patch, delete))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(trigger_now))
}

/// Checks what a client may set on a schedule, against the node's caps and
/// network policy and the tenant's shortest allowed period.
fn validate(state: &AppState, s: &Schedule) -> Result<(), PolicyError> {
    let config = state.node.config();
    let quotas = config.quotas.for_tenant(&s.tenant);
    let ctx = PolicyContext {
        tenant: &s.tenant,
        caps: &config.caps,
        network: config.egress.policy(),
    };
    policy::check_schedule(s, &ctx, quotas.min_schedule_period)
}

/// Create a schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = NewSchedule,
    responses((status = 201, body = Schedule), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Json(new): Json<NewSchedule>,
) -> ApiResult<(StatusCode, Json<Schedule>)> {
    may_use_secrets(&principal, &new.policy.secrets)?;
    let quotas = state.node.config().quotas.for_tenant(&principal.tenant);
    let usage = state.store.usage(&principal.tenant).await?;
    QuotaExceeded::check(QuotaKind::Schedules, quotas.schedules, usage.schedules, 1)?;
    let plugin = plugin_ref(new.plugin_id, new.plugin)?;
    let resolved = state
        .node
        .resolve_plugin(&principal.tenant, &plugin)
        .await?
        .ok_or_else(|| ApiError::from(Refusal::UnknownPlugin(plugin.text().to_owned())))?;
    let now = state.store.now();
    let mut policy = new.policy;
    policy.retry.get_or_insert_default();
    let mut schedule = Schedule {
        id: new_id(),
        tenant: principal.tenant.clone(),
        name: new.name,
        plugin_id: resolved.plugin_id,
        plugin_alias: resolved.follows,
        trigger: new.trigger,
        policy,
        overlap: new.overlap,
        catch_up: new.catch_up,
        jitter: new.jitter.unwrap_or_default(),
        paused: new.paused,
        paused_until: None,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        next_fire_at: None,
        last_fire_at: None,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    validate(&state, &schedule)?;
    // Paused or not, the cursor starts now: a paused schedule's fires are
    // recorded (as skipped) from here.
    schedule.next_fire_at = first_fire(&schedule, now)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTrigger, e.to_string()))?;
    state.store.create_schedule(&schedule).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// The plugin a new schedule names: exactly one of an id (pinned) and a
/// reference (`name@version` pinned, `name@latest` or `name@alias` followed).
fn plugin_ref(plugin_id: Option<String>, reference: Option<String>) -> ApiResult<PluginRef> {
    match (plugin_id, reference) {
        (Some(id), None) => Ok(PluginRef::Id(id)),
        (None, Some(reference)) => Ok(PluginRef::Ref(reference)),
        _ => Err(ApiError::new(
            ErrorCode::InvalidPluginRef,
            "give exactly one of plugin_id and plugin (name@version, name@latest or name@alias)",
        )
        .on_field("plugin")),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    plugin_id: Option<String>,
    paused: Option<bool>,
    /// Only the schedules this event fires.
    event: Option<String>,
    cursor: Option<String>,
    /// Page size: 1 to 1,000 (default 50).
    #[serde(default, deserialize_with = "super::wire::page_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List the tenant's schedules, newest first.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", params(ListParams),
    responses((status = 200, body = Page<Schedule>)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesRead>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Schedule>>> {
    let filter = ScheduleFilter {
        plugin_id: p.plugin_id,
        paused: p.paused,
        plugin_alias: None,
        event: p.event,
    };
    let page = PageRequest {
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(Json(
        state
            .store
            .list_schedules(&principal.tenant, &filter, &page)
            .await?,
    ))
}

/// Get a schedule, with its last fire, its next 5 fires and its fires of
/// the last 24 hours by fate.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules",
    responses((status = 200, body = ScheduleDetail), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleDetail>> {
    let schedule = state
        .store
        .get_schedule(&principal.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(Json(super::fires::detail(&state.store, schedule).await?))
}

/// Change a schedule. A new trigger restarts its fires from now.
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules", request_body = SchedulePatch,
    responses((status = 200, body = Schedule), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "another schedule has the new name"), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn patch(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
    Json(patch): Json<SchedulePatch>,
) -> ApiResult<Json<Schedule>> {
    let names = patch.policy.0.get("secrets").and_then(|v| v.as_array());
    if names.is_some_and(|n| !n.is_empty()) {
        principal.require(Scope::SecretsUse)?;
    }
    // A new trigger takes over from now: the old one's due fires get their
    // records first, and the cursor jumps only if none became due since.
    for _ in 0..3 {
        if patch.trigger.is_some()
            && let Some(current) = state.store.get_schedule(&principal.tenant, &id).await?
        {
            state.node.settle(current).await?;
        }
        let now = state.store.now();
        // The patch is applied inside the compare-and-swap, to the schedule as
        // it is then: a pause or an advanced next fire that lands meanwhile is kept.
        let mut refused: Option<PolicyError> = None;
        let mut behind = false;
        let changed = state
            .store
            .modify_schedule(Some(&principal.tenant), &id, |s| {
                let mut updated = match apply(s, &patch) {
                    Ok(updated) => updated,
                    Err(e) => {
                        refused = Some(e);
                        return false;
                    }
                };
                if let Err(e) = validate(&state, &updated) {
                    refused = Some(e);
                    return false;
                }
                if patch.trigger.is_some() {
                    if s.next_fire_at.is_some_and(|t| t <= now) {
                        behind = true;
                        return false;
                    }
                    match first_fire(&updated, now) {
                        Ok(next) => updated.next_fire_at = next,
                        Err(e) => {
                            let e = e.to_string();
                            refused =
                                Some(PolicyError::new(ErrorCode::InvalidTrigger, "trigger", e));
                            return false;
                        }
                    }
                    updated.paused_until = None;
                }
                *s = updated;
                true
            })
            .await?;
        if let Some(e) = refused {
            return Err(e.into());
        }
        if behind {
            continue;
        }
        return changed
            .map(Json)
            .ok_or_else(|| ApiError::not_found("schedule"));
    }
    Err(ApiError::unavailable(
        "the schedule is still recording the fires its old trigger missed (its nodes were down); \
         try again in a minute",
    ))
}

/// The schedule with the patch's fields replaced.
fn apply(s: &Schedule, p: &SchedulePatch) -> Result<Schedule, PolicyError> {
    let mut s = s.clone();
    if let Some(v) = &p.name {
        s.name = v.clone();
    }
    if let Some(v) = &p.trigger {
        s.trigger = v.clone();
    }
    if let Some(v) = p.overlap {
        s.overlap = v;
    }
    if let Some(v) = p.catch_up {
        s.catch_up = v;
    }
    if let Some(v) = p.jitter {
        s.jitter = v;
    }
    s.policy = p.policy.apply(&s.policy).map_err(|e| {
        PolicyError::new(
            ErrorCode::InvalidJson,
            "",
            format!("invalid JSON body: {e}"),
        )
    })?;
    Ok(s)
}

/// Delete a schedule (its executions stay).
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.delete_schedule(&principal.tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("schedule"))
    }
}

/// Pause a schedule: no fires until resumed.
#[utoipa::path(post, path = "/v1/schedules/{id}/pause", tag = "schedules",
    responses((status = 200, body = Schedule), (status = 404, body = ErrorBody)))]
async fn pause(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<Schedule>> {
    let paused = state.node.pause(&principal.tenant, &id).await?;
    paused
        .map(Json)
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// Resume a schedule: it fires from now on (the pause is not caught up; its
/// fires are in the ledger as `skipped: paused`).
#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules",
    responses((status = 200, body = Schedule), (status = 404, body = ErrorBody)))]
async fn resume(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<Schedule>> {
    let resumed = state.node.resume(&principal.tenant, &id).await?;
    resumed
        .map(Json)
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// Run a schedule now, once, besides its trigger. It goes the way of a fire,
/// with the schedule's jitter, so it may start a little later than now.
#[utoipa::path(post, path = "/v1/schedules/{id}/trigger", tag = "schedules",
    responses((status = 202, body = Execution), (status = 404, body = ErrorBody)))]
async fn trigger_now(
    State(state): State<AppState>,
    principal: Caller<need::SchedulesWrite>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    let schedule = state
        .store
        .get_schedule(&principal.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    let work = Work::trigger_now(&schedule, state.store.now());
    let execution = state.node.submit(work).await?;
    Ok((StatusCode::ACCEPTED, Json(execution)))
}
