//! Who is signed in to the web console: a random cookie per sign-in, kept
//! only as its hash, with the operator (its id: the session is that
//! operator's, not its name's) and the hash of the token the operator signed
//! in with. A session ends on sign-out, after the idle time, or at once when
//! that token is rotated or the operator removed (checked on every use).
//! Sessions live in this server's memory: a restart or a replica taking over
//! asks everyone to sign in again.
//!
//! What one operator does never ends another's session: each operator holds
//! at most [`MAX_PER_OPERATOR`] sessions (a new one ends that operator's
//! least recently used), may sign in at most [`MAX_SIGN_INS`] times in
//! [`SIGN_IN_WINDOW`], and when the table holds [`MAX_SESSIONS`] live
//! sessions a sign-in is refused rather than pushing anyone out.

use doorman_http::failures::Window;
use doorman_runtime::clock::Clock;
use doorman_runtime::secrets;
use doorman_store::OperatorId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions kept at most, all operators together.
pub const MAX_SESSIONS: usize = 10_000;

/// Sessions one operator may hold at once.
pub const MAX_PER_OPERATOR: usize = 16;

/// Sign-ins one operator may make in one [`SIGN_IN_WINDOW`].
pub const MAX_SIGN_INS: u32 = 30;

/// The window of [`MAX_SIGN_INS`], counted from its first sign-in.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(10 * 60);

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

/// Why a sign-in opened no session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The operator signed in [`MAX_SIGN_INS`] times in this window.
    #[error("too many sign-ins for this operator")]
    TooManySignIns,
    /// [`MAX_SESSIONS`] sessions are live.
    #[error("too many console sessions")]
    Full,
    #[error(transparent)]
    Random(#[from] secrets::RandomError),
}

struct Session {
    who: SignedIn,
    last_seen: Instant,
}

#[derive(Default)]
struct Table {
    sessions: HashMap<[u8; 32], Session>,
    /// Each operator's sign-ins in its current window.
    sign_ins: HashMap<OperatorId, Window>,
}

pub struct ConsoleSessions {
    idle: Duration,
    /// The server's clock, which the sign-in windows are counted by.
    clock: Clock,
    table: Mutex<Table>,
}

impl std::fmt::Debug for ConsoleSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the table: its keys are the hashes of live cookies.
        write!(f, "ConsoleSessions(idle {:?})", self.idle)
    }
}

/// [`SIGN_IN_WINDOW`] in the milliseconds [`Window`] counts in.
fn sign_in_window_millis() -> i64 {
    i64::try_from(SIGN_IN_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

impl ConsoleSessions {
    pub fn new(idle: Duration, clock: Clock) -> Self {
        Self {
            idle,
            clock,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a session; returns the cookie's value.
    pub fn open(&self, who: SignedIn) -> Result<String, OpenError> {
        let now = Instant::now();
        let now_millis = self.clock.now_millis();
        let window = sign_in_window_millis();
        let mut table = self.lock();
        let Table { sessions, sign_ins } = &mut *table;
        sign_ins.retain(|_, count| count.is_open(now_millis, window));
        if sign_ins
            .get(&who.operator_id)
            .is_some_and(|count| count.is_full(now_millis, window, MAX_SIGN_INS))
        {
            return Err(OpenError::TooManySignIns);
        }
        sessions.retain(|_, session| now.duration_since(session.last_seen) < self.idle);
        // This operator's least recently used sessions make room for the
        // new one; no one else's.
        let mut mine: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, session)| session.who.operator_id == who.operator_id)
            .map(|(key, session)| (*key, session.last_seen))
            .collect();
        mine.sort_by_key(|&(_, last_seen)| last_seen);
        let excess = (mine.len() + 1).saturating_sub(MAX_PER_OPERATOR);
        for (key, _) in mine.into_iter().take(excess) {
            sessions.remove(&key);
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(OpenError::Full);
        }
        let cookie = secrets::new_token(COOKIE_PREFIX)?;
        sign_ins
            .entry(who.operator_id)
            .or_default()
            .count(now_millis, window);
        sessions.insert(
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
        let mut table = self.lock();
        let session = table.sessions.get_mut(&key)?;
        if session.last_seen.elapsed() >= self.idle {
            table.sessions.remove(&key);
            return None;
        }
        session.last_seen = Instant::now();
        Some(session.who.clone())
    }

    pub fn close(&self, cookie: &str) {
        let key = secrets::hash(cookie);
        self.lock().sessions.remove(&key);
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
        let sessions = ConsoleSessions::new(Duration::from_secs(60), Clock::system());
        let cookie = sessions.open(alice()).unwrap();
        assert!(cookie.starts_with("dcs_"));
        assert_eq!(sessions.find(&cookie), Some(alice()));
        assert_eq!(sessions.find("dcs_AAAA"), None);
        assert_eq!(sessions.find(&cookie.replace("dcs_", "xyz_")), None);
        sessions.close(&cookie);
        assert_eq!(sessions.find(&cookie), None);
    }

    /// Another operator than alice.
    fn operator(name: &str) -> SignedIn {
        SignedIn {
            operator: name.into(),
            operator_id: OperatorId(2),
            token_hash: [9; 32],
        }
    }

    #[test]
    fn an_operators_sessions_past_its_cap_end_its_own_least_recently_used() {
        let sessions = ConsoleSessions::new(Duration::from_secs(60), Clock::system());
        let bob = sessions.open(operator("bob")).unwrap();
        let mut alices: Vec<String> = (0..MAX_PER_OPERATOR)
            .map(|_| sessions.open(alice()).unwrap())
            .collect();
        // The first is used again: the second is now the least recent.
        assert_eq!(sessions.find(&alices[0]), Some(alice()));
        alices.push(sessions.open(alice()).unwrap());
        assert_eq!(sessions.find(&alices[1]), None, "pushed out");
        assert_eq!(sessions.find(&alices[0]), Some(alice()));
        assert_eq!(sessions.find(&alices[MAX_PER_OPERATOR]), Some(alice()));
        assert_eq!(sessions.find(&bob), Some(operator("bob")), "not bob's");
    }

    #[test]
    fn a_new_operator_under_an_old_name_shares_nothing_with_it() {
        let sessions = ConsoleSessions::new(Duration::from_secs(60), Clock::system());
        for _ in 0..MAX_SIGN_INS {
            sessions.open(alice()).unwrap();
        }
        let again = SignedIn {
            operator_id: OperatorId(3),
            ..alice()
        };
        assert!(sessions.open(again).is_ok(), "its own sign-ins");
    }

    #[test]
    fn sign_ins_past_the_limit_are_refused_for_that_operator_only() {
        let sessions = ConsoleSessions::new(Duration::from_secs(60), Clock::system());
        for _ in 0..MAX_SIGN_INS {
            sessions.open(alice()).unwrap();
        }
        assert!(matches!(
            sessions.open(alice()),
            Err(OpenError::TooManySignIns)
        ));
        assert!(sessions.open(operator("bob")).is_ok());
    }

    #[test]
    fn an_idle_session_ends() {
        let sessions = ConsoleSessions::new(Duration::ZERO, Clock::system());
        let cookie = sessions.open(alice()).unwrap();
        assert_eq!(sessions.find(&cookie), None);
    }
}
