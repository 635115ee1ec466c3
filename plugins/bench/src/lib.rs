//! The benchmark's no-op task (`taskhost-bench`, workloads A and B): reads
//! the wall clock first thing and returns it, as microseconds since the Unix
//! epoch, so that the benchmark can measure from just before its POST to the
//! plugin's entry. Its input is ignored.
use taskhost_sdk::{Context, Result, export_task};

fn bench(_ctx: &Context, _input: serde::de::IgnoredAny) -> Result<u64> {
    let entered = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Ok(entered)
}

export_task!(bench);
