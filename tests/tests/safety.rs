//! A shared node against a hostile or careless tenant, through the real
//! binary and real HTTP, on both stores: what a run produces is bounded
//! before it is kept, out-of-range policies are refused naming the field, and
//! one tenant's flood cannot keep another tenant's run waiting.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_runtime::{MAX_ERROR_BYTES, MAX_NOTE_BYTES, MAX_STORED_OUTCOME_BYTES};
use taskhost_tests::metric_value;
use taskhost_tests::server::Server;

/// The test node's largest fuel: its `--max-run-fuel`.
const NODE_MAX_FUEL: u64 = 10_000_000_000;

taskhost_tests::both_stores!(
    with(&["--workers", "8", "--max-run-fuel", "10000000000"], None)
    outcomes_are_bounded_before_they_are_kept,
    out_of_range_policies_are_refused_naming_the_field,
    a_flood_at_the_top_priority_does_not_starve_another_tenant
);

/// Polls an execution until it is final; returns it and its stored size.
async fn finished(s: &Server, token: &str, id: &str, within: Duration) -> (Value, usize) {
    let deadline = Instant::now() + within;
    loop {
        let response = s
            .client
            .get(s.at(&format!("/v1/executions/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        let text = response.text().await.expect("body");
        let e: Value = serde_json::from_str(&text).expect("json");
        let status = e["status"].as_str().unwrap_or_default();
        if !matches!(status, "queued" | "running") {
            return (e, text.len());
        }
        assert!(Instant::now() < deadline, "execution {id} still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(s: &Server, token: &str, body: Value) -> Value {
    let (status, e) = s
        .call(Method::POST, "/v1/executions", Some(token), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{e}");
    e
}

/// The empty-log loop of the report, at the node's largest fuel and a
/// 15-minute timeout, and the other floods: each ends with its documented
/// status, the stored execution stays under the ceiling, and the server's
/// memory grows by less than 64 MiB plus the run's memory limit.
async fn outcomes_are_bounded_before_they_are_kept(s: Server) {
    let token = s.admin("acme");
    let abuse = s.upload(&token, "test-abuse").await;
    let pid = abuse["id"].as_str().expect("id");
    // Warm up (compile, first store writes) before measuring memory.
    let warm = submit(
        &s,
        &token,
        json!({"plugin_id": pid, "input": {"mode": "escape_output", "n": 10}}),
    )
    .await;
    finished(
        &s,
        &token,
        warm["id"].as_str().expect("id"),
        Duration::from_secs(60),
    )
    .await;

    let memory_limit: u64 = 64 << 20;
    let cases = [
        (
            "empty log lines forever",
            json!({"mode": "empty_logs"}),
            json!({"timeout": "15m", "fuel": NODE_MAX_FUEL}),
            "out_of_fuel",
        ),
        (
            "progress notes forever",
            json!({"mode": "progress_flood", "n": 65536}),
            json!({"timeout": "15m", "fuel": NODE_MAX_FUEL}),
            "out_of_fuel",
        ),
        (
            "a 16 MiB error message",
            json!({"mode": "huge_error", "n": 16 << 20}),
            json!({}),
            "failed",
        ),
        (
            "output that JSON must escape, over the output limit as stored",
            json!({"mode": "escape_output", "n": 1 << 20}),
            json!({"output_bytes": 4 << 20}),
            "output_too_large",
        ),
        (
            "output nested 200 deep (it could never be read back)",
            json!({"mode": "nested_output", "n": 200}),
            json!({}),
            "output_too_large",
        ),
        (
            "output nested 127 deep (inside its record, deeper than serde_json reads)",
            json!({"mode": "nested_output", "n": 127}),
            json!({}),
            "output_too_large",
        ),
        (
            "stdout that JSON must escape",
            json!({"mode": "escape_stdout", "n": 1 << 20}),
            json!({"log_bytes": 1 << 20}),
            "succeeded",
        ),
    ];
    for (what, input, limits, expected) in cases {
        let (_, peak_before) = s.memory_kib();
        let started = Instant::now();
        let e = submit(
            &s,
            &token,
            json!({"plugin_id": pid, "input": input, "limits": limits}),
        )
        .await;
        let (e, stored) = finished(
            &s,
            &token,
            e["id"].as_str().expect("id"),
            Duration::from_secs(600),
        )
        .await;
        let (_, peak_after) = s.memory_kib();
        let outcome = &e["outcome"];
        eprintln!(
            "{what}: {} in {:.1}s, fuel {}, stored {} bytes, peak RSS +{} KiB",
            outcome["status"],
            started.elapsed().as_secs_f64(),
            outcome["fuel_used"],
            stored,
            peak_after.saturating_sub(peak_before)
        );
        assert_eq!(outcome["status"], expected, "{what}: {outcome:.300}");
        assert!(
            stored < MAX_STORED_OUTCOME_BYTES,
            "{what}: {stored} bytes stored"
        );
        let growth = (peak_after.saturating_sub(peak_before)) << 10;
        assert!(
            growth < (64 << 20) + memory_limit,
            "{what}: peak RSS grew by {} MiB",
            growth >> 20
        );
        let message = outcome["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.len() <= MAX_ERROR_BYTES,
            "{what}: error of {}",
            message.len()
        );
        let note = outcome["progress"]["note"].as_str().unwrap_or_default();
        assert!(
            note.len() <= MAX_NOTE_BYTES,
            "{what}: note of {}",
            note.len()
        );
        let stdout = serde_json::to_string(&outcome["stdout"]).expect("json");
        assert!(
            stdout.len() <= (1 << 20) + 2,
            "{what}: stdout of {}",
            stdout.len()
        );
    }
    assert!(s.memory_kib().0 > 0, "the server is still up");
}

/// Reads the node's free workers and tenants holding slots from /metrics.
async fn slots(s: &Server) -> (u64, u64) {
    let text = s.metrics().await;
    let gauge = |name: &str| metric_value(&text, name) as u64;
    (
        gauge("taskhost_workers_free"),
        gauge("taskhost_tenants_running"),
    )
}

/// At least 20 out-of-range policies on every route that takes them: each a
/// 422 naming the field; nothing is stored; the node keeps every slot.
async fn out_of_range_policies_are_refused_naming_the_field(s: Server) {
    let token = s.admin("acme");
    let hello = s.upload(&token, "hello").await;
    let pid = hello["id"].as_str().expect("id").to_owned();
    let (status, created) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&token),
            Some(json!({"name": "base", "plugin_id": pid, "trigger": {"kind": "manual"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = created["id"].as_str().expect("id").to_owned();

    // (what, fields to merge, the field named in the error)
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "zero attempts",
            json!({"retry": {"max_attempts": 0}}),
            "retry.max_attempts",
        ),
        (
            "1000 attempts",
            json!({"retry": {"max_attempts": 1000}}),
            "retry.max_attempts",
        ),
        (
            "a million-year backoff",
            json!({"retry": {"max_attempts": 100, "initial_backoff": "1000000y", "max_backoff": "1000000y"}}),
            "retry.initial_backoff",
        ),
        (
            "max backoff over a day",
            json!({"retry": {"max_backoff": "25h"}}),
            "retry.max_backoff",
        ),
        (
            "initial over max backoff",
            json!({"retry": {"initial_backoff": "10m", "max_backoff": "1m"}}),
            "retry.initial_backoff",
        ),
        (
            "priority i32::MAX",
            json!({"priority": 2147483647}),
            "priority",
        ),
        (
            "priority i32::MIN",
            json!({"priority": -2147483648i64}),
            "priority",
        ),
        ("priority 101", json!({"priority": 101}), "priority"),
        (
            "fuel over the cap",
            json!({"limits": {"fuel": NODE_MAX_FUEL + 1}}),
            "limits.fuel",
        ),
        ("zero fuel", json!({"limits": {"fuel": 0}}), "limits.fuel"),
        (
            "memory over the cap",
            json!({"limits": {"memory_bytes": 2u64 << 30}}),
            "limits.memory_bytes",
        ),
        (
            "zero memory",
            json!({"limits": {"memory_bytes": 0}}),
            "limits.memory_bytes",
        ),
        (
            "timeout over the cap",
            json!({"limits": {"timeout": "16m"}}),
            "limits.timeout",
        ),
        (
            "a hundred-year timeout",
            json!({"limits": {"timeout": "100y"}}),
            "limits.timeout",
        ),
        (
            "zero timeout",
            json!({"limits": {"timeout": "0s"}}),
            "limits.timeout",
        ),
        (
            "output over the cap",
            json!({"limits": {"output_bytes": 16 << 20}}),
            "limits.output_bytes",
        ),
        (
            "logs over the cap",
            json!({"limits": {"log_bytes": 16 << 20}}),
            "limits.log_bytes",
        ),
        (
            "retention of a second",
            json!({"retention": "1s"}),
            "retention",
        ),
        (
            "retention of ten years",
            json!({"retention": "10y"}),
            "retention",
        ),
    ];
    // Only schedules have these.
    let schedule_only: Vec<(&str, Value, &str)> = vec![
        (
            "catch-up window of a year",
            json!({"catch_up": {"mode": "all", "window": "365d"}}),
            "catch_up.window",
        ),
        ("jitter of two days", json!({"jitter": "2d"}), "jitter"),
        (
            "a cron every second under a 1s quota is fine, every 0.5s is not possible; an interval of 0s",
            json!({"trigger": {"kind": "interval", "every": "0s"}}),
            "trigger",
        ),
    ];
    let mut checked = 0;
    let check = |what: &str, status: StatusCode, body: &Value, field: &str| {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field.split('.').next_back().unwrap_or(field))),
            "{what}: the message names the field: {body}"
        );
    };
    let merge = |mut base: Value, extra: &Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    for (what, extra, field) in &cases {
        let run = merge(json!({"plugin_id": pid}), extra);
        let (status, body) = s
            .call(Method::POST, "/v1/executions", Some(&token), Some(run))
            .await;
        check(what, status, &body, field);
        let schedule = merge(
            json!({"name": format!("s-{checked}"), "plugin_id": pid, "trigger": {"kind": "manual"}}),
            extra,
        );
        let (status, body) = s
            .call(Method::POST, "/v1/schedules", Some(&token), Some(schedule))
            .await;
        check(what, status, &body, field);
        let path = format!("/v1/schedules/{sid}");
        let (status, body) = s
            .call(Method::PATCH, &path, Some(&token), Some(extra.clone()))
            .await;
        check(what, status, &body, field);
        checked += 3;
    }
    for (what, extra, field) in &schedule_only {
        let schedule = merge(
            json!({"name": format!("s-{checked}"), "plugin_id": pid, "trigger": {"kind": "manual"}}),
            extra,
        );
        let (status, body) = s
            .call(Method::POST, "/v1/schedules", Some(&token), Some(schedule))
            .await;
        if *field == "trigger" {
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        } else {
            check(what, status, &body, field);
        }
        checked += 1;
    }
    assert!(checked >= 20 * 3, "{checked} cases");

    // Nothing was stored, and the base schedule is as it was.
    let (_, list) = s
        .call(Method::GET, "/v1/schedules", Some(&token), None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    let (_, runs) = s
        .call(Method::GET, "/v1/executions", Some(&token), None)
        .await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(0), "{runs}");

    // The largest policies that are allowed run, retry and end without harm.
    let body = json!({
        "plugin_id": pid,
        "input": {"name": "edge"},
        "priority": 100,
        "retry": {"max_attempts": 100, "initial_backoff": "24h", "max_backoff": "24h"},
        "retention": "366d",
        "wait": "30s",
    });
    let (status, e) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "succeeded");

    // A pause that lands between a read and a patch is kept (the patch is
    // applied inside the compare-and-swap), and trigger-now takes jitter.
    let path = format!("/v1/schedules/{sid}");
    s.call(Method::POST, &format!("{path}/pause"), Some(&token), None)
        .await;
    let (status, patched) = s
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"jitter": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["paused"], true, "{patched}");
    let (status, fired) = s
        .call(Method::POST, &format!("{path}/trigger"), Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{fired}");
    let due = fired["due_at"].as_str().expect("due_at");
    let created = fired["created_at"].as_str().expect("created_at");
    assert!(
        due >= created,
        "trigger-now is due at or after now: {fired}"
    );

    // Every worker and tenant slot is free again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (free, tenants) = slots(&s).await;
        if (free, tenants) == (8, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slots: {free} free, {tenants} tenants"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tenant A queues 2,000 long runs at the top priority (800 on SecantusDB,
/// whose Python server takes minutes for 2,000); tenant B's runs then start
/// within a second each (p99 over 20; 3 s on SecantusDB).
async fn a_flood_at_the_top_priority_does_not_starve_another_tenant(s: Server) {
    let a = s.admin("tenant-a");
    let b = s.admin("tenant-b");
    let sleep = s.upload(&a, "test-sleep").await;
    let hello = s.upload(&b, "hello").await;
    let (sleep, hello) = (
        sleep["id"].as_str().expect("id").to_owned(),
        hello["id"].as_str().expect("id").to_owned(),
    );
    let flood = json!({
        "plugin_id": sleep,
        "input": {"ms": 120_000},
        "limits": {"timeout": "5m"},
        "priority": 100,
    });
    let mut posts = tokio::task::JoinSet::new();
    // What is measured is the other tenant's wait, not the flood's: a flood
    // post may wait long on a loaded test database (SecantusDB under the
    // whole suite once took over the server client's 60 s).
    let patient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .expect("client");
    let per_poster = if s.store.is_some() { 100 } else { 250 };
    for _ in 0..8 {
        let (client, url, a, flood) = (
            patient.clone(),
            s.at("/v1/executions"),
            a.clone(),
            flood.clone(),
        );
        posts.spawn(async move {
            for _ in 0..per_poster {
                let response = client
                    .post(&url)
                    .bearer_auth(&a)
                    .json(&flood)
                    .send()
                    .await
                    .expect("post");
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            }
        });
    }
    while let Some(done) = posts.join_next().await {
        done.expect("flood");
    }
    let mut waits = Vec::new();
    for i in 0..20 {
        let e = submit(
            &s,
            &b,
            json!({"plugin_id": hello, "input": {"name": format!("b{i}")}}),
        )
        .await;
        let (e, _) = finished(
            &s,
            &b,
            e["id"].as_str().expect("id"),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(e["status"], "succeeded", "{e}");
        let at = |f: &str| {
            chrono::DateTime::parse_from_rfc3339(e[f].as_str().expect("time")).expect("time")
        };
        waits.push((at("started_at") - at("created_at")).num_milliseconds());
    }
    waits.sort();
    let p99 = waits[((waits.len() as f64) * 0.99).ceil() as usize - 1];
    eprintln!("tenant B start delays (ms): {waits:?}; p99 {p99} ms");
    // Starved, B would wait behind A's 2,000 runs of two minutes each. On
    // SecantusDB (a MongoDB-wire server in Python, shared by the suite's
    // parallel tests) one claim alone can take over a second, so the bound
    // there is looser; its speed is not ours.
    let bound = if s.store.is_some() { 3000 } else { 1000 };
    assert!(p99 <= bound, "p99 start delay {p99} ms: {waits:?}");
}
