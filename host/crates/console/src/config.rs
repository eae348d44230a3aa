//! `[console]`: where and how the console is served. Owned here; the service's loader
//! lets the section through (it is not the service's), and [`ConsoleConfig::load`] reads
//! it from the same file with the same loader, so its mistakes name their line and key.
//!
//! ```toml
//! [console]
//! listen = "127.0.0.1:8443"          # the default
//! public_url = "https://riposte.soc.example"   # for links in notifications
//! session_idle_secs = 1800           # a session unused this long ends
//! session_max_secs = 43200           # and none lasts longer than this
//! tls = { cert_file = "console.pem", key_file = "console.key" }
//! # insecure_http_behind_proxy = true  # plain HTTP on a non-loopback address, for a TLS proxy
//! ```

use riposte_domain::settings::{Findings, resolve_path};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default seconds a session may stay unused.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 30 * 60;
/// Default seconds a session may last at most.
pub const DEFAULT_SESSION_MAX_SECS: u64 = 12 * 3600;

/// The console's certificate and key (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`cert_file`).
    pub cert_file: PathBuf,
    /// Its private key (`key_file`).
    pub key_file: PathBuf,
}

/// `[console]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The address served (`listen`, default [`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// TLS (`tls`); without it the console speaks plain HTTP.
    pub tls: Option<TlsFiles>,
    /// The console's address as people reach it (`public_url`), for links sent elsewhere.
    pub public_url: Option<String>,
    /// Seconds a session may stay unused (`session_idle_secs`).
    pub session_idle_secs: u64,
    /// Seconds a session may last at most (`session_max_secs`).
    pub session_max_secs: u64,
    /// Plain HTTP on a non-loopback address is allowed only with this set
    /// (`insecure_http_behind_proxy`): a TLS reverse proxy in front does the encryption.
    pub insecure_http_behind_proxy: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a socket address"),
            tls: None,
            public_url: None,
            session_idle_secs: DEFAULT_SESSION_IDLE_SECS,
            session_max_secs: DEFAULT_SESSION_MAX_SECS,
            insecure_http_behind_proxy: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    listen: Option<String>,
    tls: Option<TlsFiles>,
    public_url: Option<String>,
    session_idle_secs: Option<u64>,
    session_max_secs: Option<u64>,
    #[serde(default)]
    insecure_http_behind_proxy: bool,
}

impl ConsoleConfig {
    /// Reads `[console]` from the operator's file: `None` when the section is absent (the
    /// console is then not served).
    pub fn load(path: &Path) -> Result<Option<Self>, riposte_config::Error> {
        riposte_config::load(path, build)
    }

    /// As [`ConsoleConfig::load`], for text read as if from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Option<Self>, riposte_config::Error> {
        riposte_config::parse(text, path, build)
    }

    /// Whether the session cookie must be `Secure` (served over TLS, or behind a TLS proxy).
    pub fn secure_cookies(&self) -> bool {
        self.tls.is_some() || self.insecure_http_behind_proxy
    }

    fn from_raw(raw: RawConsole, base: &Path) -> (Self, Findings) {
        let mut findings = Findings::new();
        let d = Self::default();
        let listen = match raw.listen.as_deref() {
            None => d.listen,
            Some(addr) => addr.parse().unwrap_or_else(|_| {
                findings.at(
                    "listen",
                    format!("`{addr}` is not a socket address; expected e.g. \"{DEFAULT_LISTEN}\""),
                );
                d.listen
            }),
        };
        let tls = raw.tls.map(|t| TlsFiles {
            cert_file: resolve_path(base, t.cert_file),
            key_file: resolve_path(base, t.key_file),
        });
        if tls.is_none() && !listen.ip().is_loopback() && !raw.insecure_http_behind_proxy {
            findings.at(
                "listen",
                format!(
                    "{listen} is not a loopback address: serve it with `tls = {{ cert_file, key_file }}`, \
                     or behind a TLS reverse proxy with `insecure_http_behind_proxy = true`"
                ),
            );
        }
        if let Some(url) = &raw.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            findings.at("public_url", format!("`{url}` is not an http(s) URL"));
        }
        let idle = raw.session_idle_secs.unwrap_or(d.session_idle_secs);
        let max = raw.session_max_secs.unwrap_or(d.session_max_secs);
        if idle == 0 {
            findings.at("session_idle_secs", "must be at least 1 second");
        }
        if max < idle {
            findings.at(
                "session_max_secs",
                format!("must be at least session_idle_secs ({idle})"),
            );
        }
        let config = Self {
            listen,
            tls,
            public_url: raw.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            session_idle_secs: idle,
            session_max_secs: max,
            insecure_http_behind_proxy: raw.insecure_http_behind_proxy,
        };
        (config, findings)
    }
}

fn build(doc: &mut riposte_config::Document<'_>) -> Option<ConsoleConfig> {
    let raw = doc.section::<Option<RawConsole>>("console").flatten()?;
    let base = doc.base().to_path_buf();
    let (config, findings) = ConsoleConfig::from_raw(raw, &base);
    doc.report_findings("console", findings);
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<ConsoleConfig>, riposte_config::Error> {
        ConsoleConfig::parse(text, Path::new("/etc/riposte/riposte.toml"))
    }

    #[test]
    fn absent_means_not_served_and_present_takes_the_defaults() {
        assert_eq!(parse("[service]\n").unwrap(), None);
        let config = parse("[console]\n").unwrap().unwrap();
        assert_eq!(config, ConsoleConfig::default());
        assert!(config.listen.ip().is_loopback());
    }

    #[test]
    fn plain_http_off_loopback_needs_the_proxy_flag() {
        let err = parse("[console]\nlisten = \"0.0.0.0:8443\"\n").unwrap_err();
        assert!(err.to_string().contains("console.listen"), "{err}");
        let config =
            parse("[console]\nlisten = \"0.0.0.0:8443\"\ninsecure_http_behind_proxy = true\n")
                .unwrap()
                .unwrap();
        assert!(config.secure_cookies());
        let config = parse(
            "[console]\nlisten = \"0.0.0.0:8443\"\ntls = { cert_file = \"c.pem\", key_file = \"k.pem\" }\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            config.tls.unwrap().cert_file,
            Path::new("/etc/riposte/c.pem")
        );
    }

    #[test]
    fn the_documented_block_loads() {
        let example = include_str!("../../../examples/riposte.toml");
        let start = example
            .find("# [console]\n")
            .expect("the example documents [console]");
        let block: String = example[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with('[')
                    || l.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let config = parse(&block).unwrap().expect("[console]");
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.session_idle_secs, DEFAULT_SESSION_IDLE_SECS);
        assert!(config.tls.is_some());
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("[console]\nsession_idle_secs = 0\nbogus = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bogus"), "{text}");
    }
}
