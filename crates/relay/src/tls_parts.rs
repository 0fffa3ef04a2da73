//! A TLS stream that can give up its socket and TLS state, so that a relay
//! thread (or the handover) carries on with them.

use tokio::net::TcpStream;

/// A TLS stream that can give up its socket and TLS state (to a relay
/// thread).
pub trait TlsParts {
    fn into_parts(self) -> (TcpStream, rustls::Connection);
}

impl TlsParts for tokio_rustls::client::TlsStream<TcpStream> {
    fn into_parts(self) -> (TcpStream, rustls::Connection) {
        let (socket, tls) = self.into_inner();
        (socket, tls.into())
    }
}

impl TlsParts for tokio_rustls::server::TlsStream<TcpStream> {
    fn into_parts(self) -> (TcpStream, rustls::Connection) {
        let (socket, tls) = self.into_inner();
        (socket, tls.into())
    }
}

impl TlsParts for tokio_rustls::server::TlsStream<crate::handover::Tracked> {
    fn into_parts(self) -> (TcpStream, rustls::Connection) {
        let (tracked, tls) = self.into_inner();
        (tracked.into_parts().0, tls.into())
    }
}
