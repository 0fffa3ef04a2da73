//! Desktop sharing: a real VNC server (TigerVNC's Xtigervnc) on the remote
//! side, reached through `-L` after approval; an RFB client handshake must
//! go through the tunnel and read the desktop's size and name.
//!
//! Needs `Xtigervnc` (Debian's tigervnc-standalone-server, which `.ci/run`
//! installs). Without it the test says so and passes, except under CI where
//! it fails.

use doorman_client::{ForwardSpec, SessionKind};
use doorman_test_support::World;
use doorman_test_support::vnc::Vnc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The RFB 3.8 handshake up to ServerInit; returns (width, height, name).
async fn rfb_handshake(stream: &mut TcpStream) -> (u16, u16, String) {
    let mut version = [0u8; 12];
    stream.read_exact(&mut version).await.unwrap();
    assert_eq!(&version, b"RFB 003.008\n", "an RFB server greets");
    stream.write_all(b"RFB 003.008\n").await.unwrap();
    let count = stream.read_u8().await.unwrap();
    assert!(count > 0, "the server offers security types");
    let mut types = vec![0u8; usize::from(count)];
    stream.read_exact(&mut types).await.unwrap();
    assert!(
        types.contains(&1),
        "security type None is offered: {types:?}"
    );
    stream.write_u8(1).await.unwrap();
    assert_eq!(
        stream.read_u32().await.unwrap(),
        0,
        "security handshake succeeds"
    );
    stream.write_u8(1).await.unwrap(); // ClientInit: shared
    let width = stream.read_u16().await.unwrap();
    let height = stream.read_u16().await.unwrap();
    let mut pixel_format = [0u8; 16];
    stream.read_exact(&mut pixel_format).await.unwrap();
    let name_len = stream.read_u32().await.unwrap();
    let mut name = vec![0u8; usize::try_from(name_len).unwrap().min(1024)];
    stream.read_exact(&mut name).await.unwrap();
    (width, height, String::from_utf8_lossy(&name).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vnc_viewer_reaches_the_remote_desktop_through_the_tunnel() {
    let Some(vnc) = Vnc::start(800, 600, "doorman-test-desktop").await else {
        return;
    };
    let target = vnc.target.clone();

    let world = World::builder()
        .recipients(&["owner@example.com"])
        .forward(&[&target])
        .start()
        .await;
    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let mut connecting = world.connect_for(SessionKind::Forward(vec![spec]), "desktop support");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "allow").await;
    let local = connecting.forwarding_address().await;

    let mut viewer = TcpStream::connect(&local).await.unwrap();
    let (width, height, name) = rfb_handshake(&mut viewer).await;
    assert_eq!((width, height), (800, 600));
    assert!(name.contains("doorman-test-desktop"), "{name}");
    drop(viewer);
    connecting.interrupt();
    assert_eq!(connecting.finish().await, Ok(0));
    vnc.stop().await;
}
