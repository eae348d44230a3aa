//! `riposte users ...`: the console's users and their roles, kept in the state database.
//! Every change is audited, by the OS account that made it.

use super::service::{load_config, open_store, os_operator};
use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_audit::{AuditSink, Call, Entry, Redacted};
use riposte_console::auth::{generate_password, hash_password};
use riposte_domain::now_ms;
use riposte_domain::{Role, UserName};
use riposte_service::OperatorConfig;
use riposte_store::prelude::*;
use serde_json::json;
use std::io::BufRead;
use std::path::PathBuf;

/// The audit event of a console user added (by `riposte users add`, or the demo's).
pub(crate) const USER_ADDED: &str = "console-user-added";

/// `riposte users ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a console user. The password is read from stdin with --password-stdin, or
    /// generated and printed once.
    Add(AddArgs),
    /// List the console users and their roles.
    List(ConfigOnly),
    /// Remove a console user (their sessions end at their next request).
    Remove(NameArgs),
    /// Change a console user's role.
    SetRole(SetRoleArgs),
}

/// Just the configuration file.
#[derive(Debug, Args)]
pub(crate) struct ConfigOnly {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
}

/// Arguments of `users add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The name they log in with (letters, digits, `.`, `_`, `-`, `@`).
    pub name: UserName,
    /// viewer, approver or admin.
    #[arg(long)]
    pub role: Role,
    /// Read the password from the first line of stdin instead of generating one.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Arguments of `users remove`.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The user.
    pub name: UserName,
}

/// Arguments of `users set-role`.
#[derive(Debug, Args)]
pub(crate) struct SetRoleArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The user.
    pub name: UserName,
    /// viewer, approver or admin.
    #[arg(long)]
    pub role: Role,
}

/// Runs a `users` command.
pub(crate) fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add(args) => add(args),
        UsersCommand::List(args) => list(args),
        UsersCommand::Remove(args) => {
            let config = load_config(&args.config)?;
            let store = open_store(&config)?;
            if !store.remove_user(&args.name)? {
                anyhow::bail!("there is no user `{}`", args.name);
            }
            audit(
                &config,
                "console-user-removed",
                json!({ "user": args.name }),
            )?;
            println!("removed {}", args.name);
            Ok(())
        }
        UsersCommand::SetRole(args) => {
            let config = load_config(&args.config)?;
            let store = open_store(&config)?;
            store.set_user_role(&args.name, args.role, now_ms())?;
            audit(
                &config,
                "console-user-role-set",
                json!({ "user": args.name, "role": args.role }),
            )?;
            println!("{} is now {}", args.name, args.role);
            Ok(())
        }
    }
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (generate_password(), true)
    };
    let hash = hash_password(&password)?;
    store.add_user(&args.name, args.role, &hash, now_ms())?;
    audit(
        &config,
        USER_ADDED,
        json!({ "user": args.name, "role": args.role }),
    )?;
    if generated {
        println!(
            "added {} ({}); their password, shown once: {password}",
            args.name, args.role
        );
    } else {
        println!("added {} ({})", args.name, args.role);
    }
    Ok(())
}

fn list(args: ConfigOnly) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let now = now_ms();
    for user in store.list_users()? {
        println!(
            "{}\t{}\tadded {}",
            user.name,
            user.role,
            riposte_console::text::when(user.created_at_ms, now)
        );
    }
    Ok(())
}

/// Records a change of users in the configuration's audit trail, by the OS account running
/// the command.
fn audit(config: &OperatorConfig, event: &str, arguments: serde_json::Value) -> anyhow::Result<()> {
    let sink = config.service.audit.open_sink().with_context(|| {
        format!(
            "opening the audit trail {}",
            config.service.audit.path.display()
        )
    })?;
    record_user_change(&sink, event, arguments)
}

/// Records a change of users (`event`, with `arguments`: never a password) in `sink`, by the
/// OS account running the command (`by`: `os:NAME`), and syncs it to disk.
pub(crate) fn record_user_change(
    sink: &AuditSink,
    event: &str,
    mut arguments: serde_json::Value,
) -> anyhow::Result<()> {
    arguments["by"] = json!(os_operator()?);
    let mut entry = Entry::new(now_ms(), Call::event(event));
    entry.arguments = Redacted::from_value(arguments);
    sink.append(&entry)
        .with_context(|| format!("recording `{event}` in the audit trail"))?;
    sink.sync().context("syncing the audit trail")?;
    Ok(())
}
