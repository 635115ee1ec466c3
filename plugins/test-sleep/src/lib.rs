//! Waits for `ms` milliseconds on the host's clock (no CPU burned), then
//! returns. With `first_attempt_only`, only attempt 1 waits: a retry after a
//! crash finishes at once.
use taskhost_sdk::{Context, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    ms: u64,
    #[serde(default)]
    first_attempt_only: bool,
}

fn sleep(ctx: &Context, input: Input) -> Result<u64> {
    if !input.first_attempt_only || ctx.attempt() == 1 {
        std::thread::sleep(std::time::Duration::from_millis(input.ms));
    }
    Ok(input.ms)
}

export_task!(sleep);
