//! Who is signed in to the web console: a random cookie per sign-in, kept
//! only as its hash, with the operator (its id: the session is that
//! operator's, not its name's) and the hash of the token the operator signed
//! in with. A session ends on sign-out, after the idle time, or at once when
//! that token is rotated or the operator removed (checked on every use).
//! Sessions live in this server's memory: a restart or a replica taking over
//! asks everyone to sign in again.

use crate::secrets;
use crate::store::OperatorId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions kept at most; the oldest idle ones make room.
const MAX_SESSIONS: usize = 10_000;

/// The console's cookie prefix, so that a leaked value is recognisable.
const COOKIE_PREFIX: &str = "dcs_";

/// An operator signed in to the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub operator: String,
    pub operator_id: OperatorId,
    /// The hash of the token the operator signed in with.
    pub token_hash: [u8; 32],
}

struct Session {
    who: SignedIn,
    last_seen: Instant,
}

pub struct ConsoleSessions {
    idle: Duration,
    table: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for ConsoleSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the table: its keys are the hashes of live cookies.
        write!(f, "ConsoleSessions(idle {:?})", self.idle)
    }
}

impl ConsoleSessions {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session; returns the cookie's value.
    pub fn open(&self, who: SignedIn) -> Result<String, secrets::RandomError> {
        let cookie = secrets::new_token(COOKIE_PREFIX)?;
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.retain(|_, session| now.duration_since(session.last_seen) < self.idle);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(key, _)| *key)
        {
            table.remove(&oldest);
        }
        table.insert(
            secrets::hash(&cookie),
            Session {
                who,
                last_seen: now,
            },
        );
        Ok(cookie)
    }

    /// The operator behind a cookie, if its session is open and not idle
    /// too long; marks it used.
    pub fn find(&self, cookie: &str) -> Option<SignedIn> {
        if !cookie.starts_with(COOKIE_PREFIX)
            || !secrets::plausible_token(&cookie[COOKIE_PREFIX.len()..])
        {
            return None;
        }
        let key = secrets::hash(cookie);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let session = table.get_mut(&key)?;
        if session.last_seen.elapsed() >= self.idle {
            table.remove(&key);
            return None;
        }
        session.last_seen = Instant::now();
        Some(session.who.clone())
    }

    pub fn close(&self, cookie: &str) {
        let key = secrets::hash(cookie);
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> SignedIn {
        SignedIn {
            operator: "alice".into(),
            operator_id: OperatorId(1),
            token_hash: [7; 32],
        }
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_closed() {
        let sessions = ConsoleSessions::new(Duration::from_secs(60));
        let cookie = sessions.open(alice()).unwrap();
        assert!(cookie.starts_with("dcs_"));
        assert_eq!(sessions.find(&cookie), Some(alice()));
        assert_eq!(sessions.find("dcs_AAAA"), None);
        assert_eq!(sessions.find(&cookie.replace("dcs_", "xyz_")), None);
        sessions.close(&cookie);
        assert_eq!(sessions.find(&cookie), None);
    }

    #[test]
    fn an_idle_session_ends() {
        let sessions = ConsoleSessions::new(Duration::ZERO);
        let cookie = sessions.open(alice()).unwrap();
        assert_eq!(sessions.find(&cookie), None);
    }
}
