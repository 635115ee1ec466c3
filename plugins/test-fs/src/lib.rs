//! Tries to read a host file. It imports wasi:filesystem, which links, but a
//! run has no preopened directory: the read fails and nothing is read.
use taskhost_sdk::{Context, Result, export_task};

fn read_file(_ctx: &Context, _input: serde_json::Value) -> Result<String> {
    Ok(std::fs::read_to_string("/etc/passwd")?)
}

export_task!(read_file);
