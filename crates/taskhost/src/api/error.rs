//! Uniform error responses for the REST API.
//!
//! Every failing handler returns an [`ApiError`], which renders as
//!
//! ```json
//! {"error": {"code": "not_found", "message": "schedule not found", "details": {...}}}
//! ```
//!
//! `code` is a stable, machine-readable `snake_case` identifier that clients may
//! match on; `message` is human-readable and may change; `details` is optional
//! structured context and is omitted when it is `null`. A 401 response always
//! carries `WWW-Authenticate: Bearer`.
//!
//! Axum's own `Json` extractor answers malformed bodies with plain-text
//! responses, so this module provides a drop-in [`Json`] wrapper whose
//! rejections are [`ApiError`]s as well:
//!
//! | cause                                              | status | code                     |
//! |----------------------------------------------------|--------|--------------------------|
//! | JSON syntax error, wrong type, missing/unknown field | 400  | `invalid_json`           |
//! | missing or non-JSON `Content-Type`                  | 415    | `unsupported_media_type` |
//! | body over the configured limit                      | 413    | `payload_too_large`      |
//! | other body read failure                             | 400    | `invalid_body`           |
//!
//! The serde message (e.g. ``unknown field `foo`, expected one of ...``) is kept
//! verbatim in `message`, so clients see exactly what was wrong.

use std::fmt;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskhost_model::error::ErrorCode;

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error response: HTTP status plus the JSON error envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status of the response: the code's, unless said otherwise.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable description.
    pub message: String,
    /// Structured context; omitted from the body when `null`.
    pub details: Value,
    /// The store failed (counted as a store error by the metrics layer).
    store_failed: bool,
}

/// Left on every error response for the metrics layer to count.
#[derive(Debug, Clone, Copy)]
pub struct ErrorMark {
    pub code: ErrorCode,
    pub store_failed: bool,
}

impl ApiError {
    /// An error with `code`, answered with the code's HTTP status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            details: Value::Null,
            store_failed: false,
        }
    }

    /// Answers with `status` instead of the code's own.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Marks the error as the store's failure.
    pub(crate) fn store_failed(mut self) -> Self {
        self.store_failed = true;
        self
    }

    /// 401 `unauthorized`; the response carries `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404 `not_found` with message `"{what} not found"`, e.g. `not_found("schedule")`.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }

    /// 500 `internal`. The caller is responsible for logging the cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// 503 `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// 429: come back after `retry_after_s` seconds (sent as `Retry-After`).
    pub fn too_many_requests(
        code: ErrorCode,
        message: impl Into<String>,
        retry_after_s: u64,
    ) -> Self {
        Self::new(code, message)
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_details(serde_json::json!({ "retry_after_s": retry_after_s }))
    }

    /// Attach structured details (replaces any previous details).
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Names the request field at fault in `details.field`.
    #[must_use]
    pub fn on_field(self, field: &str) -> Self {
        self.with_details(serde_json::json!({ "field": field }))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Value::is_null")]
    details: &'a Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let envelope = Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
                details: &self.details,
            },
        };
        let mut response = (self.status, axum::Json(envelope)).into_response();
        response.extensions_mut().insert(ErrorMark {
            code: self.code,
            store_failed: self.store_failed,
        });
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.details.get("retry_after_s").and_then(Value::as_u64)
            && self.status == StatusCode::TOO_MANY_REQUESTS
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        response
    }
}

/// Text of the error underneath an axum rejection (i.e. without axum's generic prefix).
fn source_text(err: &dyn std::error::Error) -> String {
    match err.source() {
        Some(inner) => inner.to_string(),
        None => err.to_string(),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::new(
                ErrorCode::InvalidJson,
                format!("invalid JSON body: {}", source_text(&e)),
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                ErrorCode::InvalidJson,
                format!("malformed JSON body: {}", source_text(&e)),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected request with `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::payload_too_large("request body is too large")
            }
            JsonRejection::BytesRejection(e) if super::body_rate::too_slow(&e) => ApiError::new(
                ErrorCode::BodyTooSlow,
                super::body_rate::BodyTooSlow.to_string(),
            ),
            JsonRejection::BytesRejection(e) => ApiError::new(
                ErrorCode::InvalidBody,
                format!("failed to read request body: {}", source_text(&e)),
            ),
            // `JsonRejection` is non-exhaustive: keep axum's status, normalise the shape.
            other => {
                let status = other.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
                    s if s.is_server_error() => ErrorCode::Internal,
                    _ => ErrorCode::InvalidJson,
                };
                ApiError::new(code, other.body_text()).with_status(status)
            }
        }
    }
}

/// JSON body extractor and response type.
///
/// Behaves like [`axum::Json`] (same content-type check, same body limit, same
/// serialization) but rejects with an [`ApiError`] instead of plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        from_value(value).map(Json)
    }
}

/// A JSON body, already parsed, as `T` (400 `invalid_json` naming the
/// field at fault).
pub fn from_value<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiError> {
    whole_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let (path, inner) = (e.path().to_string(), e.into_inner());
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON body: {at}{inner}"),
        )
    })
}

/// `2.0` is `2`: a number with no fraction is read as the integer it is, as
/// JSON Schema's `integer` says (some clients write every number as a float).
fn whole_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query-string extractor whose rejections are [`ApiError`]s (400 `invalid_query`).
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::InvalidQuery,
                rejection.body_text(),
            )),
        }
    }
}

/// Maps a rejected raw body (too large, unreadable) to an [`ApiError`].
pub fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(format!(
            "the body is larger than this server accepts: {}",
            rejection.body_text()
        ))
    } else if super::body_rate::too_slow(&rejection) {
        ApiError::new(
            ErrorCode::BodyTooSlow,
            super::body_rate::BodyTooSlow.to_string(),
        )
    } else {
        ApiError::new(ErrorCode::InvalidBody, rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::{Body as AxBody, to_bytes};
    use axum::extract::DefaultBodyLimit;
    use axum::http::Request as HttpRequest;
    use axum::routing::post;
    use serde::Deserialize;
    use serde_json::json;
    use tower::ServiceExt;

    async fn body_json(resp: Response) -> Value {
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }

    #[tokio::test]
    async fn renders_envelope_without_null_details() {
        let resp = ApiError::not_found("schedule").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json",);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            body_json(resp).await,
            json!({"error": {"code": "not_found", "message": "schedule not found"}})
        );
    }

    #[tokio::test]
    async fn renders_details_and_codes() {
        let resp = ApiError::new(ErrorCode::ScheduleExists, "already there")
            .with_details(json!({"id": "s1"}))
            .into_response();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        assert_eq!(
            body_json(resp).await,
            json!({"error": {"code": "schedule_exists", "message": "already there", "details": {"id": "s1"}}})
        );

        let cases = [
            (
                ApiError::new(ErrorCode::InvalidQuery, "m"),
                400,
                "invalid_query",
            ),
            (ApiError::new(ErrorCode::BadCron, "m"), 422, "bad_cron"),
            (ApiError::forbidden("m"), 403, "forbidden"),
            (ApiError::payload_too_large("m"), 413, "payload_too_large"),
            (ApiError::internal("m"), 500, "internal"),
            (ApiError::unavailable("m"), 503, "unavailable"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status.as_u16(), status);
            assert_eq!(err.code.as_str(), code);
        }
    }

    #[tokio::test]
    async fn unauthorized_sets_www_authenticate() {
        let resp = ApiError::unauthorized("missing bearer token").into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        name: String,
        count: u32,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/",
                post(|Json(input): Json<Input>| async move { Json(input) }),
            )
            .layer(DefaultBodyLimit::max(64))
    }

    async fn send(content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut req = HttpRequest::post("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(AxBody::from(body.to_owned())).expect("request");
        let resp = app().oneshot(req).await.expect("infallible");
        let status = resp.status();
        (status, body_json(resp).await)
    }

    const JSON_CT: Option<&str> = Some("application/json");

    #[tokio::test]
    async fn json_ok_roundtrip() {
        let (status, body) = send(JSON_CT, r#"{"name":"a","count":2}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"name": "a", "count": 2}));
    }

    #[tokio::test]
    async fn json_unknown_field() {
        let (status, body) = send(JSON_CT, r#"{"name":"a","count":2,"foo":1}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_json");
        let msg = body["error"]["message"].as_str().expect("message");
        assert!(
            msg.contains("unknown field `foo`, expected `name` or `count`"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn json_wrong_type_and_missing_field() {
        let (status, body) = send(JSON_CT, r#"{"name":"a","count":"x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_json");
        let msg = body["error"]["message"].as_str().expect("message");
        assert!(msg.contains("count: invalid type: string \"x\""), "{msg}");

        let (status, body) = send(JSON_CT, r#"{"name":"a"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let msg = body["error"]["message"].as_str().expect("message");
        assert!(msg.contains("missing field `count`"), "{msg}");
    }

    #[tokio::test]
    async fn json_syntax_error() {
        let (status, body) = send(JSON_CT, r#"{"name":"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_json");
        let msg = body["error"]["message"].as_str().expect("message");
        assert!(
            msg.starts_with("malformed JSON body: ") && msg.contains("EOF while parsing"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn json_content_type() {
        for ct in [None, Some("text/plain")] {
            let (status, body) = send(ct, r#"{"name":"a","count":2}"#).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(body["error"]["code"], "unsupported_media_type");
        }
        let (status, _) = send(
            Some("application/problem+json"),
            r#"{"name":"a","count":2}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn json_too_large() {
        let big = format!(r#"{{"name":"{}","count":1}}"#, "a".repeat(200));
        let (status, body) = send(JSON_CT, &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
}
