//! Fronts for servers in tests: a TCP front for replicas, where each
//! connection goes to the first backend that accepts it, as a load balancer
//! that skips dead or standby servers would; and a reverse proxy that names
//! its client in `X-Forwarded-For`.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The front; it stops on drop.
pub struct Front {
    pub address: SocketAddr,
    accepting: JoinHandle<()>,
}

impl Front {
    pub async fn start(backends: Vec<SocketAddr>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backends = backends.clone();
                tokio::spawn(async move {
                    for backend in backends {
                        if let Ok(mut server) = TcpStream::connect(backend).await {
                            let _ = server.set_nodelay(true);
                            let _ = client.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // Nobody serves: the client sees the connection close.
                });
            }
        });
        Front { address, accepting }
    }

    /// A reverse proxy to `backend` that adds `X-Forwarded-For: client` to
    /// the first request of each connection (which is all an upgraded
    /// connection sends), as nginx's `proxy_add_x_forwarded_for` would.
    pub async fn forwarding_for(backend: SocketAddr, client: &str) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let header = format!("X-Forwarded-For: {client}\r\n");
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let header = header.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let line_end = loop {
                        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
                            break end + 2;
                        }
                        let mut chunk = [0u8; 1024];
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    };
                    head.splice(line_end..line_end, header.into_bytes());
                    if server.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Front { address, accepting }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
