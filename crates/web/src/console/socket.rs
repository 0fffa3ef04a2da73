//! The console's WebSocket: one operator connection per socket, bridged in
//! this process into the same flow `doorman connect` goes through (request,
//! emails, decision, session, relay, audit with "via console"), so the
//! browser is one more client and nothing is decided here.
//!
//! On the socket: the server's messages (the wire protocol's JSON: `pending`,
//! `delivery`, `allowed`, …, then the session's `exit`) as text, the remote
//! terminal's output as binary; from the browser, keystrokes as binary and
//! `{"type":"resize","rows":R,"cols":C}` or `{"type":"cancel"}` as text.
//! The Files view (`kind=files`) adds its own words both ways
//! (`files_socket`).

use super::{SignedIn, files_socket, signed_in};
use crate::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use doorman_broker::operators::{self, Via};
use doorman_http::client_addr::ClientAddr;
use doorman_wire::connection::Connection;
use doorman_wire::frame::{Frame, MAX_PAYLOAD_LEN};
use doorman_wire::message::{OperatorMessage, Service, SessionMessage};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::net::IpAddr;
use tokio_util::either::Either;

/// The largest message a browser may send: keystrokes and pastes.
const MAX_BROWSER_MESSAGE: usize = 1024 * 1024;

/// The pipe between the socket and the operator flow.
const PIPE_BUFFER: usize = 64 * 1024;

/// What the page asks for when it opens the socket.
#[derive(Debug, Deserialize)]
pub struct SessionAsk {
    computer: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    kind: SessionKind,
    /// The terminal's size; not used for the desktop.
    #[serde(default = "default_rows")]
    rows: u16,
    #[serde(default = "default_cols")]
    cols: u16,
}

fn default_rows() -> u16 {
    24
}

fn default_cols() -> u16 {
    80
}

/// The console's kinds of session.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SessionKind {
    /// The remote login shell, for xterm.js.
    #[default]
    Terminal,
    /// The computer's VNC server, for noVNC.
    Desktop,
    /// The computer's shared folders, for the Files view.
    Files,
}

/// What the browser may say once the socket is open.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum BrowserMessage {
    Resize { rows: u16, cols: u16 },
    Cancel,
}

/// `GET /console/socket?computer=…&reason=…&kind=terminal|desktop|files&rows=…&cols=…`.
pub async fn socket(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ask: Result<Query<SessionAsk>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // A page of another site, or of another port of this host (cookies
    // are bound to neither), could open a WebSocket with our cookie: only
    // the public URL's own origin may, even for a client on this host.
    let ours = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| state.public.is_exactly(origin));
    if !ours {
        return (
            StatusCode::FORBIDDEN,
            "the console's socket opens only from the console's own pages",
        )
            .into_response();
    }
    let Some(who) = signed_in(&state, &headers).await else {
        return (StatusCode::UNAUTHORIZED, "signed out").into_response();
    };
    let Ok(Query(ask)) = ask else {
        return (
            StatusCode::BAD_REQUEST,
            "give the computer, and for a terminal its rows and cols",
        )
            .into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let broker = state.broker.clone();
    upgrade
        .max_message_size(MAX_BROWSER_MESSAGE)
        .on_upgrade(move |socket| bridge(broker, socket, who, client, ask))
}

/// Carries one socket to its end.
async fn bridge(
    broker: std::sync::Arc<doorman_broker::broker::Broker>,
    socket: WebSocket,
    who: SignedIn,
    client: IpAddr,
    ask: SessionAsk,
) {
    let service = match ask.kind {
        SessionKind::Terminal => Service::Shell {
            term: "xterm-256color".into(),
            rows: ask.rows,
            cols: ask.cols,
        },
        SessionKind::Desktop => Service::Desktop,
        SessionKind::Files => Service::Files(files_socket::browse_job(&broker, &ask.computer)),
    };
    // Browsing, the page is told which folders once the session starts.
    let roots = match &service {
        Service::Files(job) => Some(files_socket::roots_message(job)),
        _ => None,
    };
    let (flow_end, bridge_end) = tokio::io::duplex(PIPE_BUFFER);
    let operator = doorman_store::OperatorIdentity {
        id: who.operator_id,
        name: who.operator,
    };
    let flow = tokio::spawn(operators::serve(
        broker,
        Either::Right(flow_end),
        operator,
        who.token_hash,
        client,
        Via::Console,
    ));
    let mut connection = Connection::new(bridge_end);
    let connect = OperatorMessage::Connect {
        computer: ask.computer,
        reason: ask.reason,
        service,
        // The browser runs what the server serves: its sessions trust the
        // server by nature, and are not sealed end to end.
        e2e: None,
    };
    if connection.write_message(&connect).await.is_ok() {
        let _ = relay(connection, socket, roots).await;
    }
    // The pipe is closed now: the flow sees the operator hang up.
    let _ = flow.await;
}

/// Why the bridge stopped.
enum Ended {
    FlowClosed,
    BrowserClosed,
    BrowserBroke,
}

/// Carries the session's messages both ways; `roots`, browsing, is what
/// the page is told when the session starts.
async fn relay(
    connection: Connection<tokio::io::DuplexStream>,
    socket: WebSocket,
    roots: Option<String>,
) -> Result<Ended, axum::Error> {
    let (mut reader, mut writer) = connection.split();
    let (mut to_browser, mut from_browser) = socket.split();
    // Size changes wait for the session: before it the flow reads only
    // operator messages.
    let mut in_session = false;
    let mut pending_size = None;
    let ended = loop {
        tokio::select! {
            frame = reader.read_frame() => match frame {
                Ok(Some(Frame::Message(payload))) => {
                    let Ok(text) = String::from_utf8(payload.to_vec()) else { continue };
                    let starts = !in_session && is_session_start(&text);
                    if starts {
                        in_session = true;
                        if let Some((rows, cols)) = pending_size.take() {
                            let _ = writer.write_message(&SessionMessage::Resize { rows, cols }).await;
                        }
                    }
                    to_browser.send(Message::Text(text.into())).await?;
                    if let Some(roots) = roots.as_ref().filter(|_| starts) {
                        to_browser.send(Message::Text(roots.as_str().into())).await?;
                    }
                }
                Ok(Some(Frame::Stdout(data) | Frame::Stderr(data))) => {
                    to_browser.send(Message::Binary(data)).await?;
                }
                Ok(Some(Frame::Stdin(_) | Frame::Sealed(_) | Frame::Recording(_))) => {}
                Ok(None) | Err(_) => break Ended::FlowClosed,
            },
            message = from_browser.next() => match message {
                Some(Ok(Message::Binary(bytes))) if in_session => {
                    if send_input(&mut writer, bytes).await.is_err() {
                        break Ended::FlowClosed;
                    }
                }
                Some(Ok(Message::Binary(_))) => {}
                Some(Ok(Message::Text(text))) => {
                    let written = match serde_json::from_str::<BrowserMessage>(&text) {
                        Ok(BrowserMessage::Resize { rows, cols }) if in_session => {
                            writer.write_message(&SessionMessage::Resize { rows, cols }).await
                        }
                        Ok(BrowserMessage::Resize { rows, cols }) => {
                            pending_size = Some((rows, cols));
                            Ok(())
                        }
                        Ok(BrowserMessage::Cancel) if !in_session => {
                            writer.write_message(&OperatorMessage::Cancel).await
                        }
                        Ok(BrowserMessage::Cancel) => break Ended::BrowserClosed,
                        // Browsing: the Files view's requests.
                        Err(_) if roots.is_some() && in_session => {
                            match files_socket::request(&text) {
                                Some(request) => writer.write_message(&request).await,
                                None => break Ended::BrowserBroke,
                            }
                        }
                        Err(_) => break Ended::BrowserBroke,
                    };
                    if written.is_err() {
                        break Ended::FlowClosed;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break Ended::BrowserClosed,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(_)) => break Ended::BrowserBroke,
            },
        }
    };
    if matches!(ended, Ended::FlowClosed) {
        let _ = to_browser.send(Message::Close(None)).await;
    }
    Ok(ended)
}

fn is_session_start(message: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(message)
        .is_ok_and(|value| value["type"] == "session_started")
}

async fn send_input(
    writer: &mut doorman_wire::connection::FrameWriter<
        tokio::io::WriteHalf<tokio::io::DuplexStream>,
    >,
    bytes: Bytes,
) -> Result<(), doorman_wire::ConnectionError> {
    for chunk in bytes.chunks(MAX_PAYLOAD_LEN) {
        writer
            .write_frame(&Frame::Stdin(Bytes::copy_from_slice(chunk)))
            .await?;
    }
    Ok(())
}
