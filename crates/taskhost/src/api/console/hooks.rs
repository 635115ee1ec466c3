//! The console's events page: the tenant's hooks, and which schedules each
//! event fires. Secrets are never shown here (only when a hook is made or
//! rotated, through the API or the CLI).

// A page's error is the response to send, as axum handlers return.
#![allow(clippy::result_large_err)]

use super::User;
use super::html::{button, time, url};
use super::pages::{Page, all_schedules, failed, forbidden, page};
use crate::api::AppState;
use crate::api::auth::Scope;
use axum::extract::State;
use maud::html;
use std::collections::BTreeMap;
use taskhost_model::Trigger;

pub(super) async fn hooks(user: User, State(state): State<AppState>) -> Page {
    forbidden(&user, Scope::SchedulesRead)?;
    let tenant = &user.0.tenant;
    let hooks = state.store.hooks(tenant).await.map_err(failed)?;
    let schedules = all_schedules(&state, tenant).await?;
    let mut fired: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &schedules {
        if let Trigger::Event { name, .. } = &s.trigger {
            fired.entry(name).or_default().push(&s.name);
        }
    }
    let write = user.0.has(Scope::SchedulesWrite);
    let body = html! {
        main {
            h1 { "Events" }
            table {
                caption { "Events and the schedules they fire" }
                thead { tr { th { "Event" } th { "Schedules" } } }
                tbody {
                    @for (event, names) in &fired {
                        tr { td { code { (event) } } td { (names.join(", ")) } }
                    }
                }
            }
            table {
                caption { "Hooks (POST /hooks/{id}; their secrets are shown only when made or rotated)" }
                thead { tr { th { "Name" } th { "Event" } th { "Mode" } th { "Path" } th { "Secret since" } th { "Actions" } } }
                tbody {
                    @for h in &hooks {
                        tr {
                            td { (h.name) }
                            td { code { (h.event) } }
                            td { (format!("{:?}", h.mode).to_lowercase()) }
                            td { code { "/hooks/" (h.id) } }
                            td { (time(Some(h.rotated_at))) }
                            td {
                                @if write {
                                    (button("Delete", "DELETE", &format!("/v1/hooks/{}", url(&h.id)),
                                        Some("Delete this hook? Its sender's requests will be refused.")))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&user, "Events", body)
}
