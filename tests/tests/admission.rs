//! Admission before compilation: a component built to be slow to compile is
//! refused with `too_costly` before the compiler sees it, leaves no compiled
//! artifact behind, and the node answers throughout; twenty such uploads at
//! once change nothing. Accepted plugins compile at most N at a time.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use taskhost_runtime::{CompileBudget, Runtime, RuntimeConfig};
use taskhost_tests::server::Server;
use wasm_encoder::{
    CodeSection, Component, Function, FunctionSection, Instruction, Module, ModuleSection,
    TypeSection,
};

/// A component whose one function is `body_bytes` of `i32.const 0; drop`:
/// hundreds of thousands of instructions for the compiler.
fn costly(body_bytes: usize) -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut body = Function::new([]);
    for _ in 0..body_bytes / 3 {
        body.instruction(&Instruction::I32Const(0));
        body.instruction(&Instruction::Drop);
    }
    body.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&body);
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_to_be_slow_to_compile_is_refused_before_compiling() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let wasm = costly(3 << 20);
    // Twenty tenants at once (one tenant's uploads past two waiting would
    // be refused as busy; see compile_fairness.rs).
    let tokens: Vec<String> = (0..20).map(|i| s.admin(&format!("t{i}"))).collect();
    let uploads = tokens
        .iter()
        .map(|token| upload(&s, token, "costly", wasm.clone()));
    let health = s.call(Method::GET, "/healthz", None, None);
    let (results, (health, _)) = tokio::join!(join_all(uploads), health);
    assert_eq!(health, StatusCode::OK);
    for (status, body) in results {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "too_costly", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("function body"), "{message}");
    }
    let artifacts = s.data_dir().join("artifacts");
    let left = std::fs::read_dir(&artifacts).map_or(0, |d| d.count());
    assert_eq!(left, 0, "no artifact of a refused plugin");

    // A plugin refused for what it exports (no `run`, also checked before
    // compiling) leaves none either; an accepted one does.
    let refused = costly(1000);
    let (status, _) = upload(&s, &token, "no-run", refused).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(std::fs::read_dir(&artifacts).map_or(0, |d| d.count()), 0);
    let hello = taskhost_tests::plugin("hello");
    let (status, _) = upload(&s, &token, "hello", hello).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(std::fs::read_dir(&artifacts).map_or(0, |d| d.count()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_uploads_at_once_compile_at_most_the_configured_number_at_a_time() {
    let s = Server::start_with(None, &["--max-compiles", "1"], None);
    let hello = taskhost_tests::plugin("hello");
    // The same bytes from twenty tenants: each upload compiles (uploads do
    // not take compiled code from a cache, so that their time tells nothing
    // about other tenants' uploads).
    let tokens: Vec<String> = (0..20).map(|i| s.admin(&format!("t{i}"))).collect();
    let uploads = tokens
        .iter()
        .map(|token| upload(&s, token, "hello", hello.clone()));
    for (status, body) in join_all(uploads).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let text = s.metrics().await;
    let peak = taskhost_tests::metric_value(&text, "taskhost_compilations_peak");
    assert_eq!(peak, 1.0, "{text}");
}

async fn upload(s: &Server, token: &str, name: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
    let response = s
        .client
        .post(s.at(&format!("/v1/plugins?name={name}&version=1.0.0")))
        .bearer_auth(token)
        .body(wasm)
        .send()
        .await
        .expect("upload");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

#[test]
fn accepted_plugins_compile_at_most_n_at_a_time() {
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 4,
        compile: CompileBudget {
            concurrent: 1,
            ..CompileBudget::default()
        },
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let hello = taskhost_tests::plugin("hello");
    std::thread::scope(|scope| {
        for n in 0..6 {
            let (runtime, wasm) = (&runtime, taskhost_tests::variant(&hello, n));
            scope.spawn(move || runtime.prepare(&wasm).expect("valid"));
        }
    });
    let (now, peak) = runtime.compile_usage();
    assert_eq!((now, peak), (0, 1), "one compilation at a time");
}
