//! Allocates (and touches) memory in 1 MiB chunks until the memory limit stops it.
use taskhost_sdk::{Context, Result, export_task};

fn memhog(_ctx: &Context, _input: serde_json::Value) -> Result<usize> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

export_task!(memhog);
