//! Who is at the console: passwords (argon2id, PHC strings), sessions kept in the store
//! (by the hash of their token) with an idle and an absolute expiry, a CSRF token per
//! session, and login rate limiting per source address, per user name, and per both.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use riposte_domain::{Sha256Digest, UserName};
use riposte_store::prelude::*;
use riposte_store::{SessionRecord, Store};
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

/// What the store keeps of a session's token: its SHA-256, in hex.
fn token_hash(token: &str) -> String {
    Sha256Digest::of(token.as_bytes()).to_hex()
}

/// The CSRF token of the session whose token is `token`: derived from it, so it is known
/// to whoever holds the session's cookie and to nobody who only reads the database.
fn csrf_of(token: &str) -> String {
    Sha256Digest::of(format!("riposte-console-csrf:{token}").as_bytes()).to_hex()
}

/// One logged-in session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// Who.
    pub user: UserName,
    /// The token every form of this session carries.
    pub csrf: String,
}

/// The sessions, in the store under the hash of their token, so that a restart or another
/// host on the same database keeps them; at most [`Sessions::MAX`], each ending when idle
/// for `idle` or older than `max`.
pub(crate) struct Sessions {
    idle_ms: i64,
    max_ms: i64,
}

impl Sessions {
    /// The most sessions held at once; beyond it the least recently used is dropped.
    pub const MAX: usize = 10_000;

    pub fn new(idle_secs: u64, max_secs: u64) -> Self {
        Self {
            idle_ms: (idle_secs as i64).saturating_mul(1000).max(1000),
            max_ms: (max_secs as i64).saturating_mul(1000).max(1000),
        }
    }

    /// How stale the recorded last use may get before a request writes it again: a
    /// quarter of the idle limit, at most 15 s (a page load is not a write each time).
    fn touch_every_ms(&self) -> i64 {
        (self.idle_ms / 4).min(15_000)
    }

    /// Starts a session for `user`; returns its token.
    pub fn create(
        &self,
        store: &Store,
        user: UserName,
        now_ms: i64,
    ) -> riposte_store::Result<(String, Session)> {
        let token = token();
        let record = SessionRecord {
            token_hash: token_hash(&token),
            user: user.clone(),
            created_at_ms: now_ms,
            last_seen_ms: now_ms,
        };
        store.start_session(&record, now_ms - self.idle_ms, Self::MAX)?;
        let csrf = csrf_of(&token);
        Ok((token, Session { user, csrf }))
    }

    /// The live session of `token`, its use recorded at `now_ms`; an expired one is ended.
    pub fn touch(
        &self,
        store: &Store,
        token: &str,
        now_ms: i64,
    ) -> riposte_store::Result<Option<Session>> {
        let hash = token_hash(token);
        let Some(record) = store.session(&hash)? else {
            return Ok(None);
        };
        let live = now_ms - record.last_seen_ms < self.idle_ms
            && now_ms - record.created_at_ms < self.max_ms;
        if !live {
            store.end_session(&hash)?;
            return Ok(None);
        }
        if now_ms - record.last_seen_ms >= self.touch_every_ms() {
            store.touch_session(&hash, now_ms)?;
        }
        Ok(Some(Session {
            user: record.user,
            csrf: csrf_of(token),
        }))
    }

    /// Ends a session.
    pub fn remove(&self, store: &Store, token: &str) -> riposte_store::Result<()> {
        store.end_session(&token_hash(token)).map(drop)
    }
}

/// Failed logins allowed within [`LoginLimiter::WINDOW_MS`] for one user name from one
/// source address.
pub const MAX_LOGIN_FAILURES: usize = 5;
/// Failed logins allowed within the window from one source address, whatever the names.
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// Failed logins allowed within the window for one user name, from all addresses
/// together: what bounds guessing from many addresses, and what someone must spend to
/// lock a user out from everywhere.
pub const MAX_FAILURES_PER_NAME: usize = 50;

/// Login attempts by source address, by user name, and by the two together, in a bounded
/// map. An attempt is counted when it begins, under the same lock as the check, so
/// concurrent guesses cannot all pass the check before any is counted; a successful login
/// takes its attempt back.
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Behind a reverse proxy every client has the proxy's address: only the per-name
    /// limit is kept.
    behind_proxy: bool,
}

impl LoginLimiter {
    /// The window failures are counted over (5 minutes).
    pub const WINDOW_MS: i64 = 5 * 60 * 1000;
    /// The most keys tracked; when full, keys with no failure in the window are dropped,
    /// then the stalest (name-and-address keys before the others).
    pub const MAX_KEYS: usize = 10_000;

    pub fn new(behind_proxy: bool) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            behind_proxy,
        }
    }

    /// The keys a login of `name` from `addr` counts against, each with its limit.
    fn keys(&self, addr: &str, name: &str) -> Vec<(String, usize)> {
        let name = name.to_lowercase();
        let mut keys = vec![(format!("user:{name}"), MAX_FAILURES_PER_NAME)];
        if !self.behind_proxy {
            keys.push((format!("addr:{addr}"), MAX_FAILURES_PER_ADDRESS));
            keys.push((format!("pair:{addr}:{name}"), MAX_LOGIN_FAILURES));
        }
        keys
    }

    /// Begins a login of `name` from `addr` at `now_ms`: `false` (and nothing counted) if
    /// one of its keys had its limit of failures in the window; else the attempt is counted
    /// as a failure until [`LoginLimiter::succeeded`] takes it back.
    pub fn begin(&self, addr: &str, name: &str, now_ms: i64) -> bool {
        let keys = self.keys(addr, name);
        let mut map = self.failures.lock().expect("limiter lock");
        let recent = |times: &VecDeque<i64>| {
            times
                .iter()
                .filter(|t| now_ms - **t < Self::WINDOW_MS)
                .count()
        };
        if keys
            .iter()
            .any(|(k, limit)| map.get(k).is_some_and(|times| recent(times) >= *limit))
        {
            return false;
        }
        Self::make_room(&mut map, keys.len(), now_ms);
        for (key, limit) in keys {
            let times = map.entry(key).or_default();
            times.retain(|t| now_ms - t < Self::WINDOW_MS);
            times.push_back(now_ms);
            while times.len() > limit {
                times.pop_front();
            }
        }
        true
    }

    /// Keeps the map within [`LoginLimiter::MAX_KEYS`] with `more` keys to come.
    fn make_room(map: &mut HashMap<String, VecDeque<i64>>, more: usize, now_ms: i64) {
        if map.len() + more <= Self::MAX_KEYS {
            return;
        }
        map.retain(|_, times| times.back().is_some_and(|t| now_ms - t < Self::WINDOW_MS));
        while map.len() + more > Self::MAX_KEYS {
            let Some(stalest) = map
                .iter()
                .min_by_key(|(k, t)| (!k.starts_with("pair:"), t.back().copied()))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&stalest);
        }
    }

    /// The login of `name` from `addr` begun at `began_ms` succeeded: its attempt is taken
    /// back, and the failures of that name from that address are forgotten (the others
    /// still count).
    pub fn succeeded(&self, addr: &str, name: &str, began_ms: i64) {
        let mut map = self.failures.lock().expect("limiter lock");
        for (key, _) in self.keys(addr, name) {
            if key.starts_with("pair:") {
                map.remove(&key);
            } else if let Some(times) = map.get_mut(&key)
                && let Some(at) = times.iter().rposition(|t| *t == began_ms)
            {
                times.remove(at);
            }
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
    fn sessions_expire_when_idle_and_at_their_limit_and_outlive_the_console() {
        let store = Store::open_in_memory().unwrap();
        let sessions = Sessions::new(10, 30);
        let user = UserName::parse("ann").unwrap();
        let (t, first) = sessions.create(&store, user.clone(), 0).unwrap();
        let touch = |sessions: &Sessions, t: &str, now| sessions.touch(&store, t, now).unwrap();
        assert_eq!(touch(&sessions, &t, 9_000).unwrap().csrf, first.csrf);
        // A console started afresh over the same store knows the session.
        let restarted = Sessions::new(10, 30);
        assert!(touch(&restarted, &t, 18_000).is_some(), "used 9 s ago");
        assert!(touch(&restarted, &t, 28_001).is_none(), "idle 10 s");
        assert!(touch(&restarted, &t, 28_002).is_none(), "and ended");
        let (t, _) = sessions.create(&store, user, 100_000).unwrap();
        for now in (105_000..130_000).step_by(5_000) {
            assert!(touch(&sessions, &t, now).is_some());
        }
        assert!(touch(&sessions, &t, 130_000).is_none(), "30 s old");
        assert!(touch(&sessions, "not-a-token", 100_001).is_none());
        assert_ne!(csrf_of(&t), t);
        assert!(
            store.session(&t).unwrap().is_none(),
            "only the hash is a key"
        );
    }

    #[test]
    fn the_limiter_counts_per_address_per_name_and_per_both() {
        let limiter = LoginLimiter::new(false);
        for i in 0..5 {
            assert!(limiter.begin("1.1.1.1", "a", i), "attempt {i}");
        }
        assert!(
            !limiter.begin("1.1.1.1", "A", 10),
            "names match in any case"
        );
        assert!(
            limiter.begin("2.2.2.2", "a", 10),
            "a's own address still logs in"
        );
        limiter.succeeded("2.2.2.2", "a", 10);
        assert!(limiter.begin("1.1.1.1", "b", 10));
        assert!(limiter.begin("1.1.1.1", "a", LoginLimiter::WINDOW_MS + 5));
        // One address trying many names.
        let later = LoginLimiter::WINDOW_MS + 10;
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            assert!(limiter.begin("5.5.5.5", &format!("n{i}"), later));
        }
        assert!(!limiter.begin("5.5.5.5", "zed", later + 1));
        // Many addresses trying one name.
        for i in 0..MAX_FAILURES_PER_NAME {
            assert!(limiter.begin(&format!("10.0.0.{i}"), "c", later));
        }
        assert!(!limiter.begin("3.3.3.3", "c", later + 1));
    }

    #[test]
    fn a_successful_login_takes_its_attempt_back() {
        let limiter = LoginLimiter::new(false);
        for i in 0..30 {
            assert!(limiter.begin("1.1.1.1", &format!("u{i}"), i));
            limiter.succeeded("1.1.1.1", &format!("u{i}"), i);
        }
        assert!(limiter.begin("1.1.1.1", "u", 40), "successes do not add up");
    }

    #[test]
    fn behind_a_proxy_only_the_name_counts() {
        let limiter = LoginLimiter::new(true);
        for i in 0..30 {
            assert!(
                limiter.begin("10.0.0.1", &format!("u{i}"), i),
                "one address, many names"
            );
        }
        for i in 0..MAX_FAILURES_PER_NAME as i64 {
            assert!(limiter.begin("10.0.0.1", "v", 100 + i));
        }
        assert!(!limiter.begin("10.0.0.1", "v", 200));
        assert!(limiter.begin("10.0.0.1", "w", 200));
    }
}
