//! Bounds on everything a run produces, applied before anything is kept.
//!
//! A run's host memory is its linear memory (its `memory_bytes` limit) plus
//! what the host holds for it: structured logs (at most `log_bytes`, counting
//! each line's message as stored, after JSON escaping, plus
//! [`LOG_LINE_OVERHEAD`], and at most [`MAX_LOG_LINES`] lines), stdout and
//! stderr (`log_bytes` each), a progress note ([`MAX_NOTE_BYTES`]), and the
//! value `run` returns while it is checked (copied out of the guest's memory,
//! so at most its memory limit). [`enforce`] then cuts the outcome to what is
//! stored: the error message to [`MAX_ERROR_BYTES`], stdout and stderr to
//! `log_bytes` as escaped JSON, the output to `output_bytes` as stored (over
//! it, the run is `output_too_large`), and the whole outcome to
//! [`MAX_STORED_OUTCOME_BYTES`], which fits every backend with room to spare
//! (MongoDB's documents stop at 16 MiB).
//!
//! Host calls are not free either: every call into the host (WASI included)
//! costs [`HOST_CALL_FUEL`], a call of the `host` interface (log, kv, config,
//! progress) [`TASKHOST_CALL_FUEL`] more, plus [`HOST_BYTE_FUEL`] per byte it
//! is given, so a plugin that loops on `log` or `kv-get` runs out of fuel like
//! one that loops on arithmetic.

use taskhost_model::Limits;
use taskhost_model::outcome::{Outcome, Status};

/// The largest stored outcome of a run (output, error, logs, stdout, stderr
/// and the rest, as JSON).
pub const MAX_STORED_OUTCOME_BYTES: usize = 8 << 20;
/// What a log line costs against `log_bytes` besides its message.
pub const LOG_LINE_OVERHEAD: u64 = 64;
/// Most log lines a run keeps; later ones are dropped and counted.
pub const MAX_LOG_LINES: usize = 10_000;
/// Longest error message kept, as escaped JSON.
pub const MAX_ERROR_BYTES: usize = 64 << 10;
/// Deepest nesting of arrays and objects an output may have: stored inside
/// its execution's record, it must read back under every JSON reader's
/// recursion limit (serde_json's is 128), or the record could never be read.
pub const MAX_OUTPUT_DEPTH: usize = 64;
/// Longest progress note kept.
pub const MAX_NOTE_BYTES: usize = 1 << 10;
/// Most outbound HTTP requests recorded per run (also the node's cap on
/// `limits.http_requests`); later ones are counted only.
pub const MAX_HTTP_RECORDS: usize = 1000;
/// Longest host, path, refusal or error text kept in an HTTP record.
pub const MAX_HTTP_FIELD_BYTES: usize = 512;
/// Fuel every call from the guest into the host costs (WASI included): about
/// what 1 µs of guest compute burns.
pub const HOST_CALL_FUEL: u64 = 1_000;
/// Fuel a call of the `host` interface costs on top: about what 50 µs of
/// guest compute burns, the order of a store round trip.
pub const TASKHOST_CALL_FUEL: u64 = 50_000;
/// Fuel per byte handed to a host function (log messages, kv keys and values,
/// progress notes, config keys).
pub const HOST_BYTE_FUEL: u64 = 1;

/// Bytes `s` takes inside a JSON string, escapes included.
pub fn escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// Cuts `s` (at a character boundary) so that its escaped length plus a
/// marker fits `max`. Returns whether it cut.
pub fn truncate_escaped(s: &mut String, max: usize) -> bool {
    if escaped_len(s) <= max {
        return false;
    }
    const MARK: &str = "\n[truncated]";
    let mark = escaped_len(MARK);
    let budget = max.saturating_sub(mark);
    let mut used = 0;
    let mut cut = 0;
    for (i, c) in s.char_indices() {
        let mut buf = [0u8; 4];
        used += escaped_len(c.encode_utf8(&mut buf));
        if used > budget {
            break;
        }
        cut = i + c.len_utf8();
    }
    s.truncate(cut);
    if max >= mark {
        s.push_str(MARK);
    }
    true
}

/// How deeply arrays and objects nest in `bytes`, valid JSON (brackets
/// inside strings do not count).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            (false, _) => {}
        }
    }
    deepest
}

/// The output's size as stored (JSON as is, other bytes as an escaped
/// string), and whether it is stored as JSON.
fn stored_output_len(output: &[u8]) -> (usize, bool) {
    // Validate without building a value: this runs for every run's output.
    match serde_json::from_slice::<serde::de::IgnoredAny>(output) {
        Ok(_) => (output.len(), true),
        Err(_) => (escaped_len(&String::from_utf8_lossy(output)) + 2, false),
    }
}

/// Cuts an outcome to what may be stored (see the module docs).
pub fn enforce(outcome: &mut Outcome, limits: &Limits) {
    if let Some(error) = &mut outcome.error {
        truncate_escaped(&mut error.message, MAX_ERROR_BYTES);
    }
    let log_cap = usize::try_from(limits.log_bytes).unwrap_or(usize::MAX);
    truncate_escaped(&mut outcome.stdout, log_cap);
    truncate_escaped(&mut outcome.stderr, log_cap);
    if let Some(output) = &outcome.output {
        let (size, json) = stored_output_len(output);
        let depth = if json { json_depth(output) } else { 0 };
        let refused = if size as u64 > limits.output_bytes {
            Some(format!(
                "the plugin returned {size} bytes of output (as stored); the limit is {} bytes",
                limits.output_bytes
            ))
        } else if depth > MAX_OUTPUT_DEPTH {
            Some(format!(
                "the plugin returned output nested {depth} levels deep; the limit is {MAX_OUTPUT_DEPTH}"
            ))
        } else {
            None
        };
        if let Some(message) = refused {
            outcome.output = None;
            outcome.status = Status::OutputTooLarge;
            outcome.error = Some(taskhost_model::RunError {
                message,
                retryable: false,
                backtrace: None,
            });
        }
    }
    // The whole ceiling: with the node's caps it holds by the parts above;
    // this makes sure of it whatever the caps are. Measured only when a cheap
    // upper bound (every byte escaped to six) says it might not hold.
    let worst = 6
        * (outcome.output.as_ref().map_or(0, Vec::len)
            + outcome.stdout.len()
            + outcome.stderr.len()
            + outcome.error.as_ref().map_or(0, |e| {
                e.message.len() + e.backtrace.as_ref().map_or(0, String::len)
            })
            + outcome
                .logs
                .iter()
                .map(|l| l.message.len() + LOG_LINE_OVERHEAD as usize)
                .sum::<usize>()
            + outcome.http.len() * (4 * MAX_HTTP_FIELD_BYTES + 256))
        + 4096;
    if worst <= MAX_STORED_OUTCOME_BYTES {
        return;
    }
    while serde_json::to_vec(outcome).map_or(0, |v| v.len()) > MAX_STORED_OUTCOME_BYTES {
        if outcome.logs.pop().is_some() {
            outcome.logs_truncated = true;
            // Drop lines in chunks to keep this loop short.
            let keep = outcome.logs.len() * 3 / 4;
            outcome.logs.truncate(keep);
        } else if !outcome.stdout.is_empty() || !outcome.stderr.is_empty() {
            let half = |s: &mut String| {
                let max = escaped_len(s) / 2;
                truncate_escaped(s, max);
            };
            half(&mut outcome.stdout);
            half(&mut outcome.stderr);
            if outcome.stdout.len() < 64 && outcome.stderr.len() < 64 {
                outcome.stdout.clear();
                outcome.stderr.clear();
            }
        } else if outcome.output.take().is_some() {
            outcome.status = Status::OutputTooLarge;
        } else {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_lengths() {
        assert_eq!(escaped_len("abc"), 3);
        assert_eq!(escaped_len("a\"b\\"), 6);
        assert_eq!(escaped_len("\u{1}"), 6);
        assert_eq!(escaped_len("\n"), 2);
        assert_eq!(escaped_len("é"), 2);
        let s = "\u{1}".repeat(10);
        assert_eq!(
            serde_json::to_string(&s).map(|j| j.len() - 2).ok(),
            Some(escaped_len(&s))
        );
    }

    #[test]
    fn truncation_fits_the_budget() {
        let mut s = "\u{1}é".repeat(1000);
        assert!(truncate_escaped(&mut s, 100));
        assert!(escaped_len(&s) <= 100, "{}", escaped_len(&s));
        assert!(s.ends_with("[truncated]"));
        let mut short = "ok".to_owned();
        assert!(!truncate_escaped(&mut short, 100));
    }

    #[test]
    fn output_nested_too_deep_is_refused_and_never_stored() {
        let limits = Limits::default();
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n)).into_bytes();
        let mut ok = Outcome::not_run(Status::Succeeded, "");
        ok.error = None;
        ok.output = Some(deep(MAX_OUTPUT_DEPTH));
        enforce(&mut ok, &limits);
        assert_eq!(ok.status, Status::Succeeded);
        assert!(ok.output.is_some());

        let mut poison = Outcome::not_run(Status::Succeeded, "");
        poison.error = None;
        poison.output = Some(deep(127));
        enforce(&mut poison, &limits);
        assert_eq!(poison.status, Status::OutputTooLarge);
        assert_eq!(poison.output, None);
        assert!(
            poison
                .error
                .is_some_and(|e| e.message.contains("127 levels"))
        );
        // Brackets inside strings do not nest.
        assert_eq!(json_depth(br#"{"a": "[[[[[{{{{"}"#), 1);
        // Not JSON (brackets never closed): stored as a string, whatever
        // its brackets.
        let mut text = Outcome::not_run(Status::Succeeded, "");
        text.error = None;
        text.output = Some("[".repeat(200).into_bytes());
        enforce(&mut text, &limits);
        assert_eq!(text.status, Status::Succeeded);
    }
}
