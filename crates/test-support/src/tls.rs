//! Certificates made at test time: a CA and a server certificate it signed,
//! valid for `localhost` and `127.0.0.1`; a TLS connection on loopback
//! made with them; plain HTTPS requests (a GET, a form's POST); and a
//! handshake that checks which names a server's certificate is for.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;

/// Paths of the generated PEM files.
#[derive(Clone, Debug)]
pub struct TestCertificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`, created if
/// need be.
pub fn generate(dir: &Path) -> TestCertificates {
    std::fs::create_dir_all(dir).expect("certificate directory");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Doorman test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");

    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server cert");

    let paths = TestCertificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&paths.ca, ca.pem()).expect("write ca");
    std::fs::write(&paths.cert, cert.pem()).expect("write cert");
    std::fs::write(&paths.key, key.serialize_pem()).expect("write key");
    paths
}

/// What the usual `openssl req -x509 -subj /CN=localhost` one-liner makes:
/// a self-signed certificate that is its own CA (`basicConstraints
/// CA:TRUE`), for `localhost` and `127.0.0.1`. Writes `self-signed.pem`
/// and `self-signed.key` into `dir`: (certificate, key).
pub fn openssl_style_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("certificate directory");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed cert");
    let (cert_path, key_path) = (dir.join("self-signed.pem"), dir.join("self-signed.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// One TLS connection on loopback with Doorman's own configurations and a
/// fresh CA in `dir`: (client end, server end), the server's end accepted
/// by `accept` (the server's own `handover::accept`, say).
pub async fn loopback_pair<IO, A>(
    dir: &Path,
    accept: impl FnOnce(Arc<rustls::ServerConfig>, tokio::net::TcpStream) -> A,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    tokio_rustls::server::TlsStream<IO>,
)
where
    A: Future<Output = std::io::Result<tokio_rustls::server::TlsStream<IO>>>,
{
    loopback_pair_with(dir, |_| {}, accept).await
}

/// [`loopback_pair`] with the client's configuration changed by `client`
/// first.
pub async fn loopback_pair_with<IO, A>(
    dir: &Path,
    client: impl FnOnce(&mut rustls::ClientConfig),
    accept: impl FnOnce(Arc<rustls::ServerConfig>, tokio::net::TcpStream) -> A,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    tokio_rustls::server::TlsStream<IO>,
)
where
    A: Future<Output = std::io::Result<tokio_rustls::server::TlsStream<IO>>>,
{
    use doorman_certificates::server_config;
    use doorman_wire::tls::client_config;
    std::fs::create_dir_all(dir).expect("certificate directory");
    let certificates = generate(dir);
    let server = server_config(&certificates.cert, &certificates.key).expect("server config");
    let mut client_tls = (*client_config(Some(&certificates.ca)).expect("client config")).clone();
    client(&mut client_tls);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let connecting = async {
        let socket = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        socket.set_nodelay(true).expect("nodelay");
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
        connector.connect(name, socket).await.expect("TLS client")
    };
    let accepting = async {
        let (socket, _) = listener.accept().await.expect("accept");
        socket.set_nodelay(true).expect("nodelay");
        accept(server, socket).await.expect("TLS server")
    };
    tokio::join!(connecting, accepting)
}

/// `GET path` from the server at `address` over TLS (as `localhost`),
/// trusting `ca` (else the system's roots); the raw response.
pub async fn https_get(address: std::net::SocketAddr, ca: Option<&Path>, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    https_exchange(address, ca, &request).await
}

/// `POST path` of `form` (already URL-encoded, `a=1&b=2`) to the server at
/// `address` over TLS (as `localhost`), trusting `ca` (else the system's
/// roots), as a browser sends a form; the raw response. For a client
/// outside the server's process, such as a benchmark's recipient clicking
/// Allow on a TLS server's approval page.
pub async fn https_post_form(
    address: std::net::SocketAddr,
    ca: Option<&Path>,
    path: &str,
    form: &str,
) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    https_exchange(address, ca, &request).await
}

/// Sends `request` (a whole HTTP/1.1 request that asks to close) to the
/// server at `address` over TLS, and reads the response to its end.
async fn https_exchange(address: std::net::SocketAddr, ca: Option<&Path>, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = doorman_wire::tls::client_config(ca).expect("client config");
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS client");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("response");
    response
}

/// A TLS handshake with the server at `address` that verifies its
/// certificate for `name` (a DNS name or an IP address) against `ca`:
/// whether the certificate is for that name, from that CA.
pub async fn handshake(
    address: std::net::SocketAddr,
    ca: &Path,
    name: &str,
) -> std::io::Result<()> {
    let config = doorman_wire::tls::client_config(Some(ca)).map_err(std::io::Error::other)?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(std::io::Error::other)?;
    let tcp = tokio::net::TcpStream::connect(address).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map(drop)
}
