//! `taskhost new NAME --lang rust|python|js --template workflow`, then the
//! commands it prints, verbatim, in a temporary folder outside the
//! repository: the project builds and `taskhost run` succeeds with the
//! template's output, waiting out its durable sleep. (The hello template
//! differs in its one source file; the SDKs' own plugins cover its calls.)

use serde_json::Value;
use std::process::Command;
use taskhost_tests::langs;
use taskhost_tests::taskhost_bin;

/// The indented lines `taskhost new` prints under "Build it and run it once".
fn printed_commands(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Build it"))
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect()
}

fn new_project_builds_and_runs(lang: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(taskhost_bin())
        .args(["new", "demo", "--lang", lang, "--template", "workflow"])
        .current_dir(dir.path())
        .output()
        .expect("taskhost new");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let commands = printed_commands(&stdout);
    assert_eq!(
        commands.first().map(String::as_str),
        Some("cd demo"),
        "{stdout}"
    );
    let last = commands.last().expect("commands");
    assert!(last.starts_with("taskhost run "), "{stdout}");
    for file in ["README.md", ".gitignore"] {
        assert!(dir.path().join("demo").join(file).exists(), "{file}");
    }

    // The build, verbatim; then `taskhost run` (this build's binary) with the
    // last line's arguments.
    let bin = taskhost_bin().display().to_string();
    let (build, run) = commands.split_at(commands.len() - 1);
    let script = format!(
        "set -e\n{}\n'{bin}' {}\n",
        build.join("\n"),
        run[0].trim_start_matches("taskhost ")
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        // What `cargo test` sets for itself must not steer the project's build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script}\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The outcome is the last JSON object on stdout (the tools print before it).
    let json_start = stdout.rfind("\n{").map_or(0, |i| i + 1);
    let outcome: Value = serde_json::from_str(&stdout[json_start..]).expect("outcome JSON");
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    // The workflow template: two steps, a durable sleep between them that
    // `taskhost run` waits out, replaying the first step.
    assert_eq!(outcome["output"]["greeting"], "Hello, Ada!", "{outcome}");
    assert_eq!(outcome["output"]["shout"], "HELLO, ADA!", "{outcome}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("suspended until"), "{stderr}");
}

#[test]
fn a_new_rust_plugin_builds_and_runs() {
    new_project_builds_and_runs("rust");
}

#[test]
fn a_new_python_plugin_builds_and_runs() {
    if langs::tools_or_skip("a_new_python_plugin_builds_and_runs") {
        new_project_builds_and_runs("python");
    }
}

#[test]
fn a_new_js_plugin_builds_and_runs() {
    if langs::tools_or_skip("a_new_js_plugin_builds_and_runs") {
        new_project_builds_and_runs("js");
    }
}

#[test]
fn a_bad_name_or_a_used_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("used")).expect("mkdir");
    std::fs::write(dir.path().join("used/file"), "x").expect("write");
    for (args, needle) in [
        (vec!["new", "Bad Name"], "is not a plugin name"),
        (vec!["new", "used"], "already exists and is not empty"),
        (
            vec!["new", "x", "--lang", "python", "--sdk", "/tmp"],
            "Rust projects only",
        ),
        (
            vec!["new", "x", "--sdk", "/nonexistent"],
            "not the taskhost SDK",
        ),
    ] {
        let output = Command::new(taskhost_bin())
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("taskhost new");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
