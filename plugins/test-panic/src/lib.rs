//! Panics with a known message.
use taskhost_sdk::{Context, Result, export_task};

fn panics(_ctx: &Context, _input: serde_json::Value) -> Result<()> {
    panic!("the plugin gave up on purpose");
}

export_task!(panics);
