//! A workflow's timeline on the execution page: its parent, its recorded
//! steps in order (time, kind, attempt, size; a spawn's children linked),
//! what it waits for now, and the events it holds not taken yet.

use super::html::{self, time, url};
use maud::{Markup, html};
use taskhost_model::Execution;
use taskhost_model::workflow::StepKind;

/// How many of a spawn's children the timeline links by name.
const CHILDREN_SHOWN: usize = 20;

/// The timeline, or nothing for an execution that is not a workflow.
pub(super) fn timeline(e: &Execution) -> Markup {
    if e.steps.is_empty() && e.waiting.is_none() && e.parent.is_none() && e.inbox.is_empty() {
        return html! {};
    }
    html! {
        h2 id="timeline" { "Workflow" }
        @if let Some(parent) = &e.parent {
            p {
                "Child of " a href={ "/executions/" (url(&parent.id)) } { code { (parent.id) } }
                " (depth " (parent.depth) @if parent.detached { ", detached" } ")"
            }
        }
        table class="timeline" {
            thead { tr { th { "#" } th { "Completed" } th { "Step" } th { "Kind" } th { "Attempt" } th { "Result" } } }
            tbody {
                @for (i, step) in e.steps.iter().enumerate() {
                    tr {
                        td { (i + 1) }
                        td { (time(Some(step.completed_at))) }
                        td { code { (step.name) } }
                        td { (kind(step.kind)) }
                        td { (step.attempt) }
                        td {
                            (html::bytes(step.bytes.max(step.result.len() as u64)))
                            @if step.kind == StepKind::Spawn { (children(&step.result)) }
                        }
                    }
                }
                @if let Some(w) = &e.waiting {
                    tr class="waiting" {
                        td { (e.steps.len() + 1) }
                        td { "until " (time(Some(w.until))) }
                        td { code { (w.step) } }
                        td {
                            @if w.children.is_empty() { "waits for event " code { (w.event) } }
                            @else { "joins; " (w.children.len()) " children still running" }
                        }
                        td { "—" }
                        td { "—" }
                    }
                }
            }
        }
        @if !e.inbox.is_empty() {
            p { (e.inbox.len()) " events sent, not taken yet: "
                @for (i, ev) in e.inbox.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (ev.name) }
                }
            }
        }
    }
}

fn kind(k: StepKind) -> &'static str {
    match k {
        StepKind::Step => "step",
        StepKind::Sleep => "sleep",
        StepKind::Event => "event",
        StepKind::Spawn => "spawn",
        StepKind::Join => "join",
    }
}

/// A spawn's children, linked (the first [`CHILDREN_SHOWN`]).
fn children(result: &str) -> Markup {
    let ids: Vec<String> = serde_json::from_str(result).unwrap_or_default();
    html! {
        " — " (ids.len()) " children: "
        @for (i, id) in ids.iter().take(CHILDREN_SHOWN).enumerate() {
            @if i > 0 { " " }
            a href={ "/executions/" (url(id)) } { code { (id.get(..8).unwrap_or(id)) } }
        }
        @if ids.len() > CHILDREN_SHOWN { " and " (ids.len() - CHILDREN_SHOWN) " more" }
    }
}
