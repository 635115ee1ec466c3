//! The console's pages. Each reads the store for the signed-in tenant and
//! renders HTML; buttons and forms carry the API call the script makes
//! (`data-action`, `data-method`), shown only when the token has the scope.

// A page's error is the response to send (a redirect, a 403 page), as axum
// handlers return; its size does not matter on this path.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::{self, Series, button, time, url};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use std::collections::HashMap;
use taskhost_model::{Execution, ExecutionStatus, Schedule, Trigger};
use taskhost_store::{ExecutionFilter, PageRequest, PluginFilter, ScheduleFilter};

pub(super) type Page = Result<Html<String>, Response>;

pub(super) fn page(user: &User, title: &str, body: Markup) -> Page {
    Ok(Html(
        html::document(title, Some(&user.0.tenant), body).into_string(),
    ))
}

pub(super) fn failed(e: impl std::fmt::Display) -> Response {
    let body = html::error_main(Some("Something failed"), &e.to_string());
    let page = html::document("Error", None, body).into_string();
    (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response()
}

pub(super) fn forbidden(user: &User, scope: Scope) -> Result<(), Response> {
    user.0.require(scope).map_err(|e| {
        let body = html::error_main(None, &e.message);
        let page = html::document("Forbidden", Some(&user.0.tenant), body).into_string();
        (StatusCode::FORBIDDEN, Html(page)).into_response()
    })
}

/// The overview: the last hour's runs per minute by status, queue depth,
/// runs in flight, schedule-to-start latency and failure rate.
pub(super) async fn overview(user: User, State(state): State<AppState>) -> Page {
    forbidden(&user, Scope::ExecutionsRead)?;
    let tenant = &user.0.tenant;
    let now = state.store.now();
    let recent = last_hour(&state, tenant, now).await?;
    let queued = state.store.queued_count(tenant).await.map_err(failed)?;
    let running = recent
        .iter()
        .filter(|e| e.status == ExecutionStatus::Running)
        .count();
    const MINUTES: usize = 60;
    let mut series = [
        ("succeeded", "ok"),
        ("failed", "bad"),
        ("cancelled", "off"),
        ("running or queued", "live"),
    ]
    .map(|(name, class)| Series {
        name,
        class,
        counts: vec![0; MINUTES],
    });
    let mut latencies = Vec::new();
    let (mut finished, mut failures) = (0u32, 0u32);
    for e in &recent {
        let at = e.finished_at.unwrap_or(e.created_at);
        let ago = (now - at).num_minutes();
        let slot = MINUTES as i64 - 1 - ago;
        let kind = match e.status {
            ExecutionStatus::Succeeded => 0,
            ExecutionStatus::Failed | ExecutionStatus::Dead => 1,
            ExecutionStatus::Cancelled => 2,
            _ => 3,
        };
        if let Ok(slot) = usize::try_from(slot)
            && slot < MINUTES
        {
            series[kind].counts[slot] += 1;
        }
        if kind < 2 {
            finished += 1;
            failures += u32::from(kind == 1);
        }
        if let Some(started) = e.started_at {
            latencies.push((started - e.due_at).num_milliseconds().max(0));
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> String {
        if latencies.is_empty() {
            return "—".into();
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        format!("{} ms", latencies[i])
    };
    let rate = if finished == 0 {
        "—".to_owned()
    } else {
        format!("{:.1} %", f64::from(failures) * 100.0 / f64::from(finished))
    };
    let body = html! {
        main data-live="3000" {
            h1 { "Overview" }
            dl class="stats" {
                div { dt { "Queued now" } dd id="queued" { (queued) } }
                div { dt { "Running" } dd id="running" { (running) } }
                div { dt { "Start latency p50 / p99" } dd { (pct(0.5)) " / " (pct(0.99)) } }
                div { dt { "Failure rate (last hour)" } dd { (rate) } }
            }
            h2 { "Runs per minute, last hour" }
            (html::chart(&series, MINUTES))
        }
    };
    page(&user, "Overview", body)
}

/// The tenant's executions of the last hour (at most 5,000).
async fn last_hour(
    state: &AppState,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Execution>, Response> {
    let filter = ExecutionFilter {
        since: Some(now - chrono::Duration::hours(1)),
        ..ExecutionFilter::default()
    };
    let mut recent = Vec::new();
    let mut cursor = None;
    for _ in 0..5 {
        let request = PageRequest {
            cursor: cursor.take(),
            limit: Some(1000),
        };
        let page = state
            .store
            .list_executions(tenant, &filter, &request)
            .await
            .map_err(failed)?;
        recent.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(recent)
}

/// Plugins: versions, sizes, upload times, the schedules using each;
/// upload (drag and drop), download, delete.
pub(super) async fn plugins(user: User, State(state): State<AppState>) -> Page {
    forbidden(&user, Scope::PluginsRead)?;
    let tenant = &user.0.tenant;
    let request = PageRequest {
        cursor: None,
        limit: Some(500),
    };
    let list = state
        .store
        .list_plugins(tenant, &PluginFilter::default(), &request)
        .await
        .map_err(failed)?;
    let schedules = all_schedules(&state, tenant).await?;
    let mut users: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in &schedules {
        users.entry(&s.plugin_id).or_default().push(&s.name);
    }
    let write = user.0.has(Scope::PluginsWrite);
    let body = html! {
        main {
            h1 { "Plugins" }
            @if write { (upload_form()) }
            table {
                caption { "Plugin versions" }
                thead { tr { th { "Name" } th { "Version" } th { "Size" } th { "Uploaded" } th { "Used by" } th { "Actions" } } }
                tbody {
                    @for p in &list.items {
                        tr {
                            td { (p.name) }
                            td { (p.version) }
                            td { (html::bytes(p.size)) }
                            td { (time(Some(p.created_at))) }
                            td { (users.get(p.id.as_str()).map_or("—".to_owned(), |names| names.join(", "))) }
                            td {
                                button type="button" data-download={ "/v1/plugins/" (url(&p.id)) "/wasm" }
                                    data-filename={ (p.name) "-" (p.version) ".wasm" } { "Download" }
                                " "
                                @if write {
                                    (button("Delete", "DELETE", &format!("/v1/plugins/{}", url(&p.id)),
                                        Some("Delete this plugin version?")))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&user, "Plugins", body)
}

/// The upload form (drop or choose a `.wasm`).
fn upload_form() -> Markup {
    html! {
        section {
            h2 { "Upload a plugin" }
            form id="upload" class="inline" {
                label { "Name " input name="name" required pattern="[A-Za-z0-9._-]+"; }
                label { "Version " input name="version" required value="1.0.0"; }
                label class="drop" {
                    "Component (.wasm): drop it here or choose "
                    input type="file" name="file" accept=".wasm" required;
                }
                button type="submit" { "Upload" }
            }
            p id="upload-error" class="error" role="alert" hidden {}
        }
    }
}

pub(super) async fn all_schedules(
    state: &AppState,
    tenant: &str,
) -> Result<Vec<Schedule>, Response> {
    let request = PageRequest {
        cursor: None,
        limit: Some(1000),
    };
    Ok(state
        .store
        .list_schedules(tenant, &ScheduleFilter::default(), &request)
        .await
        .map_err(failed)?
        .items)
}

/// A trigger in words, and its time zone.
fn trigger_text(t: &Trigger) -> (Markup, Option<chrono_tz::Tz>) {
    match t {
        Trigger::Cron { expr, timezone } => (
            html! { "cron " code { (expr) } " (" (timezone) ")" },
            timezone.parse().ok(),
        ),
        Trigger::Interval { every, .. } => (
            html! { "every " (taskhost_model::time::human(*every)) },
            None,
        ),
        Trigger::Once { at } => (html! { "once at " (time(Some(*at))) }, None),
        Trigger::Manual {} => (html! { "manual" }, None),
        Trigger::Event { name, filter } => (
            html! {
                "event " code { (name) }
                @if let Some(filter) = filter { " where " code { (filter) } }
            },
            None,
        ),
    }
}

/// A time in a zone, with UTC beside it.
fn zoned(t: Option<DateTime<Utc>>, zone: Option<chrono_tz::Tz>) -> Markup {
    match (t, zone) {
        (Some(t), Some(z)) => html! {
            (t.with_timezone(&z).format("%Y-%m-%d %H:%M:%S %Z"))
            " " span class="utc" { "(" (t.format("%H:%M:%S UTC")) ")" }
        },
        (t, _) => time(t),
    }
}

/// Schedules: trigger, next fire (in the zone and UTC), last run; pause,
/// resume, trigger, delete.
pub(super) async fn schedules(user: User, State(state): State<AppState>) -> Page {
    forbidden(&user, Scope::SchedulesRead)?;
    let tenant = &user.0.tenant;
    let list = all_schedules(&state, tenant).await?;
    let write = user.0.has(Scope::SchedulesWrite);
    // One read for every row's last run: the tenant's newest runs, the
    // first of each schedule's. A page of 1,000 schedules costs one query,
    // not 1,000 (and it refreshes itself).
    let recent = state
        .store
        .list_executions(
            tenant,
            &ExecutionFilter::default(),
            &PageRequest {
                cursor: None,
                limit: Some(1000),
            },
        )
        .await
        .map_err(failed)?
        .items;
    let mut last_runs: HashMap<&str, &Execution> = HashMap::new();
    for e in &recent {
        if let Some(schedule) = e.schedule_id.as_deref() {
            last_runs.entry(schedule).or_insert(e);
        }
    }
    let body = html! {
        main data-live="5000" {
            h1 { "Schedules" }
            @if write { p { a class="button" href="/schedules/new" { "New schedule" } } }
            table {
                caption { "Schedules" }
                thead { tr { th { "Name" } th { "Trigger" } th { "State" } th { "Next fire" } th { "Last run" } th { "Actions" } } }
                tbody {
                    @for s in &list { (schedule_row(s, last_runs.get(s.id.as_str()).copied(), write)) }
                }
            }
        }
    };
    page(&user, "Schedules", body)
}

/// One schedule's row: its trigger, state, next fire, last run, actions.
fn schedule_row(s: &Schedule, last_run: Option<&Execution>, write: bool) -> Markup {
    let (trigger, zone) = trigger_text(&s.trigger);
    let path = format!("/v1/schedules/{}", url(&s.id));
    let state_text = if s.paused { "paused" } else { "active" };
    html! {
        tr data-schedule=(s.id) {
            td { a href={ "/schedules/" (url(&s.id)) } { (s.name) } }
            td { (trigger) }
            td { (html::status(state_text)) }
            // A paused schedule's cursor is the next fire to record as paused.
            td { (zoned(s.next_fire_at.filter(|_| !s.paused), zone)) }
            td {
                @match (last_run, s.last_fire_at) {
                    (Some(e), _) => a href={ "/executions/" (url(&e.id)) } { (html::status(e.status.as_str())) },
                    // Older than the tenant's newest 1,000 runs.
                    (None, Some(at)) => a href={ "/executions?schedule_id=" (url(&s.id)) } { "fired " (time(Some(at))) },
                    (None, None) => "—",
                }
            }
            td {
                @if write {
                    @if s.paused {
                        (button("Resume", "POST", &format!("{path}/resume"), None))
                    } @else {
                        (button("Pause", "POST", &format!("{path}/pause"), None))
                    }
                    " " (button("Trigger now", "POST", &format!("{path}/trigger"), None))
                    " " a class="button" href={ "/schedules/" (url(&s.id)) "/edit" } { "Edit" }
                    " " (button("Delete", "DELETE", &path, Some("Delete this schedule?")))
                }
            }
        }
    }
}

/// The form for a new cron schedule, with a live preview of its next fires.
pub(super) async fn schedule_form(user: User, State(state): State<AppState>) -> Page {
    form_page(user, state, None).await
}

/// The same form, filled in, to change a schedule (`PATCH`).
pub(super) async fn schedule_edit(
    user: User,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Page {
    let schedule = state
        .store
        .get_schedule(&user.0.tenant, &id)
        .await
        .map_err(failed)?
        .ok_or_else(|| failed("no such schedule"))?;
    form_page(user, state, Some(schedule)).await
}

async fn form_page(user: User, state: AppState, editing: Option<Schedule>) -> Page {
    forbidden(&user, Scope::SchedulesWrite)?;
    let request = PageRequest {
        cursor: None,
        limit: Some(500),
    };
    let plugins = state
        .store
        .list_plugins(&user.0.tenant, &PluginFilter::default(), &request)
        .await
        .map_err(failed)?;
    let (name, expr, zone, input) = match &editing {
        Some(s) => {
            let (expr, zone) = match &s.trigger {
                Trigger::Cron { expr, timezone } => (expr.clone(), timezone.clone()),
                _ => ("0 9 * * 1-5".to_owned(), "UTC".to_owned()),
            };
            let input = serde_json::to_string_pretty(&s.policy.input).unwrap_or_default();
            (s.name.clone(), expr, zone, input)
        }
        None => (
            String::new(),
            "0 9 * * 1-5".into(),
            "UTC".into(),
            "{}".into(),
        ),
    };
    let title = if editing.is_some() {
        "Edit schedule"
    } else {
        "New schedule"
    };
    let body = html! {
        main {
            h1 { (title) }
            form id="schedule" class="stack" data-id=[editing.as_ref().map(|s| &s.id)] {
                label { "Name " input name="name" required value=(name); }
                label { "Plugin "
                    select name="plugin_id" required disabled[editing.is_some()] {
                        @for p in &plugins.items {
                            option value=(p.id) selected[editing.as_ref().is_some_and(|s| s.plugin_id == p.id)] {
                                (p.name) " " (p.version)
                            }
                        }
                    }
                }
                label { "Cron expression "
                    input name="expr" required value=(expr) spellcheck="false" aria-describedby="cron-help";
                }
                small id="cron-help" { "5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first." }
                label { "Time zone " input name="timezone" list="zones" value=(zone) required; }
                datalist id="zones" {
                    @for z in chrono_tz::TZ_VARIANTS.iter() { option value=(z.name()) {} }
                }
                label { "Input (JSON) " textarea name="input" rows="3" spellcheck="false" { (input) } }
                button type="submit" { @if editing.is_some() { "Save" } @else { "Create" } }
                p id="schedule-error" class="error" role="alert" hidden {}
            }
            section aria-labelledby="preview-title" {
                h2 id="preview-title" { "Next 10 fires" }
                p id="preview-error" class="error" role="alert" hidden {}
                table id="preview" {
                    thead { tr { th { "Local time" } th { "UTC" } th { "Offset" } } }
                    tbody {}
                }
            }
        }
    };
    page(&user, title, body)
}
