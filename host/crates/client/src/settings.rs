//! `[service.server]`: where the Cybereason server is, how its TLS certificate is checked,
//! and where its credentials are.

use riposte_domain::Sha256Digest;
use riposte_domain::settings::{Findings, resolve_path};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default timeout of one request to the server.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 60;

/// `[service.server]`, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerConfig {
    /// `https://host[:port]`, no path (`base_url`).
    pub base_url: String,
    /// A file holding the username and password (`credentials_file`, mode 0600); the password
    /// never appears in the configuration. Without it, `RIPOSTE_USERNAME` and
    /// `RIPOSTE_PASSWORD` are used.
    pub credentials_file: Option<PathBuf>,
    /// Timeout of one request (`request_timeout_secs`, default 60).
    pub request_timeout_secs: u64,
    /// A PEM file of CA certificates to trust besides the built-in roots (`ca_file`), for an
    /// on-premises server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The sha256 fingerprint of the one certificate the server may present
    /// (`pinned_certificate_sha256`), for a server whose certificate no CA vouches for.
    pub pinned_certificate: Option<Sha256Digest>,
}

/// `[service.server]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerConfig {
    base_url: String,
    #[serde(default)]
    credentials_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    request_timeout_secs: u64,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    pinned_certificate_sha256: Option<String>,
}

fn default_timeout() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_SECS
}

impl ServerConfig {
    /// Checks `[service.server]` and resolves its files against `base`, the directory of the
    /// configuration file.
    pub fn from_section(raw: RawServerConfig, base: &Path) -> (Self, Findings) {
        let mut findings = Findings::new();
        let base_url = raw.base_url.trim_end_matches('/').to_string();
        if !is_server_address(&base_url) {
            findings.at(
                "base_url",
                format!(
                    "`{}` is not a server address; expected `https://host[:port]` with no path",
                    raw.base_url
                ),
            );
        }
        if raw
            .credentials_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            findings.at(
                "credentials_file",
                "must not be empty (leave it out to use RIPOSTE_USERNAME and RIPOSTE_PASSWORD)",
            );
        }
        if raw.request_timeout_secs == 0 {
            findings.at("request_timeout_secs", "must be at least 1 second");
        }
        let ca_file = raw.ca_file.map(|f| resolve_path(base, f));
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            findings.at(
                "ca_file",
                format!(
                    "{} is not a readable file (a PEM file of CA certificates)",
                    ca.display()
                ),
            );
        }
        let pinned_certificate = raw.pinned_certificate_sha256.as_deref().and_then(|text| {
            let pin = crate::tls::parse_fingerprint(text);
            if pin.is_none() {
                findings.at(
                    "pinned_certificate_sha256",
                    format!("`{text}` is not a sha256 fingerprint: expected 64 hex digits, with or without `:` between bytes (as `openssl x509 -noout -fingerprint -sha256` prints)"),
                );
            }
            pin
        });
        if ca_file.is_some() && raw.pinned_certificate_sha256.is_some() {
            findings.at(
                "pinned_certificate_sha256",
                "set either ca_file or pinned_certificate_sha256: a pinned certificate is accepted whatever CA signed it",
            );
        }
        let config = Self {
            base_url,
            credentials_file: raw.credentials_file.map(|f| resolve_path(base, f)),
            request_timeout_secs: raw.request_timeout_secs,
            ca_file,
            pinned_certificate,
        };
        (config, findings)
    }
}

fn is_server_address(url: &str) -> bool {
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    host.is_some_and(|h| !h.is_empty() && !h.contains('/') && !h.contains(' '))
}
