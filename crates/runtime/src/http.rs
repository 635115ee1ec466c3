//! Outbound HTTP for plugins: `wasi:http/outgoing-handler`, sent through the
//! node's [`Egress`] under the run's grant and limits, and recorded.
//!
//! wasmtime-wasi-http implements the interface and hands each request to
//! [`HttpHooks::send_request`]. There, before anything leaves the node, the
//! request is counted against `limits.http_requests` and checked against the
//! network policy (scheme, the run's grant, the tenant's and the node's host
//! patterns); its body is read up to what is left of `limits.http_sent_bytes`.
//! It is then sent by the node's client, whose resolver refuses forbidden
//! addresses at connect time, with a timeout of `limits.http_timeout`. Time
//! in HTTP is the run's time: a run still waiting at its own deadline ends
//! `timed_out`. The response body is counted against
//! `limits.http_received_bytes` as the plugin reads it.
//!
//! Every request — sent, failed or refused — gets an [`HttpRecord`] in the
//! run's outcome. A refusal reaches the plugin as the `internal-error` error
//! code whose text starts with `taskhost refused the request:` and says why.

use super::bounds::{MAX_HTTP_FIELD_BYTES, MAX_HTTP_RECORDS, truncate_escaped};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use taskhost_model::HttpRecord;
use taskhost_model::Limits;
use taskhost_net::egress::{describe, refusal_in};
use taskhost_net::{Egress, HostPattern};
use tracing::Instrument;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Resources (streams, header maps, requests…) a run may hold at once.
pub(crate) const MAX_RESOURCES: usize = 512;
/// Bytes one header map may take in memory.
pub(crate) const MAX_FIELDS_BYTES: usize = 32 << 10;
/// Requests of one run sent at once; more wait for one of them to end.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

/// What a run may reach: the node's egress, whose policy applies, and the
/// hosts the run's schedule or request granted.
#[derive(Clone)]
pub struct RunNetwork {
    pub egress: Egress,
    pub tenant: String,
    pub allow: Vec<HostPattern>,
}

impl std::fmt::Debug for RunNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunNetwork")
            .field("tenant", &self.tenant)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

type SendFuture = Box<dyn Future<Output = Result<Exchange, Error>> + Send>;

/// A run's HTTP state: its grant, its budgets and its records.
pub(crate) struct HttpHooks {
    net: Option<RunNetwork>,
    limits: Limits,
    deadline: Instant,
    requests: u32,
    in_flight: Arc<tokio::sync::Semaphore>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    pub(crate) records: Records,
    /// The run's span (current when the run began): each request's span
    /// is its child, and its `traceparent` goes out with the request.
    run_span: tracing::Span,
}

impl HttpHooks {
    pub(crate) fn new(net: Option<RunNetwork>, limits: Limits, deadline: Instant) -> Self {
        HttpHooks {
            run_span: tracing::Span::current(),
            net,
            limits,
            deadline,
            requests: 0,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            sent: Arc::default(),
            received: Arc::default(),
            records: Records::default(),
        }
    }

    fn refuse(&self, index: Option<usize>, reason: String) -> SendFuture {
        self.records
            .update(index, |r| r.refused = Some(reason.clone()));
        Box::new(async move {
            Err(Error::InternalError(Some(format!(
                "taskhost refused the request: {reason}"
            ))))
        })
    }
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        match self.admit(&request) {
            Ok(sending) => Box::new(sending.send(request)),
            Err(refused) => refused,
        }
    }
}

impl HttpHooks {
    /// Records the request and checks it against the run's limits and
    /// grant and the network policy: what sending it needs, or the refusal.
    fn admit(&mut self, request: &http::Request<WasiBody>) -> Result<Sending, SendFuture> {
        let started = Instant::now();
        let uri = request.uri();
        let parsed = reqwest::Url::parse(&uri.to_string());
        // Recorded as the request will go: host and port from the URL as
        // parsed (never a user:password), the path without the query.
        let (host, path) = match &parsed {
            Ok(url) => (
                format!(
                    "{}:{}",
                    url.host_str().unwrap_or_default(),
                    url.port_or_known_default().unwrap_or(0)
                ),
                url.path().to_owned(),
            ),
            Err(_) => (String::new(), uri.path().to_owned()),
        };
        let index = self.records.push(HttpRecord {
            method: request.method().to_string(),
            host,
            path,
            ..HttpRecord::default()
        });
        if self.requests >= self.limits.http_requests {
            let limit = self.limits.http_requests;
            return Err(self.refuse(
                index,
                format!("the run may make {limit} requests (limits.http_requests)"),
            ));
        }
        self.requests += 1;
        let Some(net) = &self.net else {
            return Err(self.refuse(index, "this run is granted no hosts; name them in the schedule's or the run's \"network\": {\"allow\": [...]}".to_owned()));
        };
        let url = match parsed {
            Ok(url) => url,
            Err(e) => {
                return Err(self.refuse(index, format!("the request's URL is not valid: {e}")));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.refuse(
                index,
                "credentials in the URL are not allowed; send them in a header".into(),
            ));
        }
        if !uri.path().starts_with('/') {
            return Err(self.refuse(index, "the request's path must start with `/`".into()));
        }
        let policy = net.egress.policy();
        if let Err(refusal) = policy.check_url(&net.tenant, Some(&net.allow), &url) {
            return Err(self.refuse(index, refusal.to_string()));
        }
        if Instant::now() >= self.deadline {
            return Err(self.refuse(index, "the run is out of time".into()));
        }
        let span = tracing::info_span!(parent: &self.run_span, "http",
            method = %request.method(), host = url.host_str().unwrap_or_default(),
            path = url.path(), status = tracing::field::Empty);
        Ok(Sending {
            span,
            client: net.egress.client().clone(),
            // Not cut to what is left of the run: a request still waiting at
            // the run's deadline ends the run `timed_out`, as any other wait does.
            timeout: self.limits.http_timeout,
            sent: self.sent.clone(),
            sent_limit: self.limits.http_sent_bytes,
            in_flight: self.in_flight.clone(),
            records: self.records.clone(),
            index,
            received: Budget {
                used: self.received.clone(),
                limit: self.limits.http_received_bytes,
                records: self.records.clone(),
                index,
            },
            started,
        })
    }
}

/// An admitted request: what sending it needs of its run.
struct Sending {
    span: tracing::Span,
    client: reqwest::Client,
    timeout: std::time::Duration,
    sent: Arc<AtomicU64>,
    sent_limit: u64,
    in_flight: Arc<tokio::sync::Semaphore>,
    records: Records,
    index: Option<usize>,
    received: Budget,
    started: Instant,
}

type Exchange = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

impl Sending {
    async fn send(self, request: http::Request<WasiBody>) -> Result<Exchange, Error> {
        // A few requests at a time per run; the others wait their turn (and
        // the run's timeout bounds the wait).
        let Ok(_slot) = self.in_flight.clone().acquire_owned().await else {
            return Err(Error::InternalError(Some("the run is ending".into())));
        };
        let (parts, body) = request.into_parts();
        let body = self.read_body(body).await?;
        let request = match reqwest::Request::try_from(http::Request::from_parts(parts, body)) {
            Ok(request) => request,
            Err(e) => return Err(self.failed(e.to_string())),
        };
        let response = self.exchange(request).await?;
        let response: http::Response<reqwest::Body> = response.into();
        let received = self.received;
        let response = response.map(|body| {
            Counted {
                inner: Box::pin(body),
                budget: received,
            }
            .boxed_unsync()
        });
        let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
        Ok((response, io))
    }

    fn failed(&self, error: String) -> Error {
        self.records
            .update(self.index, |r| r.error = Some(error.clone()));
        Error::InternalError(Some(error))
    }

    /// The request's body, counted frame by frame against the run's whole
    /// budget, so requests whose bodies are read at the same time share it.
    async fn read_body(&self, mut body: WasiBody) -> Result<Bytes, Error> {
        let mut buffer = Vec::new();
        let mut counted = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.failed(e.to_string()))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            let n = data.len() as u64;
            counted += n;
            if self.sent.fetch_add(n, Ordering::Relaxed) + n > self.sent_limit {
                // Not sent, so not spent: the budget is for what leaves.
                self.sent.fetch_sub(counted, Ordering::Relaxed);
                let limit = self.sent_limit;
                let reason =
                    format!("the request bodies are over limits.http_sent_bytes ({limit} bytes)");
                self.records
                    .update(self.index, |r| r.refused = Some(reason.clone()));
                let refused = format!("taskhost refused the request: {reason}");
                return Err(Error::InternalError(Some(refused)));
            }
            buffer.extend_from_slice(data);
        }
        let sent = buffer.len() as u64;
        self.records.update(self.index, |r| r.sent_bytes = sent);
        Ok(Bytes::from(buffer))
    }

    /// Sends the request through the node's client and records the answer.
    async fn exchange(&self, mut request: reqwest::Request) -> Result<reqwest::Response, Error> {
        *request.timeout_mut() = Some(self.timeout);
        taskhost_net::trace::inject(&self.span, request.headers_mut());
        let response = self
            .client
            .execute(request)
            .instrument(self.span.clone())
            .await;
        if let Ok(response) = &response {
            self.span.record("status", response.status().as_u16());
        }
        let elapsed = elapsed_ms(self.started);
        let e = match response {
            Ok(response) => {
                self.records.update(self.index, |r| {
                    r.status = Some(response.status().as_u16());
                    r.duration_ms = elapsed;
                });
                return Ok(response);
            }
            Err(e) => e,
        };
        let refused = refusal_in(&e).is_some();
        let text = describe(&e);
        self.records.update(self.index, |r| {
            r.duration_ms = elapsed;
            match refused {
                true => r.refused = Some(text.clone()),
                false => r.error = Some(text.clone()),
            }
        });
        Err(match refused {
            true => Error::InternalError(Some(format!("taskhost refused the request: {text}"))),
            false if e.is_timeout() => Error::ConnectionReadTimeout,
            false => Error::InternalError(Some(text)),
        })
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The run's HTTP records, shared with the requests in flight.
#[derive(Clone, Default)]
pub(crate) struct Records(Arc<Mutex<RecordList>>);

#[derive(Default)]
struct RecordList {
    list: Vec<HttpRecord>,
    unrecorded: u64,
}

impl Records {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecordList> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a record; `None` when the run already has
    /// [`MAX_HTTP_RECORDS`] (it is then only counted).
    fn push(&self, mut record: HttpRecord) -> Option<usize> {
        let mut records = self.lock();
        if records.list.len() >= MAX_HTTP_RECORDS {
            records.unrecorded += 1;
            return None;
        }
        truncate_escaped(&mut record.host, MAX_HTTP_FIELD_BYTES);
        truncate_escaped(&mut record.path, MAX_HTTP_FIELD_BYTES);
        records.list.push(record);
        Some(records.list.len() - 1)
    }

    fn update(&self, index: Option<usize>, change: impl FnOnce(&mut HttpRecord)) {
        let Some(index) = index else { return };
        if let Some(record) = self.lock().list.get_mut(index) {
            change(record);
            for text in [&mut record.refused, &mut record.error]
                .into_iter()
                .flatten()
            {
                truncate_escaped(text, MAX_HTTP_FIELD_BYTES);
            }
        }
    }

    /// The records and the count of those not kept.
    pub(crate) fn take(&self) -> (Vec<HttpRecord>, u64) {
        let mut records = self.lock();
        (std::mem::take(&mut records.list), records.unrecorded)
    }
}

/// What a response body may still bring, over the whole run.
struct Budget {
    used: Arc<AtomicU64>,
    limit: u64,
    records: Records,
    index: Option<usize>,
}

/// A response body that counts what the plugin reads and stops at the budget.
struct Counted {
    inner: Pin<Box<reqwest::Body>>,
    budget: Budget,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match self.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                let text = describe(&e);
                self.budget
                    .records
                    .update(self.budget.index, |r| r.error = Some(text.clone()));
                let error = if e.is_timeout() {
                    Error::ConnectionReadTimeout
                } else {
                    Error::InternalError(Some(text))
                };
                return Poll::Ready(Some(Err(error)));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
        let budget = &self.budget;
        let total = budget.used.fetch_add(n, Ordering::Relaxed) + n;
        if total > budget.limit {
            let limit = budget.limit;
            budget.records.update(budget.index, |r| {
                r.error = Some(format!(
                    "the response bodies are over limits.http_received_bytes ({limit} bytes)"
                ));
            });
            return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(limit)))));
        }
        budget
            .records
            .update(budget.index, |r| r.received_bytes += n);
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
