//! The runtime against real plugins: every way a run can end, validation of
//! bad plugins, the host interface, and the artifact cache.

use std::sync::{Arc, OnceLock};
use std::time::Duration;
use taskhost_runtime::{
    DirArtifacts, InvalidPlugin, KvNamespace, Limits, LogLevel, MemoryKv, Outcome, Prepared,
    RunRequest, Runtime, RuntimeConfig, Status,
};
use taskhost_tests::{component_importing, plugin};

/// One runtime for the whole test binary, as on a node: misbehaving plugins
/// must leave it working for everyone else.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            max_concurrent_runs: 64,
            ..RuntimeConfig::default()
        })
        .expect("runtime")
    })
}

async fn run_with(name: &str, input: &str, limits: Limits) -> Outcome {
    let mut request = RunRequest::new(input.as_bytes());
    request.limits = limits;
    runtime().run_wasm(&plugin(name), request).await
}

async fn run(name: &str, input: &str) -> Outcome {
    run_with(name, input, Limits::default()).await
}

fn message(outcome: &Outcome) -> &str {
    outcome
        .error
        .as_ref()
        .map(|e| e.message.as_str())
        .unwrap_or_default()
}

/// After any misbehaviour, a well-behaved run on the same runtime succeeds.
async fn hello_still_works() {
    let outcome = run("hello", r#"{"name":"Ada"}"#).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert_eq!(
        outcome.output_json(),
        Some(serde_json::json!("Hello, Ada!"))
    );
}

#[tokio::test]
async fn hello_succeeds_with_output_logs_and_metrics() {
    let outcome = run("hello", r#"{"name":"Ada"}"#).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    assert_eq!(
        outcome.output_json(),
        Some(serde_json::json!("Hello, Ada!"))
    );
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].level, LogLevel::Info);
    assert_eq!(outcome.logs[0].message, "greeting Ada");
    assert!(outcome.fuel_used > 0);
    assert!(outcome.peak_memory_bytes > 0);
    assert!(outcome.error.is_none());
}

#[tokio::test]
async fn input_that_does_not_deserialize_is_a_fatal_failure() {
    let outcome = run("hello", r#"{"nom":"Ada"}"#).await;
    assert_eq!(outcome.status, Status::Failed);
    let error = outcome.error.expect("error");
    assert!(!error.retryable);
    assert!(error.message.contains("invalid input"), "{}", error.message);
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let limits = Limits {
        fuel: 20_000_000,
        ..Limits::default()
    };
    let outcome = run_with("test-spin", "null", limits).await;
    assert_eq!(outcome.status, Status::OutOfFuel, "{outcome:?}");
    assert_eq!(outcome.fuel_used, 20_000_000);
    assert!(message(&outcome).contains("fuel"), "{}", message(&outcome));
    hello_still_works().await;
}

#[tokio::test]
async fn infinite_loop_times_out() {
    let limits = Limits {
        fuel: u64::MAX,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let outcome = run_with("test-spin", "null", limits).await;
    assert_eq!(outcome.status, Status::TimedOut, "{outcome:?}");
    assert!(outcome.duration_us >= 300_000);
    assert!(
        outcome.fuel_used > 10_000_000,
        "fuel burned until the deadline: {}",
        outcome.fuel_used
    );
    assert!(
        message(&outcome).contains("timeout of 300ms"),
        "{}",
        message(&outcome)
    );
    assert!(outcome.error.as_ref().is_some_and(|e| e.retryable));
    hello_still_works().await;
}

#[tokio::test]
async fn memory_hog_hits_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let outcome = run_with("test-memhog", "null", limits).await;
    assert_eq!(outcome.status, Status::MemoryLimit, "{outcome:?}");
    assert!(outcome.peak_memory_bytes <= 32 << 20);
    assert!(outcome.peak_memory_bytes > 16 << 20);
    assert!(
        message(&outcome).contains("limit of 33554432 bytes"),
        "{}",
        message(&outcome)
    );
    hello_still_works().await;
}

#[tokio::test]
async fn deep_recursion_traps_with_stack_overflow() {
    let outcome = run("test-recursion", "null").await;
    assert_eq!(outcome.status, Status::Trapped, "{outcome:?}");
    assert!(
        message(&outcome).contains("stack overflow"),
        "{}",
        message(&outcome)
    );
    hello_still_works().await;
}

#[tokio::test]
async fn shadow_stack_overflow_traps_too() {
    let outcome = run("test-recursion", r#"{"shadow": true}"#).await;
    assert_eq!(outcome.status, Status::Trapped, "{outcome:?}");
    assert!(
        message(&outcome).contains("out of bounds memory access"),
        "{}",
        message(&outcome)
    );
    hello_still_works().await;
}

#[tokio::test]
async fn panic_traps_with_the_panic_message() {
    let outcome = run("test-panic", "null").await;
    assert_eq!(outcome.status, Status::Trapped, "{outcome:?}");
    let msg = message(&outcome);
    assert!(
        msg.contains("panicked: the plugin gave up on purpose"),
        "{msg}"
    );
    assert!(msg.contains("src/lib.rs"), "{msg}");
    assert!(
        outcome
            .error
            .as_ref()
            .and_then(|e| e.backtrace.as_ref())
            .is_some()
    );
    hello_still_works().await;
}

#[tokio::test]
async fn huge_output_is_refused() {
    let outcome = run("test-huge-output", r#"{"mib": 4}"#).await;
    assert_eq!(outcome.status, Status::OutputTooLarge, "{outcome:?}");
    assert!(outcome.output.is_none());
    assert!(
        message(&outcome).contains("limit is 1048576 bytes"),
        "{}",
        message(&outcome)
    );
    hello_still_works().await;
}

#[tokio::test]
async fn stdout_flood_is_cut_off() {
    let limits = Limits {
        log_bytes: 64 << 10,
        ..Limits::default()
    };
    let outcome = run_with("test-flood", r#"{"mib": 16}"#, limits).await;
    assert_eq!(outcome.status, Status::OutputTooLarge, "{outcome:?}");
    // Kept as stored: at most the limit once escaped for JSON (newlines
    // count twice), marked where it was cut.
    let stored = |s: &str| serde_json::to_string(s).map_or(0, |j| j.len() - 2);
    assert!(outcome.stdout.len() > 60 << 10, "{}", outcome.stdout.len());
    assert!(stored(&outcome.stdout) <= 64 << 10);
    assert!(outcome.stdout.ends_with("[truncated]"));
    assert!(stored(&outcome.stderr) <= 64 << 10);
    assert!(
        message(&outcome).contains("more than 65536 bytes to stdout"),
        "{}",
        message(&outcome)
    );
    hello_still_works().await;
}

#[tokio::test]
async fn small_flood_within_the_limit_succeeds() {
    let outcome = run("test-flood", r#"{"mib": 0}"#).await;
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
}

fn rejected(wasm: &[u8]) -> InvalidPlugin {
    match runtime().prepare(wasm) {
        Ok(_) => panic!("the plugin was accepted"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn garbage_bytes_are_rejected() {
    let error = rejected(b"this is not wasm at all");
    assert_eq!(error, InvalidPlugin::NotWasm);
    assert!(error.to_string().contains("not a WebAssembly binary"));
    let outcome = runtime()
        .run_wasm(b"garbage", RunRequest::new("null"))
        .await;
    assert_eq!(outcome.status, Status::InvalidPlugin);
    hello_still_works().await;
}

#[tokio::test]
async fn a_core_module_is_rejected() {
    // The smallest valid core module: magic + version 1.
    let error = rejected(b"\0asm\x01\0\0\0");
    assert_eq!(error, InvalidPlugin::CoreModule);
    assert!(
        error
            .to_string()
            .contains("core WebAssembly module, not a component")
    );
    assert!(error.to_string().contains("wasm32-wasip2"));
}

#[tokio::test]
async fn a_truncated_component_is_rejected() {
    let hello = plugin("hello");
    let error = rejected(&hello[..hello.len() / 2]);
    assert!(matches!(error, InvalidPlugin::Malformed(_)), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("not a valid WebAssembly component")
    );
}

#[tokio::test]
async fn a_component_of_another_world_is_rejected() {
    let error = rejected(&plugin("test-command"));
    assert!(matches!(error, InvalidPlugin::MissingRun(_)), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("does not export `run` of world `taskhost:plugin/task@0.1.0`"),
        "{text}"
    );
    assert!(text.contains("wasi:cli/run"), "{text}");
}

#[tokio::test]
async fn serving_http_is_a_denied_import() {
    let error = rejected(&component_importing("wasi:http/incoming-handler@0.2.6"));
    assert!(matches!(error, InvalidPlugin::DeniedImport(..)), "{error}");
    let text = error.to_string();
    assert!(text.contains("wasi:http/incoming-handler"), "{text}");
    assert!(text.contains("not serve them"), "{text}");
    let error = rejected(&component_importing("acme:evil/thing@1.0.0"));
    assert!(matches!(error, InvalidPlugin::UnknownImport(_)), "{error}");
}

/// A plugin may import `wasi:filesystem` (interpreters do), but with no
/// preopened directory no path resolves: it reads nothing and writes nothing.
#[tokio::test]
async fn a_filesystem_plugin_runs_but_reaches_no_file() {
    let outcome = run("test-fs", "null").await;
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    let text = message(&outcome);
    assert!(!text.contains("root:"), "{text}");
    assert!(
        text.contains("pre-opened")
            || text.contains("No such file")
            || text.contains("not permitted"),
        "{text}"
    );
    hello_still_works().await;
}

/// `run` returns a result; a plugin that exits instead fails, not retried.
#[tokio::test]
async fn a_plugin_that_exits_fails_without_retry() {
    let outcome = run("test-abuse", r#"{"mode":"exit","n":3}"#).await;
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    let error = outcome.error.as_ref().expect("error");
    assert!(!error.retryable, "{outcome:?}");
    assert!(error.message.contains("called exit("), "{}", error.message);
    hello_still_works().await;
}

/// A plugin may import `wasi:sockets`, but every socket operation is refused.
#[tokio::test]
async fn a_socket_plugin_runs_but_connects_nowhere() {
    let outcome = run("test-net", "null").await;
    assert_eq!(outcome.status, Status::Failed, "{outcome:?}");
    let text = message(&outcome).to_lowercase();
    assert!(
        text.contains("denied") || text.contains("not permitted") || text.contains("not supported"),
        "{text}"
    );
    hello_still_works().await;
}

#[tokio::test]
async fn host_interface_kv_config_progress_and_invocation() {
    let kv_runtime = Runtime::with_stores(
        RuntimeConfig {
            max_concurrent_runs: 4,
            ..RuntimeConfig::default()
        },
        Arc::new(taskhost_runtime::MemoryArtifacts::default()),
        Arc::new(MemoryKv::default()),
    )
    .expect("runtime");
    let wasm = plugin("test-kv");
    let prepared = kv_runtime.prepare(&wasm).expect("valid plugin");
    let request = |tenant: &str| {
        let mut r = RunRequest::new("{}");
        r.execution_id = "exec-1".into();
        r.schedule_id = Some("sched-9".into());
        r.attempt = 3;
        r.scheduled_at_ms = 1_700_000_000_000;
        r.config = Arc::new([("greeting".to_owned(), "hi".to_owned())].into());
        r.namespace = KvNamespace::new(tenant, "test-kv");
        r
    };
    let first = kv_runtime.run(&prepared, request("acme")).await;
    assert_eq!(first.status, Status::Succeeded, "{first:?}");
    let out = first.output_json().expect("json output");
    assert_eq!(out["count"], 1);
    assert_eq!(out["deleted"], true);
    assert_eq!(out["deleted_again"], false);
    assert_eq!(out["greeting"], "hi");
    assert_eq!(out["execution_id"], "exec-1");
    assert_eq!(out["schedule_id"], "sched-9");
    assert_eq!(out["attempt"], 3);
    assert_eq!(out["scheduled_at_ms"], 1_700_000_000_000i64);
    assert_eq!(first.progress.as_ref().map(|p| p.percent), Some(50));
    assert!(
        first
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message == "a warning")
    );

    // State persists across runs, per tenant.
    let second = kv_runtime.run(&prepared, request("acme")).await;
    assert_eq!(second.output_json().expect("json")["count"], 2);
    let other_tenant = kv_runtime.run(&prepared, request("globex")).await;
    assert_eq!(other_tenant.output_json().expect("json")["count"], 1);

    let mut retry = request("acme");
    retry.input = br#"{"fail":"retryable"}"#.to_vec();
    let failed = kv_runtime.run(&prepared, retry).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(
        failed
            .error
            .as_ref()
            .map(|e| (e.message.as_str(), e.retryable)),
        Some(("try me again", true))
    );
    let mut fatal = request("acme");
    fatal.input = br#"{"fail":"fatal"}"#.to_vec();
    let failed = kv_runtime.run(&prepared, fatal).await;
    assert_eq!(
        failed
            .error
            .as_ref()
            .map(|e| (e.message.as_str(), e.retryable)),
        Some(("do not try again", false))
    );
}

#[tokio::test]
async fn rollup_keeps_totals_across_runs() {
    let wasm = plugin("rollup");
    let prepared = runtime().prepare(&wasm).expect("valid plugin");
    let mut request = RunRequest::new(r#"{"readings":[1,2,3]}"#);
    request.namespace = KvNamespace::new("rollup-test", "rollup");
    let first = runtime().run(&prepared, request.clone()).await;
    assert_eq!(first.status, Status::Succeeded, "{first:?}");
    request.input = br#"{"readings":[10]}"#.to_vec();
    let second = runtime().run(&prepared, request).await;
    let report = second.output_json().expect("json");
    assert_eq!(report["count"], 4);
    assert_eq!(report["mean"], 4.0);
    assert_eq!(report["min"], 1.0);
    assert_eq!(report["max"], 10.0);
    assert_eq!(report["runs"], 2);
}

#[tokio::test]
async fn precompiled_artifacts_are_reused_across_runtimes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let make = || {
        Runtime::with_stores(
            RuntimeConfig {
                max_concurrent_runs: 4,
                ..RuntimeConfig::default()
            },
            Arc::new(DirArtifacts::new(dir.path())),
            Arc::new(MemoryKv::default()),
        )
        .expect("runtime")
    };
    let wasm = plugin("hello");
    let first = make();
    let (_, how) = first.prepare_traced(&wasm).expect("valid");
    assert_eq!(how, Prepared::Compiled);
    let (_, how) = first.prepare_traced(&wasm).expect("valid");
    assert_eq!(how, Prepared::Cached);
    drop(first);
    let second = make();
    let (plugin, how) = second.prepare_traced(&wasm).expect("valid");
    assert_eq!(how, Prepared::Loaded);
    let outcome = second
        .run(&plugin, RunRequest::new(r#"{"name":"cache"}"#))
        .await;
    assert_eq!(outcome.status, Status::Succeeded);

    // A corrupt artifact is discarded and the plugin recompiled.
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        std::fs::write(entry.path(), b"corrupt").expect("write");
    }
    let third = make();
    let (_, how) = third.prepare_traced(&wasm).expect("valid");
    assert_eq!(how, Prepared::Compiled);
}
