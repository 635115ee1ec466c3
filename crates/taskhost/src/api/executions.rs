//! `/v1/executions`: submit ad hoc (optionally waiting for the result), list
//! with filters, get, cancel, re-run.

use super::auth::Scope;
use super::error::{ApiError, ApiResult, Json, Query};
use super::idempotency::{self, IdempotencyHeader, Keyed};
use super::scoped::{Caller, may_use_secrets, need};
use super::wire::{BatchAccepted, NewExecution, NewExecutions};
use super::{AppState, ErrorBody};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;
use taskhost_model::error::ErrorCode;
use taskhost_model::{Execution, ExecutionStatus, RetryPolicy, RunPolicy};
use taskhost_scheduler::{Admission, Decision, IntakeError, Work};
use taskhost_store::{ExecutionFilter, Page, PageRequest};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most runs in one batch.
pub const MAX_BATCH_RUNS: usize = 1000;

pub(super) fn routes(max_batch_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_batch))
        .layer(DefaultBodyLimit::max(max_batch_bytes))
        .routes(routes!(submit, list))
        .routes(routes!(get))
        .routes(routes!(cancel))
        .routes(routes!(rerun))
}

/// Submit up to 1,000 ad hoc executions in one request and one store
/// transaction. All or none: if any run is refused, none is queued, and the
/// 422 answer lists each refused run (`details.errors`: `index`, `code`,
/// `message`). The body may be up to 16 times the usual JSON limit.
#[utoipa::path(post, path = "/v1/executions/batch", tag = "executions", request_body = NewExecutions,
    params(IdempotencyHeader),
    responses((status = 202, body = BatchAccepted, description = "all queued"),
        (status = 200, body = BatchAccepted, description = "a retry with the first request's Idempotency-Key: its answer"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "refused runs (none was queued) or a bad batch size"),
        (status = 429, body = ErrorBody, description = "over the queued-executions quota or the request rate")))]
async fn submit_batch(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsWrite>,
    Keyed { body: batch, key }: Keyed<NewExecutions>,
) -> ApiResult<(StatusCode, Json<BatchAccepted>)> {
    if batch.runs.is_empty() || batch.runs.len() > MAX_BATCH_RUNS {
        let n = batch.runs.len();
        let message = format!("a batch holds 1 to {MAX_BATCH_RUNS} runs; this one has {n}");
        return Err(ApiError::new(ErrorCode::InvalidBatch, message).on_field("runs"));
    }
    let waits = batch
        .runs
        .iter()
        .enumerate()
        .filter(|(_, run)| run.wait.is_some());
    let refused: Vec<_> = waits
        .map(|(index, _)| {
            let why = ApiError::new(ErrorCode::InvalidWait, "a run in a batch cannot wait");
            item_error(index, why.on_field("wait"))
        })
        .collect();
    if !refused.is_empty() {
        return Err(refused_batch(refused));
    }
    for run in &batch.runs {
        may_use_secrets(&principal, &run.policy.secrets)?;
    }
    let mut work: Vec<Work> = batch
        .runs
        .into_iter()
        .map(|run| ad_hoc(&principal.tenant, run.plugin_id, run.policy))
        .collect();
    if let Some(key) = &key {
        let ids = work.iter().map(|w| w.id.clone()).collect();
        if let Some(ids) = idempotency::first_ids(&state, &principal.tenant, key, ids).await? {
            for (w, id) in work.iter_mut().zip(&ids) {
                w.id = id.clone();
            }
            idempotency::replayed(&state, &principal.tenant, work).await?;
            return Ok((StatusCode::OK, Json(BatchAccepted { ids })));
        }
    }
    match state.node.intake(work, Admission::Submit).await {
        Ok(decided) => {
            let ids = decided.into_iter().filter_map(Decision::run).map(|e| e.id);
            Ok((
                StatusCode::ACCEPTED,
                Json(BatchAccepted { ids: ids.collect() }),
            ))
        }
        Err(IntakeError::Refused(refused)) => Err(refused_batch(
            refused
                .into_iter()
                .map(|(index, refusal)| item_error(index, refusal.into()))
                .collect(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// An ad hoc run's work: a single attempt unless it asks for more.
fn ad_hoc(tenant: &str, plugin_id: String, policy: RunPolicy) -> Work {
    let mut work = Work::ad_hoc(tenant, &plugin_id);
    let retry = policy.retry.unwrap_or(RetryPolicy::ONCE);
    work.policy = RunPolicy {
        retry: Some(retry),
        ..policy
    };
    work
}

/// One refused run of a batch, for `details.errors`.
fn item_error(index: usize, e: ApiError) -> serde_json::Value {
    let mut item = serde_json::json!({ "index": index, "code": e.code, "message": e.message });
    if !e.details.is_null() {
        item["details"] = e.details;
    }
    item
}

fn refused_batch(errors: Vec<serde_json::Value>) -> ApiError {
    let first = errors
        .first()
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    ApiError::new(
        ErrorCode::InvalidBatch,
        format!(
            "{} of the runs were refused and none was queued; the first: {first}",
            errors.len()
        ),
    )
    .with_details(serde_json::json!({ "errors": errors }))
}

/// Submit an ad hoc execution. With `wait`, the response comes when it
/// finishes (200) or when the wait is over (202, still queued or running).
#[utoipa::path(post, path = "/v1/executions", tag = "executions", request_body = NewExecution,
    params(IdempotencyHeader),
    responses((status = 200, body = Execution, description = "finished within `wait`, or a retry with the first request's Idempotency-Key (the execution as it is now)"),
        (status = 202, body = Execution, description = "queued (or still running after `wait`)"),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "over the queued-executions quota or the request rate")))]
async fn submit(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsWrite>,
    Keyed { body: new, key }: Keyed<NewExecution>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    let max_wait = state
        .limits
        .request_timeout
        .saturating_sub(Duration::from_secs(1));
    if new.wait.is_some_and(|wait| wait > max_wait) {
        let message = format!(
            "wait may be at most {}",
            taskhost_model::time::human(max_wait)
        );
        return Err(ApiError::new(ErrorCode::InvalidWait, message).on_field("wait"));
    }
    may_use_secrets(&principal, &new.policy.secrets)?;
    let mut work = ad_hoc(&principal.tenant, new.plugin_id, new.policy);
    if let Some(key) = &key {
        let ids = vec![work.id.clone()];
        let first = idempotency::first_ids(&state, &principal.tenant, key, ids).await?;
        if let Some(id) = first.and_then(|ids| ids.into_iter().next()) {
            work.id = id;
            let execution = idempotency::replayed(&state, &principal.tenant, vec![work]).await?;
            return Ok((StatusCode::OK, Json(execution)));
        }
    }
    // Watched before it is made, so its end on this node cannot be missed.
    let watch = new.wait.map(|_| state.node.watch(&work.id));
    let execution = state.node.submit(work).await?;
    match (new.wait, watch) {
        (Some(wait), Some(watch)) => {
            waited(&state, &principal.tenant, execution, wait, watch).await
        }
        _ => Ok((StatusCode::ACCEPTED, Json(execution))),
    }
}

/// Waits up to `wait` for an execution to end: told at once when it ends
/// on this node, else read from the store every [`WAIT_POLL`]. 200 with
/// the ended execution, or 202 with it as it is when the wait is over.
async fn waited(
    state: &AppState,
    tenant: &str,
    execution: Execution,
    wait: Duration,
    mut watch: taskhost_scheduler::Watch,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut current = execution;
    loop {
        if current.status.is_final() {
            return Ok((StatusCode::OK, Json(current)));
        }
        let nap = WAIT_POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        tokio::select! {
            ended = watch.ended() => match ended {
                Some(ended) => return Ok((StatusCode::OK, Json(ended))),
                // Watched no more: it ends elsewhere; the store will say.
                None => tokio::time::sleep(nap).await,
            },
            () = tokio::time::sleep(nap) => {}
        }
        current = state
            .store
            .get_execution(tenant, &current.id)
            .await?
            .ok_or_else(|| ApiError::not_found("execution"))?;
        if tokio::time::Instant::now() >= deadline && !current.status.is_final() {
            return Ok((StatusCode::ACCEPTED, Json(current)));
        }
    }
}

/// How often a waiting request reads the store, for a run that may end on
/// another node (one that ends on this one is told at once).
const WAIT_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    schedule_id: Option<String>,
    plugin_id: Option<String>,
    /// queued, running, succeeded, failed, cancelled, dead or skipped.
    #[param(value_type = Option<String>)]
    status: Option<ExecutionStatus>,
    /// Created at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    until: Option<DateTime<Utc>>,
    cursor: Option<String>,
    /// Page size: 1 to 1,000 (default 50).
    #[serde(default, deserialize_with = "super::wire::page_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List the tenant's executions, newest first. A workflow's steps show
/// their names, kinds, times and sizes; get one execution for their results.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ListParams),
    responses((status = 200, body = Page<Execution>)))]
async fn list(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsRead>,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Execution>>> {
    let filter = ExecutionFilter {
        schedule_id: p.schedule_id,
        plugin_id: p.plugin_id,
        status: p.status,
        since: p.since,
        until: p.until,
        waiting_for: None,
    };
    let page = PageRequest {
        cursor: p.cursor,
        limit: p.limit,
    };
    let mut page = state
        .store
        .list_executions(&principal.tenant, &filter, &page)
        .await?;
    page.items = page
        .items
        .into_iter()
        .map(Execution::without_step_results)
        .collect();
    Ok(Json(page))
}

/// Get an execution: status, output, error, logs and metrics of its last attempt.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    responses((status = 200, body = Execution), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<Execution>> {
    state
        .store
        .get_execution(&principal.tenant, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("execution"))
}

/// Cancel a queued or running execution.
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions",
    responses((status = 200, body = Execution), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsWrite>,
    Path(id): Path<String>,
) -> ApiResult<Json<Execution>> {
    if let Some(cancelled) = state.node.cancel(&principal.tenant, &id).await? {
        return Ok(Json(cancelled));
    }
    match state.store.get_execution(&principal.tenant, &id).await? {
        Some(e) => Err(ApiError::new(
            ErrorCode::AlreadyFinished,
            format!("the execution already ended: {}", e.status.as_str()),
        )),
        None => Err(ApiError::not_found("execution")),
    }
}

/// Run a finished execution again, as a new execution.
#[utoipa::path(post, path = "/v1/executions/{id}/rerun", tag = "executions",
    responses((status = 202, body = Execution), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rerun(
    State(state): State<AppState>,
    principal: Caller<need::ExecutionsWrite>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    if !principal.has(Scope::SecretsUse)
        && let Some(old) = state.store.get_execution(&principal.tenant, &id).await?
    {
        may_use_secrets(&principal, &old.policy.secrets)?;
    }
    if let Some(new) = state.node.rerun(&principal.tenant, &id).await? {
        return Ok((StatusCode::ACCEPTED, Json(new)));
    }
    match state.store.get_execution(&principal.tenant, &id).await? {
        Some(_) => Err(ApiError::new(
            ErrorCode::NotFinished,
            "only a finished execution can be re-run",
        )),
        None => Err(ApiError::not_found("execution")),
    }
}
