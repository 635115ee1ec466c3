//! Which addresses a request may connect to.
//!
//! Outbound requests are refused, by default, to every address that reaches
//! the node itself or its private networks rather than the internet:
//! loopback, private (RFC 1918, unique local), link-local (which holds the
//! cloud metadata service, 169.254.169.254), carrier-grade NAT, unspecified,
//! multicast, broadcast and reserved ranges, and IPv6 forms that embed an
//! IPv4 address (mapped, NAT64) are judged by that address. The operator
//! may open ranges (`[network] open_ranges = ["127.0.0.0/8"]`).
//!
//! The check is made on the resolved address at connect time (see
//! [`super::egress`]), so a name that resolves to a forbidden address —
//! or starts to, between two lookups — is refused too.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused, or `None` if it is a public address.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_kind(v4);
            }
            v6_kind(v6)
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_private() => "private",
        (169, 254, _) => "link-local (cloud metadata services live here)",
        (100, 64..=127, _) => "carrier-grade NAT",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay (deprecated)",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        x if x & 0xfe00 == 0xfc00 => "private (unique local)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "NAT64 (local use)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible or NAT64
/// (64:ff9b::/96) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    // IPv4-compatible (deprecated), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail);
    }
    None
}

/// The ranges the operator opened.
#[derive(Debug, Clone, Default)]
pub struct OpenRanges(Vec<IpNet>);

impl OpenRanges {
    /// Parses CIDR ranges (`127.0.0.0/8`, `fd00::/8`) or single addresses.
    pub fn parse(texts: &[String]) -> Result<Self, String> {
        texts
            .iter()
            .map(|t| {
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{t:?} is not an address range (e.g. 127.0.0.0/8)"))
            })
            .collect::<Result<_, _>>()
            .map(OpenRanges)
    }

    /// Why `ip` may not be reached, or `None` if it may.
    pub fn refuse(&self, ip: IpAddr) -> Option<&'static str> {
        let kind = forbidden_kind(ip)?;
        let canonical = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self
            .0
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            None
        } else {
            Some(kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<&'static str> {
        forbidden_kind(s.parse().expect(s))
    }

    #[test]
    fn classifies() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
        ] {
            assert!(kind(s).is_some(), "{s} must be refused");
        }
        for s in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(s), None, "{s} is public");
        }
        assert!(kind("169.254.169.254").is_some_and(|k| k.contains("metadata")));
    }

    #[test]
    fn operator_opens_ranges() {
        let open = OpenRanges::parse(&["127.0.0.0/8".into()]).expect("parse");
        assert_eq!(open.refuse("127.0.0.1".parse().expect("ip")), None);
        assert_eq!(open.refuse("::ffff:127.0.0.1".parse().expect("ip")), None);
        assert!(
            open.refuse("169.254.169.254".parse().expect("ip"))
                .is_some()
        );
        assert!(open.refuse("::1".parse().expect("ip")).is_some());
        assert!(OpenRanges::parse(&["nope".into()]).is_err());
    }
}
