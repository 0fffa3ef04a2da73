//! Who may use the settings window: whoever opens the one-time link the
//! command printed or handed to the browser, once, and before it expires;
//! opening it exchanges it for the window's session secret, which lives only
//! in the page (a hidden field of each form), never in a cookie. Cookies are
//! not bound to ports: any page on 127.0.0.1, another user's included, would
//! receive one, and the cookie alone would open the window. A field of a
//! page that only this origin (port included) can read goes nowhere else.
//! Secrets have 256 bits from the system's random source, are compared in
//! constant time and never logged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long the one-time link works when nobody opens it.
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(2 * 60);

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Why the one-time link opened nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not the link's secret.
    Wrong,
    /// The right secret, but it was used already.
    Used,
    /// The right secret, but nobody opened it in time.
    Expired,
}

/// The window's one-time link and the one page session it opened.
pub struct Access {
    link: String,
    link_expires: Instant,
    /// The page's session secret, once the link was opened.
    session: Mutex<Option<String>>,
}

impl Access {
    /// A fresh link, opened at `now`, that works until `now + lifetime`.
    pub fn new(now: Instant, lifetime: Duration) -> Self {
        Self {
            link: random_token(),
            link_expires: now + lifetime.min(FOREVER),
            session: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The secret part of the one-time link.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Exchanges the link's secret for the page's session secret: once, and
    /// only before the link expires.
    pub fn open(&self, secret: &str, now: Instant) -> Result<String, Refused> {
        let mut session = self.lock();
        if !same(secret, &self.link) {
            return Err(Refused::Wrong);
        }
        if session.is_some() {
            return Err(Refused::Used);
        }
        if now >= self.link_expires {
            return Err(Refused::Expired);
        }
        let fresh = random_token();
        *session = Some(fresh.clone());
        Ok(fresh)
    }

    /// Whether `presented` is the page's session secret.
    pub fn session_ok(&self, presented: &str) -> bool {
        self.lock()
            .as_deref()
            .is_some_and(|expected| same(presented, expected))
    }

    /// When the link stops working, while nobody has opened it.
    pub fn unused_link_expires(&self) -> Option<Instant> {
        self.lock().is_none().then_some(self.link_expires)
    }
}

/// Far enough to stand for "never" (about 30 years).
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_opens_one_session_once() {
        let now = Instant::now();
        let access = Access::new(now, DEFAULT_LINK_LIFETIME);
        assert_eq!(access.open("wrong", now), Err(Refused::Wrong));
        assert!(!access.session_ok(""), "no session before the link");
        let session = access.open(access.link(), now).expect("opens");
        assert_eq!(access.open(access.link(), now), Err(Refused::Used));
        assert_ne!(session, access.link(), "a new secret, not the link's");
        assert!(access.session_ok(&session));
        assert!(!access.session_ok("forged"));
        assert!(!access.session_ok(access.link()), "the link is no session");
        assert!(!access.session_ok(""));
        assert_eq!(access.unused_link_expires(), None, "used");
    }

    #[test]
    fn an_unused_link_expires() {
        let now = Instant::now();
        let lifetime = Duration::from_secs(120);
        let access = Access::new(now, lifetime);
        assert_eq!(access.unused_link_expires(), Some(now + lifetime));
        assert_eq!(
            access.open(access.link(), now + lifetime),
            Err(Refused::Expired)
        );
        assert!(!access.session_ok(""));
        // Refused for being late, it is still unused, and still late.
        let late = now + lifetime + Duration::from_millis(1);
        assert_eq!(access.open(access.link(), late), Err(Refused::Expired));
        let in_time = Access::new(now, lifetime);
        let just_before = now + lifetime - Duration::from_millis(1);
        assert!(in_time.open(in_time.link(), just_before).is_ok());
    }

    #[test]
    fn secrets_have_256_bits() {
        let token = random_token();
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, random_token());
    }
}
