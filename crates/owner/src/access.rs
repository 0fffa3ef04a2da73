//! Who may use the settings window: whoever opens the one-time URL the
//! command printed or opened (its secret works once), and from then on that
//! browser alone, by a cookie. Every form carries a nonce of that session.
//! Secrets are compared in constant time and never logged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// The cookie that holds the window's session.
pub const COOKIE: &str = "doorman_settings";

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

/// The window's one secret URL and the one browser session it opened.
pub struct Access {
    secret: String,
    /// The cookie's value and the forms' nonce, once the URL was opened.
    session: Mutex<Option<(String, String)>>,
}

impl Access {
    pub fn new() -> Self {
        Self {
            secret: random_token(),
            session: Mutex::new(None),
        }
    }

    /// The secret part of the one-time URL.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Opens the session with the URL's secret; its cookie, or `None` when
    /// the secret is wrong or was used already.
    pub fn open(&self, secret: &str) -> Option<String> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_some() || !same(secret, &self.secret) {
            return None;
        }
        let cookie = random_token();
        *session = Some((cookie.clone(), random_token()));
        Some(cookie)
    }

    /// The forms' nonce, when `cookie` is the session's.
    pub fn nonce_for(&self, cookie: Option<&str>) -> Option<String> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let (expected, nonce) = session.as_ref()?;
        same(cookie?, expected).then(|| nonce.clone())
    }

    /// Whether a form's nonce is the session's.
    pub fn nonce_ok(&self, cookie: Option<&str>, nonce: &str) -> bool {
        self.nonce_for(cookie)
            .is_some_and(|expected| same(nonce, &expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_opens_one_session_once() {
        let access = Access::new();
        assert_eq!(access.open("wrong"), None);
        let cookie = access.open(access.secret()).expect("opens");
        assert_eq!(access.open(access.secret()), None, "once");
        let nonce = access.nonce_for(Some(&cookie)).expect("the session");
        assert!(access.nonce_ok(Some(&cookie), &nonce));
        assert!(!access.nonce_ok(Some(&cookie), "forged"));
        assert!(!access.nonce_ok(Some("another"), &nonce));
        assert!(!access.nonce_ok(None, &nonce));
    }
}
