//! The fire ledger, backfill and plugin aliases through the real binary on
//! both stores: `GET /v1/schedules/{id}/fires`, the summary on
//! `GET /v1/schedules/{id}`, `POST /v1/schedules/{id}/backfill`,
//! `POST /v1/plugins/{name}/aliases/{alias}`, and schedules that name a
//! plugin as `name@alias`.

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use taskhost_tests::server::Server;

taskhost_tests::both_stores!(ledger_backfill_and_aliases_over_http);

async fn upload(s: &Server, token: &str, name: &str, version: &str) -> (StatusCode, Value) {
    let url = s.at(&format!("/v1/plugins?name={name}&version={version}"));
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .body(taskhost_tests::plugin("hello"))
        .send()
        .await
        .expect("upload");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn ledger_backfill_and_aliases_over_http(s: Server) {
    let token = s.admin("acme");
    let other = s.admin("globex");
    let t = Some(token.as_str());
    let (status, v1) = upload(&s, &token, "hello", "1.0.0").await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    let (status, v2) = upload(&s, &token, "hello", "2.0.0").await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");

    // Aliases: create, list, refusals.
    let (status, alias) = s
        .call(
            Method::POST,
            "/v1/plugins/hello/aliases/stable",
            t,
            Some(json!({"version": "1.0.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{alias}");
    assert_eq!(alias["plugin_id"], v1["id"]);
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/plugins/hello/aliases/latest",
            t,
            Some(json!({"version": "1.0.0"})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("alias_reserved"))
    );
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/plugins/hello/aliases/beta",
            t,
            Some(json!({"version": "9.9.9"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = s
        .call(
            Method::POST,
            "/v1/plugins/hello/aliases/bad%20name",
            t,
            Some(json!({"version": "1.0.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, list) = s
        .call(Method::GET, "/v1/plugins/hello/aliases", t, None)
        .await;
    assert_eq!(
        (status, list.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (status, list) = s
        .call(Method::GET, "/v1/plugins/hello/aliases", Some(&other), None)
        .await;
    assert_eq!(
        (status, list),
        (StatusCode::OK, json!([])),
        "another tenant sees none"
    );
    // A version named like an alias is refused.
    let (status, body) = upload(&s, &token, "hello", "stable").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A schedule following hello@stable, every second.
    let body = json!({
        "name": "follows",
        "plugin": "hello@stable",
        "trigger": {"kind": "cron", "expr": "* * * * * *", "timezone": "Europe/Paris"},
        "input": {"name": "ledger"}
    });
    let (status, schedule) = s.call(Method::POST, "/v1/schedules", t, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    assert_eq!(schedule["plugin_alias"], "hello@stable");
    assert_eq!(schedule["plugin_id"], v1["id"]);
    let id = schedule["id"].as_str().expect("id").to_owned();
    // Both plugin_id and plugin, or an unknown reference: 422.
    let both = json!({"name": "x", "plugin": "hello@stable", "plugin_id": v1["id"],
                      "trigger": {"kind": "manual"}});
    let (status, body) = s.call(Method::POST, "/v1/schedules", t, Some(both)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("invalid_plugin_ref")
        )
    );
    let unknown = json!({"name": "y", "plugin": "hello@nope", "trigger": {"kind": "manual"}});
    let (status, body) = s
        .call(Method::POST, "/v1/schedules", t, Some(unknown))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("unknown_plugin"))
    );

    // The ledger fills; the summary shows the last fire and the next five.
    let fires_path = format!("/v1/schedules/{id}/fires");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = s.call(Method::GET, &fires_path, t, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 2 {
            assert!(items.iter().all(|f| f["fate"] == "ran"), "{page}");
            assert!(
                items.iter().all(|f| f["plugin_ref"] == "hello@stable"),
                "{page}"
            );
            assert!(items.iter().all(|f| f["plugin_id"] == v1["id"]), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "no fires recorded: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, detail) = s
        .call(Method::GET, &format!("/v1/schedules/{id}"), t, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["name"], "follows", "the schedule's own fields stay");
    assert_eq!(
        detail["fires"]["next"].as_array().map(Vec::len),
        Some(5),
        "{detail}"
    );
    assert!(
        detail["fires"]["next"][0]["local"]
            .as_str()
            .unwrap_or("")
            .ends_with("+01:00"),
        "{detail}"
    );
    assert!(
        detail["fires"]["last"]["execution_id"].is_string(),
        "{detail}"
    );
    assert!(
        detail["fires"]["last_24h"]["ran"].as_u64().unwrap_or(0) >= 2,
        "{detail}"
    );
    // Another tenant: 404 for the ledger and the backfill.
    let (status, _) = s.call(Method::GET, &fires_path, Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Move the alias to 2.0.0: later fires run it.
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/plugins/hello/aliases/stable",
            t,
            Some(json!({"version": "2.0.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = s
            .call(Method::GET, &format!("{fires_path}?limit=1"), t, None)
            .await;
        if page["items"][0]["plugin_id"] == v2["id"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alias move is not followed: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An alias that a schedule follows cannot be removed; an unused one can.
    let (status, body) = s
        .call(Method::DELETE, "/v1/plugins/hello/aliases/stable", t, None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("in_use")),
        "{body}"
    );
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/plugins/hello/aliases/canary",
            t,
            Some(json!({"version": "2.0.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .call(Method::DELETE, "/v1/plugins/hello/aliases/canary", t, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .call(Method::DELETE, "/v1/plugins/hello/aliases/canary", t, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Deleting the version the alias points to is refused.
    let v2_path = format!("/v1/plugins/{}", v2["id"].as_str().expect("id"));
    let (status, body) = s.call(Method::DELETE, &v2_path, t, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("in_use")),
        "{body}"
    );

    // Pause, then backfill the pause: the paused fires run, once.
    let (status, _) = s
        .call(Method::POST, &format!("/v1/schedules/{id}/pause"), t, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let paused_from = Utc::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let paused_to = Utc::now() - chrono::Duration::milliseconds(500);
    let window = json!({"from": rfc3339(paused_from), "to": rfc3339(paused_to)});
    let backfill_path = format!("/v1/schedules/{id}/backfill");
    let (status, first) = s
        .call(Method::POST, &backfill_path, t, Some(window.clone()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let created = first["created"].as_array().map_or(0, Vec::len);
    assert!(created >= 2, "{first}");
    assert_eq!(
        first["was_skipped"].as_u64(),
        Some(created as u64),
        "paused fires: {first}"
    );
    let (status, again) = s.call(Method::POST, &backfill_path, t, Some(window)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        again["created"],
        json!([]),
        "a second backfill is a no-op: {again}"
    );
    let (_, backfilled) = s
        .call(
            Method::GET,
            &format!("{fires_path}?fate=backfilled"),
            t,
            None,
        )
        .await;
    let items = backfilled["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), created, "{backfilled}");
    assert!(
        items.iter().all(|f| f["was"]["reason"] == "paused"),
        "{backfilled}"
    );
    // Bad windows and options.
    let future = json!({"from": rfc3339(Utc::now()), "to": rfc3339(Utc::now() + chrono::Duration::hours(1))});
    let (status, body) = s.call(Method::POST, &backfill_path, t, Some(future)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_window"))
    );
    let huge = json!({"from": rfc3339(Utc::now() - chrono::Duration::hours(2)), "to": rfc3339(Utc::now())});
    let (status, body) = s.call(Method::POST, &backfill_path, t, Some(huge)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("backfill_too_large")
        )
    );
    let ancient = json!({"from": "-262143-01-01T00:00:00Z", "to": rfc3339(paused_to)});
    let (status, body) = s.call(Method::POST, &backfill_path, t, Some(ancient)).await;
    assert!(
        status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
        "{status} {body}"
    );
    let serial =
        json!({"from": rfc3339(paused_from), "to": rfc3339(paused_to), "overlap": "serial"});
    let (status, body) = s.call(Method::POST, &backfill_path, t, Some(serial)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_overlap"))
    );
    let (status, _) = s
        .call(
            Method::POST,
            &backfill_path,
            Some(&other),
            Some(json!({"from": rfc3339(paused_from), "to": rfc3339(paused_to)})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s
        .call(Method::GET, &format!("{fires_path}?cursor=nope"), t, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .call(Method::GET, &format!("{fires_path}?fate=exploded"), t, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Skipped records stay out of the executions list unless asked for.
    let (_, listed) = s
        .call(
            Method::GET,
            &format!("/v1/executions?schedule_id={id}&limit=1000"),
            t,
            None,
        )
        .await;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    assert!(items.iter().all(|e| e["status"] != "skipped"), "{listed}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("taskhost_fires_total{fate=\"ran\""),
        "fires by fate in metrics"
    );
}
