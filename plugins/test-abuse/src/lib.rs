//! A hostile plugin: each mode tries to make the host keep or spend more than
//! it should. Input `{"mode": …, "n": …}`:
//!
//! - `empty_logs`: `log("")` forever;
//! - `progress_flood`: `progress` with an `n`-byte note, forever;
//! - `huge_error`: fails (retryable) with an `n`-byte message;
//! - `escape_output`: returns `n` bytes of `\x01` (not JSON: stored escaped);
//! - `nested_output`: returns JSON arrays nested `n` deep (`[[…1…]]`);
//! - `escape_stdout`: writes `n` bytes of `\x01` to stdout, then succeeds;
//! - `kv_fill`: writes `n`-byte values under new keys until the host refuses;
//!   returns how many it wrote and the refusal, as JSON;
//! - `exit`: exits the process with code `n` instead of returning.
use std::io::Write;
use taskhost_sdk::__private::bindings::taskhost::plugin::types::{Invocation, TaskError};
use taskhost_sdk::__private::bindings::taskhost::plugin::{host, types::LogLevel};

struct Abuse;

#[derive(serde::Deserialize)]
struct Input {
    mode: String,
    #[serde(default)]
    n: usize,
}

impl taskhost_sdk::__private::bindings::Guest for Abuse {
    fn run(invocation: Invocation) -> Result<Vec<u8>, TaskError> {
        let input: Input = serde_json::from_slice(&invocation.input)
            .map_err(|e| TaskError::Fatal(format!("invalid input: {e}")))?;
        match input.mode.as_str() {
            "empty_logs" => loop {
                host::log(LogLevel::Info, "");
            },
            "progress_flood" => {
                let note = "p".repeat(input.n);
                loop {
                    host::progress(50, Some(&note));
                }
            }
            "huge_error" => Err(TaskError::Retryable("e".repeat(input.n))),
            "escape_output" => Ok(vec![1u8; input.n]),
            "nested_output" => {
                Ok(format!("{}1{}", "[".repeat(input.n), "]".repeat(input.n)).into_bytes())
            }
            "escape_stdout" => {
                let chunk = vec![1u8; 4096];
                let mut left = input.n;
                let mut out = std::io::stdout();
                while left > 0 {
                    let take = left.min(chunk.len());
                    let _ = out.write_all(&chunk[..take]);
                    left -= take;
                }
                let _ = out.flush();
                Ok(b"\"done\"".to_vec())
            }
            "kv_fill" => {
                let value = vec![b'v'; input.n];
                let mut written = 0u64;
                loop {
                    match host::kv_set(&format!("k{written}"), &value) {
                        Ok(()) => written += 1,
                        Err(refusal) => {
                            let out = serde_json::json!({"written": written, "error": refusal});
                            return Ok(out.to_string().into_bytes());
                        }
                    }
                }
            }
            "exit" => std::process::exit(i32::try_from(input.n).unwrap_or(1)),
            other => Err(TaskError::Fatal(format!("unknown mode {other:?}"))),
        }
    }
}

taskhost_sdk::__private::bindings::__export_task_world!(
    Abuse with_types_in taskhost_sdk::__private::bindings
);
