//! The end-to-end benchmark (`taskhost-bench`) still runs, in its quick form.
//! Its numbers are not checked here: speed is shown by running the
//! benchmark on a quiet machine (README, "Benchmarks"), not by timed tests.

use std::process::Command;

#[test]
fn the_end_to_end_benchmark_runs() {
    let output = Command::new(env!("CARGO_BIN_EXE_taskhost-bench"))
        .args(["a", "b", "ingest", "--quick", "--reps", "1"])
        .output()
        .expect("run taskhost-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "taskhost-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "  A: ",
        "  B: ",
        "  ingest with 0 queued",
        "  ingest with 20000 queued",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
