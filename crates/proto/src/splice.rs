//! Zero-copy relaying of two plain TCP sockets with splice(2) through a
//! pipe, so that relayed bytes never enter user space (Linux only), on the
//! event loop: the relay for connections beyond the threaded ones
//! ([`crate::threaded`]), which borrows this module's system calls.
//!
//! This module uses `unsafe` for the system calls it needs (`pipe2`,
//! `splice`, `shutdown`, `getsockopt(TCP_INFO)`) on descriptors owned by live
//! sockets; every other part of the crate stays safe. Readiness comes from
//! tokio: `readable()`/`writable()`, then a non-blocking splice inside
//! `try_io`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes one splice moves.
pub(crate) const CHUNK: usize = 1 << 20;

pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
}

impl Pipe {
    /// A pipe as large as the system allows up to [`CHUNK`]; `nonblocking`
    /// for use under an event loop.
    pub(crate) fn new(nonblocking: bool) -> io::Result<Self> {
        let mut fds = [0i32; 2];
        let flags = if nonblocking {
            libc::O_NONBLOCK | libc::O_CLOEXEC
        } else {
            libc::O_CLOEXEC
        };
        // SAFETY: `fds` has room for the two descriptors pipe2(2) writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A larger pipe moves more per call; failure only costs speed.
        // SAFETY: a plain fcntl on a descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok(Self { read, write })
    }
}

/// One splice(2) of at most `len` bytes; `nonblocking` for the pipe side
/// (the sockets' side follows their own mode).
pub(crate) fn splice(from: i32, to: i32, len: usize, nonblocking: bool) -> io::Result<usize> {
    // No SPLICE_F_MORE: it corks small writes, which would stall round trips.
    let mut flags = libc::SPLICE_F_MOVE;
    if nonblocking {
        flags |= libc::SPLICE_F_NONBLOCK;
    }
    // SAFETY: both descriptors are open for the duration of the call; null
    // offsets are required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether the kernel has closed TCP socket `fd` outright: after a reset, or
/// once both sides' FINs are through (TIME_WAIT leaves the socket closed).
pub(crate) fn tcp_closed(fd: i32) -> bool {
    /// `TCP_CLOSE` in the kernel's `tcp_states.h`.
    const TCP_CLOSE: u8 = 7;
    // `tcpi_state` is the first byte of `struct tcp_info`; the kernel copies
    // only as much as asked for.
    let mut state = 0u8;
    let mut len: libc::socklen_t = 1;
    // SAFETY: the kernel writes at most `len` (one) byte at `state`.
    let done = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut state).cast(),
            &mut len,
        )
    };
    done == 0 && state == TCP_CLOSE
}

/// Moves bytes from `from` to `to` until `from` ends, then half-closes `to`.
async fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let pipe = Pipe::new(true)?;
    let mut total = 0u64;
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK, true)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // SAFETY: shutdown(2) on a socket descriptor we borrow.
            unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left, true)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// Relays `a` ↔ `b` until both directions end; returns the bytes moved each
/// way.
pub async fn relay(a: TcpStream, b: TcpStream) -> io::Result<(u64, u64)> {
    // An error either way (a reset) ends both: dropping the sockets resets
    // them, so each peer learns at once. A clean end of one direction only
    // half-closes the other side.
    let relayed = tokio::try_join!(pump(&a, &b), pump(&b, &a));
    if relayed.is_err() {
        let _ = a.set_zero_linger();
        let _ = b.set_zero_linger();
    }
    relayed
}
