//! Which requests the settings window answers at all: those that name the
//! window itself in `Host` (127.0.0.1, localhost or [::1], at its port),
//! exactly once. A page of another site that DNS pointed at 127.0.0.1
//! reaches nothing.

use crate::state::Shared;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Refuses a request whose `Host` is not the window's own: 400 without
/// exactly one, 421 for any other name or port.
pub(crate) async fn only_this_window(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refused) = check_host(request.headers(), state.port) {
        return refused.into_response();
    }
    next.run(request).await
}

fn check_host(headers: &HeaderMap, port: u16) -> Result<(), (StatusCode, &'static str)> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "A request must name exactly one Host.\n",
        ));
    };
    if host
        .to_str()
        .is_ok_and(|host| host_is_this_window(host, port))
    {
        return Ok(());
    }
    Err((
        StatusCode::MISDIRECTED_REQUEST,
        "This is the Doorman settings window of this computer: open it at the address `doorman settings open` gives.\n",
    ))
}

/// Whether `host` names the window listening on 127.0.0.1 at `port`, as a
/// browser on this computer writes it.
fn host_is_this_window(host: &str, port: u16) -> bool {
    let Some((name, given_port)) = host.rsplit_once(':') else {
        return false;
    };
    let port = port.to_string();
    given_port == port
        && (name == "127.0.0.1" || name == "[::1]" || name.eq_ignore_ascii_case("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_windows_own_host_and_port_are_answered() {
        let cases = [
            ("127.0.0.1:4321", true),
            ("localhost:4321", true),
            ("LocalHost:4321", true),
            ("[::1]:4321", true),
            ("127.0.0.1:4322", false),
            ("127.0.0.1:04321", false),
            ("127.0.0.1:+4321", false),
            ("127.0.0.1", false),
            ("localhost", false),
            ("attacker.example:4321", false),
            ("127.0.0.2:4321", false),
            ("localhost.:4321", false),
            ("::1:4321", false),
            ("", false),
        ];
        for (host, answered) in cases {
            assert_eq!(host_is_this_window(host, 4321), answered, "{host:?}");
        }
    }

    #[test]
    fn a_request_names_exactly_one_host() {
        let status = |hosts: &[&str]| {
            let mut headers = HeaderMap::new();
            for host in hosts {
                headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
            }
            check_host(&headers, 4321).map_err(|(status, _)| status)
        };
        assert_eq!(status(&["127.0.0.1:4321"]), Ok(()));
        assert_eq!(status(&[]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(&["127.0.0.1:4321", "127.0.0.1:4321"]),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(&["evil.example:4321"]),
            Err(StatusCode::MISDIRECTED_REQUEST)
        );
    }
}
