//! Which names the server answers to (`Host`) and which pages may post to
//! it (`Origin`): the public URL's, and loopback names for clients on this
//! host. A page on another name that resolves here (DNS rebinding) gets
//! `421 Misdirected Request` before any route sees it, and a request that
//! names two hosts gets `400`. The console's socket is stricter: only the
//! public URL's own origin, port included, opens it ([`PublicOrigin::is_exactly`]).

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// How a request showed it came from another site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossSite {
    /// The browser said so (`Sec-Fetch-Site`).
    FetchSite,
    /// Its `Origin` is not the public URL's.
    Origin,
}

/// The public URL's origin (`https://doorman.example.com:8443`) and host.
#[derive(Clone, Debug)]
pub struct PublicOrigin {
    origin: String,
    host: String,
}

impl PublicOrigin {
    /// From a URL `doorman_server::normalize_public_url` accepted.
    pub fn new(public_url: &str) -> Self {
        let authority = public_url.split_once("://").map_or(public_url, |(_, a)| a);
        PublicOrigin {
            origin: public_url.to_string(),
            host: host_of(authority).to_ascii_lowercase(),
        }
    }

    /// Why a POST did not come from this server's own pages, if it did not:
    /// `Sec-Fetch-Site` other than `same-origin`, or an `Origin` that is
    /// not ours. Clients that send neither still need a page's nonce.
    pub fn cross_site(&self, headers: &HeaderMap, client_is_local: bool) -> Option<CrossSite> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if header("sec-fetch-site").is_some_and(|site| site != "same-origin") {
            return Some(CrossSite::FetchSite);
        }
        header("origin")
            .is_some_and(|origin| !self.allows(origin, client_is_local))
            .then_some(CrossSite::Origin)
    }

    /// `scheme://host[:port]`, as a browser names the pages' origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The host alone: the relying party id of passkeys made here.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the public URL is `https://`.
    pub fn is_https(&self) -> bool {
        self.origin.starts_with("https://")
    }

    /// Whether a request naming `host` (a `Host` header or an HTTP/2
    /// authority) is for this server.
    pub fn serves(&self, host: &str, peer_is_loopback: bool) -> bool {
        let name = host_of(host);
        name.eq_ignore_ascii_case(&self.host) || (peer_is_loopback && is_loopback_name(name))
    }

    /// Whether a page from `origin` (an `Origin` header) may post here: the
    /// public URL's, or for a client on this host
    /// ([`crate::client_addr::Local`]) any loopback one.
    pub fn allows(&self, origin: &str, client_is_local: bool) -> bool {
        if self.is_exactly(origin) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        matches!(scheme, "http" | "https")
            && client_is_local
            && is_loopback_name(host_of(authority))
    }

    /// Whether `origin` (an `Origin` header) is the public URL's own:
    /// scheme, host and port alike, whoever the client is. Cookies are not
    /// bound to ports, so a page served by anyone on another port of the
    /// same host would otherwise act with the operator's cookie.
    pub fn is_exactly(&self, origin: &str) -> bool {
        origin_parts(origin).is_some_and(|parts| Some(parts) == origin_parts(&self.origin))
    }
}

/// The scheme, host and port of an origin (`https://Example.com` gives
/// `("https", "example.com", 443)`), the scheme's port filled in when none
/// is written; `None` for anything else (`null`, another scheme, a bad port).
fn origin_parts(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = match authority.rsplit_once(':') {
        // Not the inside of an IPv6 address: `[::1]` has no port.
        Some((host, port)) if !port.contains(']') => (host, port.parse::<u16>().ok()?),
        _ => (authority, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// `name` of `name`, `name:port`, `[v6]` or `[v6]:port`, without a trailing dot.
fn host_of(authority: &str) -> &str {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(v6, _)| v6),
        None => match authority.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => authority,
        },
    };
    host.strip_suffix('.').unwrap_or(host)
}

fn is_loopback_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Answers `400` to a request with two `Host` headers, and `421` to a
/// request for a name this server does not carry. The
/// `/v1/` endpoints are left out: agents and operators may dial the server
/// by another name or address than the public URL's, each of them proves
/// itself with a key or token, and no page can open them (a browser cannot
/// send `Upgrade: doorman/1`). So is a computer redeeming its invitation
/// (`POST /join/CODE` from a client that is no browser), which may name the server as
/// `admin agent invite --public-url` did.
pub async fn check_host(
    State(public): State<PublicOrigin>,
    request: Request,
    next: Next,
) -> Response {
    // Two `Host` headers: a proxy in front and this server could each read
    // another one. Refused on every path.
    if request
        .headers()
        .get_all(header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        return (StatusCode::BAD_REQUEST, "a request names one Host\n").into_response();
    }
    if request.uri().path().starts_with("/v1/") || joining(&request) {
        return next.run(request).await;
    }
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
    };
    let loopback = crate::client_addr::peer_of(&request).is_loopback();
    match host {
        Some(host) if public.serves(host, loopback) => next.run(request).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only to the name in its public URL\n",
        )
            .into_response(),
    }
}

/// Whether `request` is a computer redeeming an invitation: a `POST
/// /join/CODE` from a client that is no browser. The code proves itself,
/// but a browser's answer would be readable by a page on a name that
/// resolves here (DNS rebinding): a browser, which sends `Origin` or
/// `Sec-Fetch-Site` with every POST, gets the name check.
fn joining(request: &Request) -> bool {
    let headers = request.headers();
    request.method() == axum::http::Method::POST
        && request
            .uri()
            .path()
            .starts_with(doorman_core::join::JOIN_PATH_PREFIX)
        && !headers.contains_key(header::ORIGIN)
        && !headers.contains_key("sec-fetch-site")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_name_is_served_in_any_case_with_any_port() {
        let public = PublicOrigin::new("https://Doorman.example.com:8443");
        for host in [
            "doorman.example.com",
            "DOORMAN.example.com:8443",
            "doorman.example.com.",
        ] {
            assert!(public.serves(host, false), "{host}");
        }
        for host in [
            "evil.example",
            "doorman.example.com.evil.example",
            "",
            "localhost",
        ] {
            assert!(!public.serves(host, false), "{host}");
        }
    }

    #[test]
    fn loopback_names_only_for_loopback_peers() {
        let public = PublicOrigin::new("https://doorman.example.com");
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "app.localhost",
        ] {
            assert!(public.serves(host, true), "{host}");
            assert!(!public.serves(host, false), "{host}");
        }
        assert!(!public.serves("evil.example", true));
    }

    #[test]
    fn origins_must_be_the_public_one_or_loopback_for_loopback_peers() {
        let public = PublicOrigin::new("https://doorman.example.com");
        assert!(public.allows("https://doorman.example.com", false));
        assert!(!public.allows("http://doorman.example.com", false));
        assert!(!public.allows("https://evil.example", true));
        assert!(!public.allows("null", true));
        assert!(public.allows("http://localhost:8080", true));
        assert!(!public.allows("http://localhost:8080", false));
        let ipv6 = PublicOrigin::new("http://[::1]:8080");
        assert!(ipv6.serves("[::1]:8080", false));
    }

    #[test]
    fn exactly_the_public_origin_is_its_scheme_host_and_port() {
        let public = PublicOrigin::new("http://127.0.0.1:8080");
        assert!(public.is_exactly("http://127.0.0.1:8080"));
        for other in [
            "http://127.0.0.1:8081",
            "http://127.0.0.1",
            "https://127.0.0.1:8080",
            "http://localhost:8080",
            "http://127.0.0.2:8080",
            "http://127.0.0.1:",
            "null",
        ] {
            assert!(!public.is_exactly(other), "{other}");
            assert!(!public.allows(other, false), "{other}");
        }
        let named = PublicOrigin::new("https://Doorman.example.com:443");
        assert!(named.is_exactly("https://doorman.example.com"));
        assert!(named.is_exactly("HTTPS://DOORMAN.EXAMPLE.COM:443"));
        assert!(!named.is_exactly("https://doorman.example.com:8443"));
        let ipv6 = PublicOrigin::new("http://[::1]:8080");
        assert!(ipv6.is_exactly("http://[::1]:8080"));
        assert!(!ipv6.is_exactly("http://[::1]"));
        assert!(PublicOrigin::new("http://[::1]").is_exactly("http://[::1]:80"));
    }
}
