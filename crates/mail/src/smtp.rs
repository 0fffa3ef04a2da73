//! The SMTP relay the outbox delivers through: from the administrator's URL
//! (`smtp://` plain, `smtp://…?tls=required` STARTTLS, `smtps://` implicit
//! TLS, `user:password@` for AUTH, a path for the EHLO name), its
//! certificate verified against the system's roots or, for a relay of a
//! private CA, that CA (`--smtp-ca`) alone.
//!
//! lettre speaks SMTP; this module opens the sockets. lettre 0.11 leaves
//! Nagle's algorithm on and writes a message's body and its final `.` in two
//! writes, so the second waited for the relay's delayed ACK: 40 ms a message
//! on Linux, 22 messages a second a connection (fixed upstream in lettre PR
//! #1159, not yet released). Our sockets set `TCP_NODELAY`. A few idle
//! connections are kept for the next emails, checked with NOOP before reuse.

use doorman_wire::cert_problem::{self, Peer};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long one delivery (connecting included) may take: a relay that
/// stalls holds one of the outbox's delivery slots no longer than this,
/// and the email is tried again later.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;
/// An idle connection older than this is closed rather than reused: relays
/// drop idle clients after a minute or more.
const MAX_IDLE_TIME: Duration = Duration::from_secs(30);

/// Why an email was not handed to the relay.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to the SMTP relay: {0}")]
    Connect(std::io::Error),
    #[error("TLS with the SMTP relay failed: {0}")]
    Tls(std::io::Error),
    #[error("the SMTP relay does not offer STARTTLS, which the URL requires (tls=required)")]
    NoStartTls,
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("the SMTP relay did not finish within {} s", SMTP_TIMEOUT.as_secs())]
    TimedOut,
}

impl SendError {
    /// Whether trying again cannot help: the relay refused for good (5xx).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Smtp(error) if error.is_permanent())
    }
}

/// How the connection to the relay is secured.
enum Security {
    Plain,
    /// STARTTLS after the greeting; without it, plain only if not required.
    StartTls {
        parameters: TlsParameters,
        required: bool,
    },
    /// TLS from the first byte.
    Implicit {
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    },
}

/// The relay and the connections kept open to it.
pub struct SmtpRelay {
    host: String,
    port: u16,
    security: Security,
    /// `--smtp-ca`, named when the relay's certificate does not match it.
    ca: Option<PathBuf>,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

/// Why the relay named on the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("invalid --smtp-url: {0}")]
    Url(String),
    #[error("--smtp-ca {}: {message}", path.display())]
    Ca { path: PathBuf, message: String },
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpRelay({}:{})", self.host, self.port)
    }
}

impl SmtpRelay {
    /// The relay `url` names, verified against `ca` when given.
    pub fn new(url: &str, ca: Option<&Path>) -> Result<SmtpRelay, SmtpSetupError> {
        let bad_url = |message: &str| SmtpSetupError::Url(message.to_string());
        let parsed = url::Url::parse(url).map_err(|e| bad_url(&e.to_string()))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| bad_url("it names no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let tls = parsed
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        // Without --smtp-ca, the system's roots were at fault.
        let bad_ca = |message: String| match ca {
            Some(path) => SmtpSetupError::Ca {
                path: path.to_path_buf(),
                message,
            },
            None => SmtpSetupError::Url(format!(
                "no trusted root certificates for TLS with the relay ({message}): install ca-certificates or give --smtp-ca"
            )),
        };
        let (default_port, security) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => {
                if ca.is_some() {
                    return Err(bad_ca(
                        "a CA is for a TLS connection: use smtps://… or smtp://…?tls=required"
                            .into(),
                    ));
                }
                (25, Security::Plain)
            }
            ("smtp", Some(mode @ ("required" | "opportunistic"))) => (
                587,
                Security::StartTls {
                    parameters: starttls_parameters(&host, ca).map_err(bad_ca)?,
                    required: mode == "required",
                },
            ),
            ("smtps", _) => (
                465,
                Security::Implicit {
                    config: doorman_wire::tls::client_config(ca).map_err(|e| match e {
                        doorman_wire::tls::TlsError::NoRoots(_) => {
                            bad_ca("the system has none".into())
                        }
                        other => bad_ca(other.to_string()),
                    })?,
                    name: ServerName::try_from(host.clone())
                        .map_err(|_| bad_url("its host is not a valid server name"))?,
                },
            ),
            ("smtp", Some(other)) => {
                return Err(bad_url(&format!(
                    "unknown tls={other:?}: use tls=required or tls=opportunistic"
                )));
            }
            (scheme, _) => {
                return Err(bad_url(&format!(
                    "unknown scheme {scheme:?}: use smtp:// or smtps://"
                )));
            }
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad_url("its user or password is not UTF-8"))
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(
                decode(parsed.username())?,
                decode(password)?,
            )),
            None => None,
        };
        let name = parsed.path().trim_matches('/');
        let hello = if name.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(name.to_string())
        };
        Ok(SmtpRelay {
            host,
            port: parsed.port().unwrap_or(default_port),
            security,
            ca: ca.map(Path::to_path_buf),
            credentials,
            hello,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Hands `message` to the relay.
    pub async fn send(&self, message: &lettre::Message) -> Result<(), SendError> {
        let body = message.formatted();
        let delivery = async {
            let mut connection = match self.reuse().await {
                Some(connection) => connection,
                None => self.connect().await?,
            };
            // On a refusal lettre has already closed the connection.
            connection.send(message.envelope(), &body).await?;
            self.keep(connection);
            Ok(())
        };
        tokio::time::timeout(SMTP_TIMEOUT, delivery)
            .await
            .map_err(|_| SendError::TimedOut)?
    }

    /// An idle connection that still answers NOOP.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut connection, since) = self.idle.lock().ok()?.pop()?;
            if since.elapsed() < MAX_IDLE_TIME && connection.test_connected().await {
                return Some(connection);
            }
            connection.abort().await;
        }
    }

    fn keep(&self, connection: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push((connection, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let socket = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(SendError::Connect)?;
        socket.set_nodelay(true).map_err(SendError::Connect)?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit { config, name } => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), socket)
                    .await
                    .map_err(|e| SendError::Tls(plain_tls_error(e, self.ca.as_deref())))?;
                Box::new(ImplicitTls(tls))
            }
            Security::Plain | Security::StartTls { .. } => Box::new(socket),
        };
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let Security::StartTls {
            parameters,
            required,
        } = &self.security
        {
            if connection.can_starttls() {
                connection.starttls(parameters.clone(), &self.hello).await?;
            } else if *required {
                connection.abort().await;
                return Err(SendError::NoStartTls);
            }
        }
        if let Some(credentials) = &self.credentials {
            connection.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(connection)
    }
}

/// lettre's TLS parameters for STARTTLS with the same roots as implicit TLS:
/// `ca` alone, or the system's.
fn starttls_parameters(host: &str, ca: Option<&Path>) -> Result<TlsParameters, String> {
    let certificates = match ca {
        Some(path) => doorman_wire::tls::load_certificates(path).map_err(|e| e.to_string())?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    if certificates.is_empty() {
        return Err("the system has none".into());
    }
    let mut builder =
        TlsParameters::builder(host.to_string()).certificate_store(CertificateStore::None);
    for certificate in certificates {
        let certificate = Certificate::from_der(certificate.to_vec()).map_err(|e| e.to_string())?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|e| e.to_string())
}

/// A certificate the relay presented that we do not trust, in plain words
/// (naming `ca`, the CA file trusted, if one was given).
fn plain_tls_error(error: std::io::Error, ca: Option<&Path>) -> std::io::Error {
    let described = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(problem) => {
                Some(cert_problem::describe(problem, Peer::Smtp, ca))
            }
            _ => None,
        });
    match described {
        Some(words) => std::io::Error::other(format!("its certificate: {words}")),
        None => error,
    }
}

/// An implicit-TLS stream, as lettre takes one.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for ImplicitTls {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ImplicitTls {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(url: &str, ca: Option<&Path>) -> String {
        SmtpRelay::new(url, ca).expect_err("refused").to_string()
    }

    #[test]
    fn a_url_names_its_scheme_port_credentials_and_hello_name() {
        let relay = SmtpRelay::new(
            "smtp://mailer%40corp:p%2Fss@mail.example:2525/doorman.example",
            None,
        )
        .expect("a good URL");
        assert_eq!((relay.host.as_str(), relay.port), ("mail.example", 2525));
        assert!(matches!(relay.security, Security::Plain));
        assert_eq!(
            relay.credentials,
            Some(Credentials::new("mailer@corp".into(), "p/ss".into()))
        );
        assert_eq!(relay.hello, ClientId::Domain("doorman.example".into()));
        let ports = [
            "smtp://m.example",
            "smtp://m.example?tls=required",
            "smtps://m.example",
        ]
        .map(|url| SmtpRelay::new(url, None).expect("good").port);
        assert_eq!(ports, [25, 587, 465]);
    }

    #[test]
    fn a_bad_url_is_refused_naming_the_problem() {
        assert!(refusal("http://m.example", None).contains("unknown scheme \"http\""));
        assert!(refusal("smtp://m.example?tls=always", None).contains("unknown tls=\"always\""));
        assert!(refusal("smtp:///nohost", None).contains("no host"));
        assert!(
            refusal("smtp://m.example", Some(Path::new("/ca.pem")))
                .contains("a CA is for a TLS connection")
        );
        assert!(
            refusal("smtps://m.example", Some(Path::new("/nonexistent/ca.pem")))
                .starts_with("--smtp-ca /nonexistent/ca.pem:")
        );
    }
}
