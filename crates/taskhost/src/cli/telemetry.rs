//! Logs and traces: where `tracing`'s spans and events go.
//!
//! Logs go to stderr (stdout is for results), as text or JSON lines, filtered
//! by `TASKHOST_LOG` or `RUST_LOG` (default `warn`).
//!
//! Traces are off unless `serve` is given an OTLP endpoint
//! (`--otlp-endpoint`): then the spans at `info` and above — `request` (the
//! API), `enqueue` (the intake), `run` (plugin, attempt, time queued,
//! status, fuel), `http` (each outbound request of a plugin) and `webhook`
//! (each delivery attempt) — are exported over OTLP/HTTP (JSON) in batches,
//! with the log filter applying to the logs alone. A run joins the trace of
//! the request that made it through the ids its execution keeps, on
//! whatever node runs it; see [`taskhost_net::trace`].

use super::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How long one export may take.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Installs the subscriber: logs, and — with `traces` — the OpenTelemetry
/// layer that exports spans through it.
pub fn init(format: LogFormat, traces: Option<&SdkTracerProvider>) {
    let filter = std::env::var("TASKHOST_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => logs.boxed(),
        // Each line one JSON object: the event's fields at the top level, the
        // enclosing spans' fields (request_id, tenant, execution, node) in `spans`.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    };
    let traces = traces.map(|provider| {
        // The exporter's own HTTP client is not traced (nor are the
        // libraries under it), or every export would make spans to export.
        let only_ours = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF)
            .with_target("reqwest", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("taskhost"))
            .with_filter(only_ours)
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(EnvFilter::new(filter)))
        .with(traces)
        .try_init();
}

/// The exporter of traces to `endpoint` (OTLP over HTTP with JSON bodies,
/// e.g. `http://collector:4318/v1/traces`), batching on its own thread.
pub fn traces(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    // The exporter's client is reqwest's, which needs the process's TLS
    // provider chosen even for plain HTTP.
    taskhost_net::tls::install_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("could not make the OTLP exporter for {endpoint}: {e}"))?;
    let resource = Resource::builder().with_service_name("taskhost").build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Sends the spans not exported yet and stops the exporter (at exit).
pub async fn flush(provider: SdkTracerProvider) {
    let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(e)) = done {
        eprintln!("warning: could not export the last traces: {e}");
    }
}
