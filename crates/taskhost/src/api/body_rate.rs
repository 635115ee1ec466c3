//! A minimum rate for request bodies.
//!
//! The request timeout bounds how long any request may take; it does not
//! stop a client from holding a connection (and the memory of a half-read
//! body) for that whole time by sending a byte now and then. Every request
//! body is read through [`MinRate`]: after a grace of [`GRACE`], it must
//! have arrived at [`MIN_BYTES_PER_SEC`] on average, or reading it fails
//! with [`BodyTooSlow`], which the API answers 408 `body_too_slow`.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a body may take before its rate is checked.
pub const GRACE: Duration = Duration::from_secs(10);
/// The slowest a body may arrive, on average, after [`GRACE`].
pub const MIN_BYTES_PER_SEC: u64 = 1024;

/// A request body that arrived too slowly.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived slower than {MIN_BYTES_PER_SEC} bytes a second (after the first {} s); send it faster",
    GRACE.as_secs()
)]
pub struct BodyTooSlow;

/// A body that fails once it falls below the minimum rate.
pub struct MinRate {
    inner: Body,
    started: Instant,
    received: u64,
    /// When the body is too slow unless more arrives first.
    cut: Pin<Box<Sleep>>,
}

impl MinRate {
    fn new(inner: Body) -> MinRate {
        let started = Instant::now();
        MinRate {
            inner,
            started,
            received: 0,
            cut: Box::pin(tokio::time::sleep_until(started + GRACE)),
        }
    }

    /// When the bytes received so far stop being enough.
    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / MIN_BYTES_PER_SEC as f64);
        self.started + GRACE + earned
    }
}

impl http_body::Body for MinRate {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    this.cut.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.cut.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow)))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads the request's body at a minimum rate (middleware).
pub async fn min_rate(req: Request) -> Request {
    req.map(|body| {
        if http_body::Body::is_end_stream(&body) {
            body
        } else {
            Body::new(MinRate::new(body))
        }
    })
}

/// Whether `error` (or what caused it) is a [`BodyTooSlow`].
pub fn too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        cause = e.source();
    }
    false
}
