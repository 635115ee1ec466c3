//! Short runs of the chaos suite (`src/bin/chaos.rs`; the long run is
//! `scripts/chaos.sh`): ten random kills per store with every check, and one
//! 40 s database outage that the nodes ride out without a restart.

use std::process::Command;
use taskhost_tests::repo_root;

/// Runs the chaos binary with `args`; fails with its output if a check fails.
fn chaos(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .output()
        .expect("run the chaos suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chaos {args:?} failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

/// Whether the SecantusDB venv is there (CI always makes it).
fn secantus() -> bool {
    let venv = std::env::var_os("SECANTUS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".secv"));
    let there = venv.join("bin/secantusd-py").exists();
    if !there {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no SecantusDB venv at {}",
            venv.display()
        );
        eprintln!("notice: no SecantusDB venv; skipping (scripts/mongo-test-server.sh makes it)");
    }
    there
}

#[test]
fn ten_kills_on_sqlite() {
    chaos(&["--store", "sqlite", "--kills", "10"]);
}

#[test]
fn ten_kills_and_a_database_restart_on_mongodb() {
    if secantus() {
        chaos(&["--store", "mongodb", "--kills", "10"]);
    }
}

#[test]
fn a_40s_database_outage_on_mongodb() {
    if secantus() {
        chaos(&["--store", "mongodb", "--nodes", "2", "--outage", "40"]);
    }
}
