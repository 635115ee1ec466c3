//! Time, in one place: saturating arithmetic on instants, the one parser
//! and printer of durations, and the serde formats every record, the API,
//! the config file and the CLI use.
//!
//! - durations as humantime strings: `"5s"`, `"250ms"`, `"1h 30m"`
//!   ([`parse_duration`], [`human`]; serde: [`duration`], [`option_duration`]);
//! - times as RFC 3339 UTC with exactly three fractional digits
//!   (`2026-01-02T03:04:05.678Z`), so that their text sorts like the times
//!   themselves (MongoDB range queries and sorts rely on it; serde: [`utc`],
//!   [`option_utc`]);
//! - `t + d` and `t - d` that saturate instead of overflowing
//!   ([`add_saturating`], [`sub_saturating`]): no input can make a time
//!   computation panic.
//!
//! The clock itself (what time it is now) is [`crate::clock`].

use chrono::{DateTime, Utc};
use std::time::Duration;

/// `t + d`, saturating at the largest time chrono can hold.
pub fn add_saturating(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the smallest time chrono can hold.
pub fn sub_saturating(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A duration as people write it: `5s`, `250ms`, `1h 30m`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text).map_err(|e| DurationError {
        text: text.to_owned(),
        why: e.to_string(),
    })
}

/// A duration that [`parse_duration`] could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {why} (examples: 5s, 250ms, 1h)")]
pub struct DurationError {
    pub text: String,
    pub why: String,
}

/// A duration as [`parse_duration`] reads it: `1h 30m`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `Duration` as a humantime string.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::human(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(D::Error::custom)
    }
}

/// `Option<Duration>` as a humantime string or null.
pub mod option_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::duration")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// `DateTime<Utc>` as fixed-width RFC 3339.
pub mod utc {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| crate::clock::truncate_ms(t.with_timezone(&Utc)))
            .map_err(|e| {
                D::Error::custom(format!("invalid time {text:?}: {e} (expected RFC 3339)"))
            })
    }
}

/// `Option<DateTime<Utc>>` as fixed-width RFC 3339 or null.
pub mod option_utc {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::utc::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::utc")] DateTime<Utc>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}
