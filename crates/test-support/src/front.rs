//! Fronts for servers in tests: a TCP front for replicas, where each
//! connection goes to the first backend that accepts it, as a load balancer
//! that skips dead or standby servers would; a reverse proxy that names its
//! client in `X-Forwarded-For`; and, for either, a way to make the
//! connections open now go dead without closing, as a NAT that forgot them
//! would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the connections of a front may do.
#[derive(Clone, Copy, Debug, Default)]
struct Flow {
    /// Connections accepted before this many freezes carry nothing more.
    freezes: u64,
    /// New connections wait, unanswered, until released.
    holding: bool,
    /// The front is gone: every connection closes.
    closed: bool,
}

/// The front; it stops on drop, closing every connection.
pub struct Front {
    pub address: SocketAddr,
    accepting: JoinHandle<()>,
    flow: watch::Sender<Flow>,
    backends: Backends,
}

/// Where a front's connections go, in order of preference.
type Backends = Arc<Mutex<Vec<SocketAddr>>>;

impl Front {
    /// A front to the first of `backends` that accepts each connection.
    pub async fn start(backends: Vec<SocketAddr>) -> Front {
        Self::spawn(backends, None).await
    }

    /// A reverse proxy to `backend` that adds `X-Forwarded-For: client` to
    /// the first request of each connection (which is all an upgraded
    /// connection sends), as nginx's `proxy_add_x_forwarded_for` would.
    pub async fn forwarding_for(backend: SocketAddr, client: &str) -> Front {
        Self::spawn(
            vec![backend],
            Some(format!("X-Forwarded-For: {client}\r\n")),
        )
        .await
    }

    /// One more backend, tried after the others: a replica that listens
    /// only once it takes over, on a port it chose then.
    pub fn add_backend(&self, backend: SocketAddr) {
        self.backends.lock().expect("backends").push(backend);
    }

    /// `http://ADDRESS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The connections open now stop carrying bytes, both ways, but stay
    /// open: neither end learns anything. Connections made later flow.
    pub fn freeze(&self) {
        self.flow.send_modify(|flow| flow.freezes += 1);
    }

    /// New connections wait in the listen queue, unanswered (a network that
    /// is down), until [`Front::release`].
    pub fn hold(&self) {
        self.flow.send_modify(|flow| flow.holding = true);
    }

    pub fn release(&self) {
        self.flow.send_modify(|flow| flow.holding = false);
    }

    async fn spawn(backends: Vec<SocketAddr>, header: Option<String>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let backends: Backends = Arc::new(Mutex::new(backends));
        let shared = Arc::clone(&backends);
        let (flow, _) = watch::channel(Flow::default());
        let flows = flow.clone();
        let mut gate = flow.subscribe();
        let accepting = tokio::spawn(async move {
            loop {
                if gate.wait_for(|flow| !flow.holding).await.is_err() {
                    return;
                }
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = gate.wait_for(|flow| flow.holding) => continue,
                };
                let Ok((client, _)) = accepted else { return };
                let backends = shared.lock().expect("backends").clone();
                let header = header.clone();
                let flow = flows.subscribe();
                tokio::spawn(carry(client, backends, header, flow));
            }
        });
        Front {
            address,
            accepting,
            flow,
            backends,
        }
    }
}

async fn carry(
    mut client: TcpStream,
    backends: Vec<SocketAddr>,
    header: Option<String>,
    mut flow: watch::Receiver<Flow>,
) {
    let born = flow.borrow().freezes;
    let mut server = None;
    for backend in backends {
        if let Ok(stream) = TcpStream::connect(backend).await {
            server = Some(stream);
            break;
        }
    }
    // Nobody serves: the client sees the connection close.
    let Some(mut server) = server else { return };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    if let Some(header) = header
        && add_header(&mut client, &mut server, &header)
            .await
            .is_none()
    {
        return;
    }
    let frozen = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = flow.wait_for(|flow| flow.freezes > born || flow.closed) => true,
    };
    if frozen {
        // Both ends stay open, and nothing moves, until the front is dropped.
        let _ = flow.wait_for(|flow| flow.closed).await;
    }
}

/// Copies the client's first line to the server, then `header`.
async fn add_header(client: &mut TcpStream, server: &mut TcpStream, header: &str) -> Option<()> {
    let mut head = Vec::new();
    let line_end = loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            break end + 2;
        }
        let mut chunk = [0u8; 1024];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    };
    head.splice(line_end..line_end, header.bytes());
    server.write_all(&head).await.ok()
}

impl Drop for Front {
    fn drop(&mut self) {
        self.accepting.abort();
        self.flow.send_modify(|flow| flow.closed = true);
    }
}
