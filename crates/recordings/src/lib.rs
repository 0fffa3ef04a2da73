//! Doorman's session recordings: shell sessions recorded as asciicast
//! while the server relays them, stored in compressed chunks, and kept
//! within their limits.
//!
//! The map:
//!
//! - [`recording`]: a [`Recording`] in progress, the [`Tap`]s that show it
//!   the relayed bytes, and the [`Recorder`] it is stored through;
//! - [`cast`]: the asciicast stream, its compressed chunks and its reading
//!   back for playback;
//! - [`settings`]: whether sessions are recorded, and their limits.
#![forbid(unsafe_code)]

pub mod cast;
pub mod recording;
pub mod settings;

pub use recording::{Recorded, Recorder, Recording, Tap};
pub use settings::{
    DEFAULT_RECORDING_MAX_BYTES, DEFAULT_RECORDINGS_KEEP_DAYS, DEFAULT_RECORDINGS_MAX_TOTAL_BYTES,
    Recordings,
};
