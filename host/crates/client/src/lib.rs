//! The Cybereason REST client.
//!
//! It follows `shared/cybereason-api.md`: form login at `/login.html` with a `JSESSIONID`
//! cookie sent back by hand; an expired session (a redirect or HTML on a `/rest` call) causes
//! exactly one re-login and one retry; failure bodies that come back as HTTP 200 become typed
//! errors. Every call has a timeout. Calls that are safe to repeat (queries, status reads,
//! login) are retried with exponential backoff and jitter on 429, 5xx and transport errors;
//! actions (remediate, isolate, reputation, status, comment) are never re-sent once they may
//! have reached the server: the caller gets [`Error::OutcomeUnknown`] and checks state first.
//! Secrets are [`Secret`]s: never in `Debug`, logs or errors.
//!
//! Where each field is read, and the note of `shared/cybereason-api.md` that backs it, is
//! tabled in `host/docs/CLIENT.md`. A Malop's details come from several queries; one that
//! fails leaves what crimes/unified gave and names the part in `Malop::unreadable`
//! ([`Client::malop_details`]).

mod config;
mod error;
mod http;
mod isolation;
mod malops;
pub mod parse;
mod remediation;
mod reputation;
mod secret;
mod sensors;
mod session;
mod settings;
pub mod tls;
mod types;
mod visualsearch;

pub use config::{ClientConfig, Credentials, ENV_PASSWORD, ENV_USERNAME, RetryPolicy, Timeouts};
pub use error::{Error, Result};
pub use malops::RESULT_LIMIT;
pub use secret::Secret;
pub use sensors::{SensorBatch, SensorsRead};
pub use session::{is_login_page, is_two_factor_page};
pub use settings::{DEFAULT_REQUEST_TIMEOUT_SECS, RawServerConfig, ServerConfig};
pub use types::{
    Comment, Element, ElementRef, IsolationReport, IsolationStatus, MalopListing, MalopsPage,
    RemediationEntry, RemediationError, RemediationReport, ReputationEntry, Sensor, SensorStatus,
    SensorsPage,
};
pub use visualsearch::{Details, PartFailure};

use std::sync::atomic::{AtomicBool, AtomicU64};

/// An authenticated connection to one Cybereason server. Cheap to share behind an `Arc`;
/// all methods take `&self`.
pub struct Client {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    timeouts: Timeouts,
    retry: RetryPolicy,
    result_limit: u32,
    session: tokio::sync::Mutex<Option<session::Session>>,
    generation: AtomicU64,
    login_hold: std::sync::Mutex<Option<session::LoginHold>>,
    /// The server refused `EqualsIgnoreCase` on `machineName`: names are matched exactly.
    names_exact: AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("username", &self.credentials.username)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client (no network traffic yet: the first call logs in).
    pub fn new(config: ClientConfig) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::Config(format!(
                "base URL {base:?} must start with https:// (or http:// for the simulator)"
            )));
        }
        if let Some(host) = base.strip_prefix("http://")
            && !is_loopback(host)
        {
            tracing::warn!(
                "the server address {base} is plain http:// on another machine: the password and the session cookie cross the network unencrypted (real servers take https://)"
            );
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeouts.connect)
            .timeout(config.timeouts.request)
            .user_agent(concat!("riposte/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            for cert in load_ca(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pin) = config.pinned_certificate {
            builder = builder.use_preconfigured_tls(tls::pinned_config(pin));
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            credentials: config.credentials,
            timeouts: config.timeouts,
            retry: config.retry,
            result_limit: config.result_limit.clamp(1, RESULT_LIMIT),
            session: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(1),
            login_hold: std::sync::Mutex::new(None),
            names_exact: AtomicBool::new(false),
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The host part of the base URL (for messages).
    fn host(&self) -> String {
        let rest = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, r)| r);
        rest.split(['/', ':']).next().unwrap_or(rest).to_owned()
    }

    /// The user the client logs in as (the `initiatorUserName` of remediations).
    pub fn username(&self) -> &str {
        &self.credentials.username
    }

    /// Logs in now (otherwise the first call does); useful to check credentials at start-up.
    pub async fn login_now(&self) -> Result<()> {
        self.session().await.map(|_| ())
    }
}

fn load_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let ca_err = |reason: String| Error::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Whether a URL's `host[:port]` names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_addresses_are_told_from_others() {
        for local in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:80",
            "[::1]:443",
            "127.3.4.5",
        ] {
            assert!(super::is_loopback(local), "{local}");
        }
        for remote in [
            "10.0.0.1:80",
            "tenant.cybereason.net",
            "[fe80::1]:80",
            "localhost.evil.com",
        ] {
            assert!(!super::is_loopback(remote), "{remote}");
        }
    }
}
