//! The error codes of the API, one type for every layer that refuses
//! something: a code is a stable `snake_case` name clients may match on, and
//! the HTTP status it is answered with.
//!
//! A refusal deeper down (a policy check, a quota, the store) carries its
//! code, so the API never compares strings to decide a status.

use serde::Serialize;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = ($name:literal, $status:literal),)*) => {
        /// A stable, machine-readable error code and its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as JSON and the metrics spell it.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The HTTP status the API answers it with.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }
        }
    };
}

codes! {
    /// Malformed JSON, a wrong type, a missing or unknown field.
    InvalidJson = ("invalid_json", 400),
    /// The body could not be read.
    InvalidBody = ("invalid_body", 400),
    /// An `Idempotency-Key` header that is empty, too long or not visible ASCII.
    InvalidIdempotencyKey = ("invalid_idempotency_key", 400),
    /// The body arrived slower than the server's minimum rate.
    BodyTooSlow = ("body_too_slow", 408),
    /// A query parameter is malformed or unknown.
    InvalidQuery = ("invalid_query", 400),
    /// A page cursor that no page gave.
    InvalidCursor = ("invalid_cursor", 400),
    /// A name outside its allowed characters or length.
    InvalidName = ("invalid_name", 400),
    /// A multipart upload without its parts.
    InvalidMultipart = ("invalid_multipart", 400),
    /// An upload without a body.
    EmptyBody = ("empty_body", 400),
    /// No valid credentials.
    Unauthorized = ("unauthorized", 401),
    /// A hook request whose signature or token does not verify, or that
    /// lacks the headers its hook's mode needs.
    BadSignature = ("bad_signature", 401),
    /// A signed hook request whose timestamp is too far from now.
    StaleTimestamp = ("stale_timestamp", 401),
    /// Valid credentials without the scope or role the operation needs.
    Forbidden = ("forbidden", 403),
    /// No such resource in the caller's tenant.
    NotFound = ("not_found", 404),
    /// The route does not take that method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// A unique name is taken.
    Conflict = ("conflict", 409),
    /// The resource is still used by another.
    InUse = ("in_use", 409),
    /// A hook request whose `webhook-id` was taken already (a replay).
    WebhookReplayed = ("webhook_replayed", 409),
    /// The execution already ended.
    AlreadyFinished = ("already_finished", 409),
    /// Only a finished execution can be re-run.
    NotFinished = ("not_finished", 409),
    /// A schedule of that name exists.
    ScheduleExists = ("schedule_exists", 409),
    /// The alias is taken by a version, or past the alias limit.
    AliasTaken = ("alias_taken", 409),
    /// `latest` cannot be moved.
    AliasReserved = ("alias_reserved", 409),
    /// The body is over its size limit.
    PayloadTooLarge = ("payload_too_large", 413),
    /// The body is not of a type the route takes.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// A tenant quota would be exceeded (429 for the queue, which drains).
    QuotaExceeded = ("quota_exceeded", 422),
    /// The plugin is not a valid plugin.
    InvalidPlugin = ("invalid_plugin", 422),
    /// An upload that is not WebAssembly.
    NotWasm = ("not_wasm", 422),
    /// A core module, not a component.
    CoreModule = ("core_module", 422),
    MalformedComponent = ("malformed_component", 422),
    /// It does not export the world's `run`, or its types differ.
    WrongWorld = ("wrong_world", 422),
    WrongWorldVersion = ("wrong_world_version", 422),
    /// It imports something the plugin is not granted.
    ImportDenied = ("import_denied", 422),
    /// It imports something the host does not provide.
    ImportUnknown = ("import_unknown", 422),
    /// Too costly to compile (size, functions, …).
    TooCostly = ("too_costly", 422),
    /// No plugin of that id or reference in the tenant.
    UnknownPlugin = ("unknown_plugin", 422),
    /// Neither or both of `plugin_id` and `plugin`.
    InvalidPluginRef = ("invalid_plugin_ref", 422),
    InvalidTrigger = ("invalid_trigger", 422),
    /// A cron expression that does not parse.
    BadCron = ("bad_cron", 422),
    InvalidRetry = ("invalid_retry", 422),
    InvalidPriority = ("invalid_priority", 422),
    InvalidLimits = ("invalid_limits", 422),
    /// A per-run limit above the node's cap.
    LimitExceedsCap = ("limit_exceeds_cap", 422),
    InvalidRetention = ("invalid_retention", 422),
    InvalidSecrets = ("invalid_secrets", 422),
    InvalidSecretName = ("invalid_secret_name", 422),
    SecretTooLarge = ("secret_too_large", 422),
    InvalidNetwork = ("invalid_network", 422),
    /// A host the tenant's or the node's network policy does not allow.
    NetworkNotAllowed = ("network_not_allowed", 422),
    InvalidNotify = ("invalid_notify", 422),
    InvalidCatchUp = ("invalid_catch_up", 422),
    InvalidJitter = ("invalid_jitter", 422),
    InvalidBounds = ("invalid_bounds", 422),
    InvalidOverlap = ("invalid_overlap", 422),
    InvalidDescription = ("invalid_description", 422),
    InvalidBatch = ("invalid_batch", 422),
    InvalidWait = ("invalid_wait", 422),
    InvalidWindow = ("invalid_window", 422),
    InvalidCount = ("invalid_count", 422),
    BackfillTooLarge = ("backfill_too_large", 422),
    /// An `Idempotency-Key` used within its window for another request.
    IdempotencyKeyReused = ("idempotency_key_reused", 422),
    /// A concurrency key or limit out of range, or an input without the key.
    InvalidConcurrency = ("invalid_concurrency", 422),
    /// A rate-limit key, limit or period out of range, or an input without the key.
    InvalidRateLimit = ("invalid_rate_limit", 422),
    /// A debounce key or period out of range, or an input without the key.
    InvalidDebounce = ("invalid_debounce", 422),
    /// An event name, id or filter outside what is allowed.
    InvalidEvent = ("invalid_event", 422),
    /// A token id (`jti`) to revoke that is empty, too long or not printable.
    InvalidJti = ("invalid_jti", 422),
    /// An API key's scopes (unknown, or more than its maker holds) or expiry.
    InvalidApiKey = ("invalid_api_key", 422),
    /// Too many requests: the tenant's request rate.
    RateLimited = ("rate_limited", 429),
    /// The tenant's uploads waiting to compile are at their most.
    CompileBusy = ("compile_busy", 429),
    /// The server failed; the log has the cause.
    Internal = ("internal", 500),
    /// The store or a dependency is away, or the request took too long.
    Unavailable = ("unavailable", 503),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
