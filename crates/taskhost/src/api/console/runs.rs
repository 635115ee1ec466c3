//! The console's execution pages: the filtered list with cursor paging,
//! and one execution's details with cancel and re-run.

// A page's error is the response to send, as axum handlers return.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::{self, esc, time, url};
use super::pages::{Page, button, failed, forbidden, page};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use chrono::{DateTime, Utc};
use std::fmt::Write;
use taskhost_model::ExecutionStatus;
use taskhost_store::{ExecutionFilter, PageRequest};

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
    let plugin = state
        .store
        .get_plugin(&user.0.tenant, &e.plugin_id)
        .await
        .ok()
        .flatten()
        .map_or_else(
            || e.plugin_id.clone(),
            |p| format!("{} {}", p.name, p.version),
        );
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
        esc(&plugin),
        e.attempt,
        e.policy.retry().max_attempts,
        time(Some(e.created_at)),
        time(Some(e.due_at)),
        time(e.started_at),
        time(e.finished_at),
        html::json(&e.policy.input),
    );
    page(&user, "Execution", body)
}
