//! Which names the server answers to (`Host`) and which pages may post to
//! it (`Origin`): the public URL's, and loopback names for clients on this
//! host. A page on another name that resolves here (DNS rebinding) gets
//! `421 Misdirected Request` before any route sees it.

use crate::AppState;
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
    /// From a URL [`crate::normalize_public_url`] accepted.
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
    pub fn cross_site(&self, headers: &HeaderMap, peer_is_loopback: bool) -> Option<CrossSite> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if header("sec-fetch-site").is_some_and(|site| site != "same-origin") {
            return Some(CrossSite::FetchSite);
        }
        header("origin")
            .is_some_and(|origin| !self.allows(origin, peer_is_loopback))
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

    /// Whether a page from `origin` (an `Origin` header) may post here.
    pub fn allows(&self, origin: &str, peer_is_loopback: bool) -> bool {
        if origin.eq_ignore_ascii_case(&self.origin) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        matches!(scheme, "http" | "https")
            && peer_is_loopback
            && is_loopback_name(host_of(authority))
    }
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

/// Answers `421` to a request for a name this server does not carry. The
/// `/v1/` endpoints are left out: agents and operators may dial the server
/// by another name or address than the public URL's, each of them proves
/// itself with a key or token, and no page can open them (a browser cannot
/// send `Upgrade: doorman/1`).
pub async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/v1/") {
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
        Some(host) if state.public.serves(host, loopback) => next.run(request).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only to the name in its public URL\n",
        )
            .into_response(),
    }
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
}
