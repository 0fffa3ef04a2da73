//! The web console over real HTTP: signing in with the operator token (a
//! cookie that scripts cannot read and other sites cannot send), the
//! computers this operator may reach with their live online state, wrong
//! tokens counted like any other, and a session that ends on sign-out or at
//! once when the token is rotated. The terminal socket is
//! `console_terminal`.

use doorman_store::Principal;
use doorman_test_support::World;
use doorman_test_support::world::COMPUTER;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};

/// Signs in with `token`; the response.
pub(crate) async fn sign_in(world: &World, token: &str) -> reqwest::Response {
    world
        .http
        .post(format!("{}/console/sign-in", world.url))
        .form(&[("token", token)])
        .send()
        .await
        .expect("POST sign-in")
}

/// The `name=value` part of the session cookie a sign-in set.
pub(crate) fn session_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get(SET_COOKIE)
        .expect("a cookie is set")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn get(world: &World, path: &str, cookie: &str) -> (StatusCode, String) {
    let response = world
        .http
        .get(format!("{}{path}", world.url))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("GET");
    (response.status(), response.text().await.unwrap())
}

async fn computers(world: &World, cookie: &str) -> (StatusCode, Vec<serde_json::Value>) {
    let (status, body) = get(world, "/console/computers", cookie).await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_and_sees_its_computers_come_and_go() {
    let mut world = World::start().await;
    let page = world
        .http
        .get(format!("{}/console", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let text = page.text().await.unwrap();
    assert!(text.contains("Operator token"), "{text}");
    assert!(!text.contains(COMPUTER), "nothing listed before sign-in");

    let signed = sign_in(&world, &world.operator_token).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let set = signed.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(
        !set.contains(&world.operator_token),
        "the cookie is not the token"
    );
    let cookie = session_cookie(&signed);

    let (status, page) = get(&world, "/console", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Signed in as <strong>alice</strong>"),
        "{page}"
    );
    assert!(page.contains(COMPUTER), "{page}");
    assert!(page.contains("/console/assets/computers.js"), "{page}");
    let (status, listed) = computers(&world, &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], COMPUTER);
    assert_eq!(listed[0]["online"], true);
    assert_eq!(listed[0]["shell"], true);
    assert_eq!(listed[0]["email_authorization"], true);
    assert_eq!(listed[0]["desktop"], false, "no desktop in its settings");
    assert!(page.contains("asks by email"), "{page}");

    world.stop_agent().await;
    let (_, listed) = computers(&world, &cookie).await;
    assert_eq!(listed[0]["online"], false, "{listed:?}");

    let script = world
        .http
        .get(format!("{}/console/assets/computers.js", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_or_rotating_the_token_ends_the_session() {
    let world = World::start().await;
    let first = session_cookie(&sign_in(&world, &world.operator_token).await);
    let second = session_cookie(&sign_in(&world, &world.operator_token).await);
    assert_ne!(first, second);

    let out = world
        .http
        .post(format!("{}/console/sign-out", world.url))
        .header(COOKIE, &first)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _) = computers(&world, &first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed out");
    let (status, _) = computers(&world, &second).await;
    assert_eq!(status, StatusCode::OK, "the other session goes on");

    let new_token =
        doorman_server::admin::replace_secret(world.broker.store(), Principal::Operator, "alice")
            .await
            .unwrap();
    let (status, _) = computers(&world, &second).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old token's session ended"
    );
    let (_, page) = get(&world, "/console", &second).await;
    assert!(page.contains("Operator token"), "back to the sign-in form");
    let third = session_cookie(&sign_in(&world, &new_token).await);
    assert_eq!(computers(&world, &third).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_refused_counted_and_limited() {
    let world = World::start().await;
    let wrong = sign_in(&world, "dop_not-the-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That is not a valid operator token.")
    );
    let failed = world
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.event == "auth_failed")
        .expect("the failure is audited");
    assert_eq!(failed.address.as_deref(), Some("127.0.0.1"));

    let mut last = StatusCode::OK;
    for _ in 0..30 {
        last = sign_in(&world, "dop_still-not-it").await.status();
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_cannot_sign_anyone_in_or_out() {
    let world = World::start().await;
    let forged = world
        .http
        .post(format!("{}/console/sign-in", world.url))
        .header("Origin", "http://evil.example")
        .form(&[("token", world.operator_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(SET_COOKIE).is_none());

    let cookie = session_cookie(&sign_in(&world, &world.operator_token).await);
    let out = world
        .http
        .post(format!("{}/console/sign-out", world.url))
        .header(COOKIE, &cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FORBIDDEN);
    assert_eq!(computers(&world, &cookie).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_cookie_is_secure_and_host_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::builder().tls().start().await;
    let config = doorman_wire::tls::client_config(world.ca.as_deref()).unwrap();
    let tcp = tokio::net::TcpStream::connect(world.address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let body = format!("token={}", world.operator_token);
    let request = format!(
        "POST /console/sign-in HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 303"), "{response}");
    let set = response
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: "))
        .expect("a cookie");
    assert!(set.starts_with("__Host-doorman_console="), "{set}");
    assert!(set.contains("; Secure"), "{set}");
}

/// One operator signing in again and again (10,001 times, in the attack
/// that found it) ends only its own least recently used sessions, never
/// another operator's, and is soon refused for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signing_in_again_and_again_pushes_out_only_its_own_sessions() {
    use doorman_web::console::sessions::{MAX_PER_OPERATOR, MAX_SIGN_INS};
    let world = World::start().await;
    let bob_token = doorman_server::admin::add_operator(world.broker.store(), "bob")
        .await
        .unwrap();
    let bob = session_cookie(&sign_in(&world, &bob_token).await);
    let mut alice = Vec::new();
    for _ in 0..MAX_SIGN_INS {
        let signed = sign_in(&world, &world.operator_token).await;
        assert_eq!(signed.status(), StatusCode::SEE_OTHER);
        alice.push(session_cookie(&signed));
    }
    let over = sign_in(&world, &world.operator_token).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().get(SET_COOKIE).is_none());
    let text = over.text().await.unwrap();
    assert!(text.contains("Too many sign-ins"), "{text}");

    let pushed_out = alice.len() - MAX_PER_OPERATOR;
    for (n, cookie) in alice.iter().enumerate() {
        let expected = if n < pushed_out {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(computers(&world, cookie).await.0, expected, "sign-in {n}");
    }
    assert_eq!(
        computers(&world, &bob).await.0,
        StatusCode::OK,
        "bob's session goes on"
    );
    // The limit is alice's alone.
    let again = sign_in(&world, &bob_token).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_follows_the_computers_settings() {
    let world = World::builder().start().await;
    let cookie = session_cookie(&sign_in(&world, &world.operator_token).await);
    let (_, listed) = computers(&world, &cookie).await;
    assert_eq!(listed[0]["email_authorization"], true);
    assert_eq!(listed[0]["desktop"], false);

    // The owner turns email authorization off and offers the desktop.
    let text = std::fs::read_to_string(&world.agent_config).unwrap();
    let text = text
        .replace(
            "require_email_authorization = true",
            "require_email_authorization = false",
        )
        .replace("[services]\n", "[services]\ndesktop = \"127.0.0.1:5900\"\n");
    std::fs::write(&world.agent_config, text).unwrap();
    let wait = world
        .broker
        .agents()
        .wait_for_status(COMPUTER, |status| !status.email_authorization);
    // The computer reads its settings again when the server pings it.
    world.pass_a_heartbeat();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("the computer tells its new settings at the next heartbeat");
    assert!(status.desktop);
    let (_, listed) = computers(&world, &cookie).await;
    assert_eq!(listed[0]["email_authorization"], false, "{listed:?}");
    assert_eq!(listed[0]["desktop"], true, "{listed:?}");
    let (_, page) = get(&world, "/console", &cookie).await;
    assert!(page.contains("no email authorization"), "{page}");
    assert!(page.contains("/console/desktop/office-pc"), "{page}");
}
