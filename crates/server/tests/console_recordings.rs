//! Recorded sessions in the web console: an operator lists and replays the
//! recordings of their own shell sessions, and reaches no one else's, not
//! even those of an earlier operator of the same name.

use doorman_server::admin;
use doorman_server::store::Principal;
use doorman_test_support::World;
use doorman_test_support::world::OPERATOR;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE};

async fn get(world: &World, path: &str, cookie: &str) -> reqwest::Response {
    world
        .http
        .get(format!("{}{path}", world.url))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_their_own_recordings_and_no_one_elses() {
    let world = World::builder().without_email_authorization().start().await;
    let input: &[u8] = b"echo shown-in-the-console; exit 0\n";
    let connecting = world.connect_shell(Box::new(input));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    world.wait_for_audit("session_recorded").await;
    let id = world.broker.store.recordings(None, None).await.unwrap()[0].id;

    let alice = world.console_cookie(&world.operator_token).await;
    let list = get(&world, "/console/recordings", &alice).await;
    assert_eq!(list.status(), StatusCode::OK);
    let text = list.text().await.unwrap();
    assert!(
        text.contains(&format!("href=\"/console/recordings/{id}\"")),
        "{text}"
    );
    let player = get(&world, &format!("/console/recordings/{id}"), &alice).await;
    assert_eq!(player.status(), StatusCode::OK);
    let policy = player.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let events = get(&world, &format!("/console/recordings/{id}/events"), &alice).await;
    assert_eq!(events.status(), StatusCode::OK);
    let cast: serde_json::Value = serde_json::from_str(&events.text().await.unwrap()).unwrap();
    assert_eq!(cast["header"]["width"], 80);
    let shown: String = cast["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert_eq!(shown, stdout.text());

    // Another operator sees none of it.
    let bob_token = doorman_server::admin::add_operator(&world.broker.store, "bob")
        .await
        .unwrap();
    let bob = world.console_cookie(&bob_token).await;
    let list = get(&world, "/console/recordings", &bob).await;
    assert!(
        list.text()
            .await
            .unwrap()
            .contains("No recorded session yet.")
    );
    for path in [
        format!("/console/recordings/{id}"),
        format!("/console/recordings/{id}/events"),
        "/console/recordings/not-a-number/events".to_string(),
    ] {
        assert_eq!(
            get(&world, &path, &bob).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Signed out, nothing at all.
    let events = world
        .http
        .get(format!("{}/console/recordings/{id}/events", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::UNAUTHORIZED);
}

/// Issue 25: the new bob saw the old bob's recordings. Recordings belong to
/// the operator's id: an operator removed and added again under its name
/// sees none of the old one's, whose console session is dead; the
/// administrators keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_added_again_under_an_old_name_sees_none_of_its_recordings() {
    let world = World::builder().without_email_authorization().start().await;
    let input: &[u8] = b"echo the-old-one; exit 0\n";
    assert_eq!(world.connect_shell(Box::new(input)).finish().await, Ok(0));
    world.wait_for_audit("session_recorded").await;
    let id = world.broker.store.recordings(None, None).await.unwrap()[0].id;
    let old = world.console_cookie(&world.operator_token).await;
    let replay = format!("/console/recordings/{id}");
    assert_eq!(get(&world, &replay, &old).await.status(), StatusCode::OK);

    admin::remove(&world.broker.store, Principal::Operator, OPERATOR)
        .await
        .unwrap();
    let token = admin::add_operator(&world.broker.store, OPERATOR)
        .await
        .unwrap();
    let events = format!("/console/recordings/{id}/events");
    assert_eq!(
        get(&world, &events, &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let new = world.console_cookie(&token).await;
    let list = get(&world, "/console/recordings", &new).await;
    assert!(
        list.text()
            .await
            .unwrap()
            .contains("No recorded session yet.")
    );
    for path in [&replay, &events] {
        assert_eq!(
            get(&world, path, &new).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert!(world.broker.store.recording(id).await.unwrap().is_some());
}
