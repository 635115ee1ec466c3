//! Black-box tests of the REST API: the real binary on a free port, real HTTP,
//! on the embedded store and (when configured) on MongoDB.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost::api::auth::{Scope, mint_hs256};
use taskhost_tests::plugin;
use taskhost_tests::server::{SECRET, Server};

taskhost_tests::both_stores!(
    schedule_lifecycle,
    adhoc_runs_and_misbehaving_plugins,
    auth_and_tenant_isolation,
    bad_input_table,
    batch_submit
);

async fn call(
    s: &Server,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    s.call(method, path, token, body).await
}

async fn upload(s: &Server, token: &str, name: &str) -> Value {
    s.upload(token, name).await
}

async fn executions(s: &Server, token: &str, query: &str) -> Vec<Value> {
    let (status, page) = call(
        s,
        Method::GET,
        &format!("/v1/executions?limit=1000&{query}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Polls (real time: this is another process on the real clock) until `done`.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn schedule_lifecycle(s: Server) {
    let token = s.admin("acme");
    let hello = upload(&s, &token, "hello").await;
    let body = json!({
        "name": "every-second",
        "plugin_id": hello["id"],
        "trigger": {"kind": "cron", "expr": "* * * * * *", "timezone": "Europe/London"},
        "input": {"name": "cron"}
    });
    let (status, schedule) =
        call(&s, Method::POST, "/v1/schedules", Some(&token), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let id = schedule["id"].as_str().expect("id").to_owned();
    let query = format!("schedule_id={id}&status=succeeded");
    eventually("two successful fires", || async {
        executions(&s, &token, &query).await.len() >= 2
    })
    .await;
    let done = executions(&s, &token, &query).await;
    assert_eq!(done[0]["outcome"]["output"], "Hello, cron!");
    assert_eq!(done[0]["outcome"]["logs"][0]["message"], "greeting cron");

    let (status, paused) = call(
        &s,
        Method::POST,
        &format!("/v1/schedules/{id}/pause"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, paused["paused"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // let in-flight fires finish
    let before = executions(&s, &token, &format!("schedule_id={id}"))
        .await
        .len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = executions(&s, &token, &format!("schedule_id={id}"))
        .await
        .len();
    assert_eq!(before, after, "no new executions while paused");

    let (status, _) = call(
        &s,
        Method::POST,
        &format!("/v1/schedules/{id}/resume"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    eventually("fires after resume", || async {
        executions(&s, &token, &format!("schedule_id={id}"))
            .await
            .len()
            > after
    })
    .await;
    let (status, triggered) = call(
        &s,
        Method::POST,
        &format!("/v1/schedules/{id}/trigger"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, triggered["schedule_id"].as_str()),
        (StatusCode::ACCEPTED, Some(id.as_str()))
    );

    let (status, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/plugins/{}", hello["id"].as_str().expect("id")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a plugin in use cannot be deleted"
    );
    let (status, _) = call(
        &s,
        Method::DELETE,
        &format!("/v1/schedules/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &s,
        Method::GET,
        &format!("/v1/schedules/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn adhoc_runs_and_misbehaving_plugins(s: Server) {
    let token = s.admin("acme");
    let cases = [
        (
            "hello",
            json!({"name": "Ada"}),
            json!({}),
            "succeeded",
            "succeeded",
        ),
        (
            "test-spin",
            json!(null),
            json!({"fuel": 10_000_000}),
            "failed",
            "out_of_fuel",
        ),
        (
            "test-spin",
            json!(null),
            json!({"fuel": 100_000_000_000u64, "timeout": "300ms"}),
            "failed",
            "timed_out",
        ),
        (
            "test-memhog",
            json!(null),
            json!({"memory_bytes": 16 << 20}),
            "failed",
            "memory_limit",
        ),
        (
            "test-recursion",
            json!(null),
            json!({}),
            "failed",
            "trapped",
        ),
        ("test-panic", json!(null), json!({}), "failed", "trapped"),
        (
            "test-huge-output",
            json!({"mib": 2}),
            json!({}),
            "failed",
            "output_too_large",
        ),
        (
            "test-flood",
            json!({"mib": 4}),
            json!({}),
            "failed",
            "output_too_large",
        ),
    ];
    let mut plugins = std::collections::HashMap::new();
    for (name, input, limits, status, run_status) in cases {
        if !plugins.contains_key(name) {
            plugins.insert(name, upload(&s, &token, name).await["id"].clone());
        }
        let body =
            json!({"plugin_id": plugins[name], "input": input, "limits": limits, "wait": "20s"});
        let (code, execution) =
            call(&s, Method::POST, "/v1/executions", Some(&token), Some(body)).await;
        assert_eq!(code, StatusCode::OK, "{name}: {execution}");
        // A retryable failure (timeout, trap) with no attempts left is `dead`.
        let final_status = execution["status"].as_str().unwrap_or_default();
        assert!(
            final_status == status || (status == "failed" && final_status == "dead"),
            "{name}: {execution}"
        );
        assert_eq!(
            execution["outcome"]["status"], run_status,
            "{name}: {execution}"
        );
        if run_status == "succeeded" {
            assert_eq!(execution["outcome"]["output"], "Hello, Ada!");
        } else {
            assert!(
                execution["outcome"]["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        let id = execution["id"].as_str().expect("id");
        let (code, fetched) = call(
            &s,
            Method::GET,
            &format!("/v1/executions/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(
            (code, &fetched["outcome"]["status"]),
            (StatusCode::OK, &json!(run_status))
        );
    }
    let (code, rerun) = call(
        &s,
        Method::POST,
        &format!("/v1/executions/{}/rerun", "nope"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{rerun}");
}

async fn auth_and_tenant_isolation(s: Server) {
    let a = s.admin("tenant-a");
    let b = s.admin("tenant-b");
    let hello = upload(&s, &a, "hello").await;
    let plugin_id = hello["id"].as_str().expect("id").to_owned();
    let body = json!({"name": "a-schedule", "plugin_id": plugin_id, "trigger": {"kind": "manual"}});
    let (_, schedule) = call(&s, Method::POST, "/v1/schedules", Some(&a), Some(body)).await;
    let schedule_id = schedule["id"].as_str().expect("id").to_owned();
    let body = json!({"plugin_id": plugin_id, "input": {"name": "a"}, "wait": "10s"});
    let (_, execution) = call(&s, Method::POST, "/v1/executions", Some(&a), Some(body)).await;
    let execution_id = execution["id"].as_str().expect("id").to_owned();

    // No token, a bad signature, an expired token, a missing scope.
    let (code, body) = call(&s, Method::GET, "/v1/plugins", None, None).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let forged = mint_hs256(
        b"not-the-secret",
        "x",
        "tenant-a",
        &[Scope::Admin],
        Duration::from_secs(60),
        chrono::Utc::now(),
    );
    let (code, _) = call(
        &s,
        Method::GET,
        "/v1/plugins",
        Some(&forged.expect("mint")),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let old = chrono::Utc::now() - chrono::Duration::hours(2);
    let expired = mint_hs256(
        SECRET.as_bytes(),
        "x",
        "tenant-a",
        &[Scope::Admin],
        Duration::from_secs(60),
        old,
    );
    let (code, body) = call(
        &s,
        Method::GET,
        "/v1/plugins",
        Some(&expired.expect("mint")),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{body}"
    );
    let reader = s.token("tenant-a", &[Scope::PluginsRead]);
    let (code, body) = call(
        &s,
        Method::DELETE,
        &format!("/v1/plugins/{plugin_id}"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (code, _) = call(&s, Method::GET, "/v1/executions", Some(&reader), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // Tenant B sees none of A's things: 404 (never data), empty lists.
    for (method, path) in [
        (Method::GET, format!("/v1/plugins/{plugin_id}")),
        (Method::GET, format!("/v1/plugins/{plugin_id}/wasm")),
        (Method::DELETE, format!("/v1/plugins/{plugin_id}")),
        (Method::GET, format!("/v1/schedules/{schedule_id}")),
        (Method::POST, format!("/v1/schedules/{schedule_id}/trigger")),
        (Method::POST, format!("/v1/schedules/{schedule_id}/pause")),
        (Method::DELETE, format!("/v1/schedules/{schedule_id}")),
        (Method::GET, format!("/v1/executions/{execution_id}")),
        (
            Method::POST,
            format!("/v1/executions/{execution_id}/cancel"),
        ),
        (Method::POST, format!("/v1/executions/{execution_id}/rerun")),
    ] {
        let (code, body) = call(&s, method.clone(), &path, Some(&b), None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    for path in ["/v1/plugins", "/v1/schedules", "/v1/executions"] {
        let (code, page) = call(&s, Method::GET, path, Some(&b), None).await;
        assert_eq!(
            (code, page["items"].as_array().map(Vec::len)),
            (StatusCode::OK, Some(0)),
            "{path}"
        );
    }
    let body = json!({"plugin_id": plugin_id});
    let (code, _) = call(&s, Method::POST, "/v1/executions", Some(&b), Some(body)).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "B cannot run A's plugin"
    );
    // A still has everything.
    let (code, _) = call(
        &s,
        Method::GET,
        &format!("/v1/schedules/{schedule_id}"),
        Some(&a),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

/// What, method, path, body, expected status, expected error code.
type Case<'a> = (&'a str, Method, &'a str, Option<Value>, u16, &'a str);

async fn bad_input_table(mut s: Server) {
    let token = s.admin("acme");
    let hello = upload(&s, &token, "hello").await;
    let pid = hello["id"].as_str().expect("id").to_owned();
    let cron = |expr: &str, zone: &str| json!({"name": "x", "plugin_id": pid, "trigger": {"kind": "cron", "expr": expr, "timezone": zone}});
    let schedule = |extra: Value| {
        let mut body = cron("* * * * *", "UTC");
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let run = |extra: Value| {
        let mut body = json!({"plugin_id": pid});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let raw = |text: &str| Value::String(text.to_owned());
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            Method::POST,
            "/v1/schedules",
            Some(raw("{not json")),
            400,
            "invalid_json",
        ),
        (
            "JSON array",
            Method::POST,
            "/v1/schedules",
            Some(raw("[1,2]")),
            400,
            "invalid_json",
        ),
        (
            "empty body",
            Method::POST,
            "/v1/schedules",
            Some(raw("")),
            400,
            "invalid_json",
        ),
        (
            "unknown field",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"colour": "red"}))),
            400,
            "invalid_json",
        ),
        (
            "missing trigger",
            Method::POST,
            "/v1/schedules",
            Some(json!({"name": "x", "plugin_id": pid})),
            400,
            "invalid_json",
        ),
        (
            "wrong type",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"priority": "high"}))),
            400,
            "invalid_json",
        ),
        (
            "unknown trigger kind",
            Method::POST,
            "/v1/schedules",
            Some(json!({"name": "x", "plugin_id": pid, "trigger": {"kind": "sometimes"}})),
            400,
            "invalid_json",
        ),
        (
            "bad cron",
            Method::POST,
            "/v1/schedules",
            Some(cron("61 * * * *", "UTC")),
            422,
            "invalid_trigger",
        ),
        (
            "cron with 3 fields",
            Method::POST,
            "/v1/schedules",
            Some(cron("* * *", "UTC")),
            422,
            "invalid_trigger",
        ),
        (
            "bad zone",
            Method::POST,
            "/v1/schedules",
            Some(cron("* * * * *", "Mars/Olympus")),
            422,
            "invalid_trigger",
        ),
        (
            "zero interval",
            Method::POST,
            "/v1/schedules",
            Some(
                json!({"name": "x", "plugin_id": pid, "trigger": {"kind": "interval", "every": "0s"}}),
            ),
            422,
            "invalid_trigger",
        ),
        (
            "bad duration",
            Method::POST,
            "/v1/schedules",
            Some(
                json!({"name": "x", "plugin_id": pid, "trigger": {"kind": "interval", "every": "soon"}}),
            ),
            400,
            "invalid_json",
        ),
        (
            "negative limit",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"limits": {"fuel": -1}}))),
            400,
            "invalid_json",
        ),
        (
            "limit over the cap",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"limits": {"memory_bytes": 1u64 << 40}}))),
            422,
            "limit_exceeds_cap",
        ),
        (
            "zero attempts",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"retry": {"max_attempts": 0}}))),
            422,
            "invalid_retry",
        ),
        (
            "empty name",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"name": " "}))),
            400,
            "invalid_name",
        ),
        (
            "unknown plugin",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"plugin_id": "nope"}))),
            422,
            "unknown_plugin",
        ),
        (
            "ends before start",
            Method::POST,
            "/v1/schedules",
            Some(schedule(
                json!({"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}),
            )),
            422,
            "invalid_bounds",
        ),
        (
            "bad time",
            Method::POST,
            "/v1/schedules",
            Some(schedule(json!({"starts_at": "yesterday"}))),
            400,
            "invalid_json",
        ),
        (
            "run: bad wait",
            Method::POST,
            "/v1/executions",
            Some(run(json!({"wait": "a while"}))),
            400,
            "invalid_json",
        ),
        (
            "run: wait too long",
            Method::POST,
            "/v1/executions",
            Some(run(json!({"wait": "2h"}))),
            422,
            "invalid_wait",
        ),
        (
            "run: timeout over the cap",
            Method::POST,
            "/v1/executions",
            Some(run(json!({"limits": {"timeout": "10h"}}))),
            422,
            "limit_exceeds_cap",
        ),
        (
            "run: zero fuel",
            Method::POST,
            "/v1/executions",
            Some(run(json!({"limits": {"fuel": 0}}))),
            422,
            "invalid_limits",
        ),
        (
            "run: unknown plugin",
            Method::POST,
            "/v1/executions",
            Some(json!({"plugin_id": "nope"})),
            422,
            "unknown_plugin",
        ),
        (
            "unknown schedule",
            Method::GET,
            "/v1/schedules/nope",
            None,
            404,
            "not_found",
        ),
        (
            "unknown execution",
            Method::POST,
            "/v1/executions/nope/cancel",
            None,
            404,
            "not_found",
        ),
        (
            "unknown plugin id",
            Method::DELETE,
            "/v1/plugins/nope",
            None,
            404,
            "not_found",
        ),
        (
            "unknown route",
            Method::GET,
            "/v1/nothing",
            None,
            404,
            "not_found",
        ),
        (
            "bad query",
            Method::GET,
            "/v1/executions?status=sleeping",
            None,
            400,
            "invalid_query",
        ),
        (
            "patch unknown field",
            Method::PATCH,
            "/v1/schedules/nope",
            Some(json!({"bogus": 1})),
            400,
            "invalid_json",
        ),
    ];
    assert!(cases.len() >= 25);
    for (what, method, path, body, status, code) in cases {
        let mut request = s
            .client
            .request(method.clone(), s.at(path))
            .bearer_auth(&token);
        request = match body {
            Some(Value::String(text)) => request
                .header("content-type", "application/json")
                .body(text),
            Some(json) => request.json(&json),
            None => request,
        };
        let response = request.send().await.expect("request");
        let got = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
    // Uploads: not wasm, wrong world, duplicate version, bad name, oversized.
    let upload_raw = |name: &str, bytes: Vec<u8>| {
        s.client
            .post(s.at(&format!("/v1/plugins?name={name}&version=1.0.0")))
            .bearer_auth(&token)
            .body(bytes)
            .send()
    };
    for (what, name, bytes, status, code) in [
        (
            "non-wasm upload",
            "junk",
            b"hello there".to_vec(),
            422,
            "not_wasm",
        ),
        (
            "wrong world",
            "command",
            plugin("test-command"),
            422,
            "wrong_world",
        ),
        (
            "denied import",
            "server",
            taskhost_tests::component_importing("wasi:http/incoming-handler@0.2.6"),
            422,
            "import_denied",
        ),
        (
            "duplicate version",
            "hello",
            plugin("hello"),
            409,
            "conflict",
        ),
        (
            "bad name",
            "bad%20name",
            plugin("hello"),
            400,
            "invalid_name",
        ),
        ("empty upload", "empty", Vec::new(), 400, "empty_body"),
    ] {
        let response = upload_raw(name, bytes).await.expect("upload");
        let got = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {body}"
        );
    }
    // Nothing was stored, and the server is up.
    let (_, plugins) = call(&s, Method::GET, "/v1/plugins", Some(&token), None).await;
    assert_eq!(plugins["items"].as_array().map(Vec::len), Some(1));
    let (_, schedules) = call(&s, Method::GET, "/v1/schedules", Some(&token), None).await;
    assert_eq!(schedules["items"].as_array().map(Vec::len), Some(0));
    let (_, runs) = call(&s, Method::GET, "/v1/executions", Some(&token), None).await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(0));
    assert!(s.alive());
    let (code, _) = call(&s, Method::GET, "/healthz", None, None).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn oversized_upload_is_refused() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let huge = vec![0u8; 51 << 20];
    let response = s
        .client
        .post(s.at("/v1/plugins?name=big&version=1"))
        .bearer_auth(&token)
        .body(huge)
        .send()
        .await;
    let response = response.expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn openapi_lists_every_route_the_router_serves() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let (code, doc) = call(&s, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "OpenAPI 3"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_owned()),
                "operationId {id:?} repeats: client generators need unique ones"
            );
        }
    }
    documented.sort();
    // The routes the README documents and clients use.
    let mut expected: Vec<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "POST /v1/plugins",
        "GET /v1/plugins",
        "GET /v1/plugins/{id}",
        "DELETE /v1/plugins/{id}",
        "GET /v1/plugins/{id}/wasm",
        "GET /v1/plugins/{id}/aliases",
        "POST /v1/plugins/{id}/aliases/{alias}",
        "DELETE /v1/plugins/{id}/aliases/{alias}",
        "POST /v1/schedules",
        "GET /v1/schedules",
        "GET /v1/schedules/{id}",
        "PATCH /v1/schedules/{id}",
        "DELETE /v1/schedules/{id}",
        "POST /v1/schedules/{id}/pause",
        "POST /v1/schedules/{id}/resume",
        "POST /v1/schedules/{id}/trigger",
        "GET /v1/schedules/{id}/fires",
        "POST /v1/schedules/{id}/backfill",
        "POST /v1/executions",
        "POST /v1/executions/batch",
        "GET /v1/executions",
        "GET /v1/executions/{id}",
        "GET /v1/executions/{id}/deliveries",
        "GET /v1/webhooks/secret",
        "GET /v1/cron/preview",
        "POST /v1/executions/{id}/cancel",
        "POST /v1/executions/{id}/rerun",
        "GET /v1/nodes",
        "POST /v1/nodes/{id}/drain",
        "GET /v1/secrets",
        "PUT /v1/secrets/{name}",
        "DELETE /v1/secrets/{name}",
        "POST /v1/tokens/revocations",
        "GET /v1/tokens/revocations",
        "POST /v1/executions/{id}/events",
        "POST /v1/api-keys",
        "GET /v1/api-keys",
        "GET /v1/api-keys/{id}",
        "DELETE /v1/api-keys/{id}",
        "POST /v1/events",
        "POST /v1/hooks",
        "GET /v1/hooks",
        "GET /v1/hooks/{id}",
        "DELETE /v1/hooks/{id}",
        "POST /v1/hooks/{id}/rotate",
        "POST /hooks/{id}",
        "GET /v1/audit",
    ]
    .map(String::from)
    .to_vec();
    expected.sort();
    assert_eq!(documented, expected);
    // Every documented route is served: no route-level 404 or 405.
    for route in &documented {
        let (method, path) = route.split_once(' ').expect("method and path");
        let path = path.replace("{id}", "no-such-id");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (code, body) = call(&s, method, &path, Some(&token), None).await;
        assert_ne!(code, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        assert_ne!(
            body["error"]["message"], "route not found",
            "{route} is documented but not served"
        );
    }
}

#[tokio::test]
async fn multipart_upload() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let boundary = "taskhost-boundary-7f3a";
    let mut body = Vec::new();
    for (field, value) in [("name", "hello"), ("version", "2.0.0")] {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n").bytes());
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.wasm\"\r\nContent-Type: application/wasm\r\n\r\n")
            .bytes(),
    );
    body.extend(plugin("hello"));
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    let response = s
        .client
        .post(s.at("/v1/plugins"))
        .bearer_auth(&token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::CREATED);
    let record: Value = response.json().await.expect("json");
    assert_eq!(
        (record["name"].as_str(), record["version"].as_str()),
        (Some("hello"), Some("2.0.0"))
    );
    // A form without the file is refused with a clear reason.
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--{boundary}--\r\n"
    );
    let response = s
        .client
        .post(s.at("/v1/plugins?version=1"))
        .bearer_auth(&token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "empty_body");
}

async fn batch(s: &Server, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        s,
        Method::POST,
        "/v1/executions/batch",
        Some(token),
        Some(body),
    )
    .await
}

/// `POST /v1/executions/batch`: all queued in one request, or none with each
/// refused run named.
async fn batch_submit(s: Server) {
    let token = s.admin("tenant-a");
    let plugin = upload(&s, &token, "hello").await;
    let plugin_id = plugin["id"].as_str().expect("id").to_owned();
    let runs: Vec<Value> = (0..50)
        .map(|i| json!({"plugin_id": plugin_id, "input": {"name": format!("n{i}")}, "priority": i % 3}))
        .collect();
    let (code, accepted) = batch(&s, &token, json!({ "runs": runs })).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{accepted}");
    let ids: Vec<&str> = accepted["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids.len(), 50);
    eventually("the batch to run", || async {
        executions(&s, &token, "status=succeeded").await.len() == 50
    })
    .await;

    // One bad run refuses the batch: none is queued, each refusal is named.
    let mut runs: Vec<Value> = (0..10)
        .map(|_| json!({"plugin_id": plugin_id, "input": {"name": "x"}}))
        .collect();
    runs[3]["plugin_id"] = json!("no-such-plugin");
    runs[7]["limits"] = json!({"fuel": u64::MAX});
    runs[9]["wait"] = json!("1s");
    let (code, refused) = batch(&s, &token, json!({ "runs": runs })).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_batch");
    let errors = refused["error"]["details"]["errors"]
        .as_array()
        .expect("errors");
    let indices: Vec<u64> = errors.iter().filter_map(|e| e["index"].as_u64()).collect();
    assert_eq!(indices, [9], "the batch's own checks come first: {refused}");
    runs[9].as_object_mut().expect("run").remove("wait");
    let (code, refused) = batch(&s, &token, json!({ "runs": runs })).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let errors = refused["error"]["details"]["errors"]
        .as_array()
        .expect("errors");
    let found: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap_or(99),
                e["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        found,
        [(3, "unknown_plugin"), (7, "limit_exceeds_cap")],
        "{refused}"
    );
    assert_eq!(
        executions(&s, &token, "").await.len(),
        50,
        "nothing was queued"
    );

    // Sizes, scopes and tenants.
    for count in [0, 1001] {
        let runs = vec![json!({"plugin_id": plugin_id}); count];
        let (code, body) = batch(&s, &token, json!({ "runs": runs })).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{count}: {body}");
        assert_eq!(body["error"]["code"], "invalid_batch");
    }
    let reader = s.token("tenant-a", &[Scope::ExecutionsRead]);
    let one = json!({"runs": [{"plugin_id": plugin_id}]});
    let (code, _) = batch(&s, &reader, one.clone()).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let other = s.admin("tenant-b");
    let (code, body) = batch(&s, &other, one).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["details"]["errors"][0]["code"],
        "unknown_plugin"
    );
}

/// Every write operation of the API document leaves exactly one audit
/// record, with its caller and its outcome, and no request body (issue 28,
/// acceptance 2); a tenant's admin reads its own, the operator every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_leaves_one_audit_record() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let (_, doc) = call(&s, Method::GET, "/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().expect("paths").clone();
    let mut sent = Vec::new();
    for (path, item) in &paths {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{id}", "no-such-id")
                .replace("{alias}", "stable")
                .replace("{name}", "AUDITED");
            let body = match (method, path.as_str()) {
                ("put", "/v1/secrets/{name}") => json!({"value": "audit-secret-value"}),
                _ => json!({}),
            };
            let request_id = format!("audit-{}", sent.len());
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut request = s
                .client
                .request(m, s.at(&concrete))
                .header("x-request-id", &request_id)
                .json(&body);
            let public = path.starts_with("/hooks/");
            if !public {
                request = request.bearer_auth(&token);
            }
            let status = request.send().await.expect("send").status().as_u16();
            sent.push((
                request_id,
                format!("{} {path}", method.to_uppercase()),
                status,
                public,
            ));
        }
    }
    assert!(sent.len() > 20, "the document's writes: {}", sent.len());
    let anonymous = s
        .client
        .post(s.at("/v1/schedules"))
        .header("x-request-id", "audit-anonymous")
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let operator = s.token("ops", &[Scope::Operator]);
    let (status, all) = call(
        &s,
        Method::GET,
        "/v1/audit?limit=1000",
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let records = all["items"].as_array().expect("items");
    assert!(
        records.iter().all(|r| r["request_id"] != "audit-anonymous"),
        "a write without a token is not stored"
    );
    for (request_id, operation, status, public) in &sent {
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["request_id"] == request_id.as_str())
            .collect();
        if *public {
            // An unknown hook's request: refused before any caller is
            // known, so not stored (anyone may send those).
            assert!(mine.is_empty(), "{operation}: {mine:?}");
            continue;
        }
        assert_eq!(mine.len(), 1, "{operation}: one record, not {}", mine.len());
        let r = mine[0];
        assert_eq!(r["operation"], operation.as_str());
        assert_eq!(r["status"], *status, "{operation}: {r}");
        assert_eq!(r["subject"], "tester", "{operation}: {r}");
        assert_eq!(r["tenant"], "acme");
        assert!(r["token_id"].is_string(), "{r}");
        assert!(
            r["client"].as_str().is_some_and(|c| c.starts_with("127.")),
            "{r}"
        );
    }
    assert!(
        !all.to_string().contains("audit-secret-value"),
        "no value is recorded"
    );
    // A tenant's admin reads its own records; another tenant's admin, none of them.
    let (_, own) = call(&s, Method::GET, "/v1/audit?limit=1000", Some(&token), None).await;
    assert!(
        own["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| r["tenant"] == "acme")
    );
    let other = s.admin("globex");
    let (_, theirs) = call(&s, Method::GET, "/v1/audit", Some(&other), None).await;
    assert!(!theirs.to_string().contains("audit-0"), "{theirs}");
    // The console's audit page lists them.
    let page = s
        .client
        .get(s.at("/audit"))
        .header("cookie", format!("taskhost_session={token}"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(page.contains("PUT /v1/secrets/{name}") && !page.contains("audit-secret-value"));
}
