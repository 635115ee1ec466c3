//! The console's schedule page: the schedule, and its fire ledger — each
//! fire time's fate (ran, caught up, backfilled, skipped, missed), why, and
//! its run — newest first.

// A page's error is the response to send, as axum handlers return.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::{self, time, url};
use super::pages::{Page, failed, forbidden, page};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use maud::html;
use taskhost_model::FireRecord;
use taskhost_store::FireFilter;

/// Fire records the page shows.
const SHOWN: u32 = 200;

pub(super) async fn schedule(
    user: User,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Page {
    forbidden(&user, Scope::SchedulesRead)?;
    let tenant = &user.0.tenant;
    let Some(s) = state
        .store
        .get_schedule(tenant, &id)
        .await
        .map_err(failed)?
    else {
        let body = html! { main { h1 { "Not found" } p { "No such schedule." } } };
        let page = html::document("Not found", Some(tenant), body).into_string();
        return Err((StatusCode::NOT_FOUND, Html(page)).into_response());
    };
    let rows = state
        .store
        .fire_rows(tenant, &s.id, &FireFilter::default(), SHOWN)
        .await
        .map_err(failed)?;
    let fires: Vec<FireRecord> = rows.iter().filter_map(FireRecord::of).collect();
    let body = html! {
        main data-live="5000" {
            h1 { "Schedule " (s.name) }
            p {
                (html::status(if s.paused { "paused" } else { "active" })) " "
                a href={ "/executions?schedule_id=" (url(&s.id)) } { "its runs" }
                @if user.0.has(Scope::SchedulesWrite) {
                    " · " a href={ "/schedules/" (url(&s.id)) "/edit" } { "edit" }
                }
            }
            table {
                caption { "Fire ledger: every fire time's fate, newest first (at most " (SHOWN) ")" }
                thead { tr { th { "Fire time" } th { "Fate" } th { "Reason" } th { "Run" } th { "Detail" } } }
                tbody {
                    @for f in &fires {
                        tr {
                            td { (time(Some(f.fire_at))) }
                            td { (html::status(f.fate.as_str())) }
                            td { (f.reason.map_or("", |r| r.as_str())) }
                            td {
                                @if let Some(e) = &f.execution_id {
                                    a href={ "/executions/" (url(e)) } {
                                        (f.status.map_or("run", |s| s.as_str()))
                                    }
                                }
                            }
                            td {
                                @if let Some(ev) = &f.event { "event " code { (ev.name) } " " (ev.id) " " }
                                @if let Some(d) = &f.detail { (d) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&user, "Schedule", body)
}
