//! The README's walkthrough, run as written against a real server on the
//! embedded store, with `taskhost` on the PATH as the README assumes.

use std::process::Command;
use taskhost_tests::server::Server;
use taskhost_tests::{repo_root, taskhost_bin};

/// The shell block between the walkthrough markers of the README.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("end marker");
    let block = &readme[start..end];
    let body = block.split_once("```sh\n").expect("a sh block").1;
    body.rsplit_once("```").expect("closed block").0.to_owned()
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let server = Server::start(None);
    let bin_dir = taskhost_bin().parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &walkthrough()])
        .current_dir(repo_root())
        .env("PATH", path)
        .env("TASKHOST_SERVER", &server.url)
        .env("TASKHOST_TOKEN", server.admin("dev"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
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
        !stdout.contains("s3cr3t-value"),
        "a secret value was shown: {stdout}"
    );
}
