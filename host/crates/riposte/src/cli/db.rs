//! `riposte db copy`: moves a deployment's state from its SQLite file to a PostgreSQL
//! database (`riposte_store::copy_database`).
//!
//! The target is named by a URL without its password; the password comes from the
//! environment ([`PASSWORD_ENV`]), never from the command line, where the process list and
//! the shell's history would show it. It never appears in the output or an error: the
//! database is shown by its URL, which carries none.

use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_store::{CopyReport, Store, copy_database};
use std::path::PathBuf;

/// The environment variable holding the PostgreSQL password: the one `[service.database]`
/// reads by default.
pub(crate) use riposte_store::settings::DEFAULT_PASSWORD_ENV as PASSWORD_ENV;

/// The shape of the target's URL, for messages.
const URL_SHAPE: &str = "postgres://USER@HOST[:PORT]/DATABASE";

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
    /// The PostgreSQL database to copy into, as postgres://USER@HOST[:PORT]/DATABASE,
    /// without a password: the password is read from the environment variable
    /// RIPOSTE_DATABASE_PASSWORD. The database must exist; riposte creates its tables, and
    /// refuses it if any of them holds a row.
    #[arg(long, value_name = "URL")]
    pub to_url: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `riposte db` command. The store blocks (and the PostgreSQL client runs its own
/// event loop), so the work runs on tokio's blocking pool.
pub(crate) async fn run(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Copy(args) => {
            let password = std::env::var(PASSWORD_ENV).ok();
            tokio::task::spawn_blocking(move || copy(&args, password))
                .await
                .context("the copy did not complete")?
        }
    }
}

/// `riposte db copy`, with the password read from the environment.
fn copy(args: &CopyArgs, password: Option<String>) -> anyhow::Result<()> {
    let (config, shown) = postgres_target(&args.to_url, password)?;
    if !args.from.is_file() {
        anyhow::bail!(
            "--from {}: no such file; name the SQLite state database to copy",
            args.from.display()
        );
    }
    let from = Store::open(&args.from).context("opening the database to copy from")?;
    let to = Store::connect_postgres(config, shown.clone())
        .context("opening the database to copy into")?;
    let report = copy_database(&from, &to)?;
    if args.json {
        let out = serde_json::json!({
            "from": from.path(),
            "to": shown,
            "schema_version": report.schema_version,
            "tables": report.tables,
            "total_rows": report.total_rows(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render(from.path(), &shown, &report));
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

/// The connection settings of `url` with `password`, and the database as it may be shown.
/// A URL carrying a password is refused (without repeating it).
fn postgres_target(
    url: &str,
    password: Option<String>,
) -> anyhow::Result<(postgres::Config, String)> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!("--to-url must be a PostgreSQL URL: {URL_SHAPE}");
    }
    // The URL parser's messages name a part or a byte offset, never the text.
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("--to-url is not a PostgreSQL URL ({URL_SHAPE}): {e}"))?;
    if config.get_password().is_some() {
        anyhow::bail!(
            "--to-url carries a password: the command line shows in the process list and the shell's history; give the URL without it ({URL_SHAPE}) and the password in the environment variable {PASSWORD_ENV}"
        );
    }
    let Some(user) = config.get_user().map(str::to_owned) else {
        anyhow::bail!("--to-url names no user: {URL_SHAPE}");
    };
    let Some(dbname) = config.get_dbname().map(str::to_owned) else {
        anyhow::bail!("--to-url names no database: {URL_SHAPE}");
    };
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        config.password(password);
    }
    let ports = config.get_ports();
    let hosts = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok((config, format!("postgres://{user}@{hosts}/{dbname}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_shown_without_its_password() {
        let (config, shown) = postgres_target(
            "postgres://riposte@db.corp:5433/state",
            Some("hunter2".into()),
        )
        .unwrap();
        assert_eq!(shown, "postgres://riposte@db.corp:5433/state");
        assert_eq!(config.get_password(), Some(&b"hunter2"[..]));
        assert!(!format!("{shown} {config:?}").contains("hunter2"));

        let (config, shown) = postgres_target("postgresql://ops@a:6000,b:6001/db", None).unwrap();
        assert_eq!(shown, "postgres://ops@a:6000,b:6001/db");
        assert_eq!(config.get_password(), None);
    }

    #[test]
    fn a_password_on_the_command_line_is_refused_without_repeating_it() {
        for url in [
            "postgres://riposte:hunter2@db:5432/state",
            "postgres://riposte@db:5432/state?password=hunter2",
        ] {
            let err = postgres_target(url, None).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("carries a password"), "{text}");
            assert!(text.contains(PASSWORD_ENV), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
        for (url, says) in [
            ("db:5432/state", "must be a PostgreSQL URL"),
            ("postgres://db:5432/state", "names no user"),
            ("postgres://riposte@db:5432", "names no database"),
            (
                "postgres://riposte@db:port/state",
                "is not a PostgreSQL URL",
            ),
        ] {
            let err = postgres_target(url, Some("hunter2".into())).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
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
