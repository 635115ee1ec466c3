//! The `taskhost` command line, built in this package so that its tests,
//! benches and helper binaries find it beside them (see
//! `taskhost_tests::taskhost_bin`) without building anything themselves.

fn main() -> std::process::ExitCode {
    taskhost::cli::main()
}
