//! The HTTPS client the ACME protocol runs over: one HTTP/1.1 connection
//! per request, with the same rustls (ring) configuration as the rest of
//! Doorman, trusting the system's roots or `--acme-ca`. ACME takes a
//! handful of requests per certificate, so nothing is pooled.

use bytes::Bytes;
use doorman_wire::cert_problem::{self, Peer};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long one ACME request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer taken from an ACME server: a directory, an order or
/// a certificate chain is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
    /// `--acme-ca`, named when the ACME server's certificate does not
    /// match it.
    ca: Option<PathBuf>,
}

impl AcmeHttp {
    /// A client with `tls`, which trusts `ca` if given (else the system's
    /// roots).
    pub fn new(tls: Arc<rustls::ClientConfig>, ca: Option<&Path>) -> Self {
        Self {
            tls: tokio_rustls::TlsConnector::from(tls),
            ca: ca.map(Path::to_path_buf),
        }
    }
}

fn other(message: String) -> Error {
    Error::Other(message.into())
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let tls = self.tls.clone();
        let ca = self.ca.clone();
        Box::pin(async move {
            tokio::time::timeout(REQUEST_TIMEOUT, send(tls, ca.as_deref(), request))
                .await
                .map_err(|_| other("the ACME server did not answer within 30 s".into()))?
        })
    }
}

async fn send(
    tls: tokio_rustls::TlsConnector,
    ca: Option<&Path>,
    mut request: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, Error> {
    let uri = request.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(other(format!("ACME URLs must be https:// (got {uri})")));
    }
    let host = uri
        .host()
        .ok_or_else(|| other(format!("no host in {uri}")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| {
            other(format!(
                "cannot reach the ACME server at {host}:{port}: {e}"
            ))
        })?;
    let name = ServerName::try_from(host.clone()).map_err(|e| other(e.to_string()))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| other(tls_failure(&format!("{host}:{port}"), ca, &e)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| other(e.to_string()))?;
    tokio::spawn(connection);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| other(e.to_string()))?;
    request.headers_mut().insert(
        hyper::header::HOST,
        authority
            .parse()
            .map_err(|e: hyper::header::InvalidHeaderValue| other(e.to_string()))?,
    );
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| other(e.to_string()))?;
    // Read the whole body now, while the connection task runs, and no more
    // than an ACME answer can need.
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                other(format!(
                    "the ACME server's answer to {uri} is larger than {} KiB",
                    MAX_RESPONSE_BYTES / 1024
                ))
            } else {
                other(e.to_string())
            }
        })?
        .to_bytes();
    Ok(BytesResponse::from(hyper::Response::from_parts(
        parts,
        http_body_util::Full::new(body),
    )))
}

/// A failed TLS handshake with the ACME server at `address`, in the plain
/// words SECURITY.md promises: a certificate this side does not trust
/// (against `ca`, the `--acme-ca` given, if any) says what to do about it.
fn tls_failure(address: &str, ca: Option<&Path>, error: &std::io::Error) -> String {
    let problem = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(problem) => Some(problem),
            _ => None,
        });
    match problem {
        Some(problem) => format!(
            "the certificate of the ACME server at {address} {}",
            cert_problem::describe(problem, Peer::Acme, ca)
        ),
        None => format!("TLS with the ACME server at {address} failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Issue 31: a TLS failure with the ACME server is told in the plain
    /// words SECURITY.md promises, naming the `--acme-ca` that does not
    /// match, not rustls' enum names.
    #[tokio::test]
    async fn an_acme_server_another_ca_signed_is_named_in_plain_words() {
        let dir = tempfile::tempdir().unwrap();
        let certificates = doorman_test_support::tls::generate(&dir.path().join("acme"));
        let other = doorman_test_support::tls::generate(&dir.path().join("other"));
        let server = crate::server_config(&certificates.cert, &certificates.key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await {
                let _ = tokio_rustls::TlsAcceptor::from(server).accept(tcp).await;
            }
        });
        let client = doorman_wire::tls::client_config(Some(&other.ca)).unwrap();
        let request = Request::get(format!("https://localhost:{port}/directory"))
            .body(BodyWrapper::from(Vec::new()))
            .unwrap();
        let acme = AcmeHttp::new(client, Some(&other.ca));
        let Err(error) = acme.request(request).await else {
            panic!("a server another CA signed was trusted");
        };
        let text = error.to_string();
        let expected = format!(
            "the certificate of the ACME server at localhost:{port} does not match the CA in {}",
            other.ca.display()
        );
        assert!(text.starts_with(&expected), "{text}");
        assert!(text.contains("with --acme-ca"), "{text}");
        assert!(!text.contains("BadSignature"), "{text}");
        assert!(!text.contains("UnknownIssuer"), "{text}");
    }

    /// Issue 25: a 1.5 GiB directory answer grew the server to 1.6 GB.
    #[tokio::test]
    async fn an_answer_past_the_limit_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let certificates = doorman_test_support::tls::generate(dir.path());
        let server = crate::server_config(&certificates.cert, &certificates.key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let serving = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = tokio_rustls::TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .unwrap();
            let mut head = [0u8; 1024];
            let _ = tls.read(&mut head).await;
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
                .await;
            // Far more than the limit, until the client goes away.
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while tls.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let client = doorman_wire::tls::client_config(Some(&certificates.ca)).unwrap();
        let request = Request::get(format!("https://localhost:{port}/directory"))
            .body(BodyWrapper::from(Vec::new()))
            .unwrap();
        let Err(error) = AcmeHttp::new(client, None).request(request).await else {
            panic!("an answer of a gigabyte was taken");
        };
        assert!(
            error.to_string().contains("is larger than 1024 KiB"),
            "{error}"
        );
        let sent = serving.await.unwrap();
        assert!(sent < 64 << 20, "read no more than it had to: {sent}");
    }
}
