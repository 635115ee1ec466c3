//! W3C trace context across taskhost's hops: the `traceparent` header in
//! and out, and the ids a queued execution keeps so that its run, on any
//! node and later, joins the trace of the request that made it.
//!
//! Spans are `tracing` spans; the binary's OpenTelemetry layer (when an
//! OTLP endpoint is configured) gives them trace and span ids. Without it
//! every function here is a no-op: [`current`] is `None`, nothing is
//! injected, and a parent set is ignored.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header.
pub const TRACEPARENT: &str = "traceparent";

/// The trace id and span id (lower-case hex) of `span`, if it is traced.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    let context = span.context();
    let sc = context.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// [`ids`] of the current span.
pub fn current() -> Option<(String, String)> {
    ids(&tracing::Span::current())
}

/// Makes `span` a child of the remote span `span_id` of trace `trace_id`
/// (hex, as [`ids`] gives them); ignored if they are not valid ids. Call it
/// before the span is first entered.
pub fn set_parent(span: &tracing::Span, trace_id: &str, span_id: &str) {
    let (Ok(trace), Ok(id)) = (TraceId::from_hex(trace_id), SpanId::from_hex(span_id)) else {
        return;
    };
    let sc = SpanContext::new(trace, id, TraceFlags::SAMPLED, true, TraceState::default());
    if sc.is_valid() {
        let parent = opentelemetry::Context::new().with_remote_span_context(sc);
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of the caller's span named by a `traceparent`
/// header (`00-<trace id>-<span id>-<flags>`), if `headers` has a valid one.
pub fn follow_header(span: &tracing::Span, headers: &http::HeaderMap) {
    let Some(value) = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let mut parts = value.trim().split('-');
    if let (Some("00"), Some(trace), Some(id), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) && trace.len() == 32
        && id.len() == 16
        && flags.len() == 2
    {
        set_parent(span, trace, id);
    }
}

/// Adds `span`'s `traceparent` to an outgoing request's headers.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if let Some((trace, id)) = ids(span)
        && let Ok(value) = http::HeaderValue::from_str(&format!("00-{trace}-{id}-01"))
    {
        headers.insert(TRACEPARENT, value);
    }
}
