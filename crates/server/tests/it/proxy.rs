//! Behind a reverse proxy: with `--trusted-proxy`, recipients, the audit
//! trail and the bad-link limit see each client's own address from
//! `X-Forwarded-For`; without it, the header is ignored and a forwarded
//! request is never taken for a local one.

use doorman_core::RequestState;
use doorman_test_support::World;
use doorman_test_support::front::Front;
use doorman_test_support::world::extract_nonce;
use reqwest::StatusCode;

const OPERATOR_IP: &str = "198.51.100.7";
const RECIPIENT_IP: &str = "203.0.113.9";

fn audited_addresses(events: &[doorman_store::AuditEvent], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == kind)
        .filter_map(|e| e.address.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_everyone_is_seen_by_their_own_address() {
    let world = World::builder()
        .trusted_proxies(&["127.0.0.1"])
        .start()
        .await;
    let front = Front::forwarding_for(world.address, OPERATOR_IP).await;
    let connecting = world.connect_through(&front.url(), &["true"]);
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    assert!(mails[0].text().contains(OPERATOR_IP), "{}", mails[0].text());
    let link = mails[0].link();

    // The recipient's browser comes through the proxy too.
    let page = world
        .http
        .get(&link)
        .header("x-forwarded-for", RECIPIENT_IP)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("<dd>{OPERATOR_IP}</dd>")), "{page}");
    let nonce = extract_nonce(&page).unwrap();
    let response = world
        .http
        .post(&link)
        .header("x-forwarded-for", RECIPIENT_IP)
        .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(world.state_of(&id).await, RequestState::Allowed);

    let events = world.audit_events().await;
    assert_eq!(audited_addresses(&events, "requested"), [OPERATOR_IP]);
    assert_eq!(audited_addresses(&events, "page_viewed"), [RECIPIENT_IP]);
    assert_eq!(audited_addresses(&events, "allowed"), [RECIPIENT_IP]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_are_counted_per_client_behind_a_trusted_proxy() {
    let world = World::builder()
        .trusted_proxies(&["127.0.0.0/8"])
        .start()
        .await;
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let link = world.smtp.wait_for(2).await[0].link();
    let get = |url: String, client: &'static str| {
        let request = world.http.get(url).header("x-forwarded-for", client);
        async move { request.send().await.unwrap().status() }
    };
    for i in 0..30 {
        let guess = format!("{}/a/guess{i:040}", world.url);
        assert_eq!(get(guess, "192.0.2.66").await, StatusCode::NOT_FOUND);
    }
    let guess = format!("{}/a/one-more", world.url);
    assert_eq!(
        get(guess.clone(), "192.0.2.66").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy is not limited.
    assert_eq!(get(guess, RECIPIENT_IP).await, StatusCode::NOT_FOUND);
    assert_eq!(get(link, RECIPIENT_IP).await, StatusCode::OK);
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trust_forwarded_addresses_are_ignored() {
    let world = World::start().await;
    let front = Front::forwarding_for(world.address, OPERATOR_IP).await;
    let connecting = world.connect_through(&front.url(), &["true"]);
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    assert!(!mails[0].text().contains(OPERATOR_IP));
    let response = world
        .http
        .get(mails[0].link())
        .header("x-forwarded-for", RECIPIENT_IP)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = world.audit_events().await;
    assert_eq!(audited_addresses(&events, "requested"), ["127.0.0.1"]);
    assert_eq!(audited_addresses(&events, "page_viewed"), ["127.0.0.1"]);
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_not_shown_to_clients_a_local_proxy_forwards() {
    let world = World::start().await;
    let outbox = format!("{}/outbox", world.url);
    let local = world.http.get(&outbox).send().await.unwrap();
    assert_eq!(local.status(), StatusCode::OK);
    for (name, value) in [
        ("x-forwarded-for", RECIPIENT_IP),
        ("forwarded", "for=203.0.113.9"),
        ("x-real-ip", RECIPIENT_IP),
    ] {
        let forwarded = world.http.get(&outbox).header(name, value);
        let status = forwarded.send().await.unwrap().status();
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}");
    }
}
