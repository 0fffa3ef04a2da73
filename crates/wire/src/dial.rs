//! Dialing the server: one TCP connection, one HTTP/1.1 request with
//! `Upgrade: doorman/1`, and the upgraded byte stream that follows.
//!
//! Used by the agent and the operator's client alike. A refusal before the
//! upgrade (bad token, unknown computer) comes back as the status and the
//! server's one-line message. One plain request besides ([`Dialer::post`]):
//! a computer redeeming its invitation to join.

use crate::UPGRADE_PROTOCOL;
use crate::cert_problem::{Peer, describe};
use crate::tls::MaybeTls;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderName, HeaderValue, UPGRADE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The byte stream of an upgraded connection.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// Why a connection to the server could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("invalid server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the server at {address}: {source}")]
    Unreachable {
        address: String,
        source: std::io::Error,
    },
    #[error("HTTP error talking to the server: {0}")]
    Http(String),
    #[error("TLS with the server at {address} failed: {message}")]
    Tls { address: String, message: String },
    #[error("the certificate of the server at {address} {problem}")]
    Untrusted { address: String, problem: String },
    #[error(
        "refusing to send credentials in clear to {host} over http://: use https:// (the server \
         takes --acme-domain, or `doorman admin tls init` and --tls-cert/--tls-key); plain \
         http:// is only for a server on this machine (127.0.0.1, ::1, localhost)"
    )]
    PlainToRemote { host: String },
    #[error("the server at {address} speaks TLS: use an https:// URL")]
    SpeaksTls { address: String },
    #[error(transparent)]
    TlsSetup(#[from] crate::tls::TlsError),
    /// The server answered without upgrading; `message` is its explanation.
    #[error("server refused ({status}): {message}")]
    Refused { status: StatusCode, message: String },
    /// The server took the connection but gave no whole answer in time.
    #[error("the server at {address} did not answer within {} s", .after.as_secs())]
    Unanswered {
        address: String,
        after: std::time::Duration,
    },
}

/// How long [`Dialer::post`] waits for the whole answer: a server that
/// stalls (or a path that swallows packets) holds nothing for ever.
pub const POST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// A failed TLS handshake; a certificate this side does not trust says
/// what to do about it, naming `ca`, the CA file trusted, if one was given.
fn tls_error(address: &str, ca: Option<&std::path::Path>, error: std::io::Error) -> DialError {
    let certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|e| match e {
            rustls::Error::InvalidCertificate(problem) => Some(problem),
            _ => None,
        });
    match certificate {
        Some(problem) => DialError::Untrusted {
            address: address.to_string(),
            problem: describe(problem, Peer::Doorman, ca),
        },
        None => DialError::Tls {
            address: address.to_string(),
            message: error.to_string(),
        },
    }
}

/// Where the server is, parsed once.
#[derive(Clone)]
pub struct Dialer {
    host: String,
    port: u16,
    authority: String,
    /// Set for `https://` servers.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The CA file trusted instead of the system's roots, if one was given
    /// (named when the server's certificate does not match it).
    ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// Parses `http://host[:port]` or `https://host[:port]`; an `https://`
    /// server is verified against `ca` if given, else the system's roots.
    pub fn new(url: &str, ca: Option<&std::path::Path>) -> Result<Self, DialError> {
        let mut dialer = Self::with_tls(url, || crate::tls::client_config(ca))?;
        dialer.ca = ca.map(std::path::Path::to_path_buf);
        Ok(dialer)
    }

    /// [`Dialer::new`], an `https://` server verified as the configuration
    /// `tls` makes says (e.g. through a pinned CA, [`crate::pinned`]).
    pub fn with_tls(
        url: &str,
        tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, crate::tls::TlsError>,
    ) -> Result<Self, DialError> {
        let bad = |reason: &str| DialError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => Some(tls()?),
            _ => return Err(bad("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if tls.is_none() && !is_loopback(&host) {
            return Err(DialError::PlainToRemote { host });
        }
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        Ok(Self {
            host,
            port,
            authority: authority.to_string(),
            tls,
            ca: None,
        })
    }

    /// The TLS client configuration of an `https://` server's dialer,
    /// which its clones share (and with it the cache of TLS sessions to
    /// resume).
    pub fn tls_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// Opens `path` on the server with the given extra headers and returns the
    /// upgraded stream.
    pub async fn dial(
        &self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Upgraded, DialError> {
        Ok(self.dial_answered(path, headers).await?.0)
    }

    /// The TCP connection to the server, with TLS over it for an
    /// `https://` server; and the `host:port` it reached, for messages.
    async fn open(
        &self,
    ) -> Result<(MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>, String), DialError> {
        let address = format!("{}:{}", self.host, self.port);
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| DialError::Unreachable {
                address: address.clone(),
                source,
            })?;
        crate::socket::tune(&stream).map_err(|source| DialError::Unreachable {
            address: address.clone(),
            source,
        })?;
        let stream = match &self.tls {
            None => MaybeTls::Plain(stream),
            Some(config) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| DialError::Tls {
                    address: address.clone(),
                    message: e.to_string(),
                })?;
                let tls = TlsConnector::from(Arc::clone(config))
                    .connect(name, stream)
                    .await
                    .map_err(|e| tls_error(&address, self.ca.as_deref(), e))?;
                MaybeTls::Tls(Box::new(tls))
            }
        };
        Ok((stream, address))
    }

    /// A request the server did not answer with HTTP: a TLS server answers
    /// a plain request with a TLS record, which does not parse as HTTP.
    fn unanswered(&self, error: &hyper::Error, address: &str) -> DialError {
        if self.tls.is_none() && error.is_parse() {
            DialError::SpeaksTls {
                address: address.to_string(),
            }
        } else {
            DialError::Http(error.to_string())
        }
    }

    /// `POST path` with an empty body, as a plain request (not an
    /// upgrade): the status and at most `limit` bytes of the answer.
    pub async fn post(&self, path: &str, limit: usize) -> Result<(StatusCode, Bytes), DialError> {
        self.post_within(path, limit, POST_DEADLINE).await
    }

    /// [`Dialer::post`], the whole exchange within `deadline`.
    pub async fn post_within(
        &self,
        path: &str,
        limit: usize,
        deadline: std::time::Duration,
    ) -> Result<(StatusCode, Bytes), DialError> {
        tokio::time::timeout(deadline, self.post_unbounded(path, limit))
            .await
            .unwrap_or_else(|_| {
                Err(DialError::Unanswered {
                    address: format!("{}:{}", self.host, self.port),
                    after: deadline,
                })
            })
    }

    async fn post_unbounded(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), DialError> {
        let (stream, address) = self.open().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| DialError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // Ends with the exchange; errors surface on the request.
            let _ = connection.await;
        });
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header(HOST, &self.authority)
            .header(CONTENT_LENGTH, "0")
            .body(Empty::<Bytes>::new())
            .map_err(|e| DialError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.unanswered(&e, &address))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| DialError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    /// [`Dialer::dial`], with the headers of the server's `101`.
    pub async fn dial_answered(
        &self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(Upgraded, hyper::HeaderMap), DialError> {
        let (stream, address) = self.open().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| DialError::Http(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the upgraded stream is dropped; errors surface on the request.
            let _ = connection.with_upgrades().await;
        });
        let mut request = Request::builder()
            .method("GET")
            .uri(path)
            .header(HOST, &self.authority)
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, UPGRADE_PROTOCOL);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| DialError::Http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.unanswered(&e, &address))?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = Limited::new(response.into_body(), 4096)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .unwrap_or_default();
            let message = String::from_utf8_lossy(&body).trim().to_string();
            return Err(DialError::Refused { status, message });
        }
        let answer = response.headers().clone();
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| DialError::Http(e.to_string()))?;
        Ok((TokioIo::new(upgraded), answer))
    }
}

/// Whether `host` is this machine: a loopback address or `localhost`.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::{DialError, Dialer};

    /// A server that takes the connection and never answers holds a
    /// `post` (a computer joining) no longer than its deadline.
    #[tokio::test]
    async fn a_post_to_a_server_that_never_answers_gives_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let dialer = Dialer::new(&format!("http://{address}"), None).unwrap();
        let deadline = std::time::Duration::from_millis(200);
        let error = dialer
            .post_within("/join/x", 1024, deadline)
            .await
            .unwrap_err();
        assert!(matches!(error, DialError::Unanswered { .. }), "{error:?}");
        assert!(
            error.to_string().contains("did not answer within"),
            "{error}"
        );
        held.abort();
    }

    #[test]
    fn parses_http_urls_and_refuses_others() {
        let dialer = Dialer::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!((dialer.host.as_str(), dialer.port), ("127.0.0.1", 8080));
        let dialer = Dialer::new("http://[::1]", None).unwrap();
        assert_eq!((dialer.host.as_str(), dialer.port), ("::1", 80));
        assert!(Dialer::new("ftp://x", None).is_err());
        assert!(Dialer::new("https://x", Some(std::path::Path::new("/nonexistent.pem"))).is_err());
        assert!(Dialer::new("not a url", None).is_err());
    }

    #[test]
    fn plain_http_is_only_for_this_machine() {
        for url in [
            "http://localhost:8080",
            "http://127.0.0.2",
            "http://[::1]:80",
        ] {
            assert!(Dialer::new(url, None).is_ok(), "{url}");
        }
        for url in [
            "http://doorman.example.com:8080",
            "http://10.0.0.5",
            "http://[2001:db8::1]",
            "http://localhost.example.com",
        ] {
            let error = Dialer::new(url, None).unwrap_err();
            assert!(matches!(error, DialError::PlainToRemote { .. }), "{url}");
            assert!(error.to_string().contains("use https://"), "{error}");
        }
    }
}
