//! Databases for tests, of either backend, so that one suite runs against both.
//!
//! The PostgreSQL tests need a server: `tests/run.sh` (README's test command) starts one on
//! loopback, reachable over TLS only, and names it in [`POSTGRES_ENV`] and its CA
//! certificate in [`POSTGRES_CA_ENV`]; each [`TestDatabase::postgres`] is a new, empty
//! database on it. A test that needs PostgreSQL and finds no server fails, saying how
//! to start one; it never passes silently.

use crate::{Result, Store};
use std::path::PathBuf;

/// The environment variable holding the URL of the PostgreSQL server the tests use, e.g.
/// `postgres://riposte:secret@127.0.0.1:5433/postgres`.
pub const POSTGRES_ENV: &str = "RIPOSTE_TEST_POSTGRES";

/// The environment variable holding the PEM file of the CA certificate of the test server's
/// TLS certificate (`DIR/ca.pem` of `tests/postgres.sh start DIR`), if it has one.
pub const POSTGRES_CA_ENV: &str = "RIPOSTE_TEST_POSTGRES_CA";

/// The TLS connector of the test server's clients: trusting the CA of [`POSTGRES_CA_ENV`].
fn test_tls(ca_file: Option<&std::path::Path>) -> tokio_postgres_rustls::MakeRustlsConnect {
    crate::postgres::tls_connector(ca_file)
        .unwrap_or_else(|e| panic!("the CA certificate of {POSTGRES_CA_ENV}: {e:?}"))
}

/// A fresh database that several [`Store`]s (threads, processes, "hosts") can open.
#[derive(Debug)]
pub enum TestDatabase {
    /// A SQLite file in a temporary directory, removed when this is dropped.
    Sqlite {
        /// The directory holding the file.
        dir: tempfile::TempDir,
        /// The file.
        path: PathBuf,
    },
    /// A new database on the test server.
    Postgres {
        /// How to connect (with the password).
        config: Box<postgres::Config>,
        /// The URL without its password (`postgres://user@host:port/name`), as the store
        /// shows it and as `[service.database] url` names it.
        shown: String,
        /// The CA certificate of the server's TLS certificate, as `ca_file` names it.
        ca_file: Option<PathBuf>,
    },
}

impl TestDatabase {
    /// A new SQLite file.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let path = dir.path().join("state.db");
        TestDatabase::Sqlite { dir, path }
    }

    /// A new, empty database on the PostgreSQL server named by [`POSTGRES_ENV`].
    ///
    /// # Panics
    ///
    /// When the variable is not set or the server cannot be reached: the test then fails
    /// with a message saying how to start one.
    pub fn postgres() -> TestDatabase {
        let url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "this test needs a PostgreSQL server and {POSTGRES_ENV} is not set: run the tests \
                 with tests/run.sh, which starts one, or start one with \
                 `tests/postgres.sh start DIR` and export {POSTGRES_ENV} to the URL it prints"
            )
        });
        let admin: postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is not a PostgreSQL URL: {e}"));
        let ca_file = std::env::var_os(POSTGRES_CA_ENV).map(PathBuf::from);
        let tls = test_tls(ca_file.as_deref());
        let name = format!("riposte_test_{}", uuid::Uuid::new_v4().simple());
        crate::postgres::off_async_workers(|| {
            let mut client = admin.connect(tls).unwrap_or_else(|e| {
                panic!(
                    "cannot connect to the PostgreSQL server of {POSTGRES_ENV}: {e}; is it running?"
                )
            });
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        });
        let mut config = admin.clone();
        config.dbname(&name);
        let hosts = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, port)| match h {
                postgres::config::Host::Tcp(host) => format!("{host}:{port}"),
                #[cfg(unix)]
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let user = config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Require => "?sslmode=require",
            postgres::config::SslMode::Disable => "?sslmode=disable",
            _ => "",
        };
        let shown = format!("postgres://{user}{hosts}/{name}{tls}");
        TestDatabase::Postgres {
            config: Box::new(config),
            shown,
            ca_file,
        }
    }

    /// Each backend's fresh database: the parameters of a suite run against both.
    pub fn each() -> [fn() -> TestDatabase; 2] {
        [TestDatabase::sqlite, TestDatabase::postgres]
    }

    /// A new, empty database of the same backend (a second run inside one test).
    pub fn another(&self) -> TestDatabase {
        match self {
            TestDatabase::Sqlite { .. } => TestDatabase::sqlite(),
            TestDatabase::Postgres { .. } => TestDatabase::postgres(),
        }
    }

    /// The backend's name, for messages.
    pub fn backend(&self) -> &'static str {
        match self {
            TestDatabase::Sqlite { .. } => "sqlite",
            TestDatabase::Postgres { .. } => "postgres",
        }
    }

    /// The password of a PostgreSQL database's user, if any (for `password_env`).
    pub fn password(&self) -> Option<String> {
        match self {
            TestDatabase::Postgres { config, .. } => config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            TestDatabase::Sqlite { .. } => None,
        }
    }

    /// The CA certificate file a configuration names as `ca_file` for this database.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        match self {
            TestDatabase::Postgres { ca_file, .. } => ca_file.as_deref(),
            TestDatabase::Sqlite { .. } => None,
        }
    }

    /// A plain client connection to a PostgreSQL database (TLS as the store connects), for
    /// tests that reach under the store.
    ///
    /// # Panics
    ///
    /// On SQLite, or when the connection fails.
    pub fn client(&self) -> postgres::Client {
        let TestDatabase::Postgres {
            config, ca_file, ..
        } = self
        else {
            panic!("a client of a PostgreSQL test database")
        };
        let tls = test_tls(ca_file.as_deref());
        crate::postgres::off_async_workers(|| config.connect(tls))
            .unwrap_or_else(|e| panic!("connecting to the PostgreSQL test database: {e}"))
    }

    /// Opens a new handle on the database (a new connection, as another host would).
    pub fn try_open(&self) -> Result<Store> {
        match self {
            TestDatabase::Sqlite { path, .. } => Store::open(path),
            TestDatabase::Postgres {
                config,
                shown,
                ca_file,
            } => Store::connect_postgres((**config).clone(), shown.clone(), ca_file.as_deref()),
        }
    }

    /// [`TestDatabase::try_open`], panicking on failure.
    pub fn open(&self) -> Store {
        self.try_open()
            .unwrap_or_else(|e| panic!("opening the {} test database: {e}", self.backend()))
    }
}
