//! Outbound HTTP from plugins, end to end through `taskhost serve`: the
//! grant, the tenant's and the node's policy, refused addresses checked at
//! connect time, per-run limits, the run's timeout, and the records kept.
//! The "internet" is a local server that the operator setting opens.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskhost_tests::receiver::Receiver;
use taskhost_tests::server::Server;

/// The operator opens loopback (for the local server) and plain http.
const OPEN: &str = "[network]\nopen_ranges = [\"127.0.0.0/8\"]\nplain_http = true\n\n[network.tenants.narrow]\nhosts = [\"*.example.com\"]\n";

async fn run(s: &Server, token: &str, body: Value) -> Value {
    let (code, execution) = s
        .call(Method::POST, "/v1/executions", Some(token), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{execution}");
    execution
}

async fn plugin(s: &Server, token: &str) -> String {
    let p = s.upload(token, "test-http").await;
    p["id"].as_str().expect("id").to_owned()
}

fn requests(urls: &[String]) -> Value {
    json!({"requests": urls.iter().map(|u| json!({"url": u})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_policy_decide_what_a_run_reaches() {
    let web = Receiver::start(0).await;
    let s = Server::start_with(None, &[], Some(OPEN));
    let token = s.admin("acme");
    let id = plugin(&s, &token).await;
    let allowed = format!("127.0.0.1:{}", web.port);
    let urls = vec![
        web.url("/ok"),
        // Not on the list (the same server under another name).
        format!("http://localhost:{}/ok", web.port),
        // A redirect from an allowed host to one that is not.
        web.url(&format!("/redirect?to=http://localhost:{}/ok", web.port)),
        // Granted, but link-local (the metadata address) stays refused.
        "http://169.254.169.254/latest/meta-data?token=x".to_owned(),
    ];
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "input": requests(&urls), "wait": "30s",
               "network": {"allow": [allowed, "169.254.169.254"]}}),
    )
    .await;
    assert_eq!(e["status"], "succeeded", "{e}");
    let out = &e["outcome"]["output"];
    assert_eq!(out[0]["status"], 200, "{out}");
    assert_eq!(out[0]["body"], "hello");
    for i in 1..=3 {
        let error = out[i]["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("taskhost refused the request:"),
            "request {i}: {out}"
        );
    }
    assert!(
        out[1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not granted")
    );
    assert!(
        out[2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not granted")
    );
    assert!(
        out[3]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("link-local")
    );

    // Every request is recorded: method, host, path without query, status
    // or refusal.
    let http = e["outcome"]["http"].as_array().expect("records");
    assert_eq!(http.len(), 5, "the redirect is two requests: {e}");
    assert_eq!(http[0]["method"], "GET");
    assert_eq!(http[0]["status"], 200);
    assert_eq!(http[0]["received_bytes"], 5);
    assert!(http[1]["refused"].is_string());
    assert_eq!(http[2]["status"], 302);
    assert!(http[3]["refused"].is_string(), "the redirect's target");
    assert_eq!(http[4]["path"], "/latest/meta-data", "no query kept");
    assert!(
        http[4]["refused"]
            .as_str()
            .unwrap_or_default()
            .contains("169.254.169.254")
    );
    let metrics = s.metrics().await;
    let count = |outcome: &str| {
        taskhost_tests::metric_value(
            &metrics,
            &format!("taskhost_http_requests_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        (count("answered"), count("refused")),
        (2.0, 3.0),
        "{metrics}"
    );
    let received = "taskhost_http_bytes_total{direction=\"received\"}";
    assert!(taskhost_tests::metric_value(&metrics, received) >= 5.0);

    // A run without a grant reaches nothing.
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "input": requests(&[web.url("/ok")]), "wait": "30s"}),
    )
    .await;
    assert!(
        e["outcome"]["output"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("granted no hosts"),
        "{e}"
    );

    // A grant outside the tenant's policy is refused when the run is made.
    let narrow = s.admin("narrow");
    let id_narrow = plugin(&s, &narrow).await;
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&narrow),
            Some(json!({"plugin_id": id_narrow, "network": {"allow": [allowed]}})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "network_not_allowed", "{body}");
    let (code, body) = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&token),
            Some(json!({"plugin_id": id, "network": {"allow": ["https://x.com/"]}})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

/// Without the operator's setting, a name that resolves to 127.0.0.1 is
/// refused on its resolved address, even when granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_unless_the_operator_opens_it() {
    let web = Receiver::start(0).await;
    let s = Server::start_with(None, &[], Some("[network]\nplain_http = true\n"));
    let token = s.admin("acme");
    let id = plugin(&s, &token).await;
    let url = format!("http://localhost:{}/ok", web.port);
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "input": requests(&[url, web.url("/ok")]), "wait": "30s",
               "network": {"allow": ["localhost", "127.0.0.1"]}}),
    )
    .await;
    let out = &e["outcome"]["output"];
    for i in 0..2 {
        let error = out[i]["error"].as_str().unwrap_or_default();
        assert!(error.contains("loopback"), "{out}");
    }
    assert!(web.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_or_end_requests() {
    let web = Receiver::start(0).await;
    let s = Server::start_with(None, &[], Some(OPEN));
    let token = s.admin("acme");
    let id = plugin(&s, &token).await;
    let grant = json!({"allow": [format!("127.0.0.1:{}", web.port)]});

    // Request count: the third of three is refused.
    let urls = vec![web.url("/ok"), web.url("/ok"), web.url("/ok")];
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "input": requests(&urls), "wait": "30s", "network": grant,
               "limits": {"http_requests": 2}}),
    )
    .await;
    let out = &e["outcome"]["output"];
    assert_eq!(out[1]["status"], 200, "{out}");
    assert!(
        out[2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limits.http_requests"),
        "{out}"
    );

    // Bytes received: a 100 KB body over a 10 KB budget fails while read.
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "input": requests(&[web.url("/big")]), "wait": "30s",
               "network": grant, "limits": {"http_received_bytes": 10000}}),
    )
    .await;
    assert!(e["outcome"]["output"][0]["error"].is_string(), "{e}");
    let record = &e["outcome"]["http"][0];
    assert!(
        record["error"]
            .as_str()
            .unwrap_or_default()
            .contains("http_received_bytes"),
        "{e}"
    );
    assert!(
        record["received_bytes"].as_u64().unwrap_or(u64::MAX) <= 10000,
        "{e}"
    );

    // Bytes sent: a 5,000-byte body over a 1,000-byte budget is refused.
    let body = "y".repeat(5000);
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "wait": "30s", "network": grant,
               "input": {"requests": [{"url": web.url("/echo"), "method": "POST", "body": body},
                                      {"url": web.url("/echo"), "method": "POST", "body": "small"}]},
               "limits": {"http_sent_bytes": 1000}}),
    )
    .await;
    let out = &e["outcome"]["output"];
    assert!(out[0]["error"].is_string(), "{out}");
    assert_eq!(out[1]["body"], "5", "a small body still fits: {out}");
    assert!(
        e["outcome"]["http"][0]["refused"]
            .as_str()
            .unwrap_or_default()
            .contains("http_sent_bytes"),
        "{e}"
    );

    // A slow server: the run hits its own timeout.
    let e = run(
        &s,
        &token,
        json!({"plugin_id": id, "input": requests(&[web.url("/slow")]), "wait": "30s",
               "network": grant, "limits": {"timeout": "2s"}}),
    )
    .await;
    assert_eq!(e["outcome"]["status"], "timed_out", "{e}");
}

/// `http-check` on a schedule, as the README's walkthrough does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_runs_on_a_schedule() {
    let web = Receiver::start(0).await;
    let s = Server::start_with(None, &[], Some(OPEN));
    let token = s.admin("acme");
    let plugin = s.upload(&token, "http-check").await;
    let (code, schedule) = s
        .call(
            Method::POST,
            "/v1/schedules",
            Some(&token),
            Some(json!({
                "name": "status-page",
                "plugin_id": plugin["id"],
                "trigger": {"kind": "interval", "every": "1s"},
                "input": {"url": web.url("/ok"), "contains": "hello"},
                "network": {"allow": [format!("127.0.0.1:{}", web.port)]},
            })),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{schedule}");
    let path = format!(
        "/v1/executions?schedule_id={}&status=succeeded",
        schedule["id"].as_str().expect("id")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, list) = s.call(Method::GET, &path, Some(&token), None).await;
        if let Some(e) = list["items"].as_array().and_then(|i| i.first()) {
            assert_eq!(e["outcome"]["output"]["status"], 200, "{e}");
            assert_eq!(e["outcome"]["http"][0]["status"], 200, "{e}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no successful check: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// With traces on, one ad hoc run making one request is one trace: the
/// caller's `traceparent` → the API request → enqueue → the run → the
/// request, whose receiver is sent the same trace; the execution names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_and_its_request_are_one_trace_with_the_callers() {
    use taskhost_tests::collector::Collector;
    let collector = Collector::start().await;
    let web = Receiver::start(0).await;
    let s = Server::start_with_env(
        None,
        &["--otlp-endpoint", &collector.url],
        Some(OPEN),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let token = s.admin("acme");
    let id = plugin(&s, &token).await;
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let body = json!({"plugin_id": id, "input": requests(&[web.url("/hook")]), "wait": "30s",
        "network": {"allow": [format!("127.0.0.1:{}", web.port)]}});
    let response = s
        .client
        .post(s.at("/v1/executions"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&body)
        .send()
        .await
        .expect("submit");
    let e: Value = response.json().await.expect("execution");
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(
        e["trace"]["trace_id"], trace,
        "the execution names its trace"
    );
    let sent = web.received();
    let header = sent[0]
        .headers
        .get("traceparent")
        .expect("a traceparent sent");
    assert!(header.starts_with(&format!("00-{trace}-")), "{header}");

    // Every span arrives within the exporter's batches.
    let wanted = ["request", "enqueue", "run", "http"];
    let started = std::time::Instant::now();
    let spans = loop {
        let spans: Vec<_> = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        let named = |n: &str| {
            spans
                .iter()
                .any(|s| s.name == n || (n == "request" && s.name.starts_with("POST")))
        };
        if wanted.iter().all(|n| named(n)) || started.elapsed().as_secs() > 30 {
            break spans;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let find = |n: &str| {
        spans
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("no {n} span in {spans:#?}"))
    };
    let request = find("POST /v1/executions");
    let (enqueue, run, http) = (find("enqueue"), find("run"), find("http"));
    assert_eq!(
        request.parent, caller,
        "the request continues the caller's span"
    );
    assert_eq!(enqueue.parent, request.span_id);
    assert_eq!(
        run.parent, enqueue.span_id,
        "the run is a child of its enqueue"
    );
    assert_eq!(http.parent, run.span_id);
    assert_eq!(header, &format!("00-{trace}-{}-01", http.span_id));
    let status = http.attributes.to_string();
    assert!(status.contains("\"status\""), "{status}");
}
