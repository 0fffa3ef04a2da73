//! The yardstick for a three-hop relay: a chain of three minimal relays,
//! each moving bytes with splice(2) through a pipe in each direction, a
//! thread per direction.
// splice(2) and pipe(2) through libc: the yardstick is as bare as a relay
// gets, so it calls them directly.
#![allow(unsafe_code)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::AsRawFd;

/// A minimal relay: splice(2) through a pipe in each direction.
fn splice_relay(upstream: SocketAddr) -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = StdStream::connect(upstream) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || splice_pump(&client, &server));
            std::thread::spawn(move || splice_pump(&s2, &c2));
        }
    });
    address
}

fn splice_pump(from: &StdStream, to: &StdStream) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return;
    }
    // No SPLICE_F_MORE: it corks small writes, which would stall round trips.
    let flags = libc::SPLICE_F_MOVE;
    loop {
        // SAFETY: valid descriptors, null offsets (sockets and pipes have none).
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                fds[1],
                std::ptr::null_mut(),
                1 << 20,
                flags,
            )
        };
        if n <= 0 {
            break;
        }
        let mut left = n;
        while left > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    fds[0],
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    left as usize,
                    flags,
                )
            };
            if m <= 0 {
                left = -1;
                break;
            }
            left -= m;
        }
        if left < 0 {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    // SAFETY: closing the pipe this function created.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// Three [`splice_relay`]s in a row in front of `target`: the address of
/// the first.
pub fn splice_chain(target: SocketAddr) -> SocketAddr {
    let third = splice_relay(target);
    let second = splice_relay(third);
    splice_relay(second)
}
