//! Recorded sessions in the web console: an operator lists and replays the
//! recordings of their own shell sessions, and reaches no one else's, not
//! even those of an earlier operator of the same name.

use doorman_server::admin;
use doorman_store::Principal;
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
    let connecting = world.connect_shell_unsealed(Box::new(input));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    world.wait_for_audit("session_recorded").await;
    let id = world.broker.store().recordings(None, None).await.unwrap()[0].id;

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
    let bob_token = doorman_server::admin::add_operator(world.broker.store(), "bob")
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

/// Issue 29: a session started with `connect` is recorded by the computer,
/// sealed; the console lists it, says how its key holders play it, and
/// does not try to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_sealed_on_the_computer_is_listed_not_played() {
    let dir = tempfile::tempdir().unwrap();
    let recipient = doorman_test_support::age_key(&dir.path().join("key.txt"));
    let world = World::builder()
        .without_email_authorization()
        .recordings_to(&recipient)
        .start()
        .await;
    let input: &[u8] = b"echo sealed; exit 0\n";
    assert_eq!(world.connect_shell(Box::new(input)).finish().await, Ok(0));
    world.wait_for_audit("session_recorded").await;
    let id = world.broker.store().recordings(None, None).await.unwrap()[0].id;
    let alice = world.console_cookie(&world.operator_token).await;
    let text = get(&world, "/console/recordings", &alice)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!("sealed on the computer (recording {id})")),
        "{text}"
    );
    assert!(
        !text.contains(&format!("href=\"/console/recordings/{id}\"")),
        "{text}"
    );
    // Where the console starts a session, it says it is not end to end.
    let terminal = get(&world, "/console/terminal/office-pc", &alice).await;
    let terminal = terminal.text().await.unwrap();
    assert!(terminal.contains("id=\"not-end-to-end\""), "{terminal}");
    for path in [
        format!("/console/recordings/{id}"),
        format!("/console/recordings/{id}/events"),
    ] {
        let refused = get(&world, &path, &alice).await;
        assert_eq!(refused.status(), StatusCode::CONFLICT, "{path}");
        let said = refused.text().await.unwrap();
        assert!(said.contains("--identity"), "{said}");
    }
}

/// The player's events of recording `id`, as the console streams them.
async fn played(world: &World, cookie: &str, id: i64) -> Vec<serde_json::Value> {
    let events = get(world, &format!("/console/recordings/{id}/events"), cookie).await;
    assert_eq!(events.status(), StatusCode::OK);
    let cast: serde_json::Value = serde_json::from_str(&events.text().await.unwrap()).unwrap();
    assert_eq!(cast["header"]["width"], 80);
    cast["events"].as_array().unwrap().clone()
}

/// Issue 25: a shell printing 100 MB stored 250 MB of recording, and
/// playing it decoded the whole in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_stops_at_its_limit_and_the_trail_and_the_player_say_truncated() {
    let max_bytes = 600 * 1024;
    let world = World::builder()
        .without_email_authorization()
        .recordings(doorman_server::Recordings {
            max_bytes,
            ..Default::default()
        })
        .start()
        .await;
    let input: &[u8] = b"yes 0123456789abcdef | head -c 2000000; exit 0\n";
    let connecting = world.connect_shell_unsealed(Box::new(input));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    let recorded = world.wait_for_audit("session_recorded").await;
    let detail = recorded.detail.unwrap_or_default();
    assert!(detail.contains("truncated at the size limit"), "{detail}");
    let row = &world.broker.store().recordings(None, None).await.unwrap()[0];
    let size = u64::try_from(row.size.unwrap()).unwrap();
    assert!(size <= max_bytes, "{size} bytes recorded");
    assert!(size > max_bytes / 2, "recorded up to the limit: {size}");

    // Played back a stored chunk at a time: the events up to the limit, in
    // order, then the marker.
    let alice = world.console_cookie(&world.operator_token).await;
    let events = played(&world, &alice, row.id).await;
    let last = events.last().unwrap();
    assert_eq!(
        (&last[1], &last[2]),
        (&"m".into(), &doorman_recordings::cast::TRUNCATED.into())
    );
    let shown: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(shown.len() > 300_000, "{} bytes shown", shown.len());
    assert!(
        stdout.text().starts_with(&shown),
        "the start of what was shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_total_limit_the_oldest_recordings_go_first() {
    let world = World::builder()
        .without_email_authorization()
        .recordings(doorman_server::Recordings {
            max_total_bytes: 50_000,
            ..Default::default()
        })
        .start()
        .await;
    // About 30 kB stored each: random text does not compress much.
    let input: &[u8] = b"head -c 30000 /dev/urandom | base64; exit 0\n";
    let mut ids = Vec::new();
    for count in 1..=2 {
        let connecting = world.connect_shell_unsealed(Box::new(input));
        assert_eq!(connecting.finish().await, Ok(0));
        world.wait_for_audits("session_recorded", count).await;
        let newest = &world.broker.store().recordings(None, None).await.unwrap()[0];
        assert!(
            newest.stored > 20_000 && newest.stored <= 50_000,
            "{newest:?}"
        );
        ids.push(newest.id);
    }
    let kept = world.broker.store().recordings(None, None).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].id, ids[1], "the newest is kept");
    let pruned = world.wait_for_audit("recordings_pruned").await;
    let detail = pruned.detail.unwrap_or_default();
    assert!(
        detail.starts_with(&format!("recording {} of alice", ids[0])),
        "{detail}"
    );
    let alice = world.console_cookie(&world.operator_token).await;
    assert_eq!(
        get(
            &world,
            &format!("/console/recordings/{}/events", ids[0]),
            &alice
        )
        .await
        .status(),
        StatusCode::NOT_FOUND,
        "the older one is gone"
    );
}

/// Issue 25: the new bob saw the old bob's recordings. Recordings belong to
/// the operator's id: an operator removed and added again under its name
/// sees none of the old one's, whose console session is dead; the
/// administrators keep them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_added_again_under_an_old_name_sees_none_of_its_recordings() {
    let world = World::builder().without_email_authorization().start().await;
    let input: &[u8] = b"echo the-old-one; exit 0\n";
    assert_eq!(
        world.connect_shell_unsealed(Box::new(input)).finish().await,
        Ok(0)
    );
    world.wait_for_audit("session_recorded").await;
    let id = world.broker.store().recordings(None, None).await.unwrap()[0].id;
    let old = world.console_cookie(&world.operator_token).await;
    let replay = format!("/console/recordings/{id}");
    assert_eq!(get(&world, &replay, &old).await.status(), StatusCode::OK);

    admin::remove(world.broker.store(), Principal::Operator, OPERATOR)
        .await
        .unwrap();
    let token = admin::add_operator(world.broker.store(), OPERATOR)
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
    assert!(world.broker.store().recording(id).await.unwrap().is_some());
}
