//! Recurses without bound. By default on the WebAssembly stack only (ending in
//! a stack-overflow trap); with `{"shadow": true}` each frame also keeps an
//! array on Rust's shadow stack in linear memory, which overflows first (ending
//! in an out-of-bounds memory trap).
use taskhost_sdk::{Context, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    #[serde(default)]
    shadow: bool,
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn native(n: u64) -> u64 {
    native(n.wrapping_add(1)).rotate_left(7) ^ n
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn shadow(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 16]);
    shadow(n + 1).wrapping_add(pad[n as usize % 16])
}

fn recursion(_ctx: &Context, input: Option<Input>) -> Result<u64> {
    Ok(if input.is_some_and(|i| i.shadow) {
        shadow(0)
    } else {
        native(0)
    })
}

export_task!(recursion);
