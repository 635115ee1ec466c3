//! `/v1/schedules`: create, list, get, patch, delete, pause, resume, trigger.

use super::auth::{Principal, Scope};
use super::error::{ApiError, ApiResult, Json, Query};
use super::fires::ScheduleDetail;
use super::{AppState, ErrorBody};
use crate::model::{CatchUp, Execution, OverlapPolicy, RetryPolicy, Schedule, Trigger, new_id};
use crate::quota::QuotaExceeded;
use crate::runtime::Limits;
use crate::scheduler::policy::{self, PolicyError};
use crate::scheduler::{self, ExecutionSpec, first_fire};
use crate::store::{Page, PageRequest, ScheduleFilter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
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

/// A new schedule. Only `name`, `trigger` and one of `plugin_id` and
/// `plugin` are required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSchedule {
    name: String,
    /// The plugin (version) to run, by id.
    #[serde(default)]
    plugin_id: Option<String>,
    /// The plugin by reference instead: `name@version` (pinned to that
    /// version), or `name@latest` / `name@ALIAS` (follows the alias: each
    /// fire runs the version it points to then).
    #[serde(default)]
    plugin: Option<String>,
    trigger: Trigger,
    #[serde(default)]
    input: serde_json::Value,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    overlap: OverlapPolicy,
    #[serde(default)]
    catch_up: CatchUp,
    #[serde(default, with = "crate::serde_util::duration")]
    #[schema(value_type = String, example = "0s")]
    jitter: Duration,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Names of the tenant's secrets its runs may read (at most 32).
    #[serde(default)]
    secrets: Vec<String>,
    /// The hosts its plugin may call over HTTP; none if unset.
    #[serde(default)]
    network: Option<crate::net::NetworkGrant>,
    /// Webhooks to call when a run ends (at most 8).
    #[serde(default)]
    notify: Vec<crate::model::NotifyTarget>,
    #[serde(default)]
    paused: bool,
    #[serde(default, with = "crate::serde_util::option_time")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::serde_util::option_time")]
    ends_at: Option<DateTime<Utc>>,
    /// How long its finished executions are kept (default: the node's, 7 days).
    #[serde(default, with = "crate::serde_util::option_duration")]
    #[schema(value_type = Option<String>, example = "7d")]
    retention: Option<Duration>,
}

/// Changes to a schedule: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SchedulePatch {
    name: Option<String>,
    trigger: Option<Trigger>,
    input: Option<serde_json::Value>,
    priority: Option<i32>,
    limits: Option<Limits>,
    retry: Option<RetryPolicy>,
    overlap: Option<OverlapPolicy>,
    catch_up: Option<CatchUp>,
    #[schema(value_type = Option<String>)]
    jitter: Option<String>,
    config: Option<BTreeMap<String, String>>,
    secrets: Option<Vec<String>>,
    /// Replaces the network grant (`{"allow": []}` to remove every host).
    network: Option<crate::net::NetworkGrant>,
    notify: Option<Vec<crate::model::NotifyTarget>>,
    #[serde(default, with = "crate::serde_util::option_duration")]
    #[schema(value_type = Option<String>)]
    retention: Option<Duration>,
}

/// Checks what a client may set on a schedule, against the node's caps and
/// the tenant's shortest allowed period.
fn validate(state: &AppState, s: &Schedule) -> Result<(), PolicyError> {
    let config = state.node.config();
    let quotas = config.quotas.for_tenant(&s.tenant);
    policy::check_schedule(s, &config.caps, quotas.min_schedule_period)?;
    let network = config.egress.policy();
    policy::check_network(&s.tenant, s.network.as_ref(), network)?;
    policy::check_notify(&s.tenant, &s.notify, network)
}

/// Create a schedule.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = NewSchedule,
    responses((status = 201, body = Schedule), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(new): Json<NewSchedule>,
) -> ApiResult<(StatusCode, Json<Schedule>)> {
    principal.require(Scope::SchedulesWrite)?;
    let quotas = state.node.config().quotas.for_tenant(&principal.tenant);
    let usage = state.store.usage(&principal.tenant).await?;
    QuotaExceeded::check("schedules", quotas.schedules, usage.schedules, 1)?;
    let (plugin_id, plugin_alias) =
        resolve_plugin(&state, &principal.tenant, new.plugin_id, new.plugin).await?;
    let now = state.store.now();
    let mut schedule = Schedule {
        id: new_id(),
        tenant: principal.tenant.clone(),
        name: new.name,
        plugin_id,
        plugin_alias,
        trigger: new.trigger,
        input: new.input,
        priority: new.priority,
        limits: new.limits,
        retry: new.retry,
        overlap: new.overlap,
        catch_up: new.catch_up,
        jitter: new.jitter,
        config: new.config,
        secrets: new.secrets,
        network: new.network,
        notify: new.notify,
        paused: new.paused,
        paused_until: None,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        retention: new.retention,
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
        .map_err(|e| ApiError::unprocessable("invalid_trigger", e.to_string()))?;
    state.store.create_schedule(&schedule).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// The plugin a new schedule names: by id (pinned), or by reference
/// (`name@version` pinned, `name@latest` or `name@alias` followed).
async fn resolve_plugin(
    state: &AppState,
    tenant: &str,
    plugin_id: Option<String>,
    reference: Option<String>,
) -> ApiResult<(String, Option<String>)> {
    let unknown = |what: &str| {
        ApiError::unprocessable(
            "unknown_plugin",
            format!("no plugin {what:?} in this tenant"),
        )
    };
    match (plugin_id, reference) {
        (Some(id), None) => match state.store.get_plugin(tenant, &id).await? {
            Some(_) => Ok((id, None)),
            None => Err(unknown(&id)),
        },
        (None, Some(reference)) => match state.store.resolve_plugin(tenant, &reference).await? {
            Some(r) => Ok((r.plugin.id, r.follows)),
            None => Err(unknown(&reference)),
        },
        _ => Err(ApiError::unprocessable(
            "invalid_plugin_ref",
            "give exactly one of plugin_id and plugin (name@version, name@latest or name@alias)",
        )
        .with_details(serde_json::json!({ "field": "plugin" }))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    plugin_id: Option<String>,
    paused: Option<bool>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// List the tenant's schedules, newest first.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", params(ListParams),
    responses((status = 200, body = Page<Schedule>)))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Schedule>>> {
    principal.require(Scope::SchedulesRead)?;
    let filter = ScheduleFilter {
        plugin_id: p.plugin_id,
        paused: p.paused,
        plugin_alias: None,
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
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleDetail>> {
    principal.require(Scope::SchedulesRead)?;
    let schedule = state
        .store
        .get_schedule(&principal.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(Json(super::fires::detail(&state.store, schedule).await?))
}

/// Change a schedule. A new trigger restarts its fires from now.
#[utoipa::path(patch, path = "/v1/schedules/{id}", tag = "schedules", request_body = SchedulePatch,
    responses((status = 200, body = Schedule), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Json(patch): Json<SchedulePatch>,
) -> ApiResult<Json<Schedule>> {
    principal.require(Scope::SchedulesWrite)?;
    let jitter = match &patch.jitter {
        Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("jitter {text:?} is not a duration: {e}"),
            )
        })?),
        None => None,
    };
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
                let mut updated = s.clone();
                apply(&mut updated, &patch, jitter);
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
                            refused = Some(PolicyError::new(
                                "invalid_trigger",
                                "trigger",
                                e.to_string(),
                            ));
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

fn apply(s: &mut Schedule, p: &SchedulePatch, jitter: Option<Duration>) {
    if let Some(v) = &p.name {
        s.name = v.clone();
    }
    if let Some(v) = &p.trigger {
        s.trigger = v.clone();
    }
    if let Some(v) = &p.input {
        s.input = v.clone();
    }
    if let Some(v) = p.priority {
        s.priority = v;
    }
    if let Some(v) = &p.limits {
        s.limits = *v;
    }
    if let Some(v) = &p.retry {
        s.retry = *v;
    }
    if let Some(v) = &p.overlap {
        s.overlap = *v;
    }
    if let Some(v) = &p.catch_up {
        s.catch_up = *v;
    }
    if let Some(v) = jitter {
        s.jitter = v;
    }
    if let Some(v) = p.retention {
        s.retention = Some(v);
    }
    if let Some(v) = &p.secrets {
        s.secrets = v.clone();
    }
    if let Some(v) = &p.network {
        s.network = Some(v.clone());
    }
    if let Some(v) = &p.notify {
        s.notify = v.clone();
    }
    if let Some(v) = &p.config {
        s.config = v.clone();
    }
}

/// Delete a schedule (its executions stay).
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules",
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Scope::SchedulesWrite)?;
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
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Schedule>> {
    principal.require(Scope::SchedulesWrite)?;
    let paused = scheduler::pause(&state.store, &principal.tenant, &id).await?;
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
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Schedule>> {
    principal.require(Scope::SchedulesWrite)?;
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
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    principal.require(Scope::SchedulesWrite)?;
    let schedule = state
        .store
        .get_schedule(&principal.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    let now = state.store.now();
    let plugin_id = match &schedule.plugin_alias {
        None => schedule.plugin_id.clone(),
        Some(alias) => state
            .store
            .resolve_plugin(&principal.tenant, alias)
            .await?
            .map(|r| r.plugin.id)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "unknown_plugin",
                    format!("plugin alias {alias} points to no plugin"),
                )
            })?,
    };
    let execution = state
        .node
        .enqueue(ExecutionSpec::trigger_now(&schedule, &plugin_id, now))
        .await?
        .ok_or_else(|| ApiError::internal("the execution was not created"))?;
    Ok((StatusCode::ACCEPTED, Json(execution)))
}
