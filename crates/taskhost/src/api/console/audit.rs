//! The console's audit page: the tenant's audit log, newest first (a
//! tenant's admin only; see `api::audit`).

// A page's error is the response to send, as axum handlers return.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::time;
use super::pages::{Page, failed, forbidden, page};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::State;
use maud::html;
use taskhost_store::PageRequest;

/// Records the page shows.
const SHOWN: u32 = 500;

pub(super) async fn audit(user: User, State(state): State<AppState>) -> Page {
    forbidden(&user, Scope::Admin)?;
    let tenant = &user.0.tenant;
    let request = PageRequest {
        cursor: None,
        limit: Some(SHOWN),
    };
    let records = state
        .store
        .audit_records(Some(tenant), &request)
        .await
        .map_err(failed)?
        .items;
    let body = html! {
        main {
            h1 { "Audit log" }
            table {
                caption { "Every write request, newest first (at most " (SHOWN) "; kept 90 days)" }
                thead { tr { th { "When" } th { "Who" } th { "Operation" } th { "Path" } th { "Status" } th { "From" } } }
                tbody {
                    @for r in &records {
                        tr {
                            td { (time(Some(r.at))) }
                            td { (r.subject.as_deref().unwrap_or("—")) }
                            td { code { (r.operation) } }
                            td { code { (r.path) } }
                            td { (r.status) @if let Some(e) = &r.error { " " (e) } }
                            td { (r.client.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
    };
    page(&user, "Audit log", body)
}
