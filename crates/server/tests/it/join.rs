//! A computer joins with one command (issue 31): `doorman admin agent
//! invite` makes a single-use, expiring invitation; `doorman agent join`
//! redeems it for the computer's key, over TLS verified through the CA the
//! URL pins, and writes the settings the agent then runs with. Used,
//! expired, unknown and altered invitations are refused, write no file,
//! and are audited.

use doorman_agent::join::{JoinError, reserve};
use doorman_core::join::{JoinAnswers, JoinUrl};
use doorman_server::admin;
use doorman_test_support::World;
use doorman_test_support::world::COMPUTER;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);
/// A code of the right form that no invitation has.
const UNKNOWN: &str = "dji_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Invites `name` to the world's server for `valid_for`; the URL.
async fn invite(world: &World, name: &str, valid_for: Duration) -> JoinUrl {
    admin::invite(world.broker.store(), name, valid_for, None)
        .await
        .expect("invited")
        .url
}

/// Joins with `url`, writing `DIR/agent.toml` under the world's directory:
/// the settings file, and the name joined or why not.
async fn join(world: &World, url: &JoinUrl, dir: &str) -> (PathBuf, Result<String, JoinError>) {
    let config = world.dir.path().join(dir).join("agent.toml");
    let joined = match reserve(url, &config) {
        Ok(reservation) => reservation
            .redeem(url, &JoinAnswers::default())
            .await
            .map(|joined| joined.name),
        Err(error) => Err(error),
    };
    (config, joined)
}

/// The server's refusal: its status and its line.
fn refusal(joined: Result<String, JoinError>) -> (u16, String) {
    match joined {
        Err(JoinError::Refused { status, message }) => (status.as_u16(), message),
        other => panic!("not refused by the server: {other:?}"),
    }
}

/// The directory a refused join was to write into holds no file.
fn nothing_written(config: &Path) {
    let dir = config.parent().expect("a directory");
    let left: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "written: {left:?}");
}

/// Runs an agent with `config` until the test ends; returns once `name`
/// is online.
async fn run_agent(world: &World, config: PathBuf, name: &str) {
    tokio::spawn(doorman_agent::run(config, std::future::pending::<()>()));
    world.wait_for_agent(name, true).await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_computer_joins_once_and_comes_online() {
    let world = World::builder().without_email_authorization().start().await;
    let url = invite(&world, "lab-pc", DAY).await;
    assert!(
        url.expose()
            .starts_with(&format!("{}/join/dji_", world.url)),
        "{}",
        url.expose()
    );
    assert_eq!(url.ca_sha256(), None, "plain loopback has no CA to pin");

    let (config, joined) = join(&world, &url, "lab").await;
    assert_eq!(joined.unwrap(), "lab-pc");
    assert_eq!(mode(&config), 0o600);
    let settings = doorman_agent::settings_file::load(&config).unwrap();
    assert_eq!(
        (settings.server.as_str(), settings.name.as_str()),
        (world.url.as_str(), "lab-pc")
    );
    assert_eq!(settings.ca, None);
    assert!(!settings.desktop_sharing.require_email_authorization);
    let stored = world.broker.store().agent_key("lab-pc").await.unwrap();
    let key_hash = doorman_runtime::secrets::hash(settings.key.expose());
    assert_eq!(stored.expect("added").key_hash, key_hash.to_vec());
    run_agent(&world, config, "lab-pc").await;

    // Once only: the same URL again is refused and writes nothing.
    let (again, refused) = join(&world, &url, "again").await;
    let (status, message) = refusal(refused);
    assert_eq!(status, 410, "{message}");
    assert!(message.contains("this invitation was used at"), "{message}");
    assert!(
        message.contains("doorman admin agent rotate lab-pc"),
        "{message}"
    );
    nothing_written(&again);

    let events = world.audit_events().await;
    for kind in [
        "invitation_created",
        "agent_added",
        "invitation_redeemed",
        "invitation_refused",
    ] {
        assert!(
            events.iter().any(|e| e.event == kind),
            "no {kind}: {events:?}"
        );
    }
    let redeemed = events
        .iter()
        .find(|e| e.event == "invitation_redeemed")
        .unwrap();
    assert_eq!(redeemed.computer.as_deref(), Some("lab-pc"));
    assert_eq!(redeemed.address.as_deref(), Some("127.0.0.1"));
    let text = format!("{events:?}");
    assert!(!text.contains(url.code()), "the code is never audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unknown_and_taken_invitations_are_refused_and_write_nothing() {
    let world = World::builder().without_email_authorization().start().await;
    let store = &world.broker.store();

    let late = invite(&world, "late-pc", Duration::from_secs(60)).await;
    world.clock().advance(Duration::from_secs(120));
    let (config, refused) = join(&world, &late, "late").await;
    let (status, message) = refusal(refused);
    assert_eq!(status, 410, "{message}");
    assert!(message.contains("this invitation expired at"), "{message}");
    nothing_written(&config);

    let unknown = JoinUrl::new(&world.url, UNKNOWN, None).unwrap();
    let (config, refused) = join(&world, &unknown, "unknown").await;
    let (status, message) = refusal(refused);
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("no such invitation"), "{message}");
    nothing_written(&config);

    // The name was taken after the invitation was made.
    let twin = invite(&world, "twin-pc", DAY).await;
    admin::add_agent(store, "twin-pc").await.unwrap();
    let (config, refused) = join(&world, &twin, "twin").await;
    let (status, message) = refusal(refused);
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("\"twin-pc\" was added since"), "{message}");
    nothing_written(&config);

    // An invitation is made for a free name only, for a minute to 30 days.
    let taken = admin::invite(store, COMPUTER, DAY, None).await.unwrap_err();
    assert!(taken.to_string().contains("already exists"), "{taken}");
    let short = admin::invite(store, "x", Duration::from_secs(30), None).await;
    assert!(
        short
            .unwrap_err()
            .to_string()
            .contains("1 minute to 30 days")
    );
    let bad = admin::invite(store, "bad name", DAY, None).await;
    assert!(bad.unwrap_err().to_string().contains("invalid name"));

    let refused = world.wait_for_audits("invitation_refused", 3).await;
    let computers: Vec<Option<&str>> = refused.iter().map(|e| e.computer.as_deref()).collect();
    assert_eq!(computers, [Some("late-pc"), None, Some("twin-pc")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_invitation_codes_counts_like_guessing_links_and_get_redeems_nothing() {
    let world = World::builder().without_email_authorization().start().await;
    let url = invite(&world, "lab-pc", DAY).await;
    let page = world.http.get(url.expose()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("doorman agent join"));
    for attempt in 0..30 {
        let guess = format!("{}/join/dji_{attempt}", world.url);
        let status = world.http.post(&guess).send().await.unwrap().status();
        assert_eq!(status, 404, "guess {attempt}");
    }
    let limited = world
        .http
        .post(format!("{}/join/{UNKNOWN}", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.text().await.unwrap().contains("wait 10 minutes"));
    // A real invitation still works from the same address, and the GET
    // before it used nothing.
    let (_, joined) = join(&world, &url, "lab").await;
    assert_eq!(joined.unwrap(), "lab-pc");
}

/// The server redeemed the invitation, but the settings could not be
/// written (here: a file appeared at their path meanwhile): the computer
/// is added and its key lost, and the error says so and what to do, not
/// "nothing was written".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_unwritten_after_the_join_say_the_key_is_lost_and_what_to_do() {
    let world = World::builder().without_email_authorization().start().await;
    let url = invite(&world, "lab-pc", DAY).await;
    let config = world.dir.path().join("late").join("agent.toml");
    let reservation = reserve(&url, &config).expect("reserved");
    std::fs::write(&config, "mine").unwrap();
    let error = reservation
        .redeem(&url, &JoinAnswers::default())
        .await
        .expect_err("the settings cannot be written");
    assert!(
        matches!(&error, JoinError::Unsaved { name, .. } if name == "lab-pc"),
        "{error:?}"
    );
    let said = error.to_string();
    assert!(said.contains("was created meanwhile"), "{said}");
    assert!(said.contains("doorman admin agent rotate lab-pc"), "{said}");
    assert!(!said.contains("nothing was written"), "{said}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "mine");
    let stored = world.broker.store().agent_key("lab-pc").await.unwrap();
    assert!(stored.is_some(), "the server added the computer");
}

/// Invited twice (the first line thought lost), the computer joins with
/// one: the other expires then, so that once the computer is removed
/// nobody joins under its name (and its grants) with the old line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_ends_the_other_invitations_for_its_name() {
    let world = World::builder().without_email_authorization().start().await;
    let lost = invite(&world, "lab-pc", DAY).await;
    let url = invite(&world, "lab-pc", DAY).await;
    let (_, joined) = join(&world, &url, "lab").await;
    assert_eq!(joined.unwrap(), "lab-pc");
    let store = &world.broker.store();
    admin::remove(store, doorman_store::Principal::Agent, "lab-pc")
        .await
        .unwrap();
    let (config, refused) = join(&world, &lost, "lost").await;
    let (status, message) = refusal(refused);
    assert_eq!(status, 410, "{message}");
    assert!(message.contains("this invitation expired at"), "{message}");
    nothing_written(&config);
    assert!(store.agent_key("lab-pc").await.unwrap().is_none());
}

/// `invite --public-url` names the server as the computers reach it,
/// which may not be the public URL's name: the join is redeemed under it,
/// while a browser naming it (DNS rebinding) is still misdirected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_for_another_name_of_the_server_is_redeemed_under_it() {
    let world = World::builder().without_email_authorization().start().await;
    let other = "https://doorman.internal:8443";
    let url = admin::invite(world.broker.store(), "lab-pc", DAY, Some(other))
        .await
        .expect("invited")
        .url;
    assert_eq!(url.origin(), other);
    let redeem = |origin: Option<&str>| {
        let mut request = world
            .http
            .post(format!("{}{}", world.url, url.path()))
            .header("host", "doorman.internal:8443");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let browser = redeem(Some(other)).await.unwrap();
    assert_eq!(browser.status(), 421);
    let joined = redeem(None).await.unwrap();
    assert_eq!(joined.status(), 200);
    let joined: doorman_core::join::Joined =
        serde_json::from_str(&joined.text().await.unwrap()).unwrap();
    assert_eq!(joined.name, "lab-pc");
    assert!(
        world
            .broker
            .store()
            .agent_key("lab-pc")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_computers_with_one_invitation_at_once_get_one_key() {
    let world = World::builder().without_email_authorization().start().await;
    let url = invite(&world, "lab-pc", DAY).await;
    let (a, b) = tokio::join!(join(&world, &url, "a"), join(&world, &url, "b"));
    let written = [&a.0, &b.0].iter().filter(|config| config.exists()).count();
    let joined = [a.1, b.1].iter().filter(|joined| joined.is_ok()).count();
    assert_eq!((joined, written), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_computer_trusts_the_server_through_the_pinned_ca_alone() {
    let world = World::builder()
        .tls()
        .without_email_authorization()
        .start()
        .await;
    let url = invite(&world, "lab-pc", DAY).await;
    let ca = world.ca.clone().expect("a TLS world's CA");
    let der = doorman_wire::tls::load_certificates(&ca).unwrap().remove(0);
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    assert_eq!(
        url.ca_sha256().expect("the URL pins the CA").as_slice(),
        digest.as_ref()
    );

    // Another hash: the server's certificates do not match it, so the code
    // is never sent; nothing is written and the invitation stays unused.
    let mut other = url.ca_sha256().unwrap();
    other[31] ^= 1;
    let altered = JoinUrl::new(url.origin(), url.code(), Some(other)).unwrap();
    let (config, refused) = join(&world, &altered, "altered").await;
    match refused {
        Err(JoinError::Dial(error)) => {
            let said = error.to_string();
            assert!(said.contains("the join URL pins by its SHA-256"), "{said}");
        }
        other => panic!("not refused by the pin: {other:?}"),
    }
    nothing_written(&config);
    // Without the pin, the test CA is no root this machine trusts.
    let unpinned = JoinUrl::new(url.origin(), url.code(), None).unwrap();
    let (config, refused) = join(&world, &unpinned, "unpinned").await;
    assert!(matches!(refused, Err(JoinError::Dial(_))), "{refused:?}");
    nothing_written(&config);

    let (config, joined) = join(&world, &url, "lab").await;
    assert_eq!(joined.unwrap(), "lab-pc");
    let written_ca = config.with_file_name("agent.ca.pem");
    assert_eq!(
        doorman_wire::tls::load_certificates(&written_ca).unwrap(),
        vec![der]
    );
    assert_eq!((mode(&config), mode(&written_ca)), (0o600, 0o600));
    let settings = doorman_agent::settings_file::load(&config).unwrap();
    assert_eq!(settings.ca, Some(written_ca));
    run_agent(&world, config, "lab-pc").await;
}
