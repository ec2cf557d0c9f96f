//! The SSRF guard: Herald sends only to global addresses unless an
//! operator re-opens a range on purpose.
//!
//! Checked where it cannot be dodged: a host name is checked on the
//! addresses it resolves to, inside the connector, on every connect (so a
//! name that re-binds to a private address between attempts is caught);
//! an IP literal is checked at enqueue and again before every attempt.
//! Embedded IPv4 addresses (IPv4-mapped, NAT64, 6to4) are judged as the
//! IPv4 address they reach.

use std::{
    fmt,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{Arc, LazyLock},
    task::{Context, Poll},
};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use ipnet::IpNet;

/// Special-purpose ranges that are not globally reachable (IANA's
/// special-purpose registries), with the name given in errors.
const BLOCKED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (unspecified)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
];

static BLOCKED_NETS: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    BLOCKED
        .iter()
        .map(|(net, name)| (net.parse().expect("a valid CIDR in the table"), *name))
        .collect()
});

/// An address Herald will not send to, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{ip} is {range}, which Herald does not send to; an operator can allow it with HERALD_ALLOW_TARGET_CIDRS"
)]
pub struct Blocked {
    /// The address refused.
    pub ip: IpAddr,
    /// The kind of range it is in.
    pub range: &'static str,
}

/// Which addresses may be sent to: every global address, plus the ranges
/// an operator allowed.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
}

impl TargetPolicy {
    /// A policy that also allows `allowed` (e.g. `127.0.0.0/8` for local
    /// development).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether `ip` may be sent to.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let reached = canonical(ip);
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&reached))
        {
            return Ok(());
        }
        if let IpAddr::V6(v6) = reached
            && let Some(embedded) = embedded_ipv4(v6)
        {
            return self
                .check(IpAddr::V4(embedded))
                .map_err(|blocked| Blocked { ip, ..blocked });
        }
        match BLOCKED_NETS.iter().find(|(net, _)| net.contains(&reached)) {
            Some((_, range)) => Err(Blocked { ip, range }),
            None => Ok(()),
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// is; any other address as itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`)
/// address reaches.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let octets = ip.octets();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(
            octets[12], octets[13], octets[14], octets[15],
        ));
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

/// The system resolver with the policy applied to its answers: blocked
/// addresses are dropped, and a name left with none fails to resolve
/// with the [`Blocked`] reason as the error's source.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    policy: Arc<TargetPolicy>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// The system resolver, guarded by `policy`.
    pub fn new(policy: Arc<TargetPolicy>) -> Self {
        Self {
            inner: GaiResolver::new(),
            policy,
        }
    }
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.inner.call(name);
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolving
                .await?
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(blocked) => {
                        refused.get_or_insert(blocked);
                        false
                    }
                })
                .collect();
            match refused {
                Some(blocked) if allowed.is_empty() => Err(io::Error::other(blocked)),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(ip: &str) -> bool {
        TargetPolicy::default().check(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn non_global_addresses_are_blocked() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
    }

    #[test]
    fn global_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
        ] {
            assert!(!blocked(ip), "{ip} should pass");
        }
    }

    #[test]
    fn newer_ipv6_special_purpose_ranges_are_blocked_to_their_edges() {
        for (first, last, outside, range) in [
            (
                "3fff::",
                "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
                "3fff:1000::1",
                "documentation (RFC 9637)",
            ),
            (
                "5f00::",
                "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "5f01::1",
                "segment routing SIDs (RFC 9602)",
            ),
            (
                "100:0:0:1::",
                "100:0:0:1:ffff:ffff:ffff:ffff",
                "100:0:0:2::1",
                "dummy prefix (RFC 9780)",
            ),
        ] {
            for ip in [first, last] {
                let refused = TargetPolicy::default()
                    .check(ip.parse().unwrap())
                    .expect_err(ip);
                assert_eq!(refused.range, range, "{ip}");
            }
            assert!(!blocked(outside), "{outside} should pass");
        }
    }

    #[test]
    fn the_allowlist_reopens_ranges_in_every_form() {
        let policy = TargetPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            policy.check(ip.parse().unwrap()).unwrap();
        }
        let refused = policy.check("10.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(refused.range, "private (RFC 1918)");
        assert!(refused.to_string().contains("HERALD_ALLOW_TARGET_CIDRS"));
    }

    #[tokio::test]
    async fn names_resolving_only_to_blocked_addresses_fail() {
        use tower_service::Service;
        let mut resolver = GuardedResolver::new(Arc::default());
        let name: Name = "localhost".parse().unwrap();
        let error = resolver.call(name).await.unwrap_err();
        let blocked = error.get_ref().and_then(|e| e.downcast_ref::<Blocked>());
        assert!(blocked.is_some(), "{error}");
        let mut open = GuardedResolver::new(Arc::new(TargetPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])));
        let addrs: Vec<_> = open
            .call("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
    }
}
