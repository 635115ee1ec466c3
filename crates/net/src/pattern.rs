//! Host patterns: what a grant, a tenant's policy or the node's policy lets
//! a request reach.
//!
//! A pattern is a host with an optional port: `api.example.com`,
//! `*.hooks.slack.com:443`, `203.0.113.7`, `[2001:db8::1]:8443`, or `*`
//! (any host). `*.example.com` matches every name below `example.com`
//! (`a.example.com`, `a.b.example.com`) but not `example.com` itself.
//! Without a port, any port matches. Names are compared without case and
//! without a trailing dot.

use std::fmt;

/// The most patterns one grant or policy may list.
pub const MAX_PATTERNS: usize = 64;

/// A parsed host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// `*`: any host.
    Any,
    /// `*.suffix`: any name below `suffix`.
    Below(String),
    /// One name or IP literal (IPv6 without brackets).
    Exact(String),
}

/// A pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid host pattern {pattern:?}: {why}; write a host name, `*.example.com`, an IP address or `*`, optionally with `:port`"
)]
pub struct BadPattern {
    pub pattern: String,
    pub why: &'static str,
}

impl HostPattern {
    /// Parses `host[:port]`.
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let bad = |why| BadPattern {
            pattern: text.to_owned(),
            why,
        };
        let text_trim = text.trim();
        if text_trim.is_empty() || text_trim.len() > 260 {
            return Err(bad("it must be 1-260 characters"));
        }
        if text_trim.contains("://") || text_trim.contains('/') {
            return Err(bad("it is a URL; give only the host (and port)"));
        }
        let (host, port) = split_port(text_trim).map_err(bad)?;
        let host = normalize(host);
        let host = if host == "*" {
            Host::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(suffix).map_err(bad)?;
            Host::Below(suffix.to_owned())
        } else if host.parse::<std::net::IpAddr>().is_ok() {
            Host::Exact(host)
        } else {
            check_name(&host).map_err(bad)?;
            Host::Exact(host)
        };
        Ok(HostPattern { host, port })
    }

    /// Whether a request to `host` on `port` matches. `host` is a name or an
    /// IP literal (IPv6 with or without brackets).
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = normalize(host.trim_start_matches('[').trim_end_matches(']'));
        match &self.host {
            Host::Any => true,
            Host::Below(suffix) => below(&host, suffix),
            Host::Exact(name) => *name == host,
        }
    }

    /// Whether everything `other` matches, this matches too.
    pub fn covers(&self, other: &HostPattern) -> bool {
        if let Some(port) = self.port
            && other.port != Some(port)
        {
            return false;
        }
        match (&self.host, &other.host) {
            (Host::Any, _) => true,
            (_, Host::Any) => false,
            (Host::Below(a), Host::Below(b)) => a == b || below(b, a),
            (Host::Below(a), Host::Exact(b)) => below(b, a),
            (Host::Exact(_), Host::Below(_)) => false,
            (Host::Exact(a), Host::Exact(b)) => a == b,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Any => write!(f, "*")?,
            Host::Below(s) => write!(f, "*.{s}")?,
            Host::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            Host::Exact(h) => write!(f, "{h}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// Parses a list of patterns, at most [`MAX_PATTERNS`].
pub fn parse_all(texts: &[String]) -> Result<Vec<HostPattern>, BadPattern> {
    if texts.len() > MAX_PATTERNS {
        return Err(BadPattern {
            pattern: format!("{} patterns", texts.len()),
            why: "a list may hold at most 64 patterns",
        });
    }
    texts.iter().map(|t| HostPattern::parse(t)).collect()
}

/// Whether any pattern of `list` matches.
pub fn any_matches(list: &[HostPattern], host: &str, port: u16) -> bool {
    list.iter().any(|p| p.matches(host, port))
}

fn below(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn split_port(text: &str) -> Result<(&str, Option<u16>), &'static str> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the port must be 1-65535")
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("a `[` without its `]`")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("only IPv6 addresses go in brackets");
        }
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("unexpected text after `]`"),
        };
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, p)) => Ok((host, Some(port(p)?))),
        None => Ok((text, None)),
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err("a host name is dot-separated labels of letters, digits, `-` and `_`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).expect(s)
    }

    #[test]
    fn parses_and_matches() {
        assert!(p("api.example.com").matches("API.example.com.", 443));
        assert!(!p("api.example.com").matches("example.com", 443));
        assert!(p("*.hooks.slack.com:443").matches("a.b.hooks.slack.com", 443));
        assert!(!p("*.hooks.slack.com:443").matches("hooks.slack.com", 443));
        assert!(!p("*.hooks.slack.com:443").matches("evilhooks.slack.com", 443));
        assert!(!p("*.hooks.slack.com:443").matches("x.hooks.slack.com", 80));
        assert!(p("*").matches("anything", 1));
        assert!(p("127.0.0.1:8080").matches("127.0.0.1", 8080));
        assert!(p("[::1]:80").matches("[::1]", 80));
        assert!(p("::1").matches("::1", 9));
        assert_eq!(p("*.Example.com:443").to_string(), "*.example.com:443");
        for bad in [
            "",
            "https://x.com",
            "x.com/a",
            "a..b",
            "x.com:0",
            "x.com:99999",
            "[x]:1",
            "a b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn covers() {
        assert!(p("*").covers(&p("*.a.com")));
        assert!(p("*.a.com").covers(&p("x.a.com:443")));
        assert!(p("*.a.com").covers(&p("*.b.a.com")));
        assert!(!p("*.a.com").covers(&p("a.com")));
        assert!(!p("x.a.com").covers(&p("*.a.com")));
        assert!(!p("*.a.com:443").covers(&p("x.a.com")));
        assert!(p("x.a.com").covers(&p("x.a.com:8443")));
        assert!(!p("*.a.com").covers(&p("*")));
    }
}
