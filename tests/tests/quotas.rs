//! Per-tenant quotas through the real binary, on both stores: each quota's
//! refusal names it and its value, and nothing already stored is lost.

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_tests::server::Server;

taskhost_tests::both_stores!(
    with(&["--workers", "8"], Some(&super::quota_config()))
    each_quota_refuses_and_loses_nothing,
    racing_uploads_cannot_pass_the_plugins_quota,
    storage_quotas_refuse_with_their_names
);

/// Small quotas for a few tenants; everyone else keeps the defaults.
fn quota_config() -> String {
    let hello = taskhost_tests::plugin("hello").len();
    format!(
        r#"
[quotas.tenants.small]
plugins = 2
schedules = 1
min_schedule_period = "1m"
queued_executions = 3

[quotas.tenants.keeper]
stored_executions = 3

[quotas.tenants.hoarder]
stored_bytes = 4000

[quotas.tenants.racers]
plugins = 2

[quotas.tenants.bytes]
plugin_bytes = {}

[quotas.tenants.kvkeys]
kv_keys = 5

[quotas.tenants.kvbytes]
kv_bytes = 1000

[quotas.tenants.slow]
requests_per_second = 1
request_burst = 3
"#,
        hello + 10
    )
}

fn refused(status: StatusCode, body: &Value, expected: StatusCode, quota: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(body["error"]["details"]["quota"], quota, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(quota),
        "the message names the quota: {message}"
    );
}

async fn count(s: &Server, token: &str, path: &str) -> usize {
    let (status, page) = s.call(Method::GET, path, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().map_or(0, Vec::len)
}

async fn each_quota_refuses_and_loses_nothing(s: Server) {
    // plugins (count)
    let small = s.admin("small");
    let hello = s.upload(&small, "hello").await;
    let sleep = s.upload(&small, "test-sleep").await;
    let (status, body) = upload_raw(&s, &small, "test-kv").await;
    refused(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "plugins");
    assert_eq!(count(&s, &small, "/v1/plugins").await, 2);

    // plugin_bytes
    let bytes = s.admin("bytes");
    s.upload(&bytes, "hello").await;
    let (status, body) = upload_raw(&s, &bytes, "test-kv").await;
    refused(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "plugin_bytes",
    );
    assert_eq!(count(&s, &bytes, "/v1/plugins").await, 1);

    // schedules, and the shortest period
    let (hello, sleep) = (
        hello["id"].as_str().expect("id").to_owned(),
        sleep["id"].as_str().expect("id").to_owned(),
    );
    let every = |name: &str, expr: &str| json!({"name": name, "plugin_id": hello, "trigger": {"kind": "cron", "expr": expr}});
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&small),
            Some(every("fast", "* * * * * *")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("min_schedule_period"))
    );
    let (status, first) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&small),
            Some(every("slow", "*/2 * * * *")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&small),
            Some(every("second", "*/5 * * * *")),
        )
        .await;
    refused(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "schedules");
    assert_eq!(count(&s, &small, "/v1/schedules").await, 1);

    // queued_executions: two run (the tenant's limit on 8 workers), three wait.
    let long = json!({"plugin_id": sleep, "input": {"ms": 60_000}, "limits": {"timeout": "2m"}});
    let submit = || async {
        let (status, e) = s
            .call(
                Method::POST,
                "/v1/executions",
                Some(&small),
                Some(long.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{e}");
        e["id"].as_str().expect("id").to_owned()
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(submit().await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&s, &small, "/v1/executions?status=running").await < 2 {
        assert!(Instant::now() < deadline, "the first two never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        ids.push(submit().await);
    }
    let response = s
        .client
        .post(s.at("/v1/executions"))
        .bearer_auth(&small)
        .json(&long)
        .send()
        .await
        .expect("post");
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    refused(
        status,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "queued_executions",
    );
    assert!(retry_after.is_some(), "429 says when to come back");
    assert_eq!(
        count(&s, &small, "/v1/executions").await,
        5,
        "all five kept"
    );
    for id in &ids {
        s.call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&small),
            None,
        )
        .await;
    }

    // kv_keys and kv_bytes: the plugin gets the refusal and carries on.
    for (tenant, n, quota, written) in [
        ("kvkeys", 10, "kv_keys", 5),
        ("kvbytes", 100, "kv_bytes", 9),
    ] {
        let token = s.admin(tenant);
        let abuse = s.upload(&token, "test-abuse").await;
        let body = json!({
            "plugin_id": abuse["id"], "input": {"mode": "kv_fill", "n": n}, "wait": "30s",
        });
        let (status, e) = s
            .call(
                Method::POST,
                "/v1/executions",
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "succeeded", "{e}");
        let output = &e["outcome"]["output"];
        assert_eq!(output["written"], written, "{tenant}: {output}");
        let error = output["error"].as_str().unwrap_or_default();
        assert!(error.contains(quota), "{tenant}: {error}");
        // Nothing stored was lost: a second run may overwrite what it wrote
        // (no more keys or bytes), and is refused at the same point.
        let (_, again) = s
            .call(Method::POST, "/v1/executions", Some(&token), Some(body))
            .await;
        assert_eq!(again["outcome"]["output"]["written"], written, "{again}");
    }

    // requests_per_second: the tenant over its rate gets 429 with Retry-After;
    // other tenants do not notice.
    let slow = s.admin("slow");
    let mut limited = None;
    for _ in 0..10 {
        let response = s
            .client
            .get(s.at("/v1/plugins"))
            .bearer_auth(&slow)
            .send()
            .await
            .expect("get");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the rate quota answered 429");
    assert!(limited.headers().get(header::RETRY_AFTER).is_some());
    let body: Value = limited.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("requests_per_second"))
    );
    assert_eq!(
        count(&s, &small, "/v1/plugins").await,
        2,
        "other tenants are served"
    );
}

async fn upload_raw(s: &Server, token: &str, name: &str) -> (StatusCode, Value) {
    let response = s
        .client
        .post(s.at(&format!("/v1/plugins?name={name}&version=1.0.0")))
        .bearer_auth(token)
        .body(taskhost_tests::plugin(name))
        .send()
        .await
        .expect("upload");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// Three uploads at once against a quota of two (three: as many as one
/// tenant may have compiling and waiting; see compile_fairness.rs): the
/// quota is checked inside the insert, so exactly two are stored.
async fn racing_uploads_cannot_pass_the_plugins_quota(s: Server) {
    let token = s.admin("racers");
    let wasm = taskhost_tests::plugin("hello");
    let uploads = (0..3).map(|i| {
        let request = s
            .client
            .post(s.at(&format!("/v1/plugins?name=hello&version=1.0.{i}")))
            .bearer_auth(&token)
            .body(wasm.clone())
            .send();
        async move {
            let response = request.await.expect("upload");
            let status = response.status();
            (status, response.json::<Value>().await.expect("json"))
        }
    });
    let results = futures::future::join_all(uploads).await;
    let created = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 2, "{results:?}");
    for (status, body) in &results {
        if *status != StatusCode::CREATED {
            refused(*status, body, StatusCode::UNPROCESSABLE_ENTITY, "plugins");
        }
    }
    assert_eq!(count(&s, &token, "/v1/plugins").await, 2);
}

/// `stored_executions` and `stored_bytes`: runs past them are refused
/// naming the quota and its value; what is stored stays.
async fn storage_quotas_refuse_with_their_names(s: Server) {
    let submit = async |token: &str, plugin: &Value, input: Value| {
        let body = json!({ "plugin_id": plugin, "input": input });
        s.call(Method::POST, "/v1/executions", Some(token), Some(body))
            .await
    };
    let keeper = s.admin("keeper");
    let hello = s.upload(&keeper, "hello").await["id"].clone();
    for _ in 0..3 {
        let (status, body) = submit(&keeper, &hello, json!({"name": "k"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, body) = submit(&keeper, &hello, json!({"name": "k"})).await;
    refused(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "stored_executions",
    );
    assert_eq!(body["error"]["details"]["limit"], 3, "{body}");
    assert_eq!(count(&s, &keeper, "/v1/executions").await, 3);

    let hoarder = s.admin("hoarder");
    let hello = s.upload(&hoarder, "hello").await["id"].clone();
    let pad = "x".repeat(5000);
    let (status, body) = submit(&hoarder, &hello, json!({"name": pad})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = submit(&hoarder, &hello, json!({"name": "small"})).await;
    refused(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "stored_bytes",
    );
    assert_eq!(body["error"]["details"]["limit"], 4000, "{body}");
    assert_eq!(count(&s, &hoarder, "/v1/executions").await, 1);
}
