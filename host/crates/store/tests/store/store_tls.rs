//! TLS to PostgreSQL: the test server (tests/postgres.sh) takes TLS only, with a certificate
//! for 127.0.0.1 from a throwaway CA (`RIPOSTE_TEST_POSTGRES_CA`).

use riposte_store::Store;
use riposte_store::prelude::*;
use riposte_store::settings::{Backend, DatabaseConfig};
use riposte_store::testing::{POSTGRES_CA_ENV, TestDatabase};
use std::path::PathBuf;

/// A fresh PostgreSQL test database and the CA of its server's certificate.
fn server() -> (TestDatabase, PathBuf) {
    let db = TestDatabase::postgres();
    let ca = db.ca_file().map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{POSTGRES_CA_ENV} is not set: these tests need the TLS server of tests/postgres.sh \
             (tests/run.sh exports both variables)"
        )
    });
    (db, ca)
}

/// `db`'s connection settings with `sslmode` set and its password.
fn config(db: &TestDatabase, sslmode: &str) -> (postgres::Config, String) {
    let TestDatabase::Postgres { config, shown, .. } = db else {
        unreachable!("a PostgreSQL test database")
    };
    let base = shown.split('?').next().unwrap_or(shown);
    let url = format!("{base}?sslmode={sslmode}");
    let mut parsed: postgres::Config = url.parse().expect("the test URL parses");
    if let Some(password) = config.get_password() {
        parsed.password(password);
    }
    (parsed, url)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn the_server_certificate_is_verified_against_the_configured_ca() {
    let (db, ca) = server();
    let (config, shown) = config(&db, "require");
    let store = Store::connect_postgres(config.clone(), shown.clone(), Some(&ca))
        .expect("TLS with the server's CA connects");
    store.set_watermark("tls", 1, 2).expect("a write over TLS");

    // Mozilla's roots alone do not vouch for a private CA: refused, saying why.
    let refused =
        Store::connect_postgres(config, shown, None).expect_err("an untrusted certificate");
    let text = error_chain(&refused);
    assert!(refused.is_unreachable(), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(!text.contains(&db.password().unwrap()), "{text}");
}

#[test]
fn the_test_server_refuses_connections_in_the_clear() {
    let (db, ca) = server();
    let (config, shown) = config(&db, "disable");
    let refused =
        Store::connect_postgres(config, shown, Some(&ca)).expect_err("no TLS, no connection");
    let text = error_chain(&refused);
    assert!(text.contains("no encryption"), "{text}");
}

#[test]
fn a_configured_database_connects_over_tls_with_verify_full() {
    let (db, ca) = server();
    let TestDatabase::Postgres { shown, .. } = &db else {
        unreachable!()
    };
    let base = shown.split('?').next().unwrap_or(shown);
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("db-credentials");
    std::fs::write(
        &credentials,
        format!(
            "password = {}\n",
            db.password().expect("the test user's password")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[database]\nbackend = \"postgres\"\nurl = \"{base}?sslmode=verify-full\"\n\
         credentials_file = {credentials:?}\nca_file = {ca:?}\n",
    );
    #[derive(serde::Deserialize)]
    struct File {
        database: riposte_store::settings::RawDatabase,
    }
    let raw: File = toml::from_str(&text).expect("the section parses");
    let (database, findings): (DatabaseConfig, _) =
        DatabaseConfig::from_section(raw.database, dir.path());
    assert!(findings.is_empty(), "{findings:?}");
    let Backend::Postgres(pg) = &database.backend else {
        panic!("{database:?}")
    };
    assert_eq!(pg.ca_file(), Some(ca.as_path()));
    assert!(
        pg.driver_url().ends_with("?sslmode=require"),
        "{}",
        pg.driver_url()
    );
    let store = Store::open_configured(&database).expect("verify-full connects");
    assert_eq!(store.path(), format!("{base}?sslmode=verify-full"));
}
