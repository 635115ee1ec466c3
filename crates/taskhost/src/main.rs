//! The `taskhost` binary: see `taskhost --help`.

fn main() -> std::process::ExitCode {
    taskhost::cli::main()
}
