//! `riposte containment list|confirm|extend`: the time-boxed actions, and the analyst's
//! answer to them, recorded under the OS account the command runs as.

use super::service::{StatusArgs, load_config, open_audit, open_store, os_operator};
use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_domain::now_ms;
use riposte_service::decisions::{TimeBoxChange, change_time_box};
use riposte_store::prelude::*;
use std::path::PathBuf;

/// `riposte containment ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ContainmentCommand {
    /// List the time-boxed actions not yet confirmed or reverted (a table; `--json` for scripts).
    List(StatusArgs),
    /// Keep a time-boxed action: it is no longer reverted at its deadline.
    Confirm(Change),
    /// Move the deadline of a time-boxed action.
    Extend(Extend),
}

/// Arguments of `confirm`.
#[derive(Debug, Args)]
pub(crate) struct Change {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The action id (a unique prefix is enough).
    pub id: String,
}

/// Arguments of `extend`.
#[derive(Debug, Args)]
pub(crate) struct Extend {
    #[command(flatten)]
    pub action: Change,
    /// How much later, in seconds, from its deadline (or from now if that passed).
    #[arg(long)]
    pub secs: u32,
}

/// Runs `riposte containment ...`.
pub(crate) fn containment(command: ContainmentCommand) -> anyhow::Result<()> {
    let (action, change) = match command {
        ContainmentCommand::List(args) => return list(&args),
        ContainmentCommand::Confirm(action) => (action, TimeBoxChange::Confirm),
        ContainmentCommand::Extend(Extend { action, secs }) => (
            action,
            TimeBoxChange::Extend {
                by_ms: i64::from(secs) * 1000,
            },
        ),
    };
    let config = load_config(&action.config)?;
    let store = open_store(&config)?;
    let id = store.resolve_action_id(&action.id)?;
    let audit = open_audit(&config)?;
    let now = now_ms();
    let time_box = change_time_box(&store, &audit, &id, change, &os_operator()?, now)
        .with_context(|| format!("changing the time limit of action {id}"))?;
    match change {
        TimeBoxChange::Confirm => println!("confirmed {id}: it stays until undone by hand"),
        TimeBoxChange::Extend { .. } => println!(
            "extended {id}: reverted {} unless confirmed",
            super::table::when(time_box.deadline_ms, now)
        ),
    }
    Ok(())
}

fn list(args: &StatusArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let boxes = store.open_time_boxes()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&boxes)?);
        return Ok(());
    }
    let records = boxes
        .iter()
        .map(|b| store.get_action(&b.action_id))
        .collect::<Result<Vec<_>, _>>()?;
    println!("{}", super::table::time_boxes(&boxes, &records, now_ms()));
    Ok(())
}
