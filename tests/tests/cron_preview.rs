//! `GET /v1/cron/preview` and `taskhost cron next`: fire times in the
//! schedule's zone and in UTC, with a daylight-saving change marked.

use reqwest::{Method, StatusCode};
use std::process::Command;
use taskhost::api::auth::Scope;
use taskhost_tests::server::Server;
use taskhost_tests::taskhost_bin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_local_and_utc_times_across_a_dst_change() {
    let s = Server::start(None);
    let token = s.token("acme", &[Scope::SchedulesRead]);
    // Europe/London springs forward on 2026-03-29 at 01:00 UTC: 01:30 local
    // does not exist that day, so that fire is at the change itself.
    let path = "/v1/cron/preview?expr=30%201%20*%20*%20*&timezone=Europe/London&count=4&after=2026-03-27T00:00:00Z";
    let (code, body) = s.call(Method::GET, path, Some(&token), None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let fires = body["fires"].as_array().expect("fires");
    let utc: Vec<&str> = fires
        .iter()
        .map(|f| f["utc"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        utc,
        [
            "2026-03-27T01:30:00Z",
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z"
        ],
        "{body}"
    );
    assert_eq!(fires[1]["local"], "2026-03-28T01:30:00+00:00");
    assert_eq!(fires[2]["local"], "2026-03-29T02:00:00+01:00");
    let changed: Vec<bool> = fires.iter().map(|f| f["offset_changed"] == true).collect();
    assert_eq!(changed, [false, false, true, false], "{body}");

    for bad in [
        "/v1/cron/preview?expr=nope",
        "/v1/cron/preview?expr=*%20*%20*%20*%20*&timezone=Mars/Olympus",
        "/v1/cron/preview?expr=*%20*%20*%20*%20*&count=1000",
    ] {
        let (code, body) = s.call(Method::GET, bad, Some(&token), None).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }

    // The CLI prints the same, one fire a line, the change marked.
    let output = Command::new(taskhost_bin())
        .args(["cron", "next", "30 1 * * *", "--timezone", "Europe/London"])
        .args(["--count", "4", "--after", "2026-03-27T00:00:00Z"])
        .args(["--server", &s.url, "--token", &token])
        .output()
        .expect("run taskhost");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("2026-03-29T02:00:00+01:00"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains("2026-03-29T01:00:00Z") && line.trim_end().ends_with('*'),
        "{stdout}"
    );
}
