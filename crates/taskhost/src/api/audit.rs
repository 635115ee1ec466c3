//! The audit log (see `taskhost_model::audit`): [`record`] writes one record
//! per write request (POST, PUT, PATCH, DELETE) once its answer is made, and
//! `GET /v1/audit` reads them — a tenant's admin its own, the operator all.
//!
//! Who made a request is known only once its token is verified, inside the
//! handler: the middleware puts an empty [`Caller`] slot in the request, and
//! the token's verification (or a hook's) fills it. A request refused before
//! that (no token, a bad one, an unknown hook) is not stored: anyone can
//! send those, so storing them would let anyone fill the store. They are
//! counted (`api_errors_total{code}`) and logged with the request's line.
//! The record is written before the answer is sent, so an acknowledged write
//! always has its record; a failure to write it is logged and counted, and
//! does not fail the request.

use super::auth::{Principal, Scope};
use super::error::{ApiResult, ErrorMark, Json, Query};
use super::{AppState, ErrorBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use taskhost_model::audit::{AuditRecord, RETENTION};
use taskhost_model::time::add_saturating;
use taskhost_store::{Page, PageRequest};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Who a request acted as, once known.
#[derive(Debug, Clone, Default)]
struct Who {
    tenant: String,
    subject: Option<String>,
    token_id: Option<String>,
}

/// The slot a request's caller is written to (see the module docs).
#[derive(Clone, Default)]
pub(super) struct Slot(Arc<Mutex<Who>>);

impl Slot {
    fn set(&self, tenant: &str, subject: &str, token_id: Option<&str>) {
        let mut who = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *who = Who {
            tenant: tenant.to_owned(),
            subject: Some(subject.to_owned()),
            token_id: token_id.map(str::to_owned),
        };
    }
}

/// Notes the caller of the request in `parts`: its verified token.
pub(super) fn caller(parts: &Parts, tenant: &str, subject: &str, token_id: Option<&str>) {
    if let Some(slot) = parts.extensions.get::<Slot>() {
        slot.set(tenant, subject, token_id);
    }
}

/// Notes a hook as the caller of its request.
pub(super) fn hook_caller(slot: &Option<axum::Extension<Slot>>, tenant: &str, subject: &str) {
    if let Some(axum::Extension(slot)) = slot {
        slot.set(tenant, subject, None);
    }
}

/// Records every write request, as it ended.
pub(super) async fn record(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let operation = format!(
        "{} {}",
        req.method(),
        route.as_deref().unwrap_or(req.uri().path())
    );
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let response = next.run(req).await;
    let who = slot.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if who.subject.is_none() {
        return response;
    }
    let now = state.store.now();
    let record = AuditRecord {
        id: taskhost_model::new_id(),
        tenant: who.tenant,
        subject: who.subject,
        token_id: who.token_id,
        operation,
        path,
        request_id,
        client,
        status: response.status().as_u16(),
        error: response
            .extensions()
            .get::<ErrorMark>()
            .map(|m| m.code.as_str().to_owned()),
        at: now,
        expires_at: add_saturating(now, RETENTION),
    };
    if let Err(e) = state.store.audit(&record).await {
        state.node.metrics().store_error("audit");
        tracing::error!(error = %e, operation = %record.operation, "could not write an audit record");
    }
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditParams {
    /// The operator only: one tenant's records; all if unset.
    tenant: Option<String>,
    /// The `next` cursor of the previous page.
    cursor: Option<String>,
    /// Page size: 1 to 1,000 (default 50).
    #[serde(default, deserialize_with = "super::wire::page_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The audit log, newest first: a tenant's admin reads the tenant's
/// records; the operator reads every tenant's (or one's, with `tenant`).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Page<AuditRecord>), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<AuditParams>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    let tenant = match principal.has(Scope::Operator) {
        true => p.tenant,
        false => {
            principal.require(Scope::Admin)?;
            Some(principal.tenant.clone())
        }
    };
    let page = PageRequest {
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(Json(
        state.store.audit_records(tenant.as_deref(), &page).await?,
    ))
}
