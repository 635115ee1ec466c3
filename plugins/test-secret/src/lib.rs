//! Test plugin for secrets: reads the secret named in its input and leaks it
//! every way it can — a log line, stdout, and the output. The host must
//! scrub all of them. A secret it may not read is a fatal error.
use taskhost_sdk::{Context, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    name: String,
}

fn leak(ctx: &Context, input: Input) -> Result<serde_json::Value> {
    let value = ctx.secret(&input.name)?;
    ctx.info(&format!("the secret is {value}"));
    println!("stdout: {value}");
    Ok(serde_json::json!({ "leaked": value, "length": value.len() }))
}

export_task!(leak);
