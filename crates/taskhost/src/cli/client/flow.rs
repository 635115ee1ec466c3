//! Flow-control flags of `exec submit` and `schedule create`:
//! `--concurrency`, `--rate-limit`, `--debounce` (see README "Flow control").
//! A key that starts with `/` is a JSON pointer into the run's input.

use taskhost_model::RunPolicy;
use taskhost_model::flow::{Concurrency, Debounce, RateLimit};

#[derive(Debug, clap::Args)]
pub(crate) struct FlowArgs {
    /// At most LIMIT runs with KEY at once across the cluster: KEY:LIMIT,
    /// e.g. customer-42:2 (a KEY starting with / is read from the input).
    #[arg(long, value_name = "KEY:LIMIT", value_parser = concurrency)]
    concurrency: Option<Concurrency>,
    /// At most LIMIT starts with KEY within PER: KEY:LIMIT/PER, e.g.
    /// partner-api:5/1s.
    #[arg(long, value_name = "KEY:LIMIT/PER", value_parser = rate_limit)]
    rate_limit: Option<RateLimit>,
    /// A burst with KEY runs once, PERIOD after the last: KEY:PERIOD, e.g.
    /// sync-42:5s.
    #[arg(long, value_name = "KEY:PERIOD", value_parser = debounce)]
    debounce: Option<Debounce>,
}

impl FlowArgs {
    pub(super) fn apply(self, policy: &mut RunPolicy) {
        policy.concurrency = self.concurrency;
        policy.rate_limit = self.rate_limit;
        policy.debounce = self.debounce;
    }
}

/// `KEY:REST` → (key, key_from, rest).
fn split(text: &str) -> Result<(Option<String>, Option<String>, &str), String> {
    let (key, rest) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} has no ':' between the key and the rest"))?;
    Ok(match key.starts_with('/') {
        true => (None, Some(key.to_owned()), rest),
        false => (Some(key.to_owned()), None, rest),
    })
}

fn number(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

fn concurrency(text: &str) -> Result<Concurrency, String> {
    let (key, key_from, limit) = split(text)?;
    let limit = number(limit)?;
    Ok(Concurrency {
        key,
        key_from,
        limit,
    })
}

fn rate_limit(text: &str) -> Result<RateLimit, String> {
    let (key, key_from, rest) = split(text)?;
    let (limit, per) = rest
        .split_once('/')
        .ok_or_else(|| format!("{rest:?} is not LIMIT/PER, e.g. 5/1s"))?;
    Ok(RateLimit {
        key,
        key_from,
        limit: number(limit)?,
        per: taskhost_model::time::parse_duration(per).map_err(|e| e.to_string())?,
    })
}

fn debounce(text: &str) -> Result<Debounce, String> {
    let (key, key_from, period) = split(text)?;
    Ok(Debounce {
        key,
        key_from,
        period: taskhost_model::time::parse_duration(period).map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_keys_limits_and_periods() {
        let c = concurrency("customer-42:2").expect("parse");
        assert_eq!((c.key.as_deref(), c.limit), (Some("customer-42"), 2));
        let c = concurrency("/customer/id:1").expect("parse");
        assert_eq!(c.key_from.as_deref(), Some("/customer/id"));
        let r = rate_limit("a:b:5/1s").expect("parse");
        assert_eq!(
            (r.key.as_deref(), r.limit, r.per.as_secs()),
            (Some("a:b"), 5, 1)
        );
        let d = debounce("sync:250ms").expect("parse");
        assert_eq!(d.period.as_millis(), 250);
        assert!(concurrency("nokey").is_err());
        assert!(rate_limit("k:5").is_err());
    }
}
