//! Where a request's token is: the `Authorization` header, or the
//! console's session cookie.

use crate::api::error::ApiError;
use axum::http::{HeaderMap, header};

/// The console's session cookie: the token, HttpOnly, SameSite=Strict.
pub const SESSION_COOKIE: &str = "taskhost_session";
/// Its name over TLS (`Secure`, and a `__Host-` cookie cannot be set by
/// another host nor for another path).
pub const SECURE_SESSION_COOKIE: &str = "__Host-taskhost_session";
/// The header the console's script adds to its API calls.
pub const CONSOLE_HEADER: &str = "x-taskhost-console";

/// The token in the console's session cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE || *name == SECURE_SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Extract the token from `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let malformed = || ApiError::unauthorized("Authorization header must be `Bearer <token>`");
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::unauthorized("missing bearer token"));
    };
    if values.next().is_some() {
        return Err(malformed());
    }
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return Err(malformed());
    }
    Ok(token)
}
