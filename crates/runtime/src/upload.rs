//! Uploads: a plugin compiled for a tenant, admitted fairly (see
//! [`crate::compile_queue`]) and charged to its compile budget.

use super::compile_queue::CompileRefusal;
use super::{InvalidPlugin, Plugin, Runtime};
use std::time::Duration;

/// Why an upload produced no plugin.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Not compiled now: the tenant's queue is full or its budget spent.
    #[error(transparent)]
    Refused(#[from] CompileRefusal),
    /// Compiled (or checked) and refused.
    #[error(transparent)]
    Invalid(#[from] InvalidPlugin),
    /// The compiling thread failed (a bug, not the plugin's fault).
    #[error("the compile task failed: {0}")]
    Failed(String),
}

impl Runtime {
    /// Validates and compiles `wasm` for `tenant`, whose compile budget is
    /// `budget` CPU-seconds per hour: waits (async, at most `max_wait`, then
    /// refused as busy) for a fair compile slot, then compiles on a
    /// blocking thread, always (never from a cache: the
    /// time an upload takes must not tell whether another tenant uploaded
    /// the same bytes), and charges the CPU time it took, accepted or not.
    pub async fn upload(
        &self,
        tenant: &str,
        budget: u64,
        wasm: bytes::Bytes,
        max_wait: Duration,
    ) -> Result<Plugin, UploadError> {
        let admitted = tokio::time::timeout(max_wait, self.inner.uploads.admit(tenant, budget));
        let ticket = match admitted.await {
            Ok(ticket) => ticket?,
            Err(_) => {
                return Err(UploadError::Refused(CompileRefusal::Busy {
                    waiting: self.inner.uploads.usage().1,
                    retry_after: max_wait,
                }));
            }
        };
        let runtime = self.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let start = thread_cpu();
            let result = runtime.prepare_with(&wasm, false);
            (result, thread_cpu().saturating_sub(start))
        })
        .await;
        let (result, took) = compiled.map_err(|e| UploadError::Failed(e.to_string()))?;
        ticket.charge(took, budget);
        Ok(result?.0)
    }

    /// Uploads compiling now on this node and waiting for a slot.
    pub fn upload_usage(&self) -> (usize, usize) {
        self.inner.uploads.usage()
    }

    /// CPU-seconds of `tenant`'s compiles still counted against its budget.
    pub fn compile_seconds_charged(&self, tenant: &str) -> f64 {
        self.inner.uploads.charged(tenant)
    }
}

/// CPU time of the calling thread (compiles run on one thread).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux and macOS libc provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
