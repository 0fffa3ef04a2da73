//! Which address a request came from: the TCP peer, or, when that peer is a
//! reverse proxy the administrator trusts (`--trusted-proxy`), the client it
//! names in `X-Forwarded-For`.
//!
//! The address is what recipients see ("from which address"), what the audit
//! trail records, and what the per-client limit on bad links counts; behind a
//! proxy that is not trusted, every client would be the proxy.

use crate::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use ipnet::IpNet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An address or network (`10.0.0.1`, `10.0.0.0/8`, `fd00::/8`) whose
/// `X-Forwarded-For` is believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.parse::<IpNet>()
            .map(|net| TrustedProxy(net.trunc()))
            .or_else(|_| text.parse::<IpAddr>().map(|ip| TrustedProxy(ip.into())))
            .map_err(|_| format!("{text:?} is not an IP address or ADDRESS/PREFIX network"))
    }
}

impl std::fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for TrustedProxy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The proxies whose word is taken; empty means none.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<TrustedProxy>);

impl TrustedProxies {
    pub fn new(proxies: Vec<TrustedProxy>) -> Self {
        Self(proxies)
    }

    fn trust(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|proxy| proxy.0.contains(&ip))
    }

    /// The client's address. From a trusted peer, `X-Forwarded-For` is read
    /// from its right end (the hop nearest us), skipping trusted proxies: the
    /// first address no trusted proxy vouches for is the client. Entries to
    /// its left were written by the client itself and prove nothing.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trust(client) {
            return client;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.iter().rev() {
            // A hop we cannot read ends the walk at the last one we could.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trust(ip) {
                break;
            }
        }
        client
    }

    /// Whether a request may be treated as coming from this host: the
    /// client is loopback, and a peer we do not trust did not say it was
    /// forwarding someone else's request (a proxy on this host that is not
    /// configured as trusted would otherwise make every client local).
    pub fn is_local(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .any(|name| headers.contains_key(*name));
        if forwarded && !self.trust(peer) {
            return false;
        }
        self.client(peer, headers).is_loopback()
    }
}

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `203.0.113.7`, `2001:db8::1`, or with a port: `203.0.113.7:4711`,
/// `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|address| address.ip()))
        .ok()
        .map(canonical)
}

/// The client address of a request, as [`TrustedProxies::client`] finds it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            state.trusted_proxies.client(peer(parts), &parts.headers),
        ))
    }
}

/// Admits only requests from this host, as [`TrustedProxies::is_local`]
/// finds them; any other gets `403`.
#[derive(Clone, Copy, Debug)]
pub struct LocalOnly;

impl FromRequestParts<AppState> for LocalOnly {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.trusted_proxies.is_local(peer(parts), &parts.headers) {
            Ok(LocalOnly)
        } else {
            Err((
                StatusCode::FORBIDDEN,
                "shown to this machine's own browsers only",
            ))
        }
    }
}

/// The TCP peer; a router served without connect info (never the case in
/// `Server::run`) counts as unspecified, which nothing trusts.
fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|p| p.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn proxies_parse_as_addresses_or_networks() {
        assert_eq!(
            "10.1.2.3/8".parse::<TrustedProxy>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "127.0.0.1".parse::<TrustedProxy>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            "fd00::/8".parse::<TrustedProxy>().unwrap().to_string(),
            "fd00::/8"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "proxy.example.com",
            "10.0.0.0/8,10.1.0.0/16",
        ] {
            let error = bad.parse::<TrustedProxy>().unwrap_err();
            assert!(error.contains("is not an IP address"), "{error}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(
            trusted.client(ip("203.0.113.9"), &headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("198.51.100.1"));
        // Without the header, the proxy itself is all we know.
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn what_the_client_wrote_itself_is_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client sent "X-Forwarded-For: 127.0.0.1"; the proxy appended it.
        let headers = forwarded(&["127.0.0.1, 198.51.100.1"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("198.51.100.1"));
        assert!(!trusted.is_local(ip("10.0.0.1"), &headers));
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.5"]);
        let headers = forwarded(&["1.1.1.1, 198.51.100.1", "192.0.2.5, 10.9.9.9"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("198.51.100.1"));
        // All hops trusted: the leftmost is the best we have.
        let headers = forwarded(&["10.2.2.2, 10.3.3.3"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("10.2.2.2"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["[2001:db8::7]:4711"]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &headers),
            ip("2001:db8::7")
        );
        let headers = forwarded(&["198.51.100.1:4711"]);
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["198.51.100.1, unknown, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), ip("10.0.0.2"));
    }

    #[test]
    fn a_local_proxy_that_is_not_trusted_makes_nobody_local() {
        let untrusted = TrustedProxies::default();
        assert!(untrusted.is_local(ip("127.0.0.1"), &HeaderMap::new()));
        assert!(!untrusted.is_local(ip("127.0.0.1"), &forwarded(&["198.51.100.1"])));
        let mut headers = HeaderMap::new();
        headers.insert("forwarded", HeaderValue::from_static("for=198.51.100.1"));
        assert!(!untrusted.is_local(ip("127.0.0.1"), &headers));
        let trusted = proxies(&["127.0.0.1"]);
        assert!(!trusted.is_local(ip("127.0.0.1"), &forwarded(&["198.51.100.1"])));
        assert!(trusted.is_local(ip("127.0.0.1"), &forwarded(&["127.0.0.1"])));
        assert!(!untrusted.is_local(ip("203.0.113.9"), &HeaderMap::new()));
    }
}
