//! `[notifications]`: where riposte posts its notifications, in which format, and for which
//! events. Owned here: its type, its one set of defaults and its checks, reported as
//! [`Findings`] keyed relative to the section.
//!
//! ```toml
//! [notifications]
//! queue_size = 100          # per webhook; the oldest waiting notification is dropped past it
//! max_attempts = 6          # tries of one notification, the first included
//! quiet_secs = 900          # a repeated pause, host failure or budget trip is sent once per this period
//!
//! [[notifications.webhooks]]
//! name = "soc-slack"
//! format = "slack"          # or "json" (the default)
//! events = ["approval-needed", "action-failed"]   # default: every event
//! credentials_file = "slack-webhook"               # `url = ...` (and/or `token = ...`), mode 0600
//! timeout_secs = 10
//! ```
//!
//! A webhook's URL may be written in the file (`url`) or, since a Slack incoming-webhook URL
//! is itself a secret, in the owner-only credentials file (`url = ...`); a bearer token
//! (`token = ...`, sent as `Authorization: Bearer`) only ever lives in that file. Neither is
//! logged, serialized or sent anywhere but to the webhook itself.

use riposte_domain::Secret;
use riposte_domain::settings::{Findings, resolve_path, unknown_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default notifications waiting per webhook.
pub const DEFAULT_QUEUE_SIZE: usize = 100;
/// Default tries of one notification, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default seconds before the first retry (doubled after each, with jitter).
pub const DEFAULT_FIRST_RETRY_MS: u64 = 1_000;
/// Default longest pause between two tries.
pub const DEFAULT_MAX_RETRY_MS: u64 = 60_000;
/// Default seconds a repeated pause or budget trip stays quiet.
pub const DEFAULT_QUIET_SECS: u64 = 900;
/// Default seconds one post may take.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The most webhooks one configuration may name.
pub const MAX_WEBHOOKS: usize = 16;
/// The largest queue a webhook may have.
pub const MAX_QUEUE_SIZE: usize = 10_000;
/// The keys of a webhook's credentials file.
pub const CREDENTIAL_KEYS: [&str; 2] = ["url", "token"];

/// What riposte notifies about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An action is held for an operator's approval.
    ApprovalNeeded,
    /// An action ended failed, or timed out (its outcome on the server unknown).
    ActionFailed,
    /// A plugin was paused after repeated traps.
    PluginPaused,
    /// The gate refused an action because a budget is spent.
    BudgetTripped,
    /// A time-boxed containment is about to be reverted.
    ContainmentReverting,
    /// riposte's own code failed while running a plugin (not the plugin's fault).
    HostFailure,
}

impl EventKind {
    /// Every event.
    pub const ALL: [EventKind; 6] = [
        Self::ApprovalNeeded,
        Self::ActionFailed,
        Self::PluginPaused,
        Self::BudgetTripped,
        Self::ContainmentReverting,
        Self::HostFailure,
    ];

    /// Its name in the configuration and the payload (`approval-needed`).
    pub fn name(self) -> &'static str {
        match self {
            Self::ApprovalNeeded => "approval-needed",
            Self::ActionFailed => "action-failed",
            Self::PluginPaused => "plugin-paused",
            Self::BudgetTripped => "budget-tripped",
            Self::ContainmentReverting => "containment-reverting",
            Self::HostFailure => "host-failure",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The shape of the body posted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Riposte's own JSON object (`event`, `at`, `host`, ids, `summary`, `link`).
    #[default]
    Json,
    /// Slack's incoming-webhook message (`text` and `blocks`).
    Slack,
}

/// `[notifications]`, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NotificationsConfig {
    /// Notifications waiting per webhook (`queue_size`); past it the oldest is dropped.
    pub queue_size: usize,
    /// Tries of one notification, the first included (`max_attempts`).
    pub max_attempts: u32,
    /// Pause before the first retry (`first_retry_ms`), doubled after each with jitter.
    pub first_retry: Duration,
    /// The longest pause between two tries (`max_retry_ms`).
    pub max_retry: Duration,
    /// A pause or host failure of the same plugin, or a trip of the same budget, is sent once per this
    /// period (`quiet_secs`).
    pub quiet: Duration,
    /// The name this host gives itself in payloads (`host`; default the machine's host name).
    pub host: Option<String>,
    /// The webhooks (`[[notifications.webhooks]]`); none: nothing is sent.
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            queue_size: DEFAULT_QUEUE_SIZE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            first_retry: Duration::from_millis(DEFAULT_FIRST_RETRY_MS),
            max_retry: Duration::from_millis(DEFAULT_MAX_RETRY_MS),
            quiet: Duration::from_secs(DEFAULT_QUIET_SECS),
            host: None,
            webhooks: Vec::new(),
        }
    }
}

/// One `[[notifications.webhooks]]`, checked, its credentials read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookConfig {
    /// Its name in logs and statistics (`name`; default `webhook-N`, 1-based).
    pub name: String,
    /// Where it posts, shown without its path or query (`https://hooks.slack.com`): the only
    /// form of the URL that is logged or serialized.
    pub target: String,
    /// The full URL (from the file or the credentials file): a secret.
    #[serde(skip)]
    pub url: Secret,
    /// A bearer token (`token` in the credentials file), sent as `Authorization: Bearer`.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// The credentials file, if any (`credentials_file`, relative to the configuration).
    pub credentials_file: Option<PathBuf>,
    /// The body's shape (`format`).
    pub format: Format,
    /// The events it receives (`events`; default every one).
    pub events: BTreeSet<EventKind>,
    /// How long one post may take (`timeout_secs`).
    pub timeout: Duration,
}

/// `[notifications]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotifications {
    queue_size: usize,
    max_attempts: u32,
    first_retry_ms: u64,
    max_retry_ms: u64,
    quiet_secs: u64,
    host: Option<String>,
    webhooks: Vec<RawWebhook>,
}

impl Default for RawNotifications {
    fn default() -> Self {
        Self {
            queue_size: DEFAULT_QUEUE_SIZE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            first_retry_ms: DEFAULT_FIRST_RETRY_MS,
            max_retry_ms: DEFAULT_MAX_RETRY_MS,
            quiet_secs: DEFAULT_QUIET_SECS,
            host: None,
            webhooks: Vec::new(),
        }
    }
}

/// One `[[notifications.webhooks]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    credentials_file: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl NotificationsConfig {
    /// Checks the section as written (reading each webhook's credentials file, relative to
    /// `base`): the configuration, and every mistake found, keyed relative to the section.
    /// A webhook with a mistake is left out.
    pub fn from_section(raw: RawNotifications, base: &Path) -> (Self, Findings) {
        let mut findings = Findings::new();
        if raw.queue_size == 0 || raw.queue_size > MAX_QUEUE_SIZE {
            findings.at(
                "queue_size",
                format!("must be between 1 and {MAX_QUEUE_SIZE}"),
            );
        }
        if raw.max_attempts == 0 {
            findings.at("max_attempts", "must be at least 1 (1 = no retry)");
        }
        if raw.first_retry_ms == 0 {
            findings.at("first_retry_ms", "must be at least 1 millisecond");
        }
        if raw.max_retry_ms < raw.first_retry_ms {
            findings.at(
                "max_retry_ms",
                format!("must be at least first_retry_ms ({})", raw.first_retry_ms),
            );
        }
        if let Some(host) = &raw.host
            && (host.is_empty() || host.len() > 255 || host.chars().any(char::is_control))
        {
            findings.at("host", "must be 1 to 255 characters on one line");
        }
        if raw.webhooks.len() > MAX_WEBHOOKS {
            findings.at("webhooks", format!("at most {MAX_WEBHOOKS} webhooks"));
        }
        let mut names = BTreeSet::new();
        let mut webhooks = Vec::new();
        for (i, raw) in raw.webhooks.into_iter().enumerate() {
            let key = format!("webhooks[{i}]");
            let (webhook, inner) = webhook(raw, i, base);
            if let Some(w) = &webhook
                && !names.insert(w.name.clone())
            {
                findings.at(
                    format!("{key}.name"),
                    format!("duplicate webhook name `{}`", w.name),
                );
            }
            findings.nest(&key, inner);
            webhooks.extend(webhook);
        }
        let config = Self {
            queue_size: raw.queue_size,
            max_attempts: raw.max_attempts,
            first_retry: Duration::from_millis(raw.first_retry_ms),
            max_retry: Duration::from_millis(raw.max_retry_ms),
            quiet: Duration::from_secs(raw.quiet_secs),
            host: raw.host,
            webhooks,
        };
        (config, findings)
    }
}

fn webhook(raw: RawWebhook, index: usize, base: &Path) -> (Option<WebhookConfig>, Findings) {
    let mut findings = Findings::new();
    let name = raw.name.unwrap_or_else(|| format!("webhook-{}", index + 1));
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        findings.at(
            "name",
            "use 1 to 64 letters, digits, `-`, `_` and `.`".to_string(),
        );
    }
    let format = match raw.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("slack") => Format::Slack,
        Some(other) => {
            findings.at("format", unknown_name("format", other, &["json", "slack"]));
            Format::Json
        }
    };
    let events = match raw.events {
        None => EventKind::ALL.into_iter().collect(),
        Some(names) => {
            let all = EventKind::ALL.map(EventKind::name);
            let mut events = BTreeSet::new();
            for (i, name) in names.iter().enumerate() {
                match EventKind::from_name(name) {
                    Some(kind) => {
                        events.insert(kind);
                    }
                    None => findings.at(format!("events[{i}]"), unknown_name("event", name, &all)),
                }
            }
            if names.is_empty() {
                findings.at(
                    "events",
                    "must name at least one event (leave it out for all)",
                );
            }
            events
        }
    };
    if raw.timeout_secs == 0 || raw.timeout_secs > 300 {
        findings.at("timeout_secs", "must be between 1 and 300 seconds");
    }
    let credentials_file = raw.credentials_file.map(|f| resolve_path(base, f));
    let mut credentials = std::collections::BTreeMap::new();
    if let Some(file) = &credentials_file {
        match riposte_domain::secret::read_credentials_file(file, &CREDENTIAL_KEYS) {
            Ok(values) => credentials = values,
            Err(why) => findings.at("credentials_file", why),
        }
    }
    let from_file = credentials.remove("url");
    let url = match (raw.url, from_file) {
        (Some(_), Some(_)) => {
            findings.at(
                "url",
                "given both here and in the credentials file; keep one (the credentials file for a URL that is a secret)",
            );
            None
        }
        (Some(url), None) => Some((url, "url")),
        (None, Some(url)) => Some((url, "credentials_file")),
        (None, None) => {
            if findings.is_empty() {
                findings.at(
                    "url",
                    "missing: give `url` here or `url = ...` in the credentials file",
                );
            }
            None
        }
    };
    let target = url.as_ref().and_then(|(url, key)| {
        let target = checked_url(url);
        if let Err(why) = &target {
            // The URL may be a secret (a Slack webhook's path): never echoed.
            findings.at(*key, why.clone());
        }
        target.ok()
    });
    let token = credentials.remove("token").map(Secret::new);
    if token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.expose().chars().any(|c| c.is_control() || c == ' '))
    {
        findings.at(
            "credentials_file",
            "the token must be one word with no control characters",
        );
    }
    if !findings.is_empty() {
        return (None, findings);
    }
    let webhook = url.zip(target).map(|((url, _), target)| WebhookConfig {
        name,
        target,
        url: Secret::new(url),
        token,
        credentials_file,
        format,
        events,
        timeout: Duration::from_secs(raw.timeout_secs),
    });
    (webhook, findings)
}

/// The URL's `scheme://host[:port]` if it is an http(s) URL with a host and no user
/// information; the reason otherwise, without the URL.
fn checked_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported; use https (or http)",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str() else {
        return Err("has no host".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user or password; put a bearer token in the credentials file (`token = ...`)".into());
    }
    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, base: &Path) -> (NotificationsConfig, Vec<(String, String)>) {
        let raw: RawNotifications = toml::from_str(text).expect("the shape parses");
        let (config, findings) = NotificationsConfig::from_section(raw, base);
        let findings = findings.into_iter().map(|f| (f.key, f.message)).collect();
        (config, findings)
    }

    #[test]
    fn defaults_and_a_full_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let (config, findings) = parse(
            r#"
            [[webhooks]]
            url = "https://hooks.example.com/services/T0/B0/SECRETPATH"
            format = "slack"
            events = ["approval-needed", "budget-tripped"]
            timeout_secs = 5
            "#,
            dir.path(),
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(config.queue_size, DEFAULT_QUEUE_SIZE);
        let hook = &config.webhooks[0];
        assert_eq!(hook.name, "webhook-1");
        assert_eq!(hook.target, "https://hooks.example.com");
        assert_eq!(hook.format, Format::Slack);
        assert_eq!(
            hook.events,
            [EventKind::ApprovalNeeded, EventKind::BudgetTripped].into()
        );
        let shown = serde_json::to_string(&config).unwrap() + &format!("{config:?}");
        assert!(!shown.contains("SECRETPATH"), "{shown}");
    }

    #[test]
    fn mistakes_are_keyed_and_never_echo_a_url() {
        let dir = tempfile::tempdir().unwrap();
        let (config, findings) = parse(
            r#"
            queue_size = 0
            max_attempts = 0
            [[webhooks]]
            name = "a b"
            url = "ftp://x/SECRETPATH"
            format = "slak"
            events = ["approval-neded"]
            timeout_secs = 0
            [[webhooks]]
            url = "https://user:SECRETPASS@example.com/"
            [[webhooks]]
            "#,
            dir.path(),
        );
        assert!(config.webhooks.is_empty());
        let keys: Vec<&str> = findings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "queue_size",
                "max_attempts",
                "webhooks[0].name",
                "webhooks[0].format",
                "webhooks[0].events[0]",
                "webhooks[0].timeout_secs",
                "webhooks[0].url",
                "webhooks[1].url",
                "webhooks[2].url",
            ]
        );
        let text = format!("{findings:?}");
        assert!(text.contains("did you mean `slack`?"), "{text}");
        assert!(text.contains("did you mean `approval-needed`?"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn the_url_and_token_may_come_from_an_owner_only_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(
            &file,
            "url = https://hooks.example.com/SECRETPATH\ntoken = SECRETTOKEN\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = "[[webhooks]]\nname = \"soc\"\ncredentials_file = \"hook\"\n";
        let (_, findings) = parse(text, dir.path());
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].1.contains("chmod 600"), "{findings:?}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (config, findings) = parse(text, dir.path());
        assert!(findings.is_empty(), "{findings:?}");
        let hook = &config.webhooks[0];
        assert_eq!(hook.url.expose(), "https://hooks.example.com/SECRETPATH");
        assert_eq!(hook.token.as_ref().map(Secret::expose), Some("SECRETTOKEN"));
        let shown = serde_json::to_string(&config).unwrap() + &format!("{config:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
