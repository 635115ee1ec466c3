//! The console's execution pages: the filtered list with cursor paging,
//! and one execution's details with cancel and re-run.

// A page's error is the response to send, as axum handlers return.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::{self, button, time, url};
use super::pages::{Page, failed, forbidden, page};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
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
        waiting_for: None,
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
    let next = list.next.map(|cursor| {
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
        query
    });
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let status = q.status.as_deref().unwrap_or("");
    let statuses = [
        "",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "dead",
    ];
    let body = html! {
        main data-live="2000" {
            h1 { "Executions" }
            form method="get" class="inline" aria-label="Filter" {
                label { "Status "
                    select name="status" {
                        @for s in statuses {
                            option value=(s) selected[status == s] { @if s.is_empty() { "any" } @else { (s) } }
                        }
                    }
                }
                label { "Schedule " input name="schedule_id" value=(value(&q.schedule_id)); }
                label { "Plugin " input name="plugin_id" value=(value(&q.plugin_id)); }
                label { "Since " input name="since" type="datetime-local" value=(value(&q.since)); }
                label { "Until " input name="until" type="datetime-local" value=(value(&q.until)); }
                button type="submit" { "Filter" }
            }
            table {
                caption { "Executions, newest first" }
                thead { tr { th { "Id" } th { "Status" } th { "Created" } th { "Origin" } th { "Duration" } th { "Attempt" } } }
                tbody { @for e in &list.items { (execution_row(e)) } }
            }
            @if let Some(query) = next { p { a href={ "/executions?" (query) } rel="next" { "Older" } } }
        }
    };
    page(&user, "Executions", body)
}

/// One execution's row in the list.
fn execution_row(e: &taskhost_model::Execution) -> Markup {
    html! {
        tr {
            td { a href={ "/executions/" (url(&e.id)) } { (e.id) } }
            td { (html::status(e.status.as_str())) }
            td { (time(Some(e.created_at))) }
            td {
                @match e.schedule_id.as_deref() {
                    Some(s) => a href={ "/executions?schedule_id=" (url(s)) } { "schedule" },
                    None => "ad hoc",
                }
            }
            td {
                @match &e.outcome {
                    Some(o) => (format!("{:.1} ms", o.duration_us as f64 / 1000.0)),
                    None => "—",
                }
            }
            td { (e.attempt) }
        }
    }
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
        let body = html! { main { h1 { "Not found" } p { "No such execution." } } };
        let page = html::document("Not found", Some(&user.0.tenant), body).into_string();
        return Err((StatusCode::NOT_FOUND, Html(page)).into_response());
    };
    let path = format!("/v1/executions/{}", url(&e.id));
    let write = user.0.has(Scope::ExecutionsWrite);
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
    let body = html! {
        main data-live=[(!e.status.is_final()).then_some("1500")] {
            h1 { "Execution " code { (e.id) } }
            p {
                (html::status(e.status.as_str())) " "
                @if write && e.status.is_final() {
                    (button("Re-run", "POST", &format!("{path}/rerun"), None))
                } @else if write {
                    (button("Cancel", "POST", &format!("{path}/cancel"), Some("Cancel this run?")))
                }
            }
            dl class="stats" {
                div { dt { "Plugin" } dd { a href={ "/executions?plugin_id=" (url(&e.plugin_id)) } { (plugin) } } }
                div { dt { "Attempt" } dd { (e.attempt) " of " (e.policy.retry().max_attempts) } }
                div { dt { "Created" } dd { (time(Some(e.created_at))) } }
                div { dt { "Due" } dd { (time(Some(e.due_at))) } }
                div { dt { "Started" } dd { (time(e.started_at)) } }
                div { dt { "Finished" } dd { (time(e.finished_at)) } }
                @if let Some(c) = &e.policy.concurrency {
                    div { dt { "Concurrency key" } dd {
                        code { (c.key.as_deref().unwrap_or("-")) } " (at most " (c.limit) " at once)"
                    } }
                }
                @if let Some(r) = &e.policy.rate_limit {
                    div { dt { "Rate-limit key" } dd {
                        code { (r.key.as_deref().unwrap_or("-")) } " (" (r.limit) " starts per "
                        (taskhost_model::time::human(r.per)) ")"
                    } }
                }
                @if let Some(d) = &e.policy.debounce {
                    div { dt { "Debounce key" } dd {
                        code { (d.key.as_deref().unwrap_or("-")) }
                        " (" (taskhost_model::time::human(d.period)) ")"
                        @if let Some(into) = &e.debounced_into {
                            " → " a href={ "/executions/" (url(into)) } { code { (into) } }
                        }
                    } }
                }
                @if let Some(ev) = e.fire.as_ref().and_then(|f| f.event.as_ref()) {
                    div { dt { "Event" } dd {
                        code { (ev.name) } " " (ev.id)
                        @if let Some(hook) = &ev.hook { " (hook " code { (hook) } ")" }
                    } }
                }
            }
            h2 { "Input" }
            (html::json(&e.policy.input))
            (super::workflow::timeline(&e))
            @if let Some(o) = &e.outcome { (outcome(o)) }
        }
    };
    page(&user, "Execution", body)
}

/// How the last attempt ended: metrics, output or error, logs, stdout and
/// stderr.
fn outcome(o: &taskhost_model::Outcome) -> Markup {
    html! {
        dl class="stats" {
            div { dt { "Outcome" } dd { (html::status(o.status.as_str())) } }
            div { dt { "Duration" } dd { (format!("{:.1} ms", o.duration_us as f64 / 1000.0)) } }
            div { dt { "Fuel" } dd { (o.fuel_used) } }
            div { dt { "Peak memory" } dd { (html::bytes(o.peak_memory_bytes)) } }
        }
        @if let Some(output) = o.output_json() {
            h2 { "Output" }
            (html::json(&output))
        }
        @if let Some(err) = &o.error {
            h2 { "Error (" @if err.retryable { "retryable" } @else { "fatal" } ")" }
            pre class="error" { (err.message) }
        }
        h2 id="logs" { "Logs" }
        table class="logs" {
            thead { tr { th { "At" } th { "Level" } th { "Message" } } }
            tbody {
                @for l in &o.logs {
                    tr class={ "l-" (l.level.as_str()) } {
                        td { (l.at_ms) " ms" }
                        td { (l.level.as_str()) }
                        td { pre { (l.message) } }
                    }
                }
            }
        }
        @for (name, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            @if !text.is_empty() {
                h3 { (name) }
                pre { (text) }
            }
        }
    }
}
