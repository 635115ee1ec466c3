//! `taskhost run` as a plugin author uses it: the real binary, real plugins.

use std::process::{Command, Output};
use taskhost_tests::{plugin_path, taskhost_bin};

fn taskhost(args: &[&str]) -> Output {
    Command::new(taskhost_bin())
        .args(args)
        .output()
        .expect("run taskhost")
}

fn outcome(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn run_hello_prints_the_outcome_and_exits_zero() {
    let hello = plugin_path("hello");
    let output = taskhost(&[
        "run",
        hello.to_str().expect("utf-8 path"),
        "--input",
        r#"{"name":"Ada"}"#,
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = outcome(&output);
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["output"], "Hello, Ada!");
    assert_eq!(json["logs"][0]["message"], "greeting Ada");
}

#[test]
fn input_from_a_file_and_config_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"readings":[2,4]}"#).expect("write input");
    let rollup = plugin_path("rollup");
    let output = taskhost(&[
        "run",
        rollup.to_str().expect("utf-8"),
        "--input",
        &format!("@{}", input.display()),
        "--config",
        "series=temps",
        "--compact",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .lines()
            .count(),
        1
    );
    let json = outcome(&output);
    assert_eq!(json["output"]["series"], "temps");
    assert_eq!(json["output"]["mean"], 3.0);
}

#[test]
fn limits_from_flags_end_runs_with_their_status_and_exit_one() {
    let spin = plugin_path("test-spin");
    let spin = spin.to_str().expect("utf-8");
    let output = taskhost(&["run", spin, "--fuel", "1000000"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(outcome(&output)["status"], "out_of_fuel");

    let output = taskhost(&[
        "run",
        spin,
        "--fuel",
        "18446744073709551615",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(outcome(&output)["status"], "timed_out");

    let memhog = plugin_path("test-memhog");
    let output = taskhost(&["run", memhog.to_str().expect("utf-8"), "--memory", "16MiB"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(outcome(&output)["status"], "memory_limit");
}

#[test]
fn an_invalid_plugin_is_an_outcome_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = dir.path().join("server.wasm");
    std::fs::write(
        &server,
        taskhost_tests::component_importing("wasi:http/incoming-handler@0.2.6"),
    )
    .expect("write");
    let output = taskhost(&["run", server.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(1));
    let json = outcome(&output);
    assert_eq!(json["status"], "invalid_plugin");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("wasi:http/incoming-handler")
    );
}

#[test]
fn usage_errors_exit_two_with_a_message() {
    let hello = plugin_path("hello");
    let hello = hello.to_str().expect("utf-8");
    for (args, needle) in [
        (
            vec!["run", hello, "--input", "{not json"],
            "--input is not valid JSON",
        ),
        (
            vec!["run", hello, "--memory", "lots"],
            "invalid value 'lots'",
        ),
        (
            vec!["run", hello, "--timeout", "soon"],
            "invalid value 'soon'",
        ),
        (
            vec!["run", hello, "--config", "novalue"],
            "expected KEY=VALUE",
        ),
        (
            vec!["run", "/no/such/plugin.wasm"],
            "could not read the plugin",
        ),
    ] {
        let output = taskhost(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn help_explains_every_flag() {
    let output = taskhost(&["run", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--input",
        "--fuel",
        "--memory",
        "--timeout",
        "--output-limit",
        "--log-limit",
        "--config",
        "--compact",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let output = taskhost(&["--help"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("run"));
}

/// `taskhost admin backup` while a node takes submissions, then `admin
/// restore` into a fresh folder and a node on it (issue 28, acceptance 4):
/// every submission acknowledged before the backup began is there and
/// ends; the copy passes SQLite's integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_run() {
    use reqwest::StatusCode;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use taskhost_tests::server::Server;

    let s = Arc::new(Server::start(None));
    let token = s.admin("acme");
    let plugin = s.upload(&token, "hello").await["id"].clone();
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let load = {
        let (s, token, stop, acked) = (s.clone(), token.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body =
                    serde_json::json!({"plugin_id": plugin, "input": {"name": format!("n{n}")}});
                let response = s
                    .client
                    .post(s.at("/v1/executions"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                if let Some(r) = response.ok().filter(|r| r.status() == StatusCode::ACCEPTED) {
                    let e: serde_json::Value = r.json().await.expect("json");
                    acked
                        .lock()
                        .expect("lock")
                        .push(e["id"].as_str().expect("id").to_owned());
                }
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let before: Vec<String> = acked.lock().expect("lock").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.db");
    let data = s.data_dir().to_str().expect("utf-8").to_owned();
    let file_arg = file.to_str().expect("utf-8").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        taskhost(&["admin", "backup", &file_arg, "--data-dir", &data])
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert!(before.len() > 10, "a load: {} submissions", before.len());

    let restored = dir.path().join("restored");
    let output = taskhost(&[
        "admin",
        "restore",
        file.to_str().expect("utf-8"),
        "--data-dir",
        restored.to_str().expect("utf-8"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("integrity check: ok"));
    let again = taskhost(&[
        "admin",
        "restore",
        file.to_str().expect("utf-8"),
        "--data-dir",
        restored.to_str().expect("utf-8"),
    ]);
    assert!(
        !again.status.success(),
        "a restore never overwrites a store"
    );

    let store = format!("sqlite://{}", restored.join("taskhost.db").display());
    let node = Server::start(Some(&store));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for id in &before {
        loop {
            let (status, e) = node
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/executions/{id}"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::OK,
                "acknowledged before the backup: {id}"
            );
            if !matches!(e["status"].as_str(), Some("queued" | "running")) {
                assert_eq!(e["status"], "succeeded", "{e}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} did not end: {e}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The fixture store the previous release wrote (see its MADE.md).
const PREVIOUS: &str = "tests/fixtures/upgrade/3f48313";

/// A store written by the previous release is opened, migrated and served
/// by this one (issue 28, upgrades); a store newer than this one is refused
/// with a message that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_release_is_served() {
    use reqwest::{Method, StatusCode};
    use taskhost_tests::server::Server;

    let fixture = taskhost_tests::repo_root().join(PREVIOUS);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("taskhost.db");
    std::fs::copy(fixture.join("taskhost.db"), &db).expect("copy the fixture");
    let key = fixture.join("secrets-key");
    let store = format!("sqlite://{}", db.display());
    let args = ["--secrets-key-file", key.to_str().expect("utf-8")];
    let s = Server::start_with(Some(&store), &args, None);
    let token = s.admin("acme");
    let get = async |path: &str| {
        let (status, body) = s.call(Method::GET, path, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    };
    let schedules = get("/v1/schedules").await;
    let mut names: Vec<&str> = schedules["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["greet", "paused"], "{schedules}");
    let runs = get("/v1/executions").await;
    let ada = &runs["items"][0];
    assert_eq!(ada["status"], "succeeded", "{runs}");
    assert_eq!(ada["outcome"]["output"], "Hello, Ada!");
    assert!(
        get("/v1/secrets")
            .await
            .to_string()
            .contains("PARTNER_TOKEN")
    );
    let aliases = get("/v1/plugins/hello/aliases").await;
    assert!(aliases.to_string().contains("stable"), "{aliases}");

    // The old plugin runs, and may read the old secret.
    let body = serde_json::json!({"plugin_id": ada["plugin_id"], "input": {"name": "Bo"},
        "wait": "10s", "secrets": ["PARTNER_TOKEN"]});
    let (status, run) = s
        .call(Method::POST, "/v1/executions", Some(&token), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"]["output"], "Hello, Bo!", "{run}");

    // A store from a newer taskhost is refused.
    let newer = dir.path().join("newer.db");
    std::fs::copy(fixture.join("taskhost.db"), &newer).expect("copy");
    let conn = rusqlite::Connection::open(&newer).expect("open");
    conn.pragma_update(None, "user_version", 999)
        .expect("version");
    drop(conn);
    let output = taskhost(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        "x".repeat(32).as_str(),
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
        "--store",
        &format!("sqlite://{}", newer.display()),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("newer than this taskhost knows"),
        "{stderr}"
    );
}

/// `taskhost run` keeps a compiled plugin by its hash (issue 28): the first
/// run of a file compiles and stores it, the second loads it; `--no-cache`
/// keeps nothing. (Its speed is a benchmark figure, not asserted here.)
#[test]
fn run_keeps_compiled_plugins_by_hash() {
    let cache = tempfile::tempdir().expect("tempdir");
    let hello = plugin_path("hello");
    let hello = hello.to_str().expect("utf-8 path");
    let dir = cache.path().to_str().expect("utf-8 path");
    let artifacts = || {
        std::fs::read_dir(cache.path().join("artifacts"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                    .count()
            })
            .unwrap_or(0)
    };
    let input = r#"{"name":"Ada"}"#;
    let first = taskhost(&["run", hello, "--input", input, "--cache-dir", dir]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(artifacts(), 1, "compiled once, kept");
    let second = taskhost(&["run", hello, "--input", input, "--cache-dir", dir]);
    assert!(second.status.success());
    assert_eq!(outcome(&second)["output"], "Hello, Ada!");
    assert_eq!(artifacts(), 1, "loaded, not compiled again");
    // Without a folder, the user's cache folder; with --no-cache, none.
    let home = tempfile::tempdir().expect("tempdir");
    let run = |extra: &[&str]| {
        Command::new(taskhost_bin())
            .args(["run", hello, "--input", input])
            .args(extra)
            .env("XDG_CACHE_HOME", home.path())
            .output()
            .expect("run taskhost")
    };
    assert!(run(&["--no-cache"]).status.success());
    assert!(
        !home.path().join("taskhost").exists(),
        "--no-cache keeps nothing"
    );
    assert!(run(&[]).status.success());
    assert!(home.path().join("taskhost/artifacts").exists());
}

/// A MongoDB store a newer taskhost wrote is refused too, with its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_mongodb_store_is_refused() {
    let db = format!(
        "taskhost_format_{}",
        taskhost_model::new_id().replace('-', "")
    );
    let Some(url) = taskhost_tests::stores::mongodb_url(&db) else {
        return;
    };
    let clock = std::sync::Arc::new(taskhost_model::clock::SystemClock);
    taskhost_store::Store::open(&url, clock.clone())
        .await
        .expect("a new store opens");
    let client = mongodb::Client::with_uri_str(&url).await.expect("client");
    let meta = client
        .database(&db)
        .collection::<mongodb::bson::Document>("meta");
    meta.update_one(
        mongodb::bson::doc! { "_id": "format" },
        mongodb::bson::doc! { "$set": { "version": 999_i64 } },
    )
    .await
    .expect("set");
    let refused = taskhost_store::Store::open(&url, clock).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("newer than this taskhost knows"),
        "{message}"
    );
}
