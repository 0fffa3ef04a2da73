//! The approval pages of the story over real HTTP: GET and HEAD never
//! decide, every page carries strict security headers, and bad tokens and
//! bad forms change nothing.

use doorman_core::RequestState;
use doorman_test_support::World;
use doorman_test_support::world::{extract_nonce, request_id};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_never_decide() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    let link = mails[0].link();
    for _ in 0..3 {
        assert_eq!(
            world.http.get(&link).send().await.unwrap().status(),
            StatusCode::OK
        );
        assert!(
            world
                .http
                .head(&link)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        let with_query = format!("{link}?decision=allow");
        world.http.get(&with_query).send().await.unwrap();
    }
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Pending
    );
    let (_, page) = world.page(&link).await;
    assert!(page.contains("<form method=\"post\">"));
    assert!(page.contains(
        "<button name=\"decision\" value=\"allow\" class=\"allow\">Allow Session</button>"
    ));
    assert!(page.contains("<button name=\"decision\" value=\"deny\" class=\"deny\">Deny</button>"));
    assert!(page.contains("type=\"hidden\""));
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_strict_security_headers() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    for url in [
        mails[0].link(),
        format!("{}/a/unknown", world.url),
        format!("{}/", world.url),
    ] {
        let response = world.http.get(&url).send().await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("default-src 'none'"));
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(!body.contains("<script"), "no JavaScript");
        assert!(
            !body.contains("src=\"http") && !body.contains("href=\"https://"),
            "nothing from other hosts"
        );
    }
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_bad_forms_change_nothing() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    let link = mails[0].link();
    let unknown_page = world
        .page(&format!(
            "{}/a/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            world.url
        ))
        .await;
    assert_eq!(unknown_page.0, StatusCode::NOT_FOUND);
    for token in ["x", "%00%0d%0a", &"A".repeat(5000), "..%2F..%2Fetc"] {
        let url = format!("{}/a/{token}", world.url);
        let (status, page) = world.page(&url).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{token}");
        assert_eq!(page, unknown_page.1, "all bad tokens get the same page");
        let post = world
            .http
            .post(&url)
            .form(&[("decision", "allow"), ("nonce", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::NOT_FOUND);
    }
    // A token that almost matches (one character changed).
    let mut almost = link.clone();
    let last = almost.pop().unwrap();
    almost.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(world.page(&almost).await.0, StatusCode::NOT_FOUND);

    let page = world.page(&link).await.1;
    let nonce = extract_nonce(&page).unwrap();
    let post = |fields: Vec<(&'static str, String)>| world.http.post(&link).form(&fields).send();
    assert_eq!(
        post(vec![
            ("decision", "allow".into()),
            ("nonce", "wrong".into())
        ])
        .await
        .unwrap()
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(vec![("decision", "allow".into())])
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(vec![("decision", "maybe".into()), ("nonce", nonce.clone())])
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let huge = world
        .http
        .post(&link)
        .body(vec![b'a'; 100_000])
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert!(huge.status().is_client_error());
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Pending
    );
    drop(connecting);
}
