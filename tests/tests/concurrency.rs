//! One process runs 1,000 concurrent `hello` runs next to 100 infinite loops,
//! each loop stopped by its limit, without a single error.

use std::time::Duration;
use taskhost_runtime::{Limits, RunRequest, Runtime, RuntimeConfig, Status};
use taskhost_tests::plugin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_hellos_beside_a_hundred_infinite_loops() {
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 1100,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let hello = runtime.prepare(&plugin("hello")).expect("hello is valid");
    let spin = runtime
        .prepare(&plugin("test-spin"))
        .expect("spin is valid");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let (runtime, spin) = (runtime.clone(), spin.clone());
        tasks.spawn(async move {
            let mut request = RunRequest::new("null");
            // Half stop on fuel, half on the clock.
            request.limits = if i % 2 == 0 {
                Limits {
                    fuel: 50_000_000,
                    ..Limits::default()
                }
            } else {
                Limits {
                    fuel: u64::MAX,
                    timeout: Duration::from_millis(500),
                    ..Limits::default()
                }
            };
            let outcome = runtime.run(&spin, request).await;
            let expected = if i % 2 == 0 {
                Status::OutOfFuel
            } else {
                Status::TimedOut
            };
            assert_eq!(outcome.status, expected, "spin {i}: {:?}", outcome.error);
            outcome.status
        });
    }
    for i in 0..1000u32 {
        let (runtime, hello) = (runtime.clone(), hello.clone());
        tasks.spawn(async move {
            let request = RunRequest::new(format!(r#"{{"name":"n{i}"}}"#));
            let outcome = runtime.run(&hello, request).await;
            assert_eq!(
                outcome.status,
                Status::Succeeded,
                "hello {i}: {:?}",
                outcome.error
            );
            assert_eq!(
                outcome.output_json(),
                Some(serde_json::json!(format!("Hello, n{i}!")))
            );
            outcome.status
        });
    }
    let mut counts = std::collections::HashMap::new();
    while let Some(result) = tasks.join_next().await {
        *counts.entry(result.expect("no task panicked")).or_insert(0) += 1;
    }
    assert_eq!(counts.get(&Status::Succeeded), Some(&1000));
    assert_eq!(counts.get(&Status::OutOfFuel), Some(&50));
    assert_eq!(counts.get(&Status::TimedOut), Some(&50));
}
