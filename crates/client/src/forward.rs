//! Port forwarding like `ssh -L`: parsing `[BIND:]PORT:HOST:PORT`, and
//! carrying every local connection through a tunnel of its own until the
//! operator interrupts.

use crate::ConnectError;
use doorman_core::settings::validate_forward_target;
use doorman_e2e::tunnel::TunnelSecret;
use doorman_wire::{Dialer, SEALED_HEADER, TARGET_HEADER, TUNNEL_PATH_PREFIX};
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;

/// One `-L` option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Where to listen locally (loopback unless a bind address is given).
    pub bind: SocketAddr,
    /// `host:port` as seen from the remote computer.
    pub target: String,
}

impl std::str::FromStr for ForwardSpec {
    type Err = String;

    /// `[BIND:]PORT:HOST:PORT`; HOST and BIND may be `[v6]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let parts = split_fields(spec);
        let (bind, port, host, target_port) = match parts.as_slice() {
            [port, host, target_port] => (None, *port, *host, *target_port),
            [bind, port, host, target_port] => (Some(*bind), *port, *host, *target_port),
            _ => return Err(format!("-L {spec:?}: expected [BIND:]PORT:HOST:PORT")),
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("-L {spec:?}: {port:?} is not a port"))?;
        let bind_ip: IpAddr = match bind {
            None | Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some("*") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(address) => address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("-L {spec:?}: {address:?} is not an IP address"))?,
        };
        let target = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{target_port}")
        } else {
            format!("{host}:{target_port}")
        };
        validate_forward_target(&target).map_err(|e| format!("-L {spec:?}: {e}"))?;
        Ok(Self {
            bind: SocketAddr::new(bind_ip, port),
            target,
        })
    }
}

/// Splits on `:` outside brackets.
fn split_fields(spec: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                fields.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(&spec[start..]);
    fields
}

/// Binds every `-L` listener up front, so a busy port fails before anyone
/// is emailed.
pub async fn bind_all(specs: &[ForwardSpec]) -> Result<Vec<(TcpListener, String)>, ConnectError> {
    let mut listeners = Vec::with_capacity(specs.len());
    for spec in specs {
        let listener = TcpListener::bind(spec.bind).await.map_err(|e| {
            ConnectError::InvalidRequest(format!("cannot listen on {}: {e}", spec.bind))
        })?;
        listeners.push((listener, spec.target.clone()));
    }
    Ok(listeners)
}

/// Accepts local connections and carries each through its own tunnel,
/// sealed end to end with `secret` when the session is.
pub fn serve(
    listeners: Vec<(TcpListener, String)>,
    dialer: Dialer,
    auth: HeaderValue,
    session: String,
    secret: Option<TunnelSecret>,
    errors: tokio::sync::mpsc::UnboundedSender<String>,
) -> Vec<tokio::task::JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|(listener, target)| {
            let dialer = dialer.clone();
            let auth = auth.clone();
            let session = session.clone();
            let secret = secret.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                while let Ok((local, _)) = listener.accept().await {
                    let _ = local.set_nodelay(true);
                    let dialer = dialer.clone();
                    let mut headers = vec![
                        (AUTHORIZATION, auth.clone()),
                        (
                            HeaderName::from_static(TARGET_HEADER),
                            HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("")),
                        ),
                    ];
                    if secret.is_some() {
                        headers.push((
                            HeaderName::from_static(SEALED_HEADER),
                            HeaderValue::from_static("1"),
                        ));
                    }
                    let secret = secret.clone();
                    let path = format!("{TUNNEL_PATH_PREFIX}{session}");
                    let errors = errors.clone();
                    let target = target.clone();
                    tokio::spawn(async move {
                        match dialer.dial(&path, &headers).await {
                            Ok(tunnel) => {
                                let _ = match secret {
                                    Some(secret) => {
                                        relay_sealed(tunnel, (&secret, &target), local).await
                                    }
                                    None => doorman_relay::relay_dialed(tunnel, local).await,
                                };
                            }
                            Err(error) => {
                                let _ =
                                    errors.send(format!("forwarding to {target} failed: {error}"));
                            }
                        }
                    });
                }
            })
        })
        .collect()
}

/// A tunnel sealed end to end: out of TLS once the server switches it,
/// then the operator's end of its records.
async fn relay_sealed(
    tunnel: doorman_wire::dial::Upgraded,
    secret: (&TunnelSecret, &str),
    local: tokio::net::TcpStream,
) -> std::io::Result<(u64, u64)> {
    use doorman_relay::end_to_end::{End, relay_sealed, switched};
    let socket = switched(tunnel).await?;
    relay_sealed(socket, End::Operator, secret, local).await
}

#[cfg(test)]
mod tests {
    use super::ForwardSpec;

    #[test]
    fn parses_ssh_style_specs() {
        let spec: ForwardSpec = "5901:127.0.0.1:5900".parse().unwrap();
        assert_eq!(spec.bind, "127.0.0.1:5901".parse().unwrap());
        assert_eq!(spec.target, "127.0.0.1:5900");
        let spec: ForwardSpec = "0.0.0.0:8080:intranet.example:80".parse().unwrap();
        assert_eq!(spec.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(spec.target, "intranet.example:80");
        let spec: ForwardSpec = "[::1]:2222:[::1]:22".parse().unwrap();
        assert_eq!(spec.bind, "[::1]:2222".parse().unwrap());
        assert_eq!(spec.target, "[::1]:22");
        let spec: ForwardSpec = "0:localhost:22".parse().unwrap();
        assert_eq!(spec.bind.port(), 0);
    }

    #[test]
    fn refuses_malformed_specs() {
        for bad in [
            "5900",
            "x:host:1",
            "1:host:0",
            "1:host:x",
            "nothost:1:h:2",
            "1:2:3:4:5",
        ] {
            assert!(bad.parse::<ForwardSpec>().is_err(), "{bad}");
        }
    }
}
