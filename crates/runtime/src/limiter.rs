//! The memory limiter that enforces a run's `limits.memory_bytes`: wasmtime
//! consults it before each memory or table growth.

/// Enforces the memory limit of one run and records its peak memory.
///
/// Growth beyond the limit is refused with a trap (rather than a failed
/// `memory.grow`), so the run ends at once with `memory_limit` instead of the
/// guest's allocator aborting with an unrelated-looking trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of linear memory now in use, over all memories of the run.
    current: usize,
    pub(crate) peak: usize,
    pub(crate) exceeded: bool,
}

/// The error a run traps with when it asks for more memory than its limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin tried to grow its memory to {wanted} bytes, over its limit of {limit} bytes")]
pub(crate) struct MemoryLimitExceeded {
    pub wanted: usize,
    pub limit: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            current: 0,
            peak: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current - current.min(self.current) + desired;
        if total > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                wanted: total,
                limit: self.limit,
            }));
        }
        self.current = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}
