//! The README's walkthrough, run as written against a real server on the
//! embedded store, with `taskhost` on the PATH as the README assumes.

use std::process::Command;
use taskhost_tests::server::Server;
use taskhost_tests::{path_with_taskhost, repo_root};

/// The shell block between the walkthrough markers of the README.
fn walkthrough() -> String {
    block("walkthrough")
}

/// The shell block between the `NAME:start` and `NAME:end` markers.
fn block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let start = readme
        .find(&format!("<!-- {name}:start -->"))
        .expect("start marker");
    let end = readme
        .find(&format!("<!-- {name}:end -->"))
        .expect("end marker");
    let block = &readme[start..end];
    let body = block.split_once("```sh\n").expect("a sh block").1;
    body.rsplit_once("```").expect("closed block").0.to_owned()
}

/// Runs a README block with bash against a fresh server on the embedded
/// store, `taskhost` on the PATH; what it printed, once it succeeded.
fn run_block(script: &str) -> String {
    let server = Server::start(None);
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(repo_root())
        .env("PATH", path_with_taskhost())
        .env("TASKHOST_SERVER", &server.url)
        .env("TASKHOST_TOKEN", server.admin("dev"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let stdout = run_block(&walkthrough());
    assert!(stdout.contains(r#""output":"Hello, Ada!""#), "{stdout}");
    assert!(
        stdout.contains("greeting cron"),
        "the logs of a scheduled run: {stdout}"
    );
    assert!(stdout.contains("succeeded"), "{stdout}");
    assert!(
        stdout.contains("PARTNER_TOKEN"),
        "the secret is listed: {stdout}"
    );
    assert!(
        stdout.contains("paused"),
        "the history shows the paused fires: {stdout}"
    );
    assert!(
        stdout.contains("backfilled"),
        "the backfill ran fires: {stdout}"
    );
    assert!(stdout.contains("stable"), "the alias moved: {stdout}");
    assert!(
        !stdout.contains("s3cr3t-value"),
        "a secret value was shown: {stdout}"
    );
}

/// The README's events walkthrough: an event from the CLI, and a signed
/// hook request from curl, each running the schedule once; the replay runs
/// nothing.
#[test]
fn the_events_walkthrough_works_as_written() {
    let stdout = run_block(&block("events-walkthrough"));
    assert!(stdout.contains(r#""fired":1"#), "the hook ran it: {stdout}");
    assert!(stdout.contains("webhook_replayed"), "the replay: {stdout}");
    let runs = stdout
        .lines()
        .filter(|l| l.contains("succeeded  succeeded"));
    assert_eq!(runs.count(), 2, "two runs, one per event: {stdout}");
}

/// The README's workflows walkthrough: a run waiting for an approval woken
/// by the tenant's event, and a fan-out of 100 children joined.
#[test]
fn the_workflows_walkthrough_works_as_written() {
    let stdout = run_block(&block("workflows-walkthrough"));
    assert!(stdout.contains("order.approved"), "it waits: {stdout}");
    assert!(
        stdout.contains("woke workflow"),
        "the event woke it: {stdout}"
    );
    assert!(stdout.contains("succeeded"), "it went on: {stdout}");
    assert!(
        stdout.contains(r#""sum": 328350"#),
        "the squares of 0..100, summed: {stdout}"
    );
}

/// The README's outbound HTTP walkthrough: `http-check` on a schedule
/// against a local server the node's policy opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_walkthrough_works_as_written() {
    let web = taskhost_tests::receiver::Receiver::start(0).await;
    let config = "[network]\nopen_ranges = [\"127.0.0.0/8\"]\nplain_http = true\n";
    let server = Server::start_with(None, &[], Some(config));
    let path = path_with_taskhost();
    let script = block("http-walkthrough");
    let (url, hook, token) = (web.url("/ok"), web.url("/hook"), server.admin("dev"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(repo_root())
            .env("PATH", path)
            .env("TASKHOST_SERVER", &server.url)
            .env("TASKHOST_TOKEN", token)
            .env("STATUS_URL", url)
            .env("HOOK_URL", hook)
            .output()
            .expect("run bash")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("succeeded"), "a successful check: {stdout}");
    assert!(web.received().is_empty(), "no failure, so no webhook");
}
