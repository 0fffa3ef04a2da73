//! A forwarded connection sealed end to end, when its session is: `connect`
//! and the agent seal and open its bytes as TLS 1.3 records (`record`)
//! with keys only they hold, and the server relays the two sockets byte
//! for byte, as it relays a handed-over tunnel: each byte is sealed once by
//! one end and opened once by the other, and the server never holds a key.
//!
//! Each end's connection to the server leaves TLS after its upgrade, so
//! that its bytes are sealed once, not twice:
//!
//! 1. after the `101`, the server says [`SWITCH`] on each connection (inside
//!    its TLS, when it has TLS) and from then on reads and writes the
//!    socket itself; neither end sends anything between its request and
//!    the switch, so no TLS layer has read a byte past it;
//! 2. each end reads the switch and sends a fresh salt, in plain, on the
//!    bare socket; the server reads both salts before it relays anything,
//!    so that no end is sent a byte before it has left TLS;
//! 3. the server relays, the salts first; each end derives the tunnel's
//!    keys from the session's tunnel secret and both salts
//!    (`doorman_e2e::tunnel`), so no two tunnels share keys and a tunnel
//!    the server replays does not open.

use crate::handover::{ServerSide, invalid};
use crate::record::{Suite, TrafficKeys};
use doorman_e2e::tunnel::{SALT_LEN, TunnelSecret, salt};
use doorman_wire::dial::Upgraded;
use doorman_wire::tls::MaybeTls;
use hyper_util::rt::TokioIo;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server says on a tunnel's connection when it leaves TLS.
pub const SWITCH: u8 = 0x45;
/// How long a switch or a salt may take to come.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The suite of a sealed tunnel's records.
const SUITE: Suite = Suite::Aes256GcmSha384;

/// Which end of a sealed tunnel this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Operator,
    Computer,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} never came"))
}

/// The server's side of step 1: says [`SWITCH`] on an upgraded connection
/// (`early`: what the HTTP layer read past the upgrade, which must be
/// nothing) and gives up its TLS; the bare socket.
pub async fn switch_to_raw(side: ServerSide, early: &[u8]) -> io::Result<TcpStream> {
    if !early.is_empty() {
        return Err(invalid("a sealed tunnel's end spoke before the switch"));
    }
    match side {
        MaybeTls::Plain(mut socket) => {
            socket.write_all(&[SWITCH]).await?;
            Ok(socket)
        }
        MaybeTls::Tls(tls) => {
            let (tracked, mut connection) = tls.into_inner();
            let mut opened = Vec::new();
            crate::handover::drain(connection.reader(), &mut opened)?;
            if !tracked.at_record_boundary() || !opened.is_empty() {
                return Err(invalid("a sealed tunnel's end spoke before the switch"));
            }
            std::io::Write::write_all(&mut connection.writer(), &[SWITCH])?;
            let mut sealed = Vec::new();
            while connection.wants_write() {
                connection.write_tls(&mut sealed)?;
            }
            let (mut socket, _) = tracked.into_parts();
            socket.write_all(&sealed).await?;
            Ok(socket)
        }
    }
}

/// The server's side of step 2: each end's salt, read before anything is
/// relayed (they go first, each to the other end).
pub async fn salts(
    operator: &mut TcpStream,
    computer: &mut TcpStream,
) -> io::Result<([u8; SALT_LEN], [u8; SALT_LEN])> {
    let read = async {
        let mut operator_salt = [0u8; SALT_LEN];
        let mut computer_salt = [0u8; SALT_LEN];
        operator.read_exact(&mut operator_salt).await?;
        computer.read_exact(&mut computer_salt).await?;
        Ok::<_, io::Error>((operator_salt, computer_salt))
    };
    tokio::time::timeout(STEP_TIMEOUT, read)
        .await
        .map_err(|_| timed_out("a sealed tunnel's salt"))?
}

/// An end's side of step 1: reads the server's [`SWITCH`] on a dialed
/// tunnel and gives up its TLS; the bare socket.
pub async fn switched(tunnel: Upgraded) -> io::Result<TcpStream> {
    let mut tunnel = tunnel;
    let mut said = [0u8; 1];
    tokio::time::timeout(STEP_TIMEOUT, tunnel.read_exact(&mut said))
        .await
        .map_err(|_| timed_out("the server's switch"))??;
    if said[0] != SWITCH {
        return Err(invalid("the server did not switch the tunnel"));
    }
    let parts = tunnel
        .into_inner()
        .downcast::<TokioIo<crate::streams::DialedStream>>()
        .map_err(|_| io::Error::other("a sealed tunnel must be a dialed connection"))?;
    if !parts.read_buf.is_empty() {
        return Err(invalid("the server sent more than the switch"));
    }
    match parts.io.into_inner() {
        MaybeTls::Plain(socket) => Ok(socket),
        MaybeTls::Tls(tls) => {
            let (socket, mut connection) = tls.into_inner();
            let mut opened = Vec::new();
            crate::handover::drain(connection.reader(), &mut opened)?;
            if !opened.is_empty() {
                return Err(invalid("the server sent more than the switch"));
            }
            Ok(socket)
        }
    }
}

/// An end's side of steps 2 and 3: sends its salt, reads the other end's,
/// and relays `local` through the sealed tunnel `socket` to `target` (as
/// the operator named it) until both directions end; the bytes moved each
/// way.
pub async fn relay_sealed(
    mut socket: TcpStream,
    end: End,
    (secret, target): (&TunnelSecret, &str),
    local: TcpStream,
) -> io::Result<(u64, u64)> {
    let ours = salt().map_err(|_| io::Error::other("the system's random source failed"))?;
    socket.write_all(&ours).await?;
    let mut theirs = [0u8; SALT_LEN];
    tokio::time::timeout(STEP_TIMEOUT, socket.read_exact(&mut theirs))
        .await
        .map_err(|_| timed_out("the other end's salt"))??;
    let (operator_salt, computer_salt) = match end {
        End::Operator => (&ours, &theirs),
        End::Computer => (&theirs, &ours),
    };
    let secrets = secret.tunnel(operator_salt, computer_salt, target);
    let keys = |secret: &[u8]| TrafficKeys::new(SUITE, secret, 0).map_err(invalid);
    let up = keys(&secrets.operator_to_computer)?;
    let down = keys(&secrets.computer_to_operator)?;
    let (rx, tx) = match end {
        End::Operator => (down, up),
        End::Computer => (up, down),
    };
    relay_records(socket, rx, tx, local).await
}

#[cfg(unix)]
async fn relay_records(
    socket: TcpStream,
    rx: TrafficKeys,
    tx: TrafficKeys,
    local: TcpStream,
) -> io::Result<(u64, u64)> {
    use crate::sealed::Sealed;
    use crate::side::Side;
    let tunnel = Side::Sealed(Box::new(Sealed::new(
        socket.into_std()?,
        rx,
        tx,
        &[],
        false,
    )));
    let (to_tunnel, from_tunnel) =
        crate::streams::relay_sides(Side::Plain(local.into_std()?), tunnel).await?;
    Ok((to_tunnel, from_tunnel))
}

/// Where the engine's system calls are missing: the records sealed and
/// opened as tokio copies the bytes.
#[cfg(not(unix))]
async fn relay_records(
    socket: TcpStream,
    rx: TrafficKeys,
    tx: TrafficKeys,
    local: TcpStream,
) -> io::Result<(u64, u64)> {
    crate::sealed_copy::relay(socket, rx, tx, local).await
}
