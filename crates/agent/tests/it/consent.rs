//! The local-consent socket is the agent's or nobody's (issue 25): a client
//! talks only to a socket its own user serves, and sends nothing to any
//! other; an agent whose settings ask for local consent does not start
//! when something else holds its socket's path. Without a listening agent
//! the client says the agent is not running (issue 31).

use doorman_agent::consent::{self, ConsentError, ConsentRequest, ConsentResponse};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Whatever sits at a consent socket's path: it answers every client with
/// an empty list, and reports each line it was sent (empty when the client
/// sent nothing before closing).
fn stand_in(listener: UnixListener) -> mpsc::UnboundedReceiver<String> {
    let (heard, hearing) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (reader, mut writer) = stream.into_split();
            let _ = writer
                .write_all(b"{\"result\":\"waiting\",\"requests\":[]}\n")
                .await;
            let mut line = String::new();
            let _ = BufReader::new(reader).read_line(&mut line).await;
            let _ = heard.send(line);
        }
    });
    hearing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_socket_served_by_another_user_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.consent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // This process serves the socket: its file is this user's.
    let this_user = std::fs::metadata(&path).unwrap().uid();
    let mut heard = stand_in(listener);

    // The socket's server is not who the client expects: what a client
    // meets when another user bound the path first.
    let another_user = this_user.wrapping_add(1);
    let error = consent::call_expecting(&path, &ConsentRequest::List, another_user)
        .await
        .expect_err("another user's socket is not talked to");
    let ConsentError::NotTheAgent { peer, own, .. } = &error else {
        panic!("refused for another reason: {error:?}");
    };
    assert_eq!((*peer, *own), (this_user, another_user));
    let message = error.to_string();
    assert!(
        message.contains("refusing the consent socket")
            && message.contains(&path.display().to_string())
            && !message.contains('\n'),
        "{message}"
    );
    let sent = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .expect("the stand-in sees the client go")
        .expect("a client came");
    assert_eq!(sent, "", "nothing was sent to the stand-in");

    // Served by this user: talked to.
    let answered = consent::call(&path, &ConsentRequest::List).await;
    assert!(
        matches!(answered, Ok(ConsentResponse::Waiting { ref requests }) if requests.is_empty()),
        "{answered:?}"
    );
    let sent = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .expect("the stand-in hears the request")
        .expect("the request");
    assert!(sent.contains("\"command\":\"list\""), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asking_for_local_consent_does_not_start_without_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    // Something else holds the socket's path.
    let taken = dir.path().join("taken.sock");
    std::fs::write(&taken, "not the agent's").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"http://127.0.0.1:9\"\nname = \"pc\"\nkey = \"{KEY}\"\nconsent_socket = {:?}\n\n\
             [desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\nlocal_consent = \"required\"\n",
            taken.display().to_string()
        ),
    )
    .unwrap();
    let ran = tokio::time::timeout(
        Duration::from_secs(20),
        doorman_agent::run(config, std::future::pending()),
    )
    .await
    .expect("the agent stops at start instead of running without its socket");
    let error = ran.expect_err("the agent does not run");
    assert!(
        matches!(error, doorman_agent::AgentError::ConsentSocket { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("local consent is on") && message.contains(&taken.display().to_string()),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(&taken).unwrap(),
        "not the agent's",
        "what held the path is left alone"
    );
}

/// Issue 31: the socket's file goes with the agent, and a client finding
/// none (or one nobody listens on) is told the agent is not running. A
/// socket another agent bound at the path since is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_listening_agent_the_client_says_it_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.consent.sock");
    let error = consent::call(&path, &ConsentRequest::Status)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, ConsentError::NotRunning { .. }),
        "{error:?}"
    );
    let expected = format!(
        "the agent is not running: nothing answers at {}",
        path.display()
    );
    assert!(error.to_string().starts_with(&expected), "{error}");

    let (listener, file) = consent::listen(&path).unwrap();
    assert!(path.exists());
    drop(listener);
    // A socket file nobody listens on: what a killed agent leaves.
    let error = consent::call(&path, &ConsentRequest::Status)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, ConsentError::NotRunning { .. }),
        "{error:?}"
    );
    drop(file);
    assert!(!path.exists(), "the socket went with its agent");

    let (_listener, file) = consent::listen(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let _another = UnixListener::bind(&path).unwrap();
    drop(file);
    assert!(path.exists(), "another agent's socket stays");
}

/// An agent that takes a request and never answers (stuck, or something
/// that only looks like it) does not hold `doorman consent`, the settings
/// window or the tray forever: the client gives up after its deadline and
/// says so.
#[tokio::test(start_paused = true)]
async fn a_consent_socket_that_never_answers_is_given_up_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.consent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let error = consent::call(&path, &ConsentRequest::List)
        .await
        .expect_err("no answer");
    let ConsentError::Unreachable { source, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{error}");
    assert!(
        error.to_string().contains("no answer within 10 s"),
        "{error}"
    );
}
