//! `riposte db copy` through the real binary: a SQLite deployment's state moves into a fresh
//! PostgreSQL database (RIPOSTE_TEST_POSTGRES names the server) that the operator
//! configuration's `[service.database]` names; the password comes from where that section
//! says (here the environment) and is never shown, not even when the copy fails.

use riposte_domain::{MalopId, PluginName};
use riposte_e2e::{output_text, riposte_bin};
use riposte_store::prelude::*;
use riposte_store::testing::{POSTGRES_CA_ENV, TestDatabase};
use std::path::Path;
use std::process::{Command, Output};

/// A password handed to the command when the test server needs none (it then never
/// reaches the server, but the command holds it all the same).
const SECRET: &str = "e2e-never-shown-7f3a";

/// `riposte db copy --from <from> --config <a configuration naming url> [extra]`, the
/// password in the environment.
fn db_copy(from: &Path, url: &str, password: &str, extra: &[&str]) -> Output {
    let config = from.with_file_name("target.toml");
    let mut text = format!(
        "[service.database]\nbackend = \"postgres\"\nurl = {url:?}\n\
         password_env = \"RIPOSTE_DATABASE_PASSWORD\"\n"
    );
    if let Some(ca) = std::env::var_os(POSTGRES_CA_ENV) {
        text.push_str(&format!(
            "ca_file = {:?}\n",
            Path::new(&ca).display().to_string()
        ));
    }
    std::fs::write(&config, text).expect("writing the target's configuration");
    Command::new(riposte_bin())
        .args(["db", "copy", "--from"])
        .arg(from)
        .arg("--config")
        .arg(&config)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("RIPOSTE_DATABASE_PASSWORD", password)
        .output()
        .expect("the riposte binary runs")
}

/// The URL of a test database (without its password) and the password to give.
fn target(db: &TestDatabase) -> (String, String) {
    let TestDatabase::Postgres { config, shown, .. } = db else {
        unreachable!("a PostgreSQL test database")
    };
    let url = shown.clone();
    let password = config.get_password().map_or(SECRET.to_owned(), |p| {
        String::from_utf8_lossy(p).into_owned()
    });
    (url, password)
}

#[test]
fn db_copy_moves_a_sqlite_deployment_into_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("riposte.db");
    {
        let store = riposte_store::Store::open(&path).unwrap();
        store
            .set_watermark("crimes/unified:MalopProcess", 1_000, 1_100)
            .unwrap();
        store.kv_set("p", "k", b"v", 1_024, 1).unwrap();
        store
            .mark_handled(&PluginName::new("p"), &MalopId::new("11.1"), 5, 6)
            .unwrap();
    }

    let db = TestDatabase::postgres();
    let (url, password) = target(&db);
    let out = db_copy(&path, &url, &password, &[]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains(&password),
        "the password is never shown: {text}"
    );
    assert!(text.contains(&url), "names the target: {text}");
    let line = |table: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .map(|l| l.split_whitespace().last().unwrap_or("").to_owned())
    };
    assert_eq!(line("watermarks").as_deref(), Some("1"), "{text}");
    assert_eq!(line("plugin_kv").as_deref(), Some("1"), "{text}");
    assert_eq!(line("handled_malops").as_deref(), Some("1"), "{text}");
    assert_eq!(line("actions").as_deref(), Some("0"), "{text}");
    assert_eq!(line("total").as_deref(), Some("3"), "{text}");

    let copied = db.open();
    assert_eq!(
        copied.watermark("crimes/unified:MalopProcess").unwrap(),
        Some(1_000)
    );
    assert_eq!(copied.kv_get("p", "k").unwrap().as_deref(), Some(&b"v"[..]));

    // Copying again is refused: the target holds rows now; nothing is merged.
    let again = db_copy(&path, &url, &password, &["--json"]);
    let text = output_text(&again);
    assert!(!again.status.success(), "{text}");
    assert!(text.contains("already holds"), "{text}");
    assert!(!text.contains(&password), "{text}");

    // --json, into another fresh database.
    let other = TestDatabase::postgres();
    let (url, password) = target(&other);
    let out = db_copy(&path, &url, &password, &["--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["to"], url.as_str());
    assert_eq!(report["total_rows"], 3);
    assert_eq!(
        report["schema_version"],
        riposte_store::schema::LATEST_VERSION
    );
}

#[test]
fn db_copy_never_shows_the_password_nor_takes_it_from_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("riposte.db");
    riposte_store::Store::open(&path).unwrap();

    // In the configuration's URL: refused before anything is opened, without repeating it.
    let url = format!("postgres://riposte:{SECRET}@127.0.0.1:1/state");
    let out = db_copy(&path, &url, "", &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("service.database.url"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // Unreachable: the error names the database by its URL, never with the password.
    let out = db_copy(&path, "postgres://riposte@127.0.0.1:1/state", SECRET, &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("postgres://riposte@127.0.0.1:1/state"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");

    // A --from that does not exist is not created empty and copied.
    let missing = dir.path().join("missing.db");
    let out = db_copy(
        &missing,
        "postgres://riposte@127.0.0.1:1/state",
        SECRET,
        &[],
    );
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no such file"), "{text}");
    assert!(!missing.exists());
}
