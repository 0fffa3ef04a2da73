//! Doorman's session recordings: shell sessions recorded as asciicast
//! while the server relays them, stored in compressed chunks, and kept
//! within their limits.
//!
//! The map:
//!
//! - [`recording`]: a [`Recording`] in progress, the [`Tap`]s that show it
//!   the relayed bytes, and the [`Recorder`] it is stored through;
//! - [`cast`]: the asciicast stream, its compressed chunks and its reading
//!   back for playback (the `doorman-cast` crate, which the agent shares);
//! - [`sealed`]: the recordings of sessions sealed end to end, which the
//!   computer makes and seals and the server only keeps ([`SealedLog`]);
//! - [`settings`]: whether sessions are recorded, and their limits.
#![forbid(unsafe_code)]

pub use doorman_cast as cast;
pub mod recording;
pub mod sealed;
pub mod settings;

pub use recording::{Recorded, Recorder, Recording, Tap};
pub use sealed::{Measured, SealedLog};
pub use settings::{
    DEFAULT_RECORDING_MAX_BYTES, DEFAULT_RECORDINGS_KEEP_DAYS, DEFAULT_RECORDINGS_MAX_TOTAL_BYTES,
    Recordings,
};
