//! Promises the README and SECURITY.md make, each pinned: the server key's
//! file mode and secrets kept only as hashes; every header the pages carry,
//! in full; and pages that name no host but the public URL's, whatever
//! `Host` says.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_test_support::World;
use doorman_test_support::world::extract_nonce;
use reqwest::StatusCode;
use std::os::unix::fs::PermissionsExt;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_kept_only_as_hashes_and_the_server_key_is_private() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    let data = world.dir.path().join("server");
    let mode = std::fs::metadata(data.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "server.key is {mode:o}");
    // The database files hold no secret in the clear: not the operator's
    // token, not the agent's key, not a link token.
    let link_token = mails[0].link().rsplit('/').next().unwrap().to_string();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("doorman.db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!stored.is_empty());
    for secret in [&world.operator_token, &world.agent_key, &link_token] {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is stored in the clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_every_security_header_and_names_only_the_public_url() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let link = world.smtp.wait_for(2).await[0].link();
    let unknown = format!("{}/a/not-a-token", world.url);
    let home = format!("{}/", world.url);
    let served = world.address.to_string();
    // Pages for our own name, and the 421 for another name a rebinding
    // page would send.
    for (url, host) in [link.as_str(), unknown.as_str(), home.as_str()]
        .into_iter()
        .flat_map(|url| [(url, served.as_str()), (url, "evil.example")])
    {
        let response = world
            .http
            .get(url)
            .header("host", host)
            .send()
            .await
            .unwrap();
        let misdirected = response.status() == StatusCode::MISDIRECTED_REQUEST;
        assert_eq!(misdirected, host == "evil.example", "{url} {host}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        assert_eq!(
            header("content-security-policy").as_deref(),
            Some(CSP),
            "{url}"
        );
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{url}");
        assert_eq!(
            header("referrer-policy").as_deref(),
            Some("same-origin"),
            "{url}"
        );
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{url}"
        );
        assert_eq!(
            header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{url}"
        );
        let page = response.text().await.unwrap();
        assert!(!page.contains("evil.example"), "{url}: {page}");
    }
}

/// Posts an Allow form of exactly `size` bytes (padded with a field the
/// server ignores); the response's status.
async fn form_of(world: &World, link: &str, size: usize) -> StatusCode {
    let (_, page) = world.page(link).await;
    let nonce = extract_nonce(&page).expect("a form");
    let body = format!("decision=allow&nonce={nonce}&pad=");
    let body = format!("{body}{}", "x".repeat(size - body.len()));
    assert_eq!(body.len(), size);
    world
        .http
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_form_is_read_up_to_16_kib_and_refused_beyond() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let mut over = world.connect(&["true"], "");
    let id = over.request_id().await;
    let link = world.smtp.wait_for(1).await[0].link();
    assert_eq!(
        form_of(&world, &link, 16 * 1024 + 1).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    over.interrupt();
    assert_eq!(over.finish().await, Err(ConnectError::Cancelled));

    // A whole 16 KiB is still a form, and is taken.
    let full = world.connect(&["true"], "");
    let id = full.request_id().await;
    let link = world.smtp.wait_for(2).await[1].link();
    assert_eq!(
        form_of(&world, &link, 16 * 1024).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(world.state_of(&id).await, RequestState::Allowed);
    assert_eq!(full.finish().await, Ok(0));
}
