//! A man in the middle: what a server that wants to read end-to-end
//! sessions would do, placed between `connect` and the real server. It
//! swaps the operator's end-to-end hello for one of its own on the way to
//! the computer, and answers the operator in the computer's place: with a
//! reply signed by a key of its own ([`Forgery::OwnKey`]), or with the
//! computer's identity and signature taken from the computer's real reply
//! ([`Forgery::ComputersSignature`]); or it leaves the keys alone and has
//! the computer run another command, to be fed the operator's input
//! ([`Forgery::OtherCommand`]). `connect` must refuse all three.
//!
//! It speaks plain HTTP on loopback, reads each connection's upgrade
//! request and answer as text and then frames, and passes everything else
//! through unchanged.

use bytes::{Bytes, BytesMut};
use doorman_e2e::handshake::{ComputerReply, Initiator, OperatorHello, respond};
use doorman_e2e::identity::Identity;
use doorman_wire::frame::Frame;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How the man in the middle answers the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// A reply of its own, which its own key signs.
    OwnKey,
    /// Its own ephemeral key, with the computer's identity and signature.
    ComputersSignature,
    /// The operator's keys, and another command for the computer.
    OtherCommand,
}

/// The man in the middle; it stops on drop.
pub struct ManInTheMiddle {
    pub address: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Drop for ManInTheMiddle {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl ManInTheMiddle {
    /// Between operators and the server at `server`.
    pub async fn start(server: SocketAddr, forgery: Forgery) -> ManInTheMiddle {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepting = tokio::spawn(async move {
            while let Ok((operator, _)) = listener.accept().await {
                tokio::spawn(intercept(operator, server, forgery));
            }
        });
        ManInTheMiddle { address, accepting }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// What one connection's two directions share: the operator's hello (its
/// ephemeral key), what it asked the computer to run (as the client sends
/// it) and the request's id.
#[derive(Default)]
struct Seen {
    hello: Option<OperatorHello>,
    service: Vec<u8>,
    request_id: Option<String>,
}

async fn intercept(operator: TcpStream, server: SocketAddr, forgery: Forgery) {
    let Ok(server) = TcpStream::connect(server).await else {
        return;
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (from_operator, to_operator) = operator.into_split();
    let (from_server, to_server) = server.into_split();
    let up = tokio::spawn(upstream(
        from_operator,
        to_server,
        Arc::clone(&seen),
        forgery,
    ));
    downstream(from_server, to_operator, seen, forgery).await;
    up.abort();
}

/// Reads an HTTP head (up to the blank line) and passes it on; the bytes
/// read past it.
async fn pass_head(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> Option<BytesMut> {
    let mut buffer = BytesMut::new();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            to.write_all(&buffer).await.ok()?;
            return Some(rest);
        }
        if from.read_buf(&mut buffer).await.ok()? == 0 {
            return None;
        }
    }
}

/// The next frame, reading as needed.
async fn next_frame(from: &mut (impl AsyncRead + Unpin), buffer: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(frame) = Frame::decode(buffer).ok()? {
            return Some(frame);
        }
        if from.read_buf(buffer).await.ok()? == 0 {
            return None;
        }
    }
}

async fn write_frame(to: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> Option<()> {
    let mut out = BytesMut::new();
    frame.encode(&mut out).ok()?;
    to.write_all(&out).await.ok()
}

fn message(value: &serde_json::Value) -> Frame {
    Frame::Message(Bytes::from(serde_json::to_vec(value).expect("json")))
}

/// The operator's side: its ask, with its hello swapped for the man in
/// the middle's own.
async fn upstream(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    seen: Arc<Mutex<Seen>>,
    forgery: Forgery,
) -> Option<()> {
    let mut buffer = pass_head(&mut from, &mut to).await?;
    let Frame::Message(ask) = next_frame(&mut from, &mut buffer).await? else {
        return None;
    };
    let mut ask: serde_json::Value = serde_json::from_slice(&ask).ok()?;
    if let Some(hello) = ask.get("e2e").cloned() {
        let service: doorman_wire::message::Service =
            serde_json::from_value(ask["service"].clone()).ok()?;
        let mut seen = seen.lock().await;
        seen.hello = serde_json::from_value(hello).ok();
        seen.service = serde_json::to_vec(&service).ok()?;
        drop(seen);
        if forgery == Forgery::OtherCommand {
            ask["service"] =
                serde_json::json!({"kind": "command", "argv": ["sh", "-c", "cat > /dev/null"]});
        } else {
            let (_, own) = Initiator::start().ok()?;
            ask["e2e"] = serde_json::to_value(own).ok()?;
        }
    }
    write_frame(&mut to, &message(&ask)).await?;
    to.write_all(&buffer).await.ok()?;
    tokio::io::copy(&mut from, &mut to).await.ok()?;
    Some(())
}

/// The server's side: the computer's reply, forged.
async fn downstream(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    seen: Arc<Mutex<Seen>>,
    forgery: Forgery,
) -> Option<()> {
    let mut buffer = pass_head(&mut from, &mut to).await?;
    let mut started = false;
    loop {
        let frame = next_frame(&mut from, &mut buffer).await?;
        let Frame::Message(payload) = &frame else {
            write_frame(&mut to, &frame).await?;
            continue;
        };
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        match value["type"].as_str() {
            Some("pending") | Some("session_started") => {
                if let Some(id) = value["request_id"].as_str() {
                    seen.lock().await.request_id = Some(id.to_string());
                }
                started |= value["type"] == "session_started";
                write_frame(&mut to, &frame).await?;
            }
            Some("e2e_reply") if started && forgery != Forgery::OtherCommand => {
                let real: ComputerReply = serde_json::from_value(value).ok()?;
                let forged = forge(&*seen.lock().await, &real, forgery)?;
                write_frame(&mut to, &message(&serde_json::to_value(forged).ok()?)).await?;
                break;
            }
            _ => write_frame(&mut to, &frame).await?,
        }
    }
    to.write_all(&buffer).await.ok()?;
    tokio::io::copy(&mut from, &mut to).await.ok()?;
    Some(())
}

fn forge(seen: &Seen, real: &ComputerReply, forgery: Forgery) -> Option<ComputerReply> {
    let hello = seen.hello.as_ref()?;
    let request_id = seen.request_id.as_deref()?;
    let own = Identity::generate().ok()?;
    let (reply, _keys) = respond(&own, request_id, &seen.service, hello).ok()?;
    Some(match forgery {
        Forgery::OwnKey | Forgery::OtherCommand => reply,
        Forgery::ComputersSignature => ComputerReply {
            identity: real.identity.clone(),
            signature: real.signature.clone(),
            ..reply
        },
    })
}
