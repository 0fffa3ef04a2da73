//! The system calls of relaying: a pipe and splice(2) so that bulk bytes
//! between two plain sockets never enter user space (Linux), through
//! rustix, which is safe; and the crate's only `unsafe`, the socket's TCP
//! state, which tells a reset from an end, and the event loop's
//! registration of a socket. Waiting (poll(2), eventfd) goes through
//! rustix too.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Most bytes one splice moves.
const CHUNK: usize = 1 << 20;

/// A pipe that carries spliced bytes from one socket to another.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A non-blocking pipe as large as the system allows up to 1 MiB.
    #[cfg(target_os = "linux")]
    pub(super) fn new() -> io::Result<Self> {
        use rustix::pipe::PipeFlags;
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // A larger pipe moves more per call; failure only costs speed.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, CHUNK);
        Ok(Self { read, write })
    }

    /// Elsewhere bulk bytes are copied like the rest.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn new() -> io::Result<Self> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Moves what `from` has (up to 1 MiB) into the pipe.
    pub(super) fn fill(&self, from: &impl AsFd) -> io::Result<usize> {
        splice(from, &self.write, CHUNK)
    }

    /// Moves up to `len` bytes from the pipe into `to`.
    pub(super) fn drain(&self, to: &impl AsFd, len: usize) -> io::Result<usize> {
        splice(&self.read, to, len)
    }
}

/// One non-blocking splice(2) of at most `len` bytes.
#[cfg(target_os = "linux")]
fn splice(from: &impl AsFd, to: &impl AsFd, len: usize) -> io::Result<usize> {
    use rustix::pipe::SpliceFlags;
    // No SPLICE_F_MORE: it corks small writes, which would stall round trips.
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
}

#[cfg(not(target_os = "linux"))]
fn splice(_from: &impl AsFd, _to: &impl AsFd, _len: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether the kernel has closed TCP socket `socket` outright: after a
/// reset, or once both sides' FINs are through.
#[cfg(target_os = "linux")]
pub(super) fn tcp_closed(socket: &impl AsRawFd) -> bool {
    /// `TCP_CLOSE` in the kernel's `tcp_states.h`.
    const TCP_CLOSE: u8 = 7;
    // `tcpi_state` is the first byte of `struct tcp_info`; the kernel copies
    // only as much as asked for.
    let mut state = 0u8;
    let mut len: libc::socklen_t = 1;
    // SAFETY: the kernel writes at most `len` (one) byte at `state`.
    let done = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut state).cast(),
            &mut len,
        )
    };
    done == 0 && state == TCP_CLOSE
}

#[cfg(not(target_os = "linux"))]
pub(super) fn tcp_closed(_socket: &impl AsRawFd) -> bool {
    false
}

/// The event loop's readiness for `socket`, through a duplicate of its
/// descriptor that the registration owns (so it stays valid whatever
/// becomes of `socket`).
pub(super) fn readiness(
    socket: &std::net::TcpStream,
) -> io::Result<tokio::io::unix::AsyncFd<std::net::TcpStream>> {
    let owned = socket.try_clone()?;
    // SAFETY: `owned` is a descriptor of its own, open until the AsyncFd
    // drops it, and a TcpStream's `as_raw_fd` never changes.
    unsafe { tokio::io::unix::AsyncFd::register(owned) }.map_err(|error| error.into_parts().1)
}
