//! Which address a request came from: the TCP peer, or, when that peer is a
//! reverse proxy the administrator trusts (`--trusted-proxy`), the client it
//! names in `X-Forwarded-For` or `Forwarded`; and whether it is local.
//!
//! The address is what recipients see ("from which address"), what the audit
//! trail records, and what the per-client limit on bad links counts; behind a
//! proxy that is not trusted, every client would be the proxy.

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use hops::canonical;
use ipnet::IpNet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod hops;

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
pub struct TrustedProxies {
    /// Shared: every request's extractor takes a copy of the handle.
    proxies: Arc<Vec<TrustedProxy>>,
    /// Set once a trusted proxy has sent a request that names no client,
    /// so the log says it once rather than on every request.
    said_unnamed: Arc<AtomicBool>,
}

/// Who sent a request, as far as the server can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// The TCP peer, or the client a trusted proxy named.
    Known(IpAddr),
    /// A trusted proxy forwarded the request without naming its client in
    /// a way we can read: no `X-Forwarded-For` or `Forwarded` (only
    /// `X-Real-IP`, which a proxy may pass through from the client
    /// unchanged), a hop like `unknown`, or two headers that disagree. The
    /// proxy's address stands in for counting; such a request is never
    /// local.
    Unnamed { proxy: IpAddr },
}

impl Client {
    /// The address to show, record and count.
    pub fn ip(self) -> IpAddr {
        match self {
            Client::Known(ip) | Client::Unnamed { proxy: ip } => ip,
        }
    }
}

impl TrustedProxies {
    pub fn new(proxies: Vec<TrustedProxy>) -> Self {
        Self {
            proxies: Arc::new(proxies),
            said_unnamed: Arc::default(),
        }
    }

    pub fn trust(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.proxies.iter().any(|proxy| proxy.0.contains(&ip))
    }

    /// The client. From a trusted peer, `X-Forwarded-For` and `Forwarded`
    /// are each read from their right end (the hop nearest us), skipping
    /// trusted proxies: the first address no trusted proxy vouches for is
    /// the client. Entries to its left were written by the client itself
    /// and prove nothing. When both headers are present they must agree,
    /// since a proxy that writes one passes the other through from the
    /// client.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Client {
        let peer = canonical(peer);
        if !self.trust(peer) {
            return Client::Known(peer);
        }
        let by_x_forwarded_for = hops::x_forwarded_for(headers).map(|h| self.walk(peer, h));
        let by_forwarded = hops::forwarded(headers).map(|h| self.walk(peer, h));
        let client = match (by_x_forwarded_for, by_forwarded) {
            (Some(one), Some(other)) if one == other => one,
            (Some(one), None) | (None, Some(one)) => one,
            _ => Client::Unnamed { proxy: peer },
        };
        if matches!(client, Client::Unnamed { .. })
            && !self.said_unnamed.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                proxy = %peer,
                "a trusted proxy sent a request without a usable X-Forwarded-For or Forwarded \
                 header; such requests count as remote, under the proxy's address"
            );
        }
        client
    }

    /// The client a list of hops names, read from the right.
    fn walk(&self, peer: IpAddr, hops: hops::Hops) -> Client {
        let mut client = Client::Unnamed { proxy: peer };
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop else {
                return Client::Unnamed { proxy: peer };
            };
            client = Client::Known(ip);
            if !self.trust(ip) {
                break;
            }
        }
        client
    }

    /// Whether a request may be treated as coming from this host: the
    /// client is known and loopback, and a peer we do not trust did not say
    /// it was forwarding someone else's request (a proxy on this host that
    /// is not configured as trusted would otherwise make every client
    /// local).
    pub fn is_local(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        let forwarded = ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .any(|name| headers.contains_key(*name));
        if forwarded && !self.trust(peer) {
            return false;
        }
        matches!(self.client(peer, headers), Client::Known(ip) if ip.is_loopback())
    }
}

/// The client address of a request, as [`TrustedProxies::client`] finds it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl<S> FromRequestParts<S> for ClientAddr
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let proxies = TrustedProxies::from_ref(state);
        Ok(ClientAddr(proxies.client(peer(parts), &parts.headers).ip()))
    }
}

/// Whether a request comes from this host. The one rule for everything
/// kept to this host (`/outbox`, `/metrics`) and for what its browsers
/// alone may do (post from a loopback origin): [`TrustedProxies::is_local`].
#[derive(Clone, Copy, Debug)]
pub struct Local(pub bool);

impl<S> FromRequestParts<S> for Local
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Local(is_local(parts, state)))
    }
}

fn is_local<S>(parts: &Parts, state: &S) -> bool
where
    TrustedProxies: FromRef<S>,
{
    TrustedProxies::from_ref(state).is_local(peer(parts), &parts.headers)
}

/// Admits only requests from this host, as [`Local`] finds them; any other
/// gets `403`.
#[derive(Clone, Copy, Debug)]
pub struct LocalOnly;

impl<S> FromRequestParts<S> for LocalOnly
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if is_local(parts, state) {
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
    peer_in(&parts.extensions)
}

/// [`peer`], for a middleware that holds the whole request.
pub(crate) fn peer_of(request: &axum::extract::Request) -> IpAddr {
    peer_in(request.extensions())
}

fn peer_in(extensions: &axum::http::Extensions) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
    canonical(peer)
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

    fn known(text: &str) -> Client {
        Client::Known(ip(text))
    }

    fn header(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.append(name, HeaderValue::from_static(value));
        headers
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
            known("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &headers),
            known("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["198.51.100.1"]);
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &headers),
            known("198.51.100.1")
        );
        // RFC 7239's header says the same.
        let headers = header("forwarded", "for=198.51.100.1;proto=https");
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &headers),
            known("198.51.100.1")
        );
    }

    #[test]
    fn what_the_client_wrote_itself_is_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client sent "X-Forwarded-For: 127.0.0.1"; the proxy appended it.
        let headers = forwarded(&["127.0.0.1, 198.51.100.1"]);
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &headers),
            known("198.51.100.1")
        );
        assert!(!trusted.is_local(ip("10.0.0.1"), &headers));
    }

    #[test]
    fn chains_of_trusted_proxies_are_walked() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.5"]);
        let headers = forwarded(&["1.1.1.1, 198.51.100.1", "192.0.2.5, 10.9.9.9"]);
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &headers),
            known("198.51.100.1")
        );
        // All hops trusted: the leftmost is the best we have.
        let headers = forwarded(&["10.2.2.2, 10.3.3.3"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &headers), known("10.2.2.2"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["[2001:db8::7]:4711"]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &headers),
            known("2001:db8::7")
        );
        let headers = forwarded(&["198.51.100.1:4711"]);
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers),
            known("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_proxy_that_names_nobody_leaves_the_client_unnamed_and_remote() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let unnamed = Client::Unnamed {
            proxy: ip("127.0.0.1"),
        };
        for headers in [
            HeaderMap::new(),
            header("x-real-ip", "127.0.0.1"),
            header("x-forwarded-for", "unknown"),
            header("x-forwarded-for", "127.0.0.1, unknown"),
            header("x-forwarded-for", "unknown, 10.0.0.2"),
            header("forwarded", "for=unknown"),
            header("forwarded", "for=_hidden"),
            header("forwarded", "proto=https"),
        ] {
            assert_eq!(
                trusted.client(ip("127.0.0.1"), &headers),
                unnamed,
                "{headers:?}"
            );
            assert!(!trusted.is_local(ip("127.0.0.1"), &headers), "{headers:?}");
        }
    }

    #[test]
    fn two_headers_that_disagree_name_nobody() {
        let trusted = proxies(&["127.0.0.1"]);
        // The proxy appends X-Forwarded-For; the client wrote Forwarded.
        let mut headers = header("forwarded", "for=127.0.0.1");
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        assert!(matches!(
            trusted.client(ip("127.0.0.1"), &headers),
            Client::Unnamed { .. }
        ));
        assert!(!trusted.is_local(ip("127.0.0.1"), &headers));
        let mut headers = header("forwarded", "for=198.51.100.1");
        headers.append("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &headers),
            known("198.51.100.1")
        );
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
        assert!(trusted.is_local(ip("127.0.0.1"), &header("forwarded", "for=127.0.0.1")));
        assert!(!untrusted.is_local(ip("203.0.113.9"), &HeaderMap::new()));
    }
}
