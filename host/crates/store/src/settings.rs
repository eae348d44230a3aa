//! `[service.database]`: which database holds the service's state.
//!
//! ```toml
//! [service.database]        # the default: SQLite, embedded, one host
//! backend = "sqlite"
//! path = "riposte.db"       # relative to the configuration file
//!
//! [service.database]        # several hosts sharing one PostgreSQL database
//! backend = "postgres"
//! url = "postgres://riposte@db.corp:5432/riposte"   # no password here
//! password_env = "RIPOSTE_DATABASE_PASSWORD"        # the default; or:
//! # credentials_file = "database-credentials"        # `password = ...`, mode 0600
//! # ca_file = "db-ca.pem"   # CA certificates of the server's TLS certificate (PEM)
//! lease_secs = 30           # work held by a host that stops heartbeating moves after this
//! heartbeat_secs = 5        # less than half of lease_secs
//! ```
//!
//! The older form `[service] database = "riposte.db"` still means SQLite at that path.
//!
//! The password never lives in the configuration file, and never appears in a finding, an
//! error, a log line or `Debug` output: it is held as a [`Secret`] and handed to the driver
//! only through [`PostgresConfig::connect_string`] or [`PostgresConfig::password`]. What may
//! be shown is [`PostgresConfig::shown`] (the URL, which never carries it).

use riposte_domain::Secret;
use riposte_domain::secret::read_credentials_file;
use riposte_domain::settings::{Findings, resolve_path, unknown_name};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The SQLite database when none is named, relative to the configuration file.
pub const DEFAULT_SQLITE_PATH: &str = "riposte.db";
/// The environment variable holding the PostgreSQL password when `password_env` is not set.
pub const DEFAULT_PASSWORD_ENV: &str = "RIPOSTE_DATABASE_PASSWORD";
/// How long a host's claim on work outlives its last heartbeat, by default.
pub const DEFAULT_LEASE_SECS: u64 = 30;
/// How often a host renews its lease, by default.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 5;

/// The backends, as `backend` names them.
const BACKENDS: [&str; 2] = ["sqlite", "postgres"];
/// The shape of a PostgreSQL URL, for messages.
const URL_SHAPE: &str = "postgres://USER@HOST[:PORT]/DATABASE";

/// `[service.database]`, checked and resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatabaseConfig {
    /// Which database, and how to reach it.
    pub backend: Backend,
}

/// The database holding the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum Backend {
    /// An embedded SQLite file: one host (`backend = "sqlite"`, the default).
    Sqlite {
        /// The database file, resolved against the configuration's directory (`path`,
        /// default `riposte.db`).
        path: PathBuf,
    },
    /// A PostgreSQL database that several hosts share (`backend = "postgres"`).
    Postgres(PostgresConfig),
}

/// Where the PostgreSQL password came from (for messages: never the password itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordSource {
    /// The environment variable of this name (`password_env`).
    Env(String),
    /// This credentials file (`credentials_file`).
    CredentialsFile(PathBuf),
    /// Handed over in code ([`PostgresConfig::new`], [`PostgresConfig::from_url_with_password`]).
    Given,
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "the environment variable {name}"),
            Self::CredentialsFile(path) => write!(f, "the credentials file {}", path.display()),
            Self::Given => f.write_str("the caller"),
        }
    }
}

/// A PostgreSQL database and the fleet's timing. The URL never carries the password, which
/// is a [`Secret`]: `Debug` shows neither the password nor a URL holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/dbname[?params]`, without a password.
    url: Url,
    password: Secret,
    password_source: PasswordSource,
    ca_file: Option<PathBuf>,
    lease_secs: u64,
    heartbeat_secs: u64,
}

impl DatabaseConfig {
    /// SQLite at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            backend: Backend::Sqlite { path: path.into() },
        }
    }

    /// PostgreSQL as `config` says.
    pub fn postgres(config: PostgresConfig) -> Self {
        Self {
            backend: Backend::Postgres(config),
        }
    }

    /// The SQLite file, if that is the backend.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// Whether `self` and `other` name the same database (the same SQLite file, or the
    /// same PostgreSQL URL), whatever the password and the fleet's timing.
    pub fn same_database(&self, other: &Self) -> bool {
        match (&self.backend, &other.backend) {
            (Backend::Sqlite { path: a }, Backend::Sqlite { path: b }) => a == b,
            (Backend::Postgres(a), Backend::Postgres(b)) => a.url == b.url,
            _ => false,
        }
    }

    /// Checks the `database` of `[service]` (a path, or the `[service.database]` table) and
    /// resolves it: a relative path against `base`, the configuration file's directory; the
    /// PostgreSQL password from the environment or the credentials file. Findings are keyed
    /// relative to `service.database`.
    pub fn from_section(raw: RawDatabase, base: &Path) -> (Self, Findings) {
        Self::resolve(raw, base, &|name: &str| std::env::var(name).ok())
    }

    /// [`DatabaseConfig::from_section`] with the environment read through `env`.
    fn resolve(
        raw: RawDatabase,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Self, Findings) {
        let mut findings = Findings::new();
        let section = match raw {
            RawDatabase::Path(path) => {
                if path.as_os_str().is_empty() {
                    findings.at("", "must not be empty");
                }
                let text = path.to_string_lossy();
                if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                    findings.at(
                        "",
                        "is a SQLite path; name a PostgreSQL database in a [service.database] table: backend = \"postgres\" and url (without its password)",
                    );
                    return (Self::default(), findings);
                }
                return (Self::sqlite(resolve_path(base, path)), findings);
            }
            RawDatabase::Section(section) => section,
        };
        if section.password.is_some() {
            findings.at(
                "password",
                format!(
                    "a password never goes in this file: put it in the environment variable named by password_env ({DEFAULT_PASSWORD_ENV} by default) or in the file named by credentials_file"
                ),
            );
        }
        let config = match section.backend.as_deref().unwrap_or("sqlite") {
            "sqlite" => section.sqlite(base, &mut findings),
            "postgres" => section.postgres(base, env, &mut findings),
            other => {
                findings.at("backend", unknown_name("backend", other, &BACKENDS));
                None
            }
        };
        (config.unwrap_or_default(), findings)
    }
}

impl Default for DatabaseConfig {
    /// SQLite at `riposte.db` (relative: the configuration's directory once loaded).
    fn default() -> Self {
        Self::sqlite(DEFAULT_SQLITE_PATH)
    }
}

impl fmt::Display for DatabaseConfig {
    /// What may be shown: the SQLite file, or the PostgreSQL URL (never with a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Sqlite { path } => write!(f, "SQLite database {}", path.display()),
            Backend::Postgres(pg) => write!(f, "PostgreSQL database {}", pg.shown()),
        }
    }
}

impl PostgresConfig {
    /// The database at `url` (which must not carry a password) with `password`, and the
    /// default lease and heartbeat.
    pub fn new(url: &str, password: Secret) -> Result<Self, String> {
        let url = check_url(url)?;
        if url.password().is_some() {
            return Err(password_in_url(&url));
        }
        Self::with(url, password, PasswordSource::Given)
    }

    /// The database at `url` with the password it carries, taken out of it and kept as a
    /// secret: for tests and tools handed a whole URL (`RIPOSTE_TEST_POSTGRES`), never for
    /// the operator's configuration.
    pub fn from_url_with_password(url: &str) -> Result<Self, String> {
        let mut url = check_url(url)?;
        let password = url
            .password()
            .map(percent_decode)
            .ok_or_else(|| format!("`{url}` carries no password"))?;
        let _ = url.set_password(None);
        Self::with(url, Secret::new(password), PasswordSource::Given)
    }

    fn with(url: Url, password: Secret, password_source: PasswordSource) -> Result<Self, String> {
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        Ok(Self {
            url,
            password,
            password_source,
            ca_file: None,
            lease_secs: DEFAULT_LEASE_SECS,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
        })
    }

    /// The same database with another lease and heartbeat (checked as the configuration
    /// checks `lease_secs` and `heartbeat_secs`).
    pub fn with_timing(mut self, lease_secs: u64, heartbeat_secs: u64) -> Result<Self, String> {
        if let Some((_, why)) = timing_problem(lease_secs, heartbeat_secs) {
            return Err(why);
        }
        self.lease_secs = lease_secs;
        self.heartbeat_secs = heartbeat_secs;
        Ok(self)
    }

    /// The same database, its server's TLS certificate checked against the CA certificates
    /// of `path` (a PEM file) besides Mozilla's roots.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Result<Self, String> {
        let path = path.into();
        crate::postgres::read_ca_file(&path)?;
        self.ca_file = Some(path);
        Ok(self)
    }

    /// The PEM file of CA certificates trusted for the server's TLS certificate
    /// (`ca_file`), besides Mozilla's roots.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The URL as the driver takes it (no password): libpq's `sslmode=verify-ca` and
    /// `verify-full` become `require`, which verifies the certificate and the host name
    /// anyway.
    pub fn driver_url(&self) -> String {
        let mut url = self.url.clone();
        let pairs: Vec<(String, String)> = self
            .url
            .query_pairs()
            .map(|(k, v)| match (k.as_ref(), v.as_ref()) {
                ("sslmode", "verify-ca" | "verify-full") => (k.into_owned(), "require".to_owned()),
                _ => (k.into_owned(), v.into_owned()),
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.into()
    }

    /// The URL with the password set in it, percent-encoded: for the driver only.
    pub fn connect_string(&self) -> Secret {
        let mut url = self.url.clone();
        // A URL checked by `check_url` has a host, so it takes a password.
        let _ = url.set_password(Some(self.password.expose()));
        Secret::new(String::from(url))
    }

    /// The password, for a driver that takes it apart from the URL.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// Where the password came from, to name it in a message (an authentication failure).
    pub fn password_source(&self) -> &PasswordSource {
        &self.password_source
    }

    /// The URL as configured, without a password: safe to print, log and audit.
    pub fn shown(&self) -> &str {
        self.url.as_str()
    }

    /// The user the service connects as.
    pub fn user(&self) -> &str {
        self.url.username()
    }

    /// How long a host's claim on work outlives its last heartbeat (`lease_secs`, default 30).
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// How often a host renews its lease (`heartbeat_secs`, default 5; less than half of
    /// the lease).
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

impl Serialize for PostgresConfig {
    /// The URL (no password), where the password comes from, and the timing.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("PostgresConfig", 5)?;
        s.serialize_field("url", self.shown())?;
        s.serialize_field("password_from", &self.password_source)?;
        s.serialize_field("ca_file", &self.ca_file)?;
        s.serialize_field("lease_secs", &self.lease_secs)?;
        s.serialize_field("heartbeat_secs", &self.heartbeat_secs)?;
        s.end()
    }
}

// ---------------------------------------------------------------------------------------
// The file shape.

/// `database` in `[service]` as written: a path (the older `database = "riposte.db"`) or
/// the `[service.database]` table.
#[derive(Debug)]
pub enum RawDatabase {
    /// `database = "path"`: SQLite at that path.
    Path(PathBuf),
    /// `[service.database]`.
    Section(RawDatabaseSection),
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self::Section(RawDatabaseSection::default())
    }
}

impl<'de> Deserialize<'de> for RawDatabase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathOrTable;
        impl<'de> Visitor<'de> for PathOrTable {
            type Value = RawDatabase;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a `[service.database]` table, or a SQLite path (`database = \"riposte.db\"`)",
                )
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<RawDatabase, E> {
                Ok(RawDatabase::Path(PathBuf::from(path)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDatabase, A::Error> {
                RawDatabaseSection::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawDatabase::Section)
            }
        }
        deserializer.deserialize_any(PathOrTable)
    }
}

/// `[service.database]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabaseSection {
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    credentials_file: Option<PathBuf>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    lease_secs: Option<u64>,
    #[serde(default)]
    heartbeat_secs: Option<u64>,
    /// Refused with its own message; its value is never kept.
    #[serde(default)]
    password: Option<IgnoredAny>,
}

impl RawDatabaseSection {
    fn sqlite(self, base: &Path, findings: &mut Findings) -> Option<DatabaseConfig> {
        for (key, given) in [
            ("url", self.url.is_some()),
            ("password_env", self.password_env.is_some()),
            ("credentials_file", self.credentials_file.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("lease_secs", self.lease_secs.is_some()),
            ("heartbeat_secs", self.heartbeat_secs.is_some()),
        ] {
            if given {
                findings.at(key, "applies to backend = \"postgres\" only");
            }
        }
        let path = self
            .path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SQLITE_PATH));
        if path.as_os_str().is_empty() {
            findings.at("path", "must not be empty");
            return None;
        }
        Some(DatabaseConfig::sqlite(resolve_path(base, path)))
    }

    fn postgres(
        self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        findings: &mut Findings,
    ) -> Option<DatabaseConfig> {
        if self.path.is_some() {
            findings.at(
                "path",
                "applies to backend = \"sqlite\" only; a PostgreSQL database is named by url",
            );
        }
        let url = match self.url.as_deref().map(check_url) {
            None => {
                findings.at(
                    "url",
                    format!("required with backend = \"postgres\": {URL_SHAPE}"),
                );
                None
            }
            Some(Err(why)) => {
                findings.at("url", why);
                None
            }
            Some(Ok(url)) if url.password().is_some() => {
                findings.at("url", password_in_url(&url));
                None
            }
            Some(Ok(url)) => Some(url),
        };
        let password = self.password(base, env, findings);
        let ca_file = self.ca_file.as_ref().map(|f| resolve_path(base, f.clone()));
        if let Some(path) = &ca_file
            && let Err(why) = crate::postgres::read_ca_file(path)
        {
            findings.at("ca_file", why);
        }
        let lease_secs = self.lease_secs.unwrap_or(DEFAULT_LEASE_SECS);
        let heartbeat_secs = self.heartbeat_secs.unwrap_or(DEFAULT_HEARTBEAT_SECS);
        if let Some((key, why)) = timing_problem(lease_secs, heartbeat_secs) {
            findings.at(key, why);
        }
        let (url, (password, password_source)) = (url?, password?);
        Some(DatabaseConfig::postgres(PostgresConfig {
            url,
            password,
            password_source,
            ca_file,
            lease_secs,
            heartbeat_secs,
        }))
    }

    /// The password from the credentials file if one is named, else from the environment.
    fn password(
        &self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        findings: &mut Findings,
    ) -> Option<(Secret, PasswordSource)> {
        if let Some(file) = &self.credentials_file {
            if self.password_env.is_some() {
                findings.at(
                    "credentials_file",
                    "set either credentials_file or password_env: the password comes from one place",
                );
                return None;
            }
            if file.as_os_str().is_empty() {
                findings.at(
                    "credentials_file",
                    format!(
                        "must not be empty (leave it out to use the environment variable {DEFAULT_PASSWORD_ENV})"
                    ),
                );
                return None;
            }
            let path = resolve_path(base, file.clone());
            let password = read_credentials_file(&path, &["password"])
                .and_then(|mut values| {
                    values
                        .remove("password")
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| {
                            format!(
                                "credentials file {}: `password = ...` is required",
                                path.display()
                            )
                        })
                })
                .map_err(|why| findings.at("credentials_file", why))
                .ok()?;
            return Some((Secret::new(password), PasswordSource::CredentialsFile(path)));
        }
        let name = self.password_env.as_deref().unwrap_or(DEFAULT_PASSWORD_ENV);
        if name.is_empty() || name.contains(['=', '\0']) {
            findings.at(
                "password_env",
                format!("`{name}` is not an environment variable name"),
            );
            return None;
        }
        match env(name).filter(|p| !p.is_empty()) {
            Some(password) => Some((Secret::new(password), PasswordSource::Env(name.to_owned()))),
            None => {
                findings.at(
                    "password_env",
                    format!(
                        "the environment variable {name} is not set (or empty): it holds the PostgreSQL password; set it, or name a file holding `password = ...` in credentials_file"
                    ),
                );
                None
            }
        }
    }
}

/// Parses a PostgreSQL URL: the scheme, a user, a host and a database name. The message of
/// a URL that does not parse never repeats it (it may hold a password).
/// The `sslmode`s of a URL: the driver's three, and libpq's two verifying ones (which
/// riposte does in every mode that uses TLS).
const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("is not a URL ({e}); expected {URL_SHAPE}"))?;
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "`{shown}` is not a PostgreSQL URL; expected {URL_SHAPE}"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` names no host; expected {URL_SHAPE}"));
    }
    if url.username().is_empty() {
        return Err(format!("`{shown}` names no user; expected {URL_SHAPE}"));
    }
    let database = url.path().strip_prefix('/').unwrap_or_default();
    if database.is_empty() || database.contains('/') {
        return Err(format!(
            "`{shown}` names no database (one path segment); expected {URL_SHAPE}"
        ));
    }
    if let Some((_, mode)) = url.query_pairs().find(|(key, _)| key == "sslmode")
        && !SSL_MODES.contains(&mode.as_ref())
    {
        return Err(format!(
            "`{shown}`: sslmode `{mode}` is not one of {}",
            SSL_MODES.join(", ")
        ));
    }
    if let Some((key, _)) = url
        .query_pairs()
        .find(|(key, _)| key.to_ascii_lowercase().contains("password"))
    {
        return Err(format!(
            "the URL carries a password in its `{key}` parameter: a password never goes in this file; put it in the environment variable named by password_env ({DEFAULT_PASSWORD_ENV} by default) or in the file named by credentials_file"
        ));
    }
    Ok(url)
}

/// The finding for a URL with a password: the URL shown without it.
fn password_in_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    format!(
        "the URL carries a password: a password never goes in this file; write `{shown}` and put the password in the environment variable named by password_env ({DEFAULT_PASSWORD_ENV} by default) or in the file named by credentials_file"
    )
}

/// The key and message of what is wrong with a lease and heartbeat, if anything.
fn timing_problem(lease_secs: u64, heartbeat_secs: u64) -> Option<(&'static str, String)> {
    if lease_secs == 0 {
        return Some(("lease_secs", "must be at least 1 second".into()));
    }
    if heartbeat_secs == 0 {
        return Some(("heartbeat_secs", "must be at least 1 second".into()));
    }
    if heartbeat_secs.saturating_mul(2) >= lease_secs {
        return Some((
            "heartbeat_secs",
            format!(
                "{heartbeat_secs} must be less than half of lease_secs ({lease_secs}): a host renews its lease every heartbeat and must have two tries before the lease runs out"
            ),
        ));
    }
    None
}

/// `%XX` sequences decoded (a URL's password as the user meant it).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr:t@/%pw";

    /// A `[service.database]` table of `text` as the loader hands it over.
    fn raw(text: &str) -> RawDatabase {
        #[derive(Deserialize)]
        struct Service {
            database: RawDatabase,
        }
        toml::from_str::<Service>(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .database
    }

    fn load(text: &str, env: &[(&str, &str)]) -> (DatabaseConfig, Vec<(String, String)>) {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (config, findings) =
            DatabaseConfig::resolve(raw(text), Path::new("/etc/riposte"), &lookup);
        let findings = findings.into_iter().map(|f| (f.key, f.message)).collect();
        (config, findings)
    }

    fn postgres(config: &DatabaseConfig) -> &PostgresConfig {
        match &config.backend {
            Backend::Postgres(pg) => pg,
            other => panic!("expected PostgreSQL, got {other:?}"),
        }
    }

    /// Every way the configuration can be shown: none holds the password.
    fn assert_never_shown(config: &DatabaseConfig, findings: &[(String, String)]) {
        let shown = format!(
            "{config:?} {config} {} {findings:?}",
            serde_json::to_string(config).unwrap()
        );
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains("s3cr"), "{shown}");
    }

    #[test]
    fn sqlite_by_default_and_the_older_key_still_works() {
        let (config, findings) = load("[database]\n", &[]);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(config, DatabaseConfig::sqlite("/etc/riposte/riposte.db"));

        let (config, findings) = load(
            "[database]\nbackend = \"sqlite\"\npath = \"/var/lib/r.db\"\n",
            &[],
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(config.sqlite_path(), Some(Path::new("/var/lib/r.db")));

        let (config, findings) = load("database = \"state/r.db\"\n", &[]);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(config, DatabaseConfig::sqlite("/etc/riposte/state/r.db"));
        assert_eq!(
            config.to_string(),
            "SQLite database /etc/riposte/state/r.db"
        );

        let (_, findings) = load("database = \"\"\n", &[]);
        assert_eq!(findings, [(String::new(), "must not be empty".to_string())]);
        let (config, findings) = load("database = \"postgres://r:s3cr@h/d\"\n", &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].1.contains("backend = \"postgres\""),
            "{findings:?}"
        );
        assert_never_shown(&config, &findings);
    }

    #[test]
    fn sqlite_refuses_the_keys_of_postgres() {
        let (_, findings) = load(
            "[database]\nurl = \"postgres://r@h/d\"\nlease_secs = 10\n",
            &[],
        );
        let keys: Vec<&str> = findings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["url", "lease_secs"], "{findings:?}");
        assert!(
            findings[0].1.contains("backend = \"postgres\""),
            "{findings:?}"
        );

        let (_, findings) = load("[database]\nbackend = \"postgre\"\n", &[]);
        assert_eq!(findings[0].0, "backend");
        assert!(
            findings[0].1.contains("did you mean `postgres`?"),
            "{findings:?}"
        );
    }

    #[test]
    fn postgres_with_the_password_from_the_environment() {
        let text = "[database]\nbackend = \"postgres\"\nurl = \"postgres://riposte@db.corp:5433/riposte?sslmode=require\"\n";
        let (config, findings) = load(text, &[(DEFAULT_PASSWORD_ENV, PASSWORD)]);
        assert!(findings.is_empty(), "{findings:?}");
        let pg = postgres(&config);
        assert_eq!(
            pg.shown(),
            "postgres://riposte@db.corp:5433/riposte?sslmode=require"
        );
        assert_eq!(pg.user(), "riposte");
        assert_eq!(pg.password().expose(), PASSWORD);
        assert_eq!(
            pg.password_source(),
            &PasswordSource::Env(DEFAULT_PASSWORD_ENV.into())
        );
        assert_eq!(
            (pg.lease(), pg.heartbeat()),
            (Duration::from_secs(30), Duration::from_secs(5))
        );
        // The driver's string carries the password, percent-encoded, and decodes back to it.
        let connect = pg.connect_string();
        let parsed = Url::parse(connect.expose()).unwrap();
        assert_eq!(parsed.username(), "riposte");
        assert_eq!(percent_decode(parsed.password().unwrap()), PASSWORD);
        assert_eq!(parsed.host_str(), Some("db.corp"));
        assert_eq!(parsed.port(), Some(5433));
        assert_eq!(parsed.path(), "/riposte");
        assert_eq!(parsed.query(), Some("sslmode=require"));
        assert!(!format!("{connect:?}").contains("s3cr"));
        assert_never_shown(&config, &findings);
        assert_eq!(
            config.to_string(),
            "PostgreSQL database postgres://riposte@db.corp:5433/riposte?sslmode=require"
        );

        // Another variable, named by password_env; missing, it is named in the finding.
        let text = "[database]\nbackend = \"postgres\"\nurl = \"postgresql://r@10.0.0.5/state\"\npassword_env = \"DB_PW\"\n";
        let (config, findings) = load(text, &[("DB_PW", PASSWORD)]);
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(postgres(&config).password().expose(), PASSWORD);
        let (_, findings) = load(text, &[(DEFAULT_PASSWORD_ENV, PASSWORD), ("DB_PW", "")]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].0, "password_env");
        assert!(findings[0].1.contains("DB_PW is not set"), "{findings:?}");
    }

    #[cfg(unix)]
    #[test]
    fn postgres_with_the_password_from_a_private_credentials_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db-credentials");
        std::fs::write(
            &file,
            format!("# the database\npassword = \"{PASSWORD}\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d\"\ncredentials_file = {:?}\n",
            file.display().to_string()
        );
        let (config, findings) = load(&text, &[]);
        assert!(findings.is_empty(), "{findings:?}");
        let pg = postgres(&config);
        assert_eq!(pg.password().expose(), PASSWORD);
        assert_eq!(
            pg.password_source(),
            &PasswordSource::CredentialsFile(file.clone())
        );
        assert_never_shown(&config, &findings);

        // Readable by others: refused before it is read, with the fix.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, findings) = load(&text, &[]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].0, "credentials_file");
        assert!(
            findings[0].1.contains("(mode 0644)") && findings[0].1.contains("chmod 600"),
            "{findings:?}"
        );

        // No password line, or both sources named.
        std::fs::write(&file, "# nothing\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (_, findings) = load(&text, &[]);
        assert!(
            findings[0].1.contains("`password = ...` is required"),
            "{findings:?}"
        );
        let (_, findings) = load(&format!("{text}password_env = \"X\"\n"), &[("X", "y")]);
        assert_eq!(findings[0].0, "credentials_file");
        assert!(
            findings[0]
                .1
                .contains("either credentials_file or password_env"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_password_in_the_url_or_the_file_is_refused_without_repeating_it() {
        let text = format!(
            "[database]\nbackend = \"postgres\"\nurl = \"postgres://riposte:{PASSWORD}@db:5432/riposte\"\n"
        );
        // `@` and `/` in a raw password make the URL ambiguous; percent-encoded it parses.
        let encoded = text.replace(PASSWORD, "s3cr%3At%40%2F%25pw");
        for text in [&text, &encoded] {
            let (config, findings) = load(text, &[(DEFAULT_PASSWORD_ENV, "other")]);
            assert_eq!(findings.len(), 1, "{findings:?}");
            assert_eq!(findings[0].0, "url");
            assert_never_shown(&config, &findings);
        }
        let (_, findings) = load(&encoded, &[(DEFAULT_PASSWORD_ENV, "other")]);
        assert!(
            findings[0]
                .1
                .contains("write `postgres://riposte@db:5432/riposte`")
                && findings[0].1.contains(DEFAULT_PASSWORD_ENV),
            "{findings:?}"
        );

        let text = "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d?sslmode=require&password=s3cr\"\n";
        let (config, findings) = load(text, &[(DEFAULT_PASSWORD_ENV, "other")]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].1.contains("`password` parameter"),
            "{findings:?}"
        );
        assert_never_shown(&config, &findings);

        let text =
            "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d\"\npassword = \"s3cr\"\n";
        let (config, findings) = load(text, &[(DEFAULT_PASSWORD_ENV, "other")]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].0, "password");
        assert!(
            findings[0].1.contains("never goes in this file"),
            "{findings:?}"
        );
        assert_never_shown(&config, &findings);
    }

    #[test]
    fn url_mistakes_are_named() {
        let env = [(DEFAULT_PASSWORD_ENV, "pw")];
        for (url, expected) in [
            ("not a url", "is not a URL"),
            ("mysql://r@h/d", "is not a PostgreSQL URL"),
            ("postgres://h/d", "names no user"),
            ("postgres://r@h", "names no database"),
            ("postgres://r@h/d/e", "names no database"),
            ("postgres://r:s3cr@h:port/d", "invalid port number"),
        ] {
            let text = format!("[database]\nbackend = \"postgres\"\nurl = {url:?}\n");
            let (config, findings) = load(&text, &env);
            assert_eq!(findings.len(), 1, "{url}: {findings:?}");
            assert_eq!(findings[0].0, "url");
            assert!(findings[0].1.contains(expected), "{url}: {findings:?}");
            assert_never_shown(&config, &findings);
        }
        let (_, findings) = load(
            "[database]\nbackend = \"postgres\"\npath = \"x.db\"\n",
            &env,
        );
        let keys: Vec<&str> = findings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["path", "url"], "{findings:?}");
    }

    #[test]
    fn lease_and_heartbeat_are_checked() {
        let env = [(DEFAULT_PASSWORD_ENV, "pw")];
        let pg = |timing: &str| {
            load(
                &format!(
                    "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d\"\n{timing}"
                ),
                &env,
            )
        };
        let (config, findings) = pg("lease_secs = 60\nheartbeat_secs = 29\n");
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(postgres(&config).lease(), Duration::from_secs(60));
        assert_eq!(postgres(&config).heartbeat(), Duration::from_secs(29));
        for (timing, key, text) in [
            ("lease_secs = 0\n", "lease_secs", "at least 1 second"),
            (
                "heartbeat_secs = 0\n",
                "heartbeat_secs",
                "at least 1 second",
            ),
            (
                "heartbeat_secs = 15\n",
                "heartbeat_secs",
                "less than half of lease_secs (30)",
            ),
            (
                "lease_secs = 10\n",
                "heartbeat_secs",
                "5 must be less than half of lease_secs (10)",
            ),
        ] {
            let (_, findings) = pg(timing);
            assert_eq!(findings.len(), 1, "{timing}: {findings:?}");
            assert_eq!(findings[0].0, key, "{timing}");
            assert!(findings[0].1.contains(text), "{timing}: {findings:?}");
        }
    }

    #[test]
    fn built_in_code_and_compared_for_a_reload() {
        let given = PostgresConfig::from_url_with_password(
            "postgres://riposte:p%40ss@127.0.0.1:5432/postgres",
        )
        .unwrap();
        assert_eq!(given.shown(), "postgres://riposte@127.0.0.1:5432/postgres");
        assert_eq!(given.password().expose(), "p@ss");
        assert!(PostgresConfig::from_url_with_password("postgres://r@h/d").is_err());
        let new = PostgresConfig::new(
            "postgres://riposte@127.0.0.1:5432/postgres",
            Secret::new("other"),
        )
        .unwrap();
        assert!(PostgresConfig::new("postgres://r:x@h/d", Secret::new("p")).is_err());
        assert!(new.clone().with_timing(10, 5).is_err());
        let timed = new.clone().with_timing(10, 4).unwrap();
        assert_eq!(timed.lease(), Duration::from_secs(10));

        let (a, b) = (
            DatabaseConfig::postgres(given),
            DatabaseConfig::postgres(new),
        );
        assert_ne!(a, b, "the passwords differ");
        assert!(a.same_database(&b), "but it is the same database");
        assert!(!a.same_database(&DatabaseConfig::default()));
        assert!(DatabaseConfig::sqlite("/a.db").same_database(&DatabaseConfig::sqlite("/a.db")));
    }

    #[test]
    fn ca_file_and_sslmode_are_checked_where_they_are_written() {
        let env = [(DEFAULT_PASSWORD_ENV, PASSWORD)];
        let (_, findings) = load(
            "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d?sslmode=verify-everything\"\n",
            &env,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].0, "url");
        assert!(findings[0].1.contains("verify-everything"), "{findings:?}");
        assert!(findings[0].1.contains("verify-full"), "{findings:?}");

        let (_, findings) = load(
            "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d\"\nca_file = \"/nonexistent/ca.pem\"\n",
            &env,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].0, "ca_file");
        assert!(
            findings[0].1.contains("/nonexistent/ca.pem"),
            "{findings:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let (_, findings) = load(
            &format!(
                "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d\"\nca_file = {:?}\n",
                not_pem.display().to_string()
            ),
            &env,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].1.contains("no PEM CERTIFICATE"), "{findings:?}");

        let (_, findings) = load("[database]\nca_file = \"ca.pem\"\n", &env);
        assert_eq!(
            findings,
            [(
                "ca_file".to_owned(),
                "applies to backend = \"postgres\" only".to_owned()
            )]
        );
    }

    #[test]
    fn libpq_verifying_modes_reach_the_driver_as_require() {
        let env = [(DEFAULT_PASSWORD_ENV, PASSWORD)];
        for (written, driven) in [
            ("?sslmode=verify-full", "?sslmode=require"),
            (
                "?sslmode=verify-ca&connect_timeout=3",
                "?sslmode=require&connect_timeout=3",
            ),
            ("?sslmode=disable", "?sslmode=disable"),
            ("", ""),
        ] {
            let (config, findings) = load(
                &format!(
                    "[database]\nbackend = \"postgres\"\nurl = \"postgres://r@h/d{written}\"\n"
                ),
                &env,
            );
            assert!(findings.is_empty(), "{findings:?}");
            let pg = postgres(&config);
            assert_eq!(pg.driver_url(), format!("postgres://r@h/d{driven}"));
            assert_eq!(pg.shown(), format!("postgres://r@h/d{written}"));
        }
    }
}
