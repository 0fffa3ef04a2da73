//! The public URL the server's links name: its form, and that it sends no
//! secret in clear.

use crate::ServerError;

/// Checks the public URL: scheme and host, no path, no trailing slash kept.
pub fn normalize_public_url(url: &str) -> Result<String, ServerError> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| ServerError::PublicUrl(url.to_string()))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '"', '<', '>']) {
        return Err(ServerError::PublicUrl(url.to_string()));
    }
    Ok(trimmed.to_string())
}

/// Refuses a public URL that would send secrets in clear: `http://` to
/// another host (unless `insecure` says so), or `http://` for a server that
/// speaks only TLS.
pub(crate) fn check_clear_text(
    public_url: &str,
    tls: bool,
    insecure: bool,
) -> Result<(), ServerError> {
    let Some(authority) = public_url.strip_prefix("http://") else {
        return Ok(());
    };
    if tls {
        return Err(ServerError::PlainUrlForTls(public_url.to_string()));
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local || insecure {
        Ok(())
    } else {
        Err(ServerError::ClearTextPublicUrl(public_url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_in_clear_only_to_this_host_or_a_lab_that_says_so() {
        // (public URL, TLS on, --insecure-public-url, accepted)
        for (url, tls, insecure, accepted) in [
            ("https://doorman.example.com", true, false, true),
            ("https://doorman.example.com", false, false, true),
            ("http://127.0.0.1:8080", false, false, true),
            ("http://127.5.6.7", false, false, true),
            ("http://localhost:8080", false, false, true),
            ("http://LOCALHOST", false, false, true),
            ("http://[::1]:8080", false, false, true),
            ("http://doorman.example.com", false, false, false),
            ("http://0.0.0.0:8080", false, false, false),
            ("http://10.0.0.5:8080", false, false, false),
            ("http://[2001:db8::1]:8080", false, false, false),
            ("http://localhost.example.com", false, false, false),
            ("http://doorman.example.com", false, true, true),
            ("http://127.0.0.1:8080", true, false, false),
            ("http://doorman.example.com", true, true, false),
        ] {
            assert_eq!(
                check_clear_text(url, tls, insecure).is_ok(),
                accepted,
                "{url} tls={tls} insecure={insecure}"
            );
        }
    }
}
