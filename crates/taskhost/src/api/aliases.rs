//! `/v1/plugins/{id}/aliases`: plugin version aliases.
//!
//! `name@alias` names the version an alias points to; schedules that follow
//! it (`"plugin": "name@stable"`) run that version from their next fire after
//! it moves. `name@latest` is every name's newest upload and is not stored.
//! The path's `{id}` is the plugin's *name* here (the router allows one
//! parameter name per path position, and `/v1/plugins/{id}` exists).

use super::error::{ApiError, ApiResult, Json};
use super::plugins::check_label;
use super::scoped::{Caller, need};
use super::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use taskhost_model::PluginAlias;
use taskhost_model::error::ErrorCode;
use taskhost_store::AliasMove;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(move_alias, delete_alias))
        .routes(routes!(list_aliases))
}

/// Where an alias should point.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AliasTarget {
    /// A version of the plugin, e.g. `1.2.0`.
    version: String,
}

/// Create or move an alias (roll forward or back): every schedule following
/// `name@alias` runs this version from its next fire; runs already made keep
/// theirs.
#[utoipa::path(post, path = "/v1/plugins/{id}/aliases/{alias}", tag = "plugins",
    params(("id" = String, Path, description = "the plugin's name"),
           ("alias" = String, Path, description = "the alias, e.g. stable")),
    request_body = AliasTarget,
    responses((status = 200, body = PluginAlias), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn move_alias(
    State(state): State<AppState>,
    principal: Caller<need::PluginsWrite>,
    Path((name, alias)): Path<(String, String)>,
    Json(target): Json<AliasTarget>,
) -> ApiResult<Json<PluginAlias>> {
    let name = check_label("name", Some(&name))?;
    let alias = check_label("alias", Some(&alias))?;
    let version = check_label("version", Some(&target.version))?;
    let moved = state
        .store
        .move_alias(
            &principal.tenant,
            &name,
            &alias,
            &version,
            &principal.subject,
        )
        .await?;
    match moved {
        AliasMove::Moved(a) => {
            tracing::info!(tenant = %a.tenant, alias = %format!("{}@{}", a.name, a.alias), plugin = %a.plugin_id, by = %a.updated_by, "plugin alias moved");
            Ok(Json(a))
        }
        AliasMove::NoSuchVersion => Err(ApiError::not_found(format!(
            "plugin {name} version {version}"
        ))),
        AliasMove::Refused(why) => Err(ApiError::new(ErrorCode::AliasReserved, why)),
    }
}

/// Remove an alias; refused (409) while a schedule follows it.
#[utoipa::path(delete, path = "/v1/plugins/{id}/aliases/{alias}", tag = "plugins",
    params(("id" = String, Path, description = "the plugin's name"),
           ("alias" = String, Path, description = "the alias")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn delete_alias(
    State(state): State<AppState>,
    principal: Caller<need::PluginsWrite>,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let name = check_label("name", Some(&name))?;
    let alias = check_label("alias", Some(&alias))?;
    if state
        .store
        .delete_alias(&principal.tenant, &name, &alias)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("alias {name}@{alias}")))
    }
}

/// List a plugin name's aliases (`latest` is implicit and not listed).
#[utoipa::path(get, path = "/v1/plugins/{id}/aliases", tag = "plugins",
    params(("id" = String, Path, description = "the plugin's name")),
    responses((status = 200, body = Vec<PluginAlias>), (status = 400, body = ErrorBody)))]
async fn list_aliases(
    State(state): State<AppState>,
    principal: Caller<need::PluginsRead>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<PluginAlias>>> {
    let name = check_label("name", Some(&name))?;
    Ok(Json(
        state.store.list_aliases(&principal.tenant, &name).await?,
    ))
}
