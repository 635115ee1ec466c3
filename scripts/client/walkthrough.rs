//! The README walkthrough through a Rust client generated from
//! /openapi.json by openapi-generator (see scripts/client-walkthrough.sh,
//! which copies this file into the generated crate as an example).
//! Arguments: BASE_URL TOKEN WASM.

use std::time::{Duration, Instant};
use taskhost_client::apis::configuration::Configuration;
use taskhost_client::apis::{executions_api, plugins_api, schedules_api};
use taskhost_client::models::{ExecutionStatus, NewExecution, NewSchedule};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, wasm] = &args[..] else {
        panic!("usage: walkthrough BASE_URL TOKEN WASM");
    };
    let config = Configuration {
        base_path: base.clone(),
        bearer_access_token: Some(token.clone()),
        ..Configuration::default()
    };
    let bytes = std::fs::read(wasm).expect("read the plugin");
    let plugin = plugins_api::plugins_upload(&config, bytes, Some("hello-rs"), Some("1.0.0"))
        .expect("upload");
    let listed = plugins_api::plugins_list(&config, None, None, None).expect("list");
    assert!(listed.items.iter().any(|p| p.id == plugin.id));

    let run: NewExecution = serde_json::from_value(serde_json::json!({
        "plugin_id": plugin.id, "input": {"name": "Ada"}, "wait": "20s",
    }))
    .expect("a new execution");
    let done = executions_api::executions_submit(&config, run, None).expect("submit");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let again = executions_api::executions_get(&config, &done.id).expect("get");
    let output = again
        .outcome
        .flatten()
        .and_then(|o| o.output.flatten())
        .expect("an output");
    assert_eq!(output, serde_json::json!("Hello, Ada!"));

    let schedule: NewSchedule = serde_json::from_value(serde_json::json!({
        "name": "every-second-rs", "plugin_id": plugin.id,
        "trigger": {"kind": "interval", "every": "1s"}, "input": {"name": "cron"},
    }))
    .expect("a new schedule");
    let schedule = schedules_api::schedules_create(&config, schedule).expect("create");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = executions_api::executions_list(
            &config,
            Some(&schedule.id),
            None,
            Some("succeeded"),
            None,
            None,
            None,
            None,
        )
        .expect("list executions");
        if !page.items.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled run in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let paused = schedules_api::schedules_pause(&config, &schedule.id).expect("pause");
    assert_eq!(paused.paused, Some(true));
    println!("rust client walkthrough: upload, run, schedule, pause: ok");
}
