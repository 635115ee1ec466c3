//! The pieces the console's pages are made of, as maud templates: the page
//! frame, times, badges, buttons, and the SVG chart of the overview. maud
//! escapes every value spliced into a template; only [`url`] is applied by
//! hand, to a URL's query or path component.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use std::fmt::Write;

/// A component of a URL query or path, percent-encoded.
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole page: head, the navigation (when signed in as `tenant`), `body`.
pub fn document(title: &str, tenant: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · taskhost" }
                link rel="stylesheet" href="/console.css";
                script src="/console.js" defer {}
            }
            body {
                @if let Some(tenant) = tenant {
                    header {
                        nav aria-label="Main" {
                            a href="/" class="brand" { "taskhost" }
                            a href="/" { "Overview" }
                            a href="/plugins" { "Plugins" }
                            a href="/schedules" { "Schedules" }
                            a href="/executions" { "Executions" }
                            a href="/events" { "Events" }
                            a href="/audit" { "Audit" }
                            span class="tenant" title="tenant" { (tenant) }
                            form method="post" action="/logout" {
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    }
                }
                div id="flash" role="status" aria-live="polite" {}
                (body)
            }
        }
    }
}

/// A time the script shows in the viewer's zone (UTC on hover); UTC without
/// the script.
pub fn time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => {
            let iso = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            html! { time datetime=(iso) title=(iso) { (t.format("%Y-%m-%d %H:%M:%S UTC")) } }
        }
        None => html! { "—" },
    }
}

/// A byte count for people.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A status as a badge.
pub fn status(s: &str) -> Markup {
    html! { span class={ "status s-" (s) } { (s) } }
}

/// Pretty JSON in a `<pre>`.
pub fn json(value: &serde_json::Value) -> Markup {
    html! { pre { (serde_json::to_string_pretty(value).unwrap_or_default()) } }
}

/// A button that makes one API call; `confirm` asks first.
pub fn button(label: &str, method: &str, path: &str, confirm: Option<&str>) -> Markup {
    html! {
        button type="button" data-method=(method) data-action=(path) data-confirm=[confirm] {
            (label)
        }
    }
}

/// An error in a `<main>`, for a page that failed.
pub fn error_main(heading: Option<&str>, message: &str) -> Markup {
    html! {
        main {
            @if let Some(heading) = heading { h1 { (heading) } }
            p class="error" role="alert" { (message) }
        }
    }
}

/// One series of the overview's chart: a name, a CSS class, a count per minute.
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub counts: Vec<u32>,
}

/// Stacked bars, one per minute, oldest on the left; a `<title>` per bar
/// and the totals in the caption.
pub fn chart(series: &[Series<'_>], minutes: usize) -> Markup {
    let (width, height) = (720.0, 160.0);
    let slot = width / minutes as f64;
    let totals: Vec<u32> = (0..minutes)
        .map(|m| series.iter().map(|s| s.counts[m]).sum())
        .collect();
    let max = f64::from(totals.iter().copied().max().unwrap_or(0).max(1));
    let bars = (0..minutes).flat_map(|m| {
        let mut y = height;
        series
            .iter()
            .filter(move |s| s.counts[m] > 0)
            .map(move |s| {
                let n = s.counts[m];
                let h = f64::from(n) / max * (height - 10.0);
                y -= h;
                (s, m, n, y, h)
            })
            .collect::<Vec<_>>()
    });
    html! {
        figure {
            svg viewBox={ "0 0 " (width) " " (height) } class="chart" role="img"
                aria-label="Runs per minute by status, last hour" {
                @for (s, m, n, y, h) in bars {
                    rect class=(s.class) x=(format!("{:.1}", m as f64 * slot + 1.0))
                        y=(format!("{y:.1}")) width=(format!("{:.1}", slot - 2.0))
                        height=(format!("{h:.1}")) {
                        title { (s.name) " " (minutes - m) " min ago: " (n) }
                    }
                }
            }
            figcaption {
                @for s in series {
                    span class={ "key " (s.class) } {
                        (s.name) ": " (s.counts.iter().sum::<u32>())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let text = r#"<a href="x">'&'</a>"#;
        assert_eq!(
            html! { (text) }.into_string(),
            "&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;"
        );
        assert_eq!(url("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
