//! Returns an output of `mib` MiB (default 8).
use taskhost_sdk::{Context, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    mib: Option<usize>,
}

fn huge(_ctx: &Context, input: Option<Input>) -> Result<String> {
    let mib = input.and_then(|i| i.mib).unwrap_or(8);
    Ok("x".repeat(mib << 20))
}

export_task!(huge);
