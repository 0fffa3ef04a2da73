//! Reading the hops a proxy chain wrote: `X-Forwarded-For` and RFC 7239
//! `Forwarded` (`for=` parameters), each as the list of hops from the
//! client's end to ours, `None` for a hop that names no address (`unknown`,
//! an obfuscated `_name`, or text we cannot read).

use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

pub(super) type Hops = Vec<Option<IpAddr>>;

/// The hops of every `X-Forwarded-For` header, in order; `None` when there
/// is no such header.
pub(super) fn x_forwarded_for(headers: &HeaderMap) -> Option<Hops> {
    let mut values = headers.get_all("x-forwarded-for").iter().peekable();
    values.peek()?;
    Some(
        values
            .flat_map(|value| match value.to_str() {
                Ok(text) => text.split(',').map(parse_hop).collect(),
                Err(_) => vec![None],
            })
            .collect(),
    )
}

/// The `for=` hops of every `Forwarded` header (RFC 7239 §4), in order; an
/// element without `for=` is a hop we cannot read. `None` when there is no
/// such header.
pub(super) fn forwarded(headers: &HeaderMap) -> Option<Hops> {
    let mut values = headers.get_all("forwarded").iter().peekable();
    values.peek()?;
    Some(
        values
            .flat_map(|value| match value.to_str() {
                Ok(text) => text.split(',').map(forwarded_for).collect(),
                Err(_) => vec![None],
            })
            .collect(),
    )
}

/// The address in one `Forwarded` element's `for=` parameter.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_hop(value)
    })
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]`, or with a port:
/// `203.0.113.7:4711`, `[2001:db8::1]:4711`.
pub(super) fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let bare = hop.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    bare.unwrap_or(hop)
        .parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|address| address.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn x_forwarded_for_lists_every_hop_of_every_header() {
        let found = x_forwarded_for(&headers(
            "x-forwarded-for",
            &["198.51.100.1, unknown", "[2001:db8::7]:4711"],
        ));
        assert_eq!(
            found,
            Some(vec![ip("198.51.100.1"), None, ip("2001:db8::7")])
        );
        assert_eq!(x_forwarded_for(&HeaderMap::new()), None);
    }

    #[test]
    fn forwarded_reads_for_parameters_in_any_form_rfc_7239_allows() {
        let found = forwarded(&headers(
            "forwarded",
            &[
                r#"for=192.0.2.43, For="[2001:db8:cafe::17]:4711";proto=https"#,
                r#"by=10.0.0.1;for="198.51.100.1:80", for=unknown, for=_hidden, proto=http"#,
            ],
        ));
        assert_eq!(
            found,
            Some(vec![
                ip("192.0.2.43"),
                ip("2001:db8:cafe::17"),
                ip("198.51.100.1"),
                None,
                None,
                None
            ])
        );
        assert_eq!(forwarded(&HeaderMap::new()), None);
    }

    #[test]
    fn mapped_addresses_are_plain_ipv4() {
        assert_eq!(parse_hop("::ffff:127.0.0.1"), ip("127.0.0.1"));
        assert_eq!(parse_hop("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(parse_hop("proxy.example"), None);
    }
}
