//! A small blocking HTTP client for plugins, on `wasi:http/outgoing-handler`.
//!
//! The host sends the request (it speaks HTTP and TLS; this module only
//! fills in the request's parts and reads the response's), so a plugin
//! carries no HTTP or TLS code. A run reaches only the hosts its schedule
//! or run grants; a refused request fails with an [`HttpError`] whose text
//! says why (`taskhost refused the request: ...`).
//!
//! ```ignore
//! use taskhost_sdk::http;
//!
//! let response = http::post("https://hooks.example.com/notify")
//!     .json(&serde_json::json!({"text": "done"}))?
//!     .send()?;
//! if !response.is_success() {
//!     return Err(taskhost_sdk::Error::retryable(format!("got {}", response.status)));
//! }
//! ```
//!
//! Redirects are followed (up to 5 by default, see
//! [`Request::max_redirects`]); each one is a new request the host checks
//! against the grant again.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

/// Bytes written to the request body per call (the stream's usual budget).
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// A request that failed: refused by the host's policy, or no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InternalError(Some(message)) => HttpError(message),
            other => HttpError(format!("HTTP error: {other:?}")),
        }
    }
}

/// A GET request for `url`.
pub fn get(url: &str) -> Request {
    Request::new("GET", url)
}

/// A POST request for `url`.
pub fn post(url: &str) -> Request {
    Request::new("POST", url)
}

/// A PUT request for `url`.
pub fn put(url: &str) -> Request {
    Request::new("PUT", url)
}

/// A DELETE request for `url`.
pub fn delete(url: &str) -> Request {
    Request::new("DELETE", url)
}

/// An HTTP request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_redirects: u8,
}

/// A response, its body read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Request {
    /// A request with any method (`GET`, `PATCH`, …).
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            max_redirects: 5,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// How many redirects to follow (0: none; the 3xx response is returned).
    pub fn max_redirects(mut self, n: u8) -> Self {
        self.max_redirects = n;
        self
    }

    /// Sends it and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let mut request = self;
        let mut left = request.max_redirects;
        loop {
            let response = send_once(&request)?;
            let location = response.header("location").map(str::to_owned);
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            match location {
                Some(location) if redirect && left > 0 => {
                    left -= 1;
                    let next = resolve(&request.url, &location)?;
                    // Credentials go to the origin they were meant for only.
                    if origin(&next) != origin(&request.url) {
                        request.headers.retain(|(n, _)| {
                            !matches!(
                                n.as_str(),
                                "authorization" | "cookie" | "proxy-authorization"
                            )
                        });
                    }
                    request.url = next;
                    // 303 (and, as browsers do, 301/302 after a POST) become GETs.
                    if response.status == 303
                        || (matches!(response.status, 301 | 302) && request.method == "POST")
                    {
                        request.method = "GET".into();
                        request.body.clear();
                        request.headers.retain(|(n, _)| n != "content-type");
                    }
                }
                _ => return Ok(response),
            }
        }
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response if its status is 2xx, else an error naming the status.
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(HttpError(format!("{} answered {}", self.url, self.status)))
        }
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError(format!("invalid JSON: {e}")))
    }
}

/// The parts of an absolute URL the request needs.
struct Target<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_and_query: String,
}

fn split_url(url: &str) -> Result<Target<'_>, HttpError> {
    let bad = || HttpError(format!("{url:?} is not an absolute http(s) URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(bad()),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() {
        return Err(bad());
    }
    let tail = rest[end..].split('#').next().unwrap_or("");
    let path_and_query = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    Ok(Target {
        scheme,
        authority,
        path_and_query,
    })
}

/// The scheme and authority of an absolute URL, lower-cased.
fn origin(url: &str) -> String {
    match split_url(url) {
        Ok(t) => format!("{:?}://{}", t.scheme, t.authority.to_ascii_lowercase()),
        Err(_) => String::new(),
    }
}

/// `location` made absolute against `base`.
fn resolve(base: &str, location: &str) -> Result<String, HttpError> {
    let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(location.to_owned());
    }
    let target = split_url(base)?;
    let scheme = match target.scheme {
        Scheme::Http => "http",
        _ => "https",
    };
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{}{location}", target.authority));
    }
    let path = target.path_and_query.split('?').next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    Ok(format!("{scheme}://{}{dir}{location}", target.authority))
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

fn send_once(request: &Request) -> Result<Response, HttpError> {
    let target = split_url(&request.url)?;
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    let headers =
        Fields::from_list(&entries).map_err(|e| HttpError(format!("invalid header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let refused = |what: &str| HttpError(format!("invalid request {what}"));
    outgoing
        .set_method(&method(&request.method))
        .map_err(|()| refused("method"))?;
    outgoing
        .set_scheme(Some(&target.scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(target.authority))
        .map_err(|()| refused("authority"))?;
    outgoing
        .set_path_with_query(Some(&target.path_and_query))
        .map_err(|()| refused("path"))?;
    let body = outgoing.body().map_err(|()| refused("body"))?;
    let future = outgoing_handler::handle(outgoing, None)?;
    {
        let stream = body.write().map_err(|()| refused("body stream"))?;
        for chunk in request.body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| HttpError(format!("sending the body failed: {e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None)?;
    let incoming = loop {
        match future.get() {
            Some(result) => break result,
            None => future.subscribe().block(),
        }
    };
    let response = incoming.map_err(|()| HttpError("the response was already taken".into()))??;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming_body = response
        .consume()
        .map_err(|()| HttpError("the response body was already taken".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming_body
            .stream()
            .map_err(|()| HttpError("the response body stream was already taken".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(HttpError(format!(
                        "reading the response failed: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }
    IncomingBody::finish(incoming_body);
    Ok(Response {
        status,
        headers,
        body,
        url: request.url.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_resolves_urls() {
        let t = split_url("https://api.example.com:8443/a/b?x=1#frag").expect("url");
        assert_eq!(t.authority, "api.example.com:8443");
        assert_eq!(t.path_and_query, "/a/b?x=1");
        assert_eq!(split_url("http://h").expect("url").path_and_query, "/");
        assert_eq!(split_url("http://h?q").expect("url").path_and_query, "/?q");
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("/relative").is_err());
        let base = "https://h/a/b?x";
        assert_eq!(resolve(base, "/c").expect("r"), "https://h/c");
        assert_eq!(resolve(base, "c").expect("r"), "https://h/a/c");
        assert_eq!(resolve(base, "//o/p").expect("r"), "https://o/p");
        assert_eq!(resolve(base, "http://o/p").expect("r"), "http://o/p");
        assert_eq!(
            resolve(base, "/login?next=https://x").expect("r"),
            "https://h/login?next=https://x"
        );
        assert_ne!(origin("https://h/a"), origin("http://h/a"));
        assert_eq!(origin("https://H/a"), origin("https://h/b?c"));
    }
}
