//! `POST /v1/events`: an event fires every schedule of the tenant whose
//! trigger names it and whose filter its data matches (see
//! [`taskhost_model::event`]); each match is one ledger record.
//!
//! An event's `id` (the client's, or a new one) is its fires' unique key: the
//! same event sent again fires nothing again. `Idempotency-Key` also works
//! here, and answers a retry with the first answer (200).

use super::error::{ApiError, ApiResult, Json};
use super::idempotency::{self, IdempotencyHeader, Keyed};
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskhost_model::error::ErrorCode;
use taskhost_model::event::{self, Event, EventError};
use taskhost_model::{FireRecord, new_id};
use taskhost_scheduler::{Delivered, DeliveryError, EventFire};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send))
        .routes(routes!(send_to_execution))
}

/// An event to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEvent {
    /// Which schedules it is for: those whose event trigger has this name.
    #[schema(pattern = r"^[A-Za-z0-9_.:/-]{1,200}$", example = "github.push")]
    name: String,
    /// Its id (1-255 visible ASCII characters); a new one if unset. An
    /// event with the id of one sent before fires nothing again.
    #[serde(default)]
    #[schema(pattern = r"^[!-~]{1,255}$")]
    id: Option<String>,
    /// Its data: matched against the schedules' filters, and given to
    /// their runs (input `data`).
    #[serde(default)]
    data: Value,
}

/// What an event did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventAccepted {
    pub id: String,
    pub name: String,
    #[serde(with = "taskhost_model::time::utc")]
    pub received_at: DateTime<Utc>,
    /// One per schedule it matched.
    pub fires: Vec<EventMatch>,
    /// The workflow executions it woke: those suspended waiting for it
    /// (`wait-for-event` with its name, its data matching their filter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub woke: Vec<String>,
}

/// What an event did to one schedule.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventMatch {
    pub schedule_id: String,
    /// The fire's ledger record: `ran` (with its execution) or `skipped`
    /// (paused, quota, policy). Unset for a duplicate whose first record
    /// was made by another request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fire: Option<FireRecord>,
    /// The event (its id) had fired this schedule before: nothing new ran.
    pub duplicate: bool,
}

/// Send an event: every schedule whose trigger is this event (and whose
/// filter its data matches) fires once, with the event as the run's input.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = NewEvent,
    params(IdempotencyHeader),
    responses((status = 202, body = EventAccepted, description = "taken: one fire per matching schedule"),
        (status = 200, body = EventAccepted, description = "a retry with the first request's Idempotency-Key: its answer"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "a bad event name or id, or a reused Idempotency-Key")))]
async fn send(
    State(state): State<AppState>,
    principal: Caller<need::EventsWrite>,
    Keyed { body, key }: Keyed<NewEvent>,
) -> ApiResult<(StatusCode, Json<EventAccepted>)> {
    let id = body.id.unwrap_or_else(new_id);
    let mut event = Event {
        id,
        name: body.name,
        tenant: principal.tenant.clone(),
        data: body.data,
        received_at: state.store.now(),
        hook: None,
    };
    checked(&event)?;
    let mut status = StatusCode::ACCEPTED;
    if let Some(key) = &key {
        let ids = vec![
            event.id.clone(),
            event.received_at.timestamp_millis().to_string(),
        ];
        if let Some(first) = idempotency::first_ids(&state, &principal.tenant, key, ids).await? {
            // The first request's event, again: its fires are found, not made.
            if let [id, at] = first.as_slice() {
                event.id = id.clone();
                let at = at.parse().ok().and_then(DateTime::from_timestamp_millis);
                event.received_at = at.unwrap_or(event.received_at);
            }
            status = StatusCode::OK;
        }
    }
    Ok((status, Json(publish(&state, event).await?)))
}

/// What an event sent to one execution did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ExecutionEventAccepted {
    pub id: String,
    /// The execution was suspended waiting for this event: it is due now.
    pub woke: bool,
    /// An event with this id was sent to it before: nothing changed.
    pub duplicate: bool,
}

/// Send an event to one workflow execution: kept until a `wait-for-event`
/// step of it takes it, and waking it at once if it waits for it.
#[utoipa::path(post, path = "/v1/executions/{id}/events", tag = "events", request_body = NewEvent,
    responses((status = 202, body = ExecutionEventAccepted),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the execution has ended, or holds its most events not taken (100, 256 KiB)"),
        (status = 422, body = ErrorBody, description = "a bad event name or id")))]
async fn send_to_execution(
    State(state): State<AppState>,
    principal: Caller<need::EventsWrite>,
    Path(execution): Path<String>,
    Json(body): Json<NewEvent>,
) -> ApiResult<(StatusCode, Json<ExecutionEventAccepted>)> {
    let event = Event {
        id: body.id.unwrap_or_else(new_id),
        name: body.name,
        tenant: principal.tenant.clone(),
        data: body.data,
        received_at: state.store.now(),
        hook: None,
    };
    checked(&event)?;
    let id = event.id.clone();
    let sent = state
        .node
        .send_to_execution(&principal.tenant, &execution, event)
        .await;
    let (woke, duplicate) = match sent {
        Ok(Delivered::Kept { woke }) => (woke, false),
        Ok(Delivered::Duplicate) => (false, true),
        Err(DeliveryError::NotFound) => return Err(ApiError::not_found("execution")),
        Err(DeliveryError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::new(ErrorCode::Conflict, e.to_string())),
    };
    let answer = ExecutionEventAccepted {
        id,
        woke,
        duplicate,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Checks an event's name and id.
pub(super) fn checked(event: &Event) -> Result<(), ApiError> {
    let field = |e: EventError, field: &str| {
        ApiError::new(ErrorCode::InvalidEvent, e.to_string()).on_field(field)
    };
    event::check_name(&event.name).map_err(|e| field(e, "name"))?;
    event::check_id(&event.id).map_err(|e| field(e, "id"))
}

/// Fires the schedules `event` matches, and says what became of each.
pub(super) async fn publish(state: &AppState, event: Event) -> ApiResult<EventAccepted> {
    let fires = state.node.publish(&event).await?;
    let woke = state.node.deliver_to_waiting(&event).await?;
    tracing::info!(tenant = %event.tenant, event = %event.name, id = %event.id,
        matched = fires.len(), woke = woke.len(), "event");
    Ok(EventAccepted {
        id: event.id,
        name: event.name,
        received_at: event.received_at,
        fires: fires.into_iter().map(matched).collect(),
        woke,
    })
}

fn matched(f: EventFire) -> EventMatch {
    EventMatch {
        schedule_id: f.schedule_id,
        fire: f.record.as_ref().and_then(FireRecord::of),
        duplicate: f.duplicate,
    }
}
