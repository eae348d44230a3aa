//! How to reach the server: base URL, credentials, TLS, timeouts and retries.

use super::error::{Error, Result};
use super::secret::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable holding the username.
pub const ENV_USERNAME: &str = "RIPOSTE_USERNAME";
/// Environment variable holding the password.
pub const ENV_PASSWORD: &str = "RIPOSTE_PASSWORD";

/// The keys of the server's credentials file.
const CREDENTIAL_KEYS: [&str; 2] = ["username", "password"];

/// A username and password. The password is a [`Secret`] and never printed.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The console user (an API user without 2FA).
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl Credentials {
    /// Builds credentials from values already in hand.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Reads `RIPOSTE_USERNAME` and `RIPOSTE_PASSWORD`.
    pub(crate) fn from_env() -> Result<Self> {
        let get = |name: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::Config(format!(
                    "environment variable {name} is not set; set {ENV_USERNAME} and {ENV_PASSWORD}, or name a credentials file in [service.server] credentials_file"
                ))
            })
        };
        Ok(Self::new(
            get(ENV_USERNAME)?,
            Secret::new(get(ENV_PASSWORD)?),
        ))
    }

    /// Reads a credentials file with the lines `username = ...` and `password = ...`
    /// (blank lines and `#` comments are ignored; values may be double-quoted). Like ssh with
    /// a private key, a file that group or others may read is refused, before it is read.
    pub fn from_file(path: &Path) -> Result<Self> {
        let values = riposte_domain::secret::read_credentials_file(path, &CREDENTIAL_KEYS)
            .map_err(Error::Config)?;
        Self::from_values(values)
            .map_err(|why| Error::Config(format!("credentials file {}: {why}", path.display())))
    }

    fn from_values(mut values: BTreeMap<String, String>) -> std::result::Result<Self, String> {
        match (values.remove("username"), values.remove("password")) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Self::new(u, p)),
            _ => Err("both `username` and `password` are required".into()),
        }
    }

    /// The file if one is given, else the environment.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Self> {
        match file {
            Some(path) => Self::from_file(path),
            None => Self::from_env(),
        }
    }
}

/// Time limits for every call.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Limit for establishing a connection.
    pub connect: Duration,
    /// Limit for a whole request, body included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// The `queryTimeout` real clients send with a visualsearch query, and the most this client
/// lets the server spend on one.
const QUERY_TIMEOUT_MAX: Duration = Duration::from_secs(120);

impl Timeouts {
    /// The `queryTimeout` to send with a query: the server stops a query that runs longer
    /// and answers `TIMEOUT_ERROR` within the request's own limit, leaving a quarter of it
    /// (at most 5 s) for the answer to arrive. Sending more than the request's limit would
    /// have the client give up (and retry) while the server is still working on the first
    /// query.
    pub fn query_timeout(&self) -> Duration {
        let transfer = (self.request / 4).min(Duration::from_secs(5));
        (self.request - transfer).min(QUERY_TIMEOUT_MAX)
    }
}

/// Retries with exponential backoff and jitter, for calls that are safe to repeat.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Total tries of one call, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delays between tries, as a `backon` builder: before retry `n` (1-based), with
    /// `d = min(base_delay * 2^(n-1), max_delay)`, a delay in `[d/2, d]` ("equal jitter":
    /// half fixed, half random); at most `max_attempts - 1` retries.
    pub(crate) fn backoff(&self) -> backon::ExponentialBuilder {
        // backon's jitter adds up to the delay itself on top of it, so halving its bounds
        // gives equal jitter within the documented cap.
        let max = self.max_delay / 2;
        backon::ExponentialBuilder::default()
            .with_min_delay((self.base_delay / 2).min(max))
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.max(1) as usize - 1)
    }
}

/// Everything [`super::Client::new`] needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://tenant.cybereason.net:8443` (no trailing path).
    pub base_url: String,
    /// Who to log in as.
    pub credentials: Credentials,
    /// An extra PEM CA bundle to trust besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// The sha256 fingerprint of the one certificate the server may present (a pin): when
    /// set, that certificate is accepted whatever its chain and names, and no other.
    pub pinned_certificate: Option<riposte_domain::Sha256Digest>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Retry policy for calls safe to repeat.
    pub retry: RetryPolicy,
    /// The most Malops one `crimes/unified` call asks for (at most, and by default, the
    /// server's own limit, [`super::RESULT_LIMIT`]); a listing that reaches it narrows its
    /// time window.
    pub result_limit: u32,
}

impl ClientConfig {
    /// A configuration with default timeouts and retries.
    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            base_url: base_url.into(),
            credentials,
            ca_file: None,
            pinned_certificate: None,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            result_limit: super::RESULT_LIMIT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_parses_and_hides_the_password() {
        let parse = |text| {
            riposte_domain::secret::parse_credentials(text, &CREDENTIAL_KEYS)
                .and_then(Credentials::from_values)
        };
        let c = parse("# x\nusername = api@corp\npassword = \"s3cr3t\"\n").unwrap();
        assert_eq!(c.username, "api@corp");
        assert_eq!(c.password.expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(parse("username = a\n").is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        use backon::BackoffBuilder as _;
        let ms = Duration::from_millis;
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: ms(100),
            max_delay: ms(300),
        };
        for _ in 0..200 {
            let delays: Vec<Duration> = p.backoff().build().collect();
            assert_eq!(delays.len(), 4, "max_attempts counts the first try");
            assert!((ms(50)..=ms(100)).contains(&delays[0]), "{delays:?}");
            assert!((ms(100)..=ms(200)).contains(&delays[1]), "{delays:?}");
            for d in &delays[2..] {
                assert!((ms(150)..=ms(300)).contains(d), "{delays:?}");
            }
        }
        let once = RetryPolicy {
            max_attempts: 1,
            ..p
        };
        assert_eq!(once.backoff().build().count(), 0, "1 = no retry");
    }
}
