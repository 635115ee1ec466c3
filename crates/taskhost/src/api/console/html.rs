//! Small helpers for writing the console's HTML: escaping, the page frame,
//! times, and the SVG chart of the overview.

use chrono::{DateTime, Utc};
use std::fmt::Write;

/// `text` escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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
pub fn document(title: &str, tenant: Option<&str>, body: &str) -> String {
    let nav = tenant.map_or(String::new(), |tenant| {
        format!(
            r#"<header><nav aria-label="Main">
<a href="/" class="brand">taskhost</a>
<a href="/">Overview</a><a href="/plugins">Plugins</a><a href="/schedules">Schedules</a><a href="/executions">Executions</a>
<span class="tenant" title="tenant">{}</span>
<form method="post" action="/logout"><button type="submit" class="link">Sign out</button></form>
</nav></header>"#,
            esc(tenant)
        )
    });
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · taskhost</title>
<link rel="stylesheet" href="/console.css">
<script src="/console.js" defer></script>
</head><body>{nav}<div id="flash" role="status" aria-live="polite"></div>{body}</body></html>"#,
        esc(title)
    )
}

/// A time the script shows in the viewer's zone (UTC on hover); UTC without
/// the script.
pub fn time(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => {
            let iso = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            format!(
                r#"<time datetime="{iso}" title="{iso}">{}</time>"#,
                t.format("%Y-%m-%d %H:%M:%S UTC")
            )
        }
        None => "—".to_owned(),
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
pub fn status(s: &str) -> String {
    format!(r#"<span class="status s-{0}">{0}</span>"#, esc(s))
}

/// Pretty JSON in a `<pre>`.
pub fn json(value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    format!("<pre>{}</pre>", esc(&text))
}

/// One series of the overview's chart: a name, a CSS class, a count per minute.
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub counts: Vec<u32>,
}

/// Stacked bars, one per minute, oldest on the left; a `<title>` per bar
/// and a table of the same numbers for screen readers.
pub fn chart(series: &[Series<'_>], minutes: usize) -> String {
    let (width, height) = (720.0, 160.0);
    let slot = width / minutes as f64;
    let totals: Vec<u32> = (0..minutes)
        .map(|m| series.iter().map(|s| s.counts[m]).sum())
        .collect();
    let max = f64::from(totals.iter().copied().max().unwrap_or(0).max(1));
    let mut svg = format!(
        r#"<svg viewBox="0 0 {width} {height}" class="chart" role="img" aria-label="Runs per minute by status, last hour">"#
    );
    for m in 0..minutes {
        let mut y = height;
        for s in series {
            let n = s.counts[m];
            if n == 0 {
                continue;
            }
            let h = f64::from(n) / max * (height - 10.0);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"><title>{} {} min ago: {n}</title></rect>"#,
                s.class,
                m as f64 * slot + 1.0,
                slot - 2.0,
                s.name,
                minutes - m,
            );
        }
    }
    svg.push_str("</svg>");
    let legend: String = series
        .iter()
        .map(|s| {
            format!(
                r#"<span class="key {}">{}: {}</span>"#,
                s.class,
                s.name,
                s.counts.iter().sum::<u32>()
            )
        })
        .collect();
    format!(r#"<figure>{svg}<figcaption>{legend}</figcaption></figure>"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
