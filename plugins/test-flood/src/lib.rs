//! Writes `mib` MiB (default 64) to stdout and stderr, then returns.
use std::io::Write;
use taskhost_sdk::{Context, Result, export_task};

#[derive(serde::Deserialize)]
struct Input {
    mib: Option<usize>,
}

fn flood(_ctx: &Context, input: Option<Input>) -> Result<&'static str> {
    let mib = input.and_then(|i| i.mib).unwrap_or(64);
    let line = [b'y'; 1023];
    for i in 0..(mib << 10) {
        let mut out: Box<dyn Write> = if i % 2 == 0 {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::stderr())
        };
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    Ok("flooded")
}

export_task!(flood);
