//! A three-step durable workflow. Each step counts its runs in kv (`one`,
//! `two`, `three`). Input:
//! - `{"fail_two_once": true}`: step two fails (retryable) on attempt 1;
//! - `{"sleep_ms": N}`: a durable sleep `nap` between steps two and three;
//! - `{"rename_on_retry": true}`: attempt 2 and later call step one `uno`
//!   (a non-deterministic workflow), after failing on attempt 1;
//! - `{"wait": {"event": E, "filter": F, "timeout_ms": N}}`: step `approval`
//!   waits for event E between steps two and three; the output's
//!   `approval` is the event, or null on timeout;
//! - `{"steps": N}`: only N trivial steps `s0`… (for benchmarks); with
//!   `"step_ms": M`, each step counts its runs in kv (`s0`…) and takes M ms,
//!   and the output is `{"counts": [runs of s0, …]}` (for the chaos test).
use serde_json::{Value, json};
use std::time::Duration;
use taskhost_sdk::{Context, Error, Result, export_task};

fn count(ctx: &Context, key: &str) -> Result<u64> {
    let n: u64 = ctx.kv_get(key)?.unwrap_or(0) + 1;
    ctx.kv_set(key, &n)?;
    Ok(n)
}

fn workflow(ctx: &Context, input: Value) -> Result<Value> {
    if let Some(n) = input.get("steps").and_then(Value::as_u64) {
        let Some(ms) = input.get("step_ms").and_then(Value::as_u64) else {
            for i in 0..n {
                ctx.step(&format!("s{i}"), || Ok(i))?;
            }
            return Ok(json!(n));
        };
        for i in 0..n {
            let name = format!("s{i}");
            ctx.step(&name, || {
                count(ctx, &name)?;
                std::thread::sleep(Duration::from_millis(ms));
                Ok(i)
            })?;
        }
        let counts: Vec<u64> = (0..n)
            .map(|i| ctx.kv_get(&format!("s{i}")).map(Option::unwrap_or_default))
            .collect::<Result<_>>()?;
        return Ok(json!({ "counts": counts }));
    }
    let flag = |name: &str| input.get(name).and_then(Value::as_bool) == Some(true);
    let first = if flag("rename_on_retry") && ctx.attempt() > 1 {
        "uno"
    } else {
        "one"
    };
    let one: u64 = ctx.step(first, || count(ctx, "one"))?;
    let two: u64 = ctx.step("two", || {
        let n = count(ctx, "two")?;
        if (flag("fail_two_once") || flag("rename_on_retry")) && ctx.attempt() == 1 {
            return Err(Error::retryable("step two fails on the first attempt"));
        }
        Ok(n)
    })?;
    if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
        ctx.sleep("nap", Duration::from_millis(ms));
    }
    let approval = match input.get("wait") {
        Some(wait) => {
            let event = wait["event"].as_str().unwrap_or("approved");
            let timeout = Duration::from_millis(wait["timeout_ms"].as_u64().unwrap_or(60_000));
            ctx.wait_for_event("approval", event, &wait["filter"], timeout)?
        }
        None => None,
    };
    let three: u64 = ctx.step("three", || count(ctx, "three"))?;
    Ok(json!({
        "one": one, "two": two, "three": three, "attempt": ctx.attempt(), "approval": approval,
    }))
}

export_task!(workflow);
