//! The one `wasmtime::Engine` of a process, and its epoch ticker.
//!
//! The engine is set up once for everything a run needs: the component model,
//! fuel metering (deterministic compute limits), epoch interruption (wall-clock
//! limits and cooperative yielding) and the pooling instance allocator (slots
//! for memories, tables and stacks are reserved up front, so instantiation is a
//! few microseconds).

use super::RuntimeConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Core instances, memories and tables a component may need per component
/// instance. A Rust component has a handful of core instances; a Python one
/// built by componentize-py 0.25 has 44 (CPython and its shared libraries,
/// dynamically linked, and their adapters). Instances are counted, not
/// reserved, so headroom here costs nothing.
const CORE_INSTANCES_PER_RUN: u32 = 64;
const MEMORIES_PER_RUN: u32 = 1;
const TABLES_PER_RUN: u32 = 4;
/// Bytes of each linear memory and table kept resident between runs.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

pub(crate) fn build(config: &RuntimeConfig) -> wasmtime::Result<Engine> {
    let slots = config.max_concurrent_runs.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_RUN))
        .total_memories(slots.saturating_mul(MEMORIES_PER_RUN))
        .total_tables(slots.saturating_mul(TABLES_PER_RUN))
        .total_stacks(slots)
        .max_core_instances_per_component(CORE_INSTANCES_PER_RUN)
        .max_memories_per_component(MEMORIES_PER_RUN)
        .max_tables_per_component(TABLES_PER_RUN)
        .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
        // A slot's pages stay mapped between runs and only the ones a run
        // dirtied are reset (found with the PAGEMAP_SCAN ioctl where the
        // kernel has it, else the lowest bytes are memset): no madvise, TLB
        // shootdown and page faults per run, which were most of a small
        // run's cost.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .pagemap_scan(wasmtime::Enabled::Auto);

    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        // One compile, one thread: a compile that spread over every core
        // (Cranelift's default) would take them all from other tenants'
        // compiles and runs; the node's compile slots share the cores out
        // instead (see `compile_queue`), and a compile's CPU time can be
        // measured on its thread and charged to its tenant.
        .parallel_compilation(false)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        .async_stack_size(config.max_wasm_stack + (256 << 10))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm)
}

/// Advances the engine's epoch on a dedicated OS thread.
///
/// It must not run on the tokio runtime: a busy runtime would delay the ticks
/// that interrupt busy guests (a deadlock when all workers run guests).
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: std::time::Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("taskhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
