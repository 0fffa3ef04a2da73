//! Reading one cookie from a request's headers, for the two pages that sign
//! a browser in: the server's web console and the owner's settings window.

use hyper::header::{COOKIE, HeaderMap};

/// The value of the cookie `name`, from any `Cookie` header.
pub fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_cookie_and_no_other() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, "a=1; doorman=two".parse().unwrap());
        headers.append(COOKIE, "c=3".parse().unwrap());
        assert_eq!(value(&headers, "doorman"), Some("two"));
        assert_eq!(value(&headers, "c"), Some("3"));
        assert_eq!(value(&headers, "door"), None);
    }
}
