//! What the settings window's handlers share: the settings file it edits,
//! who may use it ([`crate::access`]), the port its `Host` must name, when
//! the page's session last asked something, and the one passkey enrolment
//! the page started ([`crate::passkeys`]). When the window stops is the
//! window's own business; it reads [`WindowState::idle_ends`] for that.

use crate::access::Access;
use crate::passkeys::EnrolmentSlot;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The state as the handlers hold it.
pub(crate) type Shared = Arc<WindowState>;

/// What the page's handlers share.
pub(crate) struct WindowState {
    pub config: PathBuf,
    pub access: Access,
    /// The port the window listens on: the only one its `Host` may name.
    pub port: u16,
    idle: Duration,
    /// When the page's session last asked something.
    last_used: Mutex<Instant>,
    /// The passkey enrolment the page started, if any.
    pub enrolment: EnrolmentSlot,
}

impl WindowState {
    /// The state of a window listening at `port` and opened at `now`, which
    /// counts as the session's last use.
    pub fn new(
        config: PathBuf,
        access: Access,
        port: u16,
        idle: Duration,
        now: Instant,
    ) -> WindowState {
        WindowState {
            config,
            access,
            port,
            idle,
            last_used: Mutex::new(now),
            enrolment: EnrolmentSlot::default(),
        }
    }

    /// Whether `presented` is the page's session secret; when it is, the
    /// window stays open a while longer. Nothing else keeps it open.
    pub fn authorized(&self, presented: &str) -> bool {
        let ok = self.access.session_ok(presented);
        if ok {
            self.touch();
        }
        ok
    }

    /// The page's session was just opened or used.
    pub fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// When the page's session will have asked nothing for the idle time
    /// (none if that lies beyond what an `Instant` holds).
    pub fn idle_ends(&self) -> Option<Instant> {
        let last_used = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        last_used.checked_add(self.idle)
    }
}
