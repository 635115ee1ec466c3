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
use crate::model::{Execution, ExecutionStatus, Schedule, Trigger};
use crate::store::{ExecutionFilter, PageRequest, PluginFilter, ScheduleFilter};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::fmt::Write;

type Page = Result<Html<String>, Response>;

fn page(user: &User, title: &str, body: String) -> Page {
    Ok(Html(html::document(title, Some(&user.0.tenant), &body)))
}

fn failed(e: impl std::fmt::Display) -> Response {
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

fn forbidden(user: &User, scope: Scope) -> Result<(), Response> {
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
fn button(label: &str, method: &str, path: &str, confirm: Option<&str>) -> String {
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
            format!("every {}", humantime::format_duration(*every)),
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
    for s in &list {
        let last = state
            .store
            .list_executions(
                tenant,
                &ExecutionFilter {
                    schedule_id: Some(s.id.clone()),
                    ..ExecutionFilter::default()
                },
                &PageRequest {
                    cursor: None,
                    limit: Some(1),
                },
            )
            .await
            .map_err(failed)?
            .items
            .into_iter()
            .next();
        let last = last.map_or(String::from("—"), |e| {
            format!(
                r#"<a href="/executions/{}">{}</a>"#,
                url(&e.id),
                html::status(e.status.as_str())
            )
        });
        let (trigger, zone) = trigger_text(&s.trigger);
        let path = format!("/v1/schedules/{}", url(&s.id));
        let actions = if write {
            let toggle = if s.paused {
                button("Resume", "POST", &format!("{path}/resume"), None)
            } else {
                button("Pause", "POST", &format!("{path}/pause"), None)
            };
            format!(
                "{toggle} {} {}",
                button("Trigger now", "POST", &format!("{path}/trigger"), None),
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
            zoned(s.next_fire_at, zone),
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
            format!(
                r#"<option value="{}">{} {}</option>"#,
                esc(&p.id),
                esc(&p.name),
                esc(&p.version)
            )
        })
        .collect();
    let zones: String = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|z| format!(r#"<option value="{}">"#, esc(z.name())))
        .collect();
    let body = format!(
        r#"<main><h1>New schedule</h1>
<form id="schedule" class="stack">
<label>Name <input name="name" required></label>
<label>Plugin <select name="plugin_id" required>{options}</select></label>
<label>Cron expression <input name="expr" required value="0 9 * * 1-5" spellcheck="false" aria-describedby="cron-help"></label>
<small id="cron-help">5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.</small>
<label>Time zone <input name="timezone" list="zones" value="UTC" required></label>
<datalist id="zones">{zones}</datalist>
<label>Input (JSON) <textarea name="input" rows="3" spellcheck="false">{{}}</textarea></label>
<button type="submit">Create</button>
<p id="schedule-error" class="error" role="alert" hidden></p>
</form>
<section aria-labelledby="preview-title"><h2 id="preview-title">Next 10 fires</h2>
<p id="preview-error" class="error" role="alert" hidden></p>
<table id="preview"><thead><tr><th>Local time</th><th>UTC</th><th>Offset</th></tr></thead><tbody></tbody></table>
</section></main>"#
    );
    page(&user, "New schedule", body)
}

#[derive(serde::Deserialize, Default)]
pub(super) struct ListQuery {
    status: Option<String>,
    schedule_id: Option<String>,
    plugin_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

fn parse_time(text: &Option<String>) -> Option<DateTime<Utc>> {
    let text = text.as_deref().filter(|t| !t.is_empty())?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// Executions, filtered by status, schedule, plugin and time, with cursor paging.
pub(super) async fn executions(
    user: User,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Page {
    forbidden(&user, Scope::ExecutionsRead)?;
    let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let filter = ExecutionFilter {
        schedule_id: some(&q.schedule_id),
        plugin_id: some(&q.plugin_id),
        status: q.status.as_deref().and_then(ExecutionStatus::parse),
        since: parse_time(&q.since),
        until: parse_time(&q.until),
    };
    let request = PageRequest {
        cursor: some(&q.cursor),
        limit: Some(50),
    };
    let list = state
        .store
        .list_executions(&user.0.tenant, &filter, &request)
        .await
        .map_err(failed)?;
    let mut rows = String::new();
    for e in &list.items {
        let duration = e.outcome.as_ref().map_or(String::from("—"), |o| {
            format!("{:.1} ms", o.duration_us as f64 / 1000.0)
        });
        let _ = write!(
            rows,
            r#"<tr><td><a href="/executions/{0}">{1}</a></td><td>{2}</td><td>{3}</td><td>{4}</td><td>{duration}</td><td>{5}</td></tr>"#,
            url(&e.id),
            esc(&e.id),
            html::status(e.status.as_str()),
            time(Some(e.created_at)),
            e.schedule_id
                .as_deref()
                .map_or(String::from("ad hoc"), |s| format!(
                    r#"<a href="/executions?schedule_id={}">schedule</a>"#,
                    url(s)
                )),
            e.attempt,
        );
    }
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let statuses: String = [
        "",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "dead",
    ]
    .iter()
    .map(|s| {
        let selected = if q.status.as_deref().unwrap_or("") == *s {
            " selected"
        } else {
            ""
        };
        let label = if s.is_empty() { "any" } else { s };
        format!(r#"<option value="{s}"{selected}>{label}</option>"#)
    })
    .collect();
    let next = list.next.map_or(String::new(), |cursor| {
        let mut query = format!("cursor={}", url(&cursor));
        for (k, v) in [
            ("status", &q.status),
            ("schedule_id", &q.schedule_id),
            ("plugin_id", &q.plugin_id),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                let _ = write!(query, "&{k}={}", url(v));
            }
        }
        format!(r#"<p><a href="/executions?{query}" rel="next">Older</a></p>"#)
    });
    let body = format!(
        r#"<main data-live="2000"><h1>Executions</h1>
<form method="get" class="inline" aria-label="Filter">
<label>Status <select name="status">{statuses}</select></label>
<label>Schedule <input name="schedule_id" value="{}"></label>
<label>Plugin <input name="plugin_id" value="{}"></label>
<label>Since <input name="since" type="datetime-local" value="{}"></label>
<label>Until <input name="until" type="datetime-local" value="{}"></label>
<button type="submit">Filter</button></form>
<table><caption>Executions, newest first</caption><thead><tr><th>Id</th><th>Status</th><th>Created</th><th>Origin</th><th>Duration</th><th>Attempt</th></tr></thead>
<tbody>{rows}</tbody></table>{next}</main>"#,
        value(&q.schedule_id),
        value(&q.plugin_id),
        value(&q.since),
        value(&q.until),
    );
    page(&user, "Executions", body)
}

/// One execution: input, output, error, logs, fuel, memory, timings,
/// attempts; cancel and re-run.
pub(super) async fn execution(
    user: User,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Page {
    forbidden(&user, Scope::ExecutionsRead)?;
    let Some(e) = state
        .store
        .get_execution(&user.0.tenant, &id)
        .await
        .map_err(failed)?
    else {
        let body = r#"<main><h1>Not found</h1><p>No such execution.</p></main>"#.to_owned();
        return Err((
            StatusCode::NOT_FOUND,
            Html(html::document("Not found", Some(&user.0.tenant), &body)),
        )
            .into_response());
    };
    let path = format!("/v1/executions/{}", url(&e.id));
    let mut actions = String::new();
    if user.0.has(Scope::ExecutionsWrite) {
        if e.status.is_final() {
            actions.push_str(&button("Re-run", "POST", &format!("{path}/rerun"), None));
        } else {
            actions.push_str(&button(
                "Cancel",
                "POST",
                &format!("{path}/cancel"),
                Some("Cancel this run?"),
            ));
        }
    }
    let mut details = String::new();
    if let Some(o) = &e.outcome {
        let _ = write!(
            details,
            r#"<dl class="stats"><div><dt>Outcome</dt><dd>{}</dd></div><div><dt>Duration</dt><dd>{:.1} ms</dd></div><div><dt>Fuel</dt><dd>{}</dd></div><div><dt>Peak memory</dt><dd>{}</dd></div></dl>"#,
            html::status(o.status.as_str()),
            o.duration_us as f64 / 1000.0,
            o.fuel_used,
            html::bytes(o.peak_memory_bytes),
        );
        if let Some(output) = o.output_json() {
            let _ = write!(details, "<h2>Output</h2>{}", html::json(&output));
        }
        if let Some(err) = &o.error {
            let kind = if err.retryable { "retryable" } else { "fatal" };
            let _ = write!(
                details,
                r#"<h2>Error ({kind})</h2><pre class="error">{}</pre>"#,
                esc(&err.message)
            );
        }
        let logs: String = o
            .logs
            .iter()
            .map(|l| {
                format!(
                    r#"<tr class="l-{0}"><td>{1} ms</td><td>{0}</td><td><pre>{2}</pre></td></tr>"#,
                    l.level.as_str(),
                    l.at_ms,
                    esc(&l.message)
                )
            })
            .collect();
        let _ = write!(
            details,
            r#"<h2 id="logs">Logs</h2><table class="logs"><thead><tr><th>At</th><th>Level</th><th>Message</th></tr></thead><tbody>{logs}</tbody></table>"#
        );
        for (name, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            if !text.is_empty() {
                let _ = write!(details, "<h3>{name}</h3><pre>{}</pre>", esc(text));
            }
        }
    }
    let live = if e.status.is_final() {
        ""
    } else {
        r#" data-live="1500""#
    };
    let body = format!(
        r#"<main{live}><h1>Execution <code>{}</code></h1>
<p>{} {actions}</p>
<dl class="stats">
<div><dt>Plugin</dt><dd><a href="/executions?plugin_id={}">{}</a></dd></div>
<div><dt>Attempt</dt><dd>{} of {}</dd></div>
<div><dt>Created</dt><dd>{}</dd></div><div><dt>Due</dt><dd>{}</dd></div>
<div><dt>Started</dt><dd>{}</dd></div><div><dt>Finished</dt><dd>{}</dd></div>
</dl>
<h2>Input</h2>{}
{details}</main>"#,
        esc(&e.id),
        html::status(e.status.as_str()),
        url(&e.plugin_id),
        esc(&e.plugin_id),
        e.attempt,
        e.retry.max_attempts,
        time(Some(e.created_at)),
        time(Some(e.due_at)),
        time(e.started_at),
        time(e.finished_at),
        html::json(&e.input),
    );
    page(&user, "Execution", body)
}
