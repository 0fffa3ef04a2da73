//! What a non-blocking read found, and which errors mean "not now": shared
//! by the plain and TLS sides and the sealed side of a handover.

use std::io;

/// What a read found.
pub(crate) enum Got {
    Data(usize),
    End,
    WouldBlock,
}

pub(crate) fn would_block(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
