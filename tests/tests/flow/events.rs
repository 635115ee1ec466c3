//! Events and hooks through the real binary on both stores (issue 26,
//! acceptance 1): `POST /v1/events` fires the schedules whose trigger and
//! filter match, once per event id; a signed hook request runs its
//! schedule once, and a bad signature, an old timestamp, a replayed id and
//! an oversized body are refused and run nothing; token hooks; rotation.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_model::hook::signature;
use taskhost_tests::server::Server;

async fn schedule(s: &Server, token: &str, name: &str, plugin: &Value, trigger: Value) -> String {
    let body = json!({"name": name, "plugin_id": plugin, "trigger": trigger});
    let (status, made) = s
        .call(Method::POST, "/v1/schedules", Some(token), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().expect("id").to_owned()
}

/// The executions of schedule `id`, once none is queued or running.
async fn runs_of(s: &Server, token: &str, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let path = format!("/v1/executions?schedule_id={id}&limit=1000");
        let (status, page) = s.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let active = items
            .iter()
            .any(|e| matches!(e["status"].as_str(), Some("queued" | "running")));
        if !active {
            return items;
        }
        assert!(Instant::now() < deadline, "runs of {id} still active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(s: &Server, token: &str, event: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = s.client.post(s.at("/v1/events")).bearer_auth(token);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.json(&event).send().await.expect("post");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

fn fired(answer: &Value) -> Vec<String> {
    let fires = answer["fires"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<String> = fires
        .iter()
        .filter_map(|f| f["schedule_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

async fn events_fan_out(s: &Server, token: &str, plugin: &Value) {
    let push = |filter: Value| json!({"kind": "event", "name": "github.push", "filter": filter});
    let main = schedule(
        s,
        token,
        "main",
        plugin,
        push(json!({"ref": "refs/heads/main"})),
    )
    .await;
    let any = json!({"kind": "event", "name": "github.push"});
    let all = schedule(s, token, "all", plugin, any).await;
    let dev = schedule(
        s,
        token,
        "dev",
        plugin,
        push(json!({"ref": "refs/heads/dev"})),
    )
    .await;

    let event = json!({"name": "github.push", "id": "push-1", "data": {"ref": "refs/heads/main"}});
    let (status, answer) = send(s, token, event.clone(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let mut want = vec![main.clone(), all.clone()];
    want.sort();
    assert_eq!(fired(&answer), want, "two matches, not the third: {answer}");
    for f in answer["fires"].as_array().expect("fires") {
        assert_eq!(f["fire"]["fate"], "ran", "{f}");
        assert_eq!(f["fire"]["event"]["id"], "push-1");
    }
    let runs = runs_of(s, token, &main).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "succeeded", "{}", runs[0]);
    assert_eq!(runs[0]["input"]["data"]["ref"], "refs/heads/main");
    assert_eq!(runs[0]["input"]["name"], "github.push");
    assert!(
        runs_of(s, token, &dev).await.is_empty(),
        "the filter differs"
    );
    let (_, ledger) = s
        .call(
            Method::GET,
            &format!("/v1/schedules/{main}/fires"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(ledger["items"][0]["event"]["id"], "push-1", "{ledger}");

    // The same event id again fires nothing again.
    let (status, again) = send(s, token, event, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert!(
        again["fires"]
            .as_array()
            .expect("fires")
            .iter()
            .all(|f| f["duplicate"] == true)
    );
    assert_eq!(runs_of(s, token, &all).await.len(), 1);

    // An Idempotency-Key answers a retry with the first answer.
    let keyed = json!({"name": "github.push", "data": {"ref": "refs/heads/x"}});
    let (status, first) = send(s, token, keyed.clone(), Some("k-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, retry) = send(s, token, keyed, Some("k-1")).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(retry["id"], first["id"]);
    let id = |a: &Value| a["fires"][0]["fire"]["execution_id"].clone();
    assert_eq!(id(&retry), id(&first), "{first} {retry}");
    assert_eq!(runs_of(s, token, &all).await.len(), 2);

    // Bad names are refused with the field named.
    let (status, bad) = send(s, token, json!({"name": "a b"}), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_event");
}

/// Makes a hook; its id and secret.
async fn hook(s: &Server, token: &str, event: &str, mode: &str) -> (String, String) {
    let body = json!({"name": format!("{event} sender"), "event": event, "mode": mode});
    let (status, made) = s
        .call(Method::POST, "/v1/hooks", Some(token), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().expect("secret").to_owned();
    (made["hook"]["id"].as_str().expect("id").to_owned(), secret)
}

/// Posts to a hook, signed with `secret` (`None`: unsigned).
async fn deliver(
    s: &Server,
    hook: &str,
    secret: Option<&str>,
    id: &str,
    at: i64,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut request = s
        .client
        .post(s.at(&format!("/hooks/{hook}")))
        .header("webhook-id", id)
        .header("webhook-timestamp", at.to_string())
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .expect("base64");
        request = request.header("webhook-signature", signature(&key, id, at, body));
    }
    let response = request.body(body.to_vec()).send().await.expect("post");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn signed_hooks(s: &Server, token: &str, plugin: &Value) {
    let trigger = json!({"kind": "event", "name": "deploy"});
    let target = schedule(s, token, "deploy", plugin, trigger).await;
    let (id, secret) = hook(s, token, "deploy", "signed").await;
    let now = chrono::Utc::now().timestamp();
    let body = br#"{"service": "api"}"#;

    let (status, ok) = deliver(s, &id, Some(&secret), "msg-1", now, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{ok}");
    assert_eq!(ok["fired"], 1);
    let refusals = [
        (
            "a bad signature",
            deliver(s, &id, Some("whsec_AAAA"), "msg-2", now, body).await,
            401,
            "bad_signature",
        ),
        (
            "no signature",
            deliver(s, &id, None, "msg-3", now, body).await,
            401,
            "bad_signature",
        ),
        (
            "an old timestamp",
            deliver(s, &id, Some(&secret), "msg-4", now - 600, body).await,
            401,
            "stale_timestamp",
        ),
        (
            "a replayed id",
            deliver(s, &id, Some(&secret), "msg-1", now, body).await,
            409,
            "webhook_replayed",
        ),
        (
            "an oversized body",
            deliver(s, &id, Some(&secret), "msg-5", now, &vec![b' '; 300 << 10]).await,
            413,
            "payload_too_large",
        ),
        (
            "a body that is not JSON",
            deliver(s, &id, Some(&secret), "msg-6", now, b"{").await,
            400,
            "invalid_json",
        ),
        (
            "an unknown hook",
            deliver(s, "nope", Some(&secret), "msg-7", now, body).await,
            404,
            "not_found",
        ),
    ];
    for (what, (status, answer), code, name) in refusals {
        assert_eq!(status.as_u16(), code, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], name, "{what}: {answer}");
        assert!(
            !answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    let runs = runs_of(s, token, &target).await;
    assert_eq!(runs.len(), 1, "one run for the one good request");
    assert_eq!(runs[0]["input"]["data"]["service"], "api");
    assert_eq!(runs[0]["input"]["id"], "msg-1");
    assert_eq!(runs[0]["input"]["hook"], id.as_str());

    // Rotated: the new secret verifies, and the old one still does for a while.
    let path = format!("/v1/hooks/{id}/rotate");
    let (status, rotated) = s.call(Method::POST, &path, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret");
    assert_ne!(new, secret);
    let (status, _) = deliver(s, &id, Some(new), "msg-8", now, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = deliver(s, &id, Some(&secret), "msg-9", now, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(runs_of(s, token, &target).await.len(), 3);

    // Another tenant neither sees it nor deletes it; its listing shows no secret.
    let other = s.admin("globex");
    let (status, _) = s
        .call(Method::GET, &format!("/v1/hooks/{id}"), Some(&other), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/hooks/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = s.call(Method::GET, "/v1/hooks", Some(token), None).await;
    assert_eq!(list["items"][0]["id"], id.as_str(), "{list}");
    assert!(list["items"][0].get("secret").is_none() && !list.to_string().contains("whsec_"));

    // The console lists the hook and what its event fires; the execution's
    // page names its event.
    let console = |path: String| {
        s.client
            .get(s.at(&path))
            .header("cookie", format!("taskhost_session={token}"))
            .send()
    };
    let page = console("/events".into())
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&format!("/hooks/{id}")) && page.contains(">deploy<"),
        "{page}"
    );
    let run = runs[0]["id"].as_str().expect("id");
    let page = console(format!("/executions/{run}"))
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(page.contains("msg-1") && page.contains(&id), "{page}");
    // The schedule's page shows its fire ledger, each fire with its event.
    let page = console(format!("/schedules/{target}"))
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("Fire ledger") && page.contains("msg-1"),
        "{page}"
    );
}

async fn token_hooks(s: &Server, token: &str, plugin: &Value) {
    let trigger = json!({"kind": "event", "name": "form.sent"});
    let target = schedule(s, token, "form", plugin, trigger).await;
    let (id, secret) = hook(s, token, "form.sent", "token").await;
    let post = |bearer: String| {
        s.client
            .post(s.at(&format!("/hooks/{id}")))
            .bearer_auth(bearer)
            .json(&json!({"email": "a@example.com"}))
            .send()
    };
    let response = post(secret.clone()).await.expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = post("whsec_wrong".into()).await.expect("post");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(runs_of(s, token, &target).await.len(), 1);
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/v1/hooks/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = post(secret).await.expect("post");
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "a deleted hook takes nothing"
    );
}

async fn events_and_hooks(store: Option<&str>) {
    let s = Server::start(store);
    let token = s.admin("acme");
    let plugin = s.upload(&token, "hello").await["id"].clone();
    events_fan_out(&s, &token, &plugin).await;
    signed_hooks(&s, &token, &plugin).await;
    token_hooks(&s, &token, &plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_hooks_sqlite() {
    events_and_hooks(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_hooks_mongodb() {
    let db = format!(
        "taskhost_events_{}",
        taskhost_model::new_id().replace('-', "")
    );
    if let Some(url) = taskhost_tests::stores::mongodb_url(&db) {
        events_and_hooks(Some(&url)).await;
    }
}
