//! The console's pages. Each reads the store for the signed-in tenant and
//! renders HTML; buttons and forms carry the API call the script makes
//! (`data-action`, `data-method`), shown only when the token has the scope.

// A page's error is the response to send (a redirect, a 403 page), as axum
// handlers return; its size does not matter on this path.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::{self, Series, esc, time, url};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fmt::Write;
use taskhost_model::{Execution, ExecutionStatus, Schedule, Trigger};
use taskhost_store::{ExecutionFilter, PageRequest, PluginFilter, ScheduleFilter};

pub(super) type Page = Result<Html<String>, Response>;

pub(super) fn page(user: &User, title: &str, body: String) -> Page {
    Ok(Html(html::document(title, Some(&user.0.tenant), &body)))
}

pub(super) fn failed(e: impl std::fmt::Display) -> Response {
    let body = format!(
        r#"<main><h1>Something failed</h1><p class="error" role="alert">{}</p></main>"#,
        esc(&e.to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(html::document("Error", None, &body)),
    )
        .into_response()
}

pub(super) fn forbidden(user: &User, scope: Scope) -> Result<(), Response> {
    user.0.require(scope).map_err(|e| {
        let body = format!(
            r#"<main><p class="error" role="alert">{}</p></main>"#,
            esc(&e.message)
        );
        (
            StatusCode::FORBIDDEN,
            Html(html::document("Forbidden", Some(&user.0.tenant), &body)),
        )
            .into_response()
    })
}

/// A button that makes one API call; `confirm` asks first.
pub(super) fn button(label: &str, method: &str, path: &str, confirm: Option<&str>) -> String {
    let confirm = confirm.map_or(String::new(), |c| format!(r#" data-confirm="{}""#, esc(c)));
    format!(
        r#"<button type="button" data-method="{method}" data-action="{}"{confirm}>{}</button>"#,
        esc(path),
        esc(label)
    )
}

/// The overview: the last hour's runs per minute by status, queue depth,
/// runs in flight, schedule-to-start latency and failure rate.
pub(super) async fn overview(user: User, State(state): State<AppState>) -> Page {
    forbidden(&user, Scope::ExecutionsRead)?;
    let tenant = &user.0.tenant;
    let now = state.store.now();
    let since = now - chrono::Duration::hours(1);
    let mut recent: Vec<Execution> = Vec::new();
    let mut cursor = None;
    for _ in 0..5 {
        let filter = ExecutionFilter {
            since: Some(since),
            ..ExecutionFilter::default()
        };
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
    let body = format!(
        r#"<main data-live="3000"><h1>Overview</h1>
<dl class="stats">
<div><dt>Queued now</dt><dd id="queued">{queued}</dd></div>
<div><dt>Running</dt><dd id="running">{running}</dd></div>
<div><dt>Start latency p50 / p99</dt><dd>{} / {}</dd></div>
<div><dt>Failure rate (last hour)</dt><dd>{rate}</dd></div>
</dl>
<h2>Runs per minute, last hour</h2>{}
</main>"#,
        pct(0.5),
        pct(0.99),
        html::chart(&series, MINUTES)
    );
    page(&user, "Overview", body)
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
    let mut rows = String::new();
    for p in &list.items {
        let used = users.get(p.id.as_str()).map_or(String::from("—"), |names| {
            names.iter().map(|n| esc(n)).collect::<Vec<_>>().join(", ")
        });
        let delete = if write {
            button(
                "Delete",
                "DELETE",
                &format!("/v1/plugins/{}", url(&p.id)),
                Some("Delete this plugin version?"),
            )
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{used}</td><td><button type="button" data-download="/v1/plugins/{}/wasm" data-filename="{}-{}.wasm">Download</button> {delete}</td></tr>"#,
            esc(&p.name),
            esc(&p.version),
            html::bytes(p.size),
            time(Some(p.created_at)),
            url(&p.id),
            esc(&p.name),
            esc(&p.version),
        );
    }
    let upload = if write {
        r#"<section><h2>Upload a plugin</h2>
<form id="upload" class="inline">
<label>Name <input name="name" required pattern="[A-Za-z0-9._-]+"></label>
<label>Version <input name="version" required value="1.0.0"></label>
<label class="drop">Component (.wasm): drop it here or choose <input type="file" name="file" accept=".wasm" required></label>
<button type="submit">Upload</button>
</form><p id="upload-error" class="error" role="alert" hidden></p></section>"#
    } else {
        ""
    };
    let body = format!(
        r#"<main><h1>Plugins</h1>{upload}
<table><caption>Plugin versions</caption><thead><tr><th>Name</th><th>Version</th><th>Size</th><th>Uploaded</th><th>Used by</th><th>Actions</th></tr></thead>
<tbody>{rows}</tbody></table></main>"#
    );
    page(&user, "Plugins", body)
}

async fn all_schedules(state: &AppState, tenant: &str) -> Result<Vec<Schedule>, Response> {
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
fn trigger_text(t: &Trigger) -> (String, Option<chrono_tz::Tz>) {
    match t {
        Trigger::Cron { expr, timezone } => (
            format!("cron <code>{}</code> ({})", esc(expr), esc(timezone)),
            timezone.parse().ok(),
        ),
        Trigger::Interval { every, .. } => (
            format!("every {}", taskhost_model::time::human(*every)),
            None,
        ),
        Trigger::Once { at } => (format!("once at {}", time(Some(*at))), None),
        Trigger::Manual => ("manual".into(), None),
    }
}

/// A time in a zone, with UTC beside it.
fn zoned(t: Option<DateTime<Utc>>, zone: Option<chrono_tz::Tz>) -> String {
    match (t, zone) {
        (Some(t), Some(z)) => format!(
            r#"{} <span class="utc">({})</span>"#,
            t.with_timezone(&z).format("%Y-%m-%d %H:%M:%S %Z"),
            t.format("%H:%M:%S UTC")
        ),
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
    let mut rows = String::new();
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
    for s in &list {
        let last = match (last_runs.get(s.id.as_str()), s.last_fire_at) {
            (Some(e), _) => format!(
                r#"<a href="/executions/{}">{}</a>"#,
                url(&e.id),
                html::status(e.status.as_str())
            ),
            // Older than the tenant's newest 1,000 runs.
            (None, Some(at)) => format!(
                r#"<a href="/executions?schedule_id={}">fired {}</a>"#,
                url(&s.id),
                time(Some(at))
            ),
            (None, None) => String::from("—"),
        };
        let (trigger, zone) = trigger_text(&s.trigger);
        let path = format!("/v1/schedules/{}", url(&s.id));
        let actions = if write {
            let toggle = if s.paused {
                button("Resume", "POST", &format!("{path}/resume"), None)
            } else {
                button("Pause", "POST", &format!("{path}/pause"), None)
            };
            format!(
                r#"{toggle} {} <a class="button" href="/schedules/{}/edit">Edit</a> {}"#,
                button("Trigger now", "POST", &format!("{path}/trigger"), None),
                url(&s.id),
                button("Delete", "DELETE", &path, Some("Delete this schedule?"))
            )
        } else {
            String::new()
        };
        let state_text = if s.paused { "paused" } else { "active" };
        let _ = write!(
            rows,
            r#"<tr data-schedule="{}"><td><a href="/executions?schedule_id={}">{}</a></td><td>{trigger}</td><td>{}</td><td>{}</td><td>{last}</td><td>{actions}</td></tr>"#,
            esc(&s.id),
            url(&s.id),
            esc(&s.name),
            html::status(state_text),
            // A paused schedule's cursor is the next fire to record as paused.
            zoned(s.next_fire_at.filter(|_| !s.paused), zone),
        );
    }
    let new = if write {
        r#"<p><a class="button" href="/schedules/new">New schedule</a></p>"#
    } else {
        ""
    };
    let body = format!(
        r#"<main data-live="5000"><h1>Schedules</h1>{new}
<table><caption>Schedules</caption><thead><tr><th>Name</th><th>Trigger</th><th>State</th><th>Next fire</th><th>Last run</th><th>Actions</th></tr></thead>
<tbody>{rows}</tbody></table></main>"#
    );
    page(&user, "Schedules", body)
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
    let options: String = plugins
        .items
        .iter()
        .map(|p| {
            let selected = editing
                .as_ref()
                .filter(|s| s.plugin_id == p.id)
                .map_or("", |_| " selected");
            format!(
                r#"<option value="{}"{selected}>{} {}</option>"#,
                esc(&p.id),
                esc(&p.name),
                esc(&p.version)
            )
        })
        .collect();
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
    let locked = if editing.is_some() { " disabled" } else { "" };
    let (title, id, submit) = match &editing {
        Some(s) => (
            "Edit schedule",
            format!(r#" data-id="{}""#, esc(&s.id)),
            "Save",
        ),
        None => ("New schedule", String::new(), "Create"),
    };
    let zones: String = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|z| format!(r#"<option value="{}">"#, esc(z.name())))
        .collect();
    let body = format!(
        r#"<main><h1>{title}</h1>
<form id="schedule" class="stack"{id}>
<label>Name <input name="name" required value="{}"></label>
<label>Plugin <select name="plugin_id" required{locked}>{options}</select></label>
<label>Cron expression <input name="expr" required value="{}" spellcheck="false" aria-describedby="cron-help"></label>
<small id="cron-help">5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.</small>
<label>Time zone <input name="timezone" list="zones" value="{}" required></label>
<datalist id="zones">{zones}</datalist>
<label>Input (JSON) <textarea name="input" rows="3" spellcheck="false">{}</textarea></label>
<button type="submit">{submit}</button>
<p id="schedule-error" class="error" role="alert" hidden></p>
</form>
<section aria-labelledby="preview-title"><h2 id="preview-title">Next 10 fires</h2>
<p id="preview-error" class="error" role="alert" hidden></p>
<table id="preview"><thead><tr><th>Local time</th><th>UTC</th><th>Offset</th></tr></thead><tbody></tbody></table>
</section></main>"#,
        esc(&name),
        esc(&expr),
        esc(&zone),
        esc(&input),
    );
    page(&user, title, body)
}
