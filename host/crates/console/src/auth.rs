//! Who is at the console: passwords (argon2id, PHC strings), sessions held in memory with
//! an idle and an absolute expiry, a CSRF token per session, and login rate limiting per
//! source address and per user name.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use riposte_domain::UserName;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The longest password accepted, in bytes (longer ones are refused before hashing).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The shortest password `riposte users add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Errors of password hashing.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is empty, too short or too long.
    #[error("a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes")]
    Length,
    /// No random salt could be had, or argon2 failed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// `n` random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random number generator");
    bytes
}

/// Hashes a password with argon2id and its default parameters into a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A password made for a user who was not given one: 24 characters from 62 (about 143 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        for b in random_bytes::<32>() {
            // Rejection sampling: 248 = 4 * 62, so every letter is equally likely.
            if b < 248 && out.len() < 24 {
                out.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// A random 256-bit token, in hex.
pub(crate) fn token() -> String {
    hex::encode(random_bytes::<32>())
}

/// One logged-in session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// Who.
    pub user: UserName,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it began (ms).
    pub created_ms: i64,
    /// When it was last used (ms).
    pub last_seen_ms: i64,
}

/// The sessions, in memory (a restart logs everybody out), at most [`Sessions::MAX`].
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle_ms: i64,
    max_ms: i64,
}

impl Sessions {
    /// The most sessions held at once; beyond it the oldest is dropped.
    pub const MAX: usize = 10_000;

    pub fn new(idle_secs: u64, max_secs: u64) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle_ms: (idle_secs as i64).saturating_mul(1000),
            max_ms: (max_secs as i64).saturating_mul(1000),
        }
    }

    fn live(&self, s: &Session, now_ms: i64) -> bool {
        now_ms - s.last_seen_ms < self.idle_ms && now_ms - s.created_ms < self.max_ms
    }

    /// Starts a session for `user`; returns its token.
    pub fn create(&self, user: UserName, now_ms: i64) -> (String, Session) {
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| self.live(s, now_ms));
        if map.len() >= Self::MAX
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last_seen_ms)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let session = Session {
            user,
            csrf: token(),
            created_ms: now_ms,
            last_seen_ms: now_ms,
        };
        let key = token();
        map.insert(key.clone(), session.clone());
        (key, session)
    }

    /// The live session of `token`, marked used at `now_ms`; an expired one is forgotten.
    pub fn touch(&self, token: &str, now_ms: i64) -> Option<Session> {
        let mut map = self.map.lock().expect("sessions lock");
        let live = map.get(token).is_some_and(|s| self.live(s, now_ms));
        if !live {
            map.remove(token);
            return None;
        }
        let session = map.get_mut(token)?;
        session.last_seen_ms = now_ms;
        Some(session.clone())
    }

    /// Ends a session.
    pub fn remove(&self, token: &str) {
        self.map.lock().expect("sessions lock").remove(token);
    }
}

/// Login failures allowed per source address and per user name within [`LoginLimiter::WINDOW_MS`].
pub const MAX_LOGIN_FAILURES: usize = 5;

/// Failed logins by key (`addr:...`, `user:...`), in a bounded map.
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl LoginLimiter {
    /// The window failures are counted over (5 minutes).
    pub const WINDOW_MS: i64 = 5 * 60 * 1000;
    /// The most keys tracked; when full, keys with no failure in the window are dropped,
    /// then the stalest.
    pub const MAX_KEYS: usize = 10_000;

    pub fn new() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any of `keys` has had [`MAX_LOGIN_FAILURES`] failures in the window.
    pub fn blocked(&self, keys: &[String], now_ms: i64) -> bool {
        let map = self.failures.lock().expect("limiter lock");
        keys.iter().any(|k| {
            map.get(k).is_some_and(|times| {
                times
                    .iter()
                    .filter(|t| now_ms - **t < Self::WINDOW_MS)
                    .count()
                    >= MAX_LOGIN_FAILURES
            })
        })
    }

    /// Counts a failure against each of `keys`.
    pub fn failed(&self, keys: &[String], now_ms: i64) {
        let mut map = self.failures.lock().expect("limiter lock");
        if map.len() + keys.len() > Self::MAX_KEYS {
            map.retain(|_, times| times.back().is_some_and(|t| now_ms - t < Self::WINDOW_MS));
            while map.len() + keys.len() > Self::MAX_KEYS {
                let Some(stalest) = map
                    .iter()
                    .min_by_key(|(_, t)| t.back().copied())
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&stalest);
            }
        }
        for key in keys {
            let times = map.entry(key.clone()).or_default();
            times.retain(|t| now_ms - t < Self::WINDOW_MS);
            times.push_back(now_ms);
            while times.len() > MAX_LOGIN_FAILURES {
                times.pop_front();
            }
        }
    }

    /// Forgets the failures of `keys` (a successful login).
    pub fn succeeded(&self, keys: &[String]) {
        let mut map = self.failures.lock().expect("limiter lock");
        for key in keys {
            map.remove(key);
        }
    }
}

/// Compares two strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert!(matches!(hash_password("short"), Err(PasswordError::Length)));
        let generated = generate_password();
        assert_eq!(generated.len(), 24);
        assert_ne!(generated, generate_password());
    }

    #[test]
    fn sessions_expire_when_idle_and_at_their_limit() {
        let sessions = Sessions::new(10, 30);
        let user = UserName::parse("ann").unwrap();
        let (t, _) = sessions.create(user.clone(), 0);
        assert!(sessions.touch(&t, 9_000).is_some());
        assert!(sessions.touch(&t, 18_000).is_some(), "used 9 s ago");
        assert!(sessions.touch(&t, 28_001).is_none(), "idle 10 s");
        let (t, _) = sessions.create(user, 100_000);
        for now in (105_000..130_000).step_by(5_000) {
            assert!(sessions.touch(&t, now).is_some());
        }
        assert!(sessions.touch(&t, 130_000).is_none(), "30 s old");
    }

    #[test]
    fn the_limiter_blocks_after_five_failures_in_the_window() {
        let limiter = LoginLimiter::new();
        let keys = vec!["addr:1".to_owned(), "user:a".to_owned()];
        for i in 0..5 {
            assert!(!limiter.blocked(&keys, i));
            limiter.failed(&keys, i);
        }
        assert!(limiter.blocked(&keys, 10));
        assert!(limiter.blocked(&["user:a".to_owned()], 10));
        assert!(!limiter.blocked(&keys, LoginLimiter::WINDOW_MS + 5));
    }
}
