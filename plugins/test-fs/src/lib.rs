//! Tries to read a host file; it imports wasi:filesystem and must be refused.
use taskhost_sdk::{Context, Result, export_task};

fn read_file(_ctx: &Context, _input: serde_json::Value) -> Result<String> {
    Ok(std::fs::read_to_string("/etc/passwd")?)
}

export_task!(read_file);
