//! `riposte db copy`: moves a deployment's state from its SQLite file to a PostgreSQL
//! database (`riposte_store::copy_database`).
//!
//! The target is the PostgreSQL database the operator configuration's `[service.database]`
//! names (the configuration the deployment will run with), its password from where that
//! section says (a credentials file or the environment), never from the command line, where
//! the process list and the shell's history would show it. It never appears in the output or
//! an error: the database is shown by its URL, which carries none.

use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_store::settings::{Backend, DatabaseConfig, RawDatabase};
use riposte_store::{CopyReport, Store, copy_database};
use std::path::{Path, PathBuf};

/// `riposte db ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Copy the state of a SQLite database into an empty PostgreSQL database, to move a
    /// deployment to PostgreSQL. Stop every riposte using the SQLite file first: what is
    /// written to it during the copy is not copied.
    Copy(CopyArgs),
}

/// Arguments of `riposte db copy`.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The SQLite state database to copy from (the file the configuration's `database`
    /// names). It is read, not changed (but migrated first if an older riposte wrote it).
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The operator configuration whose `[service.database]` names the PostgreSQL database
    /// to copy into (with where its password comes from; only that section is read). The
    /// database must exist; riposte creates its tables, and refuses it if any of them holds
    /// a row.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `riposte db` command. The store blocks (and the PostgreSQL client runs its own
/// event loop), so the work runs on tokio's blocking pool.
pub(crate) async fn run(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Copy(args) => tokio::task::spawn_blocking(move || copy(&args))
            .await
            .context("the copy did not complete")?,
    }
}

/// `riposte db copy`.
fn copy(args: &CopyArgs) -> anyhow::Result<()> {
    let database = target_database(&args.config)?;
    if !args.from.is_file() {
        anyhow::bail!(
            "--from {}: no such file; name the SQLite state database to copy",
            args.from.display()
        );
    }
    let from = Store::open(&args.from).context("opening the database to copy from")?;
    let to = Store::open_configured(&database).context("opening the database to copy into")?;
    let report = copy_database(&from, &to)?;
    if args.json {
        let out = serde_json::json!({
            "from": from.path(),
            "to": to.path(),
            "schema_version": report.schema_version,
            "tables": report.tables,
            "total_rows": report.total_rows(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(from.path(), to.path(), &report));
    }
    Ok(())
}

/// The report, one table a line.
fn render(from: &str, to: &str, report: &CopyReport) -> String {
    let mut out = format!(
        "copied {from} into {to} (schema version {})\n",
        report.schema_version
    );
    let width = report
        .tables
        .iter()
        .map(|t| t.table.len())
        .chain(["total".len()])
        .max()
        .unwrap_or(0);
    for table in &report.tables {
        out.push_str(&format!("  {:<width$}  {:>8}\n", table.table, table.rows));
    }
    out.push_str(&format!(
        "  {:<width$}  {:>8}\n",
        "total",
        report.total_rows()
    ));
    out
}

/// The PostgreSQL database `[service.database]` of `config` names (only that section is
/// read, so a configuration being prepared for the move can be used before it is complete).
fn target_database(config: &Path) -> anyhow::Result<DatabaseConfig> {
    /// `[service]`, of which only `database` is read.
    #[derive(Default, serde::Deserialize)]
    struct Service {
        #[serde(default)]
        database: RawDatabase,
    }
    let database = riposte_config::load(config, |doc| {
        let service = doc.section::<Service>("service")?;
        let (database, findings) = DatabaseConfig::from_section(service.database, doc.base());
        doc.report_findings("service.database", findings);
        Some(database)
    })?
    .context("[service.database] could not be read")?;
    match database.backend {
        Backend::Postgres(_) => Ok(database),
        Backend::Sqlite { .. } => anyhow::bail!(
            "{}: [service.database] names a SQLite file ({database}); db copy moves a deployment into the PostgreSQL database the configuration names (backend = \"postgres\")",
            config.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, database: &str) -> PathBuf {
        let path = dir.join("riposte.toml");
        std::fs::write(
            &path,
            format!("[service]\npoll_interval_secs = 5\n{database}"),
        )
        .unwrap();
        path
    }

    #[test]
    fn the_target_comes_from_the_configuration_and_is_shown_without_its_password() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("db-credentials");
        std::fs::write(&credentials, "password = hunter2\n").unwrap();
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = config(
            dir.path(),
            "[service.database]\nbackend = \"postgres\"\nurl = \"postgres://riposte@db.corp:5433/state\"\n\
             credentials_file = \"db-credentials\"\n",
        );
        let database = target_database(&path).unwrap();
        assert_eq!(
            database.to_string(),
            "PostgreSQL database postgres://riposte@db.corp:5433/state"
        );
        assert!(!format!("{database} {database:?}").contains("hunter2"));
    }

    #[test]
    fn a_configuration_naming_sqlite_or_a_password_in_the_url_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = config(dir.path(), "database = \"riposte.db\"\n");
        let text = format!("{:#}", target_database(&path).unwrap_err());
        assert!(text.contains("names a SQLite file"), "{text}");

        let path = config(
            dir.path(),
            "[service.database]\nbackend = \"postgres\"\nurl = \"postgres://r:hunter2@db/state\"\n",
        );
        let text = format!("{:#}", target_database(&path).unwrap_err());
        assert!(text.contains("service.database.url"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn the_report_has_a_line_per_table_and_a_total() {
        let report = CopyReport {
            schema_version: 4,
            tables: vec![
                riposte_store::TableCopied {
                    table: "actions",
                    rows: 12,
                },
                riposte_store::TableCopied {
                    table: "plugin_kv",
                    rows: 0,
                },
            ],
        };
        let text = render(
            "/var/lib/riposte/riposte.db",
            "postgres://r@db:5432/r",
            &report,
        );
        assert_eq!(
            text,
            "copied /var/lib/riposte/riposte.db into postgres://r@db:5432/r (schema version 4)\n\
             \x20 actions          12\n\
             \x20 plugin_kv         0\n\
             \x20 total            12\n"
        );
    }
}
