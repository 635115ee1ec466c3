//! The chaos suite's workload: waits `ms` milliseconds, fails (retryably)
//! while its attempt is at most `fail_attempts`, then counts this completion
//! in kv under `runs/<execution id>` and returns the count. A count above 1
//! shows that the execution ran to the end more than once (at least once is
//! the contract); the execution's recorded output shows which run's result
//! was kept.
use taskhost_sdk::{Context, Error, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    fail_attempts: u32,
}

fn count(ctx: &Context, input: Input) -> Result<u64> {
    std::thread::sleep(std::time::Duration::from_millis(input.ms));
    if ctx.attempt() <= input.fail_attempts {
        return Err(Error::retryable("a planned failure"));
    }
    let key = format!("runs/{}", ctx.execution_id());
    let runs: u64 = ctx.kv_get(&key)?.unwrap_or(0) + 1;
    ctx.kv_set(&key, &runs)?;
    Ok(runs)
}

export_task!(count);
