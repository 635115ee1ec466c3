//! Loops forever: must be stopped by the fuel limit or the timeout.
use taskhost_sdk::{Context, Result, export_task};

fn spin(_ctx: &Context, _input: serde_json::Value) -> Result<()> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

export_task!(spin);
