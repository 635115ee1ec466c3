//! `/v1/executions`: submit ad hoc (optionally waiting for the result), list
//! with filters, get, cancel, re-run.

use super::auth::{Principal, Scope};
use super::error::{ApiError, ApiResult, Json, Query};
use super::{AppState, ErrorBody};
use crate::model::{Execution, ExecutionStatus, RetryPolicy};
use crate::runtime::Limits;
use crate::scheduler::{BatchError, ExecutionSpec};
use crate::store::{ExecutionFilter, Page, PageRequest};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
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

/// An ad hoc run of a plugin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewExecution {
    plugin_id: String,
    #[serde(default)]
    input: serde_json::Value,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Names of the tenant's secrets the run may read (at most 32).
    #[serde(default)]
    secrets: Vec<String>,
    /// The hosts the plugin may call over HTTP; none if unset.
    #[serde(default)]
    network: Option<crate::net::NetworkGrant>,
    /// Webhooks to call when the run ends (at most 8).
    #[serde(default)]
    notify: Vec<crate::model::NotifyTarget>,
    /// -100 to 100; higher runs first.
    #[serde(default)]
    priority: i32,
    /// Defaults to a single attempt.
    retry: Option<RetryPolicy>,
    /// How long it is kept once finished (default: the node's, 7 days).
    #[serde(default, with = "crate::serde_util::option_duration")]
    #[schema(value_type = Option<String>, example = "7d")]
    retention: Option<Duration>,
    /// Wait up to this long (e.g. "10s") for the run to finish and return it.
    #[schema(value_type = Option<String>, example = "10s")]
    wait: Option<String>,
}

/// Many ad hoc runs, queued together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewExecutions {
    /// 1 to 1,000 runs, each as for `POST /v1/executions` (without `wait`).
    #[schema(min_items = 1, max_items = 1000)]
    runs: Vec<NewExecution>,
}

/// The runs of a batch, queued.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(super) struct BatchAccepted {
    /// The executions' ids, in the order of the runs.
    ids: Vec<String>,
}

/// Submit up to 1,000 ad hoc executions in one request and one store
/// transaction. All or none: if any run is refused, none is queued, and the
/// 422 answer lists each refused run (`details.errors`: `index`, `code`,
/// `message`). The body may be up to 16 times the usual JSON limit.
#[utoipa::path(post, path = "/v1/executions/batch", tag = "executions", request_body = NewExecutions,
    responses((status = 202, body = BatchAccepted, description = "all queued"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "refused runs (none was queued) or a bad batch size"),
        (status = 429, body = ErrorBody, description = "over the queued-executions quota or the request rate")))]
async fn submit_batch(
    State(state): State<AppState>,
    principal: Principal,
    Json(batch): Json<NewExecutions>,
) -> ApiResult<(StatusCode, Json<BatchAccepted>)> {
    principal.require(Scope::ExecutionsWrite)?;
    if batch.runs.is_empty() || batch.runs.len() > MAX_BATCH_RUNS {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!(
                "a batch holds 1 to {MAX_BATCH_RUNS} runs; this one has {}",
                batch.runs.len()
            ),
        )
        .with_details(serde_json::json!({ "field": "runs" })));
    }
    let mut refused = Vec::new();
    let mut specs = Vec::with_capacity(batch.runs.len());
    for (index, run) in batch.runs.into_iter().enumerate() {
        if run.wait.is_some() {
            refused.push(item_error(
                index,
                ApiError::unprocessable("invalid_wait", "a run in a batch cannot wait")
                    .with_details(serde_json::json!({ "field": "wait" })),
            ));
        }
        specs.push(run.into_spec(&principal.tenant));
    }
    if !refused.is_empty() {
        return Err(refused_batch(refused));
    }
    match state.node.enqueue_many(specs).await {
        Ok(executions) => Ok((
            StatusCode::ACCEPTED,
            Json(BatchAccepted {
                ids: executions.into_iter().map(|e| e.id).collect(),
            }),
        )),
        Err(BatchError::Refused(errors)) => Err(refused_batch(
            errors
                .into_iter()
                .map(|(index, e)| item_error(index, e.into()))
                .collect(),
        )),
        Err(BatchError::Failed(e)) => Err(e.into()),
    }
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
    ApiError::unprocessable(
        "invalid_batch",
        format!(
            "{} of the runs were refused and none was queued; the first: {first}",
            errors.len()
        ),
    )
    .with_details(serde_json::json!({ "errors": errors }))
}

impl NewExecution {
    fn into_spec(self, tenant: &str) -> ExecutionSpec {
        let mut spec = ExecutionSpec::ad_hoc(tenant, &self.plugin_id);
        spec.input = self.input;
        spec.limits = self.limits;
        spec.config = self.config;
        spec.secrets = self.secrets;
        spec.network = self.network;
        spec.notify = self.notify;
        spec.priority = self.priority;
        spec.retry = self.retry.unwrap_or(RetryPolicy::ONCE);
        spec.retention = self.retention;
        spec
    }
}

/// Submit an ad hoc execution. With `wait`, the response comes when it
/// finishes (200) or when the wait is over (202, still queued or running).
#[utoipa::path(post, path = "/v1/executions", tag = "executions", request_body = NewExecution,
    responses((status = 200, body = Execution, description = "finished within `wait`"),
        (status = 202, body = Execution, description = "queued (or still running after `wait`)"),
        (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "over the queued-executions quota or the request rate")))]
async fn submit(
    State(state): State<AppState>,
    principal: Principal,
    Json(new): Json<NewExecution>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    principal.require(Scope::ExecutionsWrite)?;
    let wait = match &new.wait {
        Some(text) => {
            let wait = humantime::parse_duration(text).map_err(|e| {
                ApiError::bad_request(
                    "invalid_json",
                    format!("wait {text:?} is not a duration: {e}"),
                )
            })?;
            let max = state
                .limits
                .request_timeout
                .saturating_sub(Duration::from_secs(1));
            if wait > max {
                let max = humantime::format_duration(max);
                return Err(ApiError::unprocessable(
                    "invalid_wait",
                    format!("wait may be at most {max}"),
                )
                .with_details(serde_json::json!({ "field": "wait" })));
            }
            Some(wait)
        }
        None => None,
    };
    let spec = new.into_spec(&principal.tenant);
    let execution = state
        .node
        .enqueue(spec)
        .await?
        .ok_or_else(|| ApiError::internal("the execution was not created"))?;
    let Some(wait) = wait else {
        return Ok((StatusCode::ACCEPTED, Json(execution)));
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = state
            .store
            .get_execution(&principal.tenant, &execution.id)
            .await?;
        let current = current.ok_or_else(|| ApiError::not_found("execution"))?;
        if current.status.is_final() {
            return Ok((StatusCode::OK, Json(current)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::ACCEPTED, Json(current)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    schedule_id: Option<String>,
    plugin_id: Option<String>,
    #[param(value_type = Option<String>)]
    status: Option<ExecutionStatus>,
    /// Created at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    until: Option<DateTime<Utc>>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// List the tenant's executions, newest first.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ListParams),
    responses((status = 200, body = Page<Execution>)))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> ApiResult<Json<Page<Execution>>> {
    principal.require(Scope::ExecutionsRead)?;
    let filter = ExecutionFilter {
        schedule_id: p.schedule_id,
        plugin_id: p.plugin_id,
        status: p.status,
        since: p.since,
        until: p.until,
    };
    let page = PageRequest {
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(Json(
        state
            .store
            .list_executions(&principal.tenant, &filter, &page)
            .await?,
    ))
}

/// Get an execution: status, output, error, logs and metrics of its last attempt.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    responses((status = 200, body = Execution), (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Execution>> {
    principal.require(Scope::ExecutionsRead)?;
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
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Execution>> {
    principal.require(Scope::ExecutionsWrite)?;
    if let Some(cancelled) = state.store.cancel(&principal.tenant, &id).await? {
        return Ok(Json(cancelled));
    }
    match state.store.get_execution(&principal.tenant, &id).await? {
        Some(e) => Err(ApiError::conflict(
            "already_finished",
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
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    principal.require(Scope::ExecutionsWrite)?;
    if let Some(new) = state.node.rerun(&principal.tenant, &id).await? {
        return Ok((StatusCode::ACCEPTED, Json(new)));
    }
    match state.store.get_execution(&principal.tenant, &id).await? {
        Some(_) => Err(ApiError::conflict(
            "not_finished",
            "only a finished execution can be re-run",
        )),
        None => Err(ApiError::not_found("execution")),
    }
}
