//! Exercises the host interface: kv, config, progress, logging, invocation
//! fields and error kinds. Input `{"fail": "retryable" | "fatal"}` fails on purpose.
use serde_json::{Value, json};
use taskhost_sdk::{Context, Error, Result, export_task};

fn kv(ctx: &Context, input: Value) -> Result<Value> {
    match input.get("fail").and_then(Value::as_str) {
        Some("retryable") => return Err(Error::retryable("try me again")),
        Some("fatal") => return Err(Error::fatal("do not try again")),
        _ => {}
    }
    let count: u64 = ctx.kv_get("count")?.unwrap_or(0) + 1;
    ctx.kv_set("count", &count)?;
    ctx.kv_set_bytes("scratch", b"temp")?;
    let deleted = ctx.kv_delete("scratch")?;
    let deleted_again = ctx.kv_delete("scratch")?;
    ctx.progress(50, Some("half way"));
    ctx.warn("a warning");
    Ok(json!({
        "count": count,
        "deleted": deleted,
        "deleted_again": deleted_again,
        "greeting": ctx.config("greeting"),
        "execution_id": ctx.execution_id(),
        "schedule_id": ctx.schedule_id(),
        "attempt": ctx.attempt(),
        "scheduled_at_ms": ctx.scheduled_at_ms(),
    }))
}

export_task!(kv);
