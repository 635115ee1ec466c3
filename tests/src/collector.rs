//! A local OpenTelemetry collector for tests of traces: it takes OTLP/HTTP
//! JSON exports (`POST /v1/traces`) and keeps every span.

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// One span as exported.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent: String,
    pub name: String,
    /// The span's attributes (`key` → value as JSON, e.g. `{"stringValue": …}`).
    pub attributes: Value,
}

/// A running collector; stops on drop.
pub struct Collector {
    pub url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Collector {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(take))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let url = format!(
            "http://{}/v1/traces",
            listener.local_addr().expect("address")
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Collector { url, spans, task }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn take(
    State(spans): State<Arc<Mutex<Vec<Span>>>>,
    Json(export): Json<Value>,
) -> Json<Value> {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let mut got = spans.lock().expect("spans");
    let resources = export["resourceSpans"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for resource in &resources {
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for s in scope["spans"].as_array().into_iter().flatten() {
                got.push(Span {
                    trace_id: text(s, "traceId"),
                    span_id: text(s, "spanId"),
                    parent: text(s, "parentSpanId"),
                    name: text(s, "name"),
                    attributes: s["attributes"].clone(),
                });
            }
        }
    }
    Json(serde_json::json!({}))
}
