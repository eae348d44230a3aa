//! Time-boxed containment: an executed action of a kind the operator gave a time limit (an
//! isolation, a quarantine, a reputation) is reverted at its deadline through the same path
//! as `riposte undo` (the gate, the ledger, the audit), unless an analyst confirms it first
//! (`riposte containment confirm`, or the console). Before the revert the coming deadline is
//! announced (audit record `containment-reverting`, a warning in the log, and the
//! `containment-reverting` notification) so someone can
//! confirm or extend it (`riposte containment extend`).
//!
//! Owns `[containment]` (`time_limits`, `warn_before_secs`) and a plugin's `time_limits`.

use crate::Service;
use crate::db;
use riposte_domain::settings::Findings;
use riposte_domain::{ActionKind, PluginName};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionRecord, ActionState, TimeBox};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kinds whose effect can be reverted, so a time limit can apply to them.
pub const REVERSIBLE: [ActionKind; 4] = [
    ActionKind::Isolate,
    ActionKind::QuarantineFile,
    ActionKind::Blacklist,
    ActionKind::Whitelist,
];

/// The longest time limit: 30 days.
const MAX_TIME_LIMIT_SECS: u64 = 30 * 86_400;
/// Default warning before a revert: 5 minutes.
const DEFAULT_WARN_BEFORE_SECS: u64 = 300;

/// How far back each pass looks again for actions that took effect.
const RECHECK_MS: i64 = 60_000;

/// Who a revert is recorded as.
pub const REVERT_IDENTITY: &str = "riposte:time-limit";

/// Time limits per action kind, in seconds.
pub type TimeLimits = BTreeMap<ActionKind, u64>;

/// `[containment]`: time limits of executed actions, per kind, for every plugin (a plugin's
/// own `time_limits` override them kind by kind), and how long before a revert it is
/// announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainmentConfig {
    /// `time_limits = { isolate = 14400 }` (default none: nothing is reverted by itself).
    pub time_limits: TimeLimits,
    /// Seconds before a revert at which it is announced (`warn_before_secs`, default 300).
    pub warn_before_secs: u64,
}

impl Default for ContainmentConfig {
    fn default() -> Self {
        Self {
            time_limits: TimeLimits::new(),
            warn_before_secs: DEFAULT_WARN_BEFORE_SECS,
        }
    }
}

/// `[containment]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawContainment {
    time_limits: BTreeMap<String, u64>,
    warn_before_secs: u64,
}

impl Default for RawContainment {
    fn default() -> Self {
        Self {
            time_limits: BTreeMap::new(),
            warn_before_secs: DEFAULT_WARN_BEFORE_SECS,
        }
    }
}

impl ContainmentConfig {
    /// Reads `[containment]`.
    pub(crate) fn from_section(raw: RawContainment) -> (Self, Findings) {
        let mut findings = Findings::new();
        let time_limits = time_limits(&mut findings, "time_limits", raw.time_limits);
        let config = Self {
            time_limits,
            warn_before_secs: raw.warn_before_secs,
        };
        (config, findings)
    }

    /// The time limit of `record`, executed for a plugin whose own limits are `own`: the
    /// shortest among its kinds (the plugin's limit of a kind, else this section's); `None`
    /// if no kind of it has one.
    pub fn limit_of(&self, own: &TimeLimits, record: &ActionRecord) -> Option<u64> {
        record
            .request
            .action_kinds()
            .into_iter()
            .filter_map(|k| own.get(&k).or_else(|| self.time_limits.get(&k)).copied())
            .min()
    }
}

/// Reads a `time_limits` table (of `[containment]` or a plugin), each problem at
/// `field.KIND`.
pub(crate) fn time_limits(
    findings: &mut Findings,
    field: &str,
    raw: BTreeMap<String, u64>,
) -> TimeLimits {
    let mut limits = TimeLimits::new();
    for (name, secs) in raw {
        let key = format!("{field}.{name}");
        let Some(kind) = ActionKind::from_name(&name) else {
            findings.at(&key, format!("`{name}` is not an action kind"));
            continue;
        };
        if !REVERSIBLE.contains(&kind) {
            let names: Vec<&str> = REVERSIBLE.iter().map(|k| k.name()).collect();
            findings.at(
                &key,
                format!(
                    "`{kind}` cannot be reverted, so it cannot have a time limit (kinds that can: {})",
                    names.join(", ")
                ),
            );
            continue;
        }
        if secs == 0 || secs > MAX_TIME_LIMIT_SECS {
            findings.at(
                &key,
                format!("a time limit is 1 to {MAX_TIME_LIMIT_SECS} seconds, not {secs}"),
            );
            continue;
        }
        limits.insert(kind, secs);
    }
    limits
}

/// What one pass over the time boxes did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TimeBoxReport {
    /// Coming reverts announced.
    pub announced: usize,
    /// Actions reverted at their deadline.
    pub reverted: usize,
    /// Reverts that failed (tried again next pass).
    pub failed: usize,
}

impl Service {
    /// Starts the time boxes of actions that took effect since the last pass, announces the
    /// reverts coming within `warn_before_secs`, and reverts the actions whose deadline
    /// passed unconfirmed.
    pub async fn settle_time_boxes(&self) -> anyhow::Result<TimeBoxReport> {
        self.start_time_boxes().await?;
        let mut report = TimeBoxReport::default();
        let now = riposte_domain::now_ms();
        let warn_ms = (self.config.containment.warn_before_secs as i64).saturating_mul(1000);
        let announced = db::blocking(&self.core.store, "warn_time_boxes", move |s| {
            s.warn_time_boxes(now.saturating_add(warn_ms), now)
        })
        .await?;
        for time_box in &announced {
            self.announce_revert(time_box).await;
        }
        report.announced = announced.len();
        let due = db::blocking(&self.core.store, "due_time_boxes", move |s| {
            s.due_time_boxes(now)
        })
        .await?;
        for time_box in due {
            match self
                .undo(time_box.action_id.as_str(), REVERT_IDENTITY)
                .await
            {
                Ok(undo) if undo.state.is_final() => {
                    tracing::warn!(action = %time_box.action_id, undo = %undo.id, state = undo.state.as_str(), "time limit reached without confirmation: the action was reverted");
                    report.reverted += 1;
                }
                Ok(undo) => {
                    tracing::info!(action = %time_box.action_id, undo = %undo.id, state = undo.state.as_str(), "time limit reached: the revert is sent and waits for the server (queued for an offline sensor)");
                }
                Err(error) => {
                    tracing::error!(action = %time_box.action_id, "reverting at the time limit failed (tried again next cycle): {error:#}");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Gives each action that succeeded since the last pass its time box, if it has a limit.
    /// Reads nothing when no limit is configured.
    async fn start_time_boxes(&self) -> anyhow::Result<()> {
        let limited = !self.config.containment.time_limits.is_empty()
            || self
                .config
                .plugins
                .iter()
                .any(|p| !p.time_limits.is_empty());
        if !limited {
            // A limit a reload turns on applies from then on, not to what took effect before.
            self.mark_boxes_checked(riposte_domain::now_ms());
            return Ok(());
        }
        let since = *self
            .boxes_checked_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = riposte_domain::now_ms();
        let filter = ActionFilter {
            states: vec![ActionState::Succeeded],
            finished_since_ms: Some(since),
            ..ActionFilter::default()
        };
        let finished = db::blocking(&self.core.store, "list_actions", move |s| {
            s.list_actions(&filter)
        })
        .await?;
        let limits: Vec<(ActionRecord, u64)> = finished
            .into_iter()
            .filter_map(|record| {
                let own = self.own_time_limits(&record.plugin);
                let limit = self.config.containment.limit_of(&own, &record)?;
                Some((record, limit))
            })
            .collect();
        db::blocking(&self.core.store, "start_time_box", move |s| {
            for (record, secs) in &limits {
                let from = record.finished_at_ms.unwrap_or(now);
                s.start_time_box(&record.id, (*secs as i64).saturating_mul(1000), from)?;
            }
            Ok(())
        })
        .await?;
        self.mark_boxes_checked(now);
        Ok(())
    }

    /// Actions that took effect before `now` were checked for a time limit. One taking
    /// effect just before may be committed after the read: the next pass looks a minute
    /// back (starting a box twice keeps the first).
    fn mark_boxes_checked(&self, now: i64) {
        *self
            .boxes_checked_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = now.saturating_sub(RECHECK_MS);
    }

    fn own_time_limits(&self, plugin: &PluginName) -> TimeLimits {
        self.config
            .plugin(plugin)
            .map(|p| p.time_limits.clone())
            .unwrap_or_default()
    }

    async fn announce_revert(&self, time_box: &TimeBox) {
        let id = time_box.action_id.clone();
        let record =
            match db::blocking(&self.core.store, "get_action", move |s| s.get_action(&id)).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::error!(action = %time_box.action_id, "announcing a revert: {error}");
                    return;
                }
            };
        tracing::warn!(action = %record.id, plugin = %record.plugin, deadline_ms = time_box.deadline_ms, "a time-boxed action will be reverted at its deadline unless confirmed (riposte containment confirm|extend)");
        self.core
            .auditor
            .operator_event("containment-reverting", &record, REVERT_IDENTITY, None);
        self.core
            .notifier
            .notify(riposte_notify::Event::ContainmentReverting {
                action: record.id.as_str().to_owned(),
                plugin: record.plugin.clone(),
                malop: record.malop_id.clone(),
                machines: record.request.machines().into_iter().cloned().collect(),
                at_ms: time_box.deadline_ms,
            });
    }
}
