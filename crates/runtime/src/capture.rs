//! Bounded capture of a plugin's stdout and stderr.
//!
//! A plugin that floods its output must not take the node's memory with it. Each
//! stream keeps at most `limit` bytes; a write past the limit traps the run, which
//! then ends with `output_too_large` and keeps what was captured so far.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much a guest may write in one go before it asks again.
const WRITE_BUDGET: usize = 64 * 1024;

/// One captured stream; clones share the buffer.
#[derive(Clone)]
pub(crate) struct CapturePipe {
    name: &'static str,
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

/// The error a run traps with when it writes more than its log limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin wrote more than {limit} bytes to {stream}")]
pub(crate) struct CaptureOverflow {
    pub stream: &'static str,
    pub limit: usize,
}

impl CapturePipe {
    pub(crate) fn new(name: &'static str, limit: u64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        CapturePipe {
            name,
            inner: Arc::new(Mutex::new(Captured {
                limit,
                ..Captured::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A poisoned buffer is still a valid Vec; keep what it holds.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends what fits; reports an overflow if anything did not.
    fn append(&self, data: &[u8]) -> Result<(), CaptureOverflow> {
        let mut c = self.lock();
        let room = c.limit.saturating_sub(c.bytes.len());
        let take = room.min(data.len());
        c.bytes.extend_from_slice(&data[..take]);
        if take < data.len() {
            c.overflowed = true;
            return Err(CaptureOverflow {
                stream: self.name,
                limit: c.limit,
            });
        }
        Ok(())
    }

    /// What was captured, as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().bytes).into_owned()
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }
}

#[async_trait::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always offer room: a write past the limit traps, so the guest never
        // sees a closed stream (which Rust's `println!` would turn into a panic).
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
