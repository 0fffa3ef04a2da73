//! Sessions with a Windows computer: commands with their output and exit
//! status (and the owner's `notify_command` by cmd.exe), a shell in a
//! pseudo-console (ConPTY; Wine's cannot resize, so resizing is not
//! tested here), forwards, and the desktop of a VNC server in the web
//! console.

use super::{COMPUTER, exe_or_skip};
use doorman_client::{ForwardSpec, SessionKind};
use doorman_test_support::wine::WindowsAgent;
use doorman_test_support::world::World;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_runs_commands_with_their_output_and_exit_status() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder()
        .without_email_authorization()
        .notify_command("echo %DOORMAN_EVENT% %DOORMAN_OPERATOR%>> notified.txt");
    let world = builder.clone().start().await;
    let agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    let echo = world.connect_to(
        COMPUTER,
        &world.operator_token,
        &["cmd", "/c", "echo hello from windows"],
        "",
    );
    let stdout = echo.stdout.clone();
    assert_eq!(echo.finish().await, Ok(0));
    assert_eq!(stdout.text(), "hello from windows\r\n");

    let failing = world.connect_to(
        COMPUTER,
        &world.operator_token,
        &["cmd", "/c", "exit 7"],
        "",
    );
    assert_eq!(failing.finish().await, Ok(7));

    // The owner's notify_command runs there too, by cmd.exe, for each
    // event in turn.
    let notified = agent.dir.path().join("notified.txt");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let said = loop {
        let said = std::fs::read_to_string(&notified).unwrap_or_default();
        if said.matches("session_ended").count() >= 2 || tokio::time::Instant::now() > deadline {
            break said;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(said.contains("session_started alice"), "{said:?}");
    assert_eq!(said.matches("session_ended").count(), 2, "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_opens_a_shell_in_a_pseudo_console() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder().without_email_authorization();
    let world = builder.clone().start().await;
    let _agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    // Typed ahead, as keys: Enter is a carriage return on a console.
    let typed: &[u8] =
        b"set /a 6*7 > nul & echo shell-%PROCESSOR_ARCHITECTURE%-%CD:~1,1%\rexit 5\r";
    let shell = SessionKind::Shell {
        term: "xterm-256color".into(),
        rows: 24,
        cols: 80,
    };
    let connecting =
        world.connect_with(COMPUTER, &world.operator_token, shell, "", Box::new(typed));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(5), "{}", stdout.text());
    // The console's screen, as terminal text: the command echoed at the
    // prompt, then its output, in the user's profile folder (C:\...).
    let screen = stdout.text();
    assert!(screen.contains("shell-AMD64-:"), "{screen:?}");
    assert!(screen.contains("\x1b["), "terminal text: {screen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_forwards_to_a_local_service() {
    let Some(exe) = exe_or_skip() else { return };
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    let builder = World::builder()
        .without_email_authorization()
        .forward(&[&target]);
    let world = builder.clone().start().await;
    let _agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let forwarding = world.connect_with(
        COMPUTER,
        &world.operator_token,
        SessionKind::Forward(vec![spec]),
        "",
        Box::new(tokio::io::empty()),
    );
    let local = forwarding.forwarding_address().await;
    let tunnel = TcpStream::connect(local).await.unwrap();
    let (mut reader, mut writer) = tunnel.into_split();
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; sent.len()];
    let (written, read) = tokio::join!(writer.write_all(&sent), reader.read_exact(&mut back));
    written.unwrap();
    read.unwrap();
    assert_eq!(back, sent, "the bytes came back through the Windows agent");
}

/// The desktop: the web console's viewer reaches the VNC server the
/// Windows computer's settings name (`[services] desktop`), after the
/// email's Allow; the server's greeting comes back through its socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_shows_its_desktop_in_the_console() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(exe) = exe_or_skip() else { return };
    let Some(vnc) = doorman_test_support::vnc::Vnc::start(640, 480, "win-desktop").await else {
        return;
    };
    let builder = World::builder()
        .recipients(&["it@example.com"])
        .desktop(&vnc.target);
    let world = builder.clone().start().await;
    let _agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    let signed_in = world
        .http
        .post(format!("{}/console/sign-in", world.url))
        .form(&[("token", world.operator_token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let url = format!(
        "{}/console/socket?computer={COMPUTER}&kind=desktop",
        world.url.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("Origin", world.url.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "allow").await;
    let mut screen = Vec::new();
    let greeted = async {
        while !screen.starts_with(b"RFB 003.008\n") {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => screen.extend_from_slice(&bytes),
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), greeted)
        .await
        .expect("the VNC server's greeting within 30 s");
    // The viewer answers; the server goes on to its security types.
    socket
        .send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await
        .unwrap();
    let offered = async {
        loop {
            if let Some(Ok(Message::Binary(bytes))) = socket.next().await {
                return bytes;
            }
        }
    };
    let types = tokio::time::timeout(Duration::from_secs(30), offered)
        .await
        .expect("security types");
    assert!(!types.is_empty() && types[0] > 0, "{types:?}");
    drop(socket);
    vnc.stop().await;
}
