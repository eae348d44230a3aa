//! The snapshot `riposte status` shows.

use super::fleet::{HostStatus, LeaseStatus, hosts, leases};
use super::health::{PausedPlugin, paused};
use super::{ActionState, ApprovalStatus, Failure, Result, Store};
use crate::repos::Status;
use crate::sql::params;
use std::collections::BTreeMap;

/// One polled source.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceStatus {
    /// The source, e.g. `crimes/unified:MalopProcess`.
    pub source: String,
    /// Its watermark (server ms).
    pub watermark_ms: i64,
    /// The last poll (host ms).
    pub last_poll_ms: i64,
}

/// What the store knows for `riposte status`, read in one consistent snapshot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatusSnapshot {
    /// Every polled source, by name.
    pub sources: Vec<SourceStatus>,
    /// Approvals pending and not expired.
    pub pending_approvals: u64,
    /// Plugins paused now.
    pub paused_plugins: Vec<PausedPlugin>,
    /// Actions per state (states with no action are absent).
    pub actions_by_state: BTreeMap<ActionState, u64>,
    /// Every host that has sent a heartbeat (and not been forgotten), by id.
    pub hosts: Vec<HostStatus>,
    /// Every lease and its holder, by name.
    pub leases: Vec<LeaseStatus>,
}

impl StatusSnapshot {
    /// Actions whose outcome is not known yet (`Planned`, `Submitted`, `Following`).
    pub fn unresolved_actions(&self) -> u64 {
        ActionState::UNRESOLVED
            .iter()
            .filter_map(|s| self.actions_by_state.get(s))
            .sum()
    }

    /// The most recent poll of any source.
    pub fn last_poll_ms(&self) -> Option<i64> {
        self.sources.iter().map(|s| s.last_poll_ms).max()
    }
}

impl Status for Store {
    fn status(&self, now_ms: i64) -> Result<StatusSnapshot> {
        self.read("status", |tx| {
            let sources = tx.query_map(
                "SELECT source, watermark_ms, last_poll_ms FROM watermarks ORDER BY source",
                params![],
                |r| {
                    Ok(SourceStatus {
                        source: r.get(0)?,
                        watermark_ms: r.get(1)?,
                        last_poll_ms: r.get(2)?,
                    })
                },
            )?;
            let pending: i64 = tx.query_row(
                "SELECT COUNT(*) FROM approvals WHERE status = ?1 AND expires_at_ms > ?2",
                params![ApprovalStatus::Pending.as_str(), now_ms],
                |r| r.get(0),
            )?;
            let counts = tx.query_map(
                "SELECT state, COUNT(*) FROM actions GROUP BY state",
                params![],
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
            )?;
            let mut actions_by_state = BTreeMap::new();
            for (state, n) in counts {
                let state = ActionState::parse(&state).ok_or_else(|| {
                    Failure::Corrupt(format!("an action in unknown state `{state}`"))
                })?;
                actions_by_state.insert(state, n.max(0) as u64);
            }
            Ok(StatusSnapshot {
                sources,
                pending_approvals: pending.max(0) as u64,
                paused_plugins: paused(tx, now_ms)?,
                actions_by_state,
                hosts: hosts(tx)?,
                leases: leases(tx)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{ActionMode, Backoff, NewAction};
    use riposte_domain::{ActionRequest, MachineGuid, PluginName, Sha256Digest};

    backend_tests! {
        fn the_snapshot_counts_everything(store) {
            let empty = store.status(0).unwrap();
            assert!(empty.sources.is_empty() && empty.actions_by_state.is_empty());
            assert_eq!(empty.last_poll_ms(), None);

            store
                .set_watermark("crimes/unified:MalopProcess", 500, 1_000)
                .unwrap();
            store
                .set_watermark("crimes/unified:MalopLogonSession", 400, 1_100)
                .unwrap();
            let action = |m: &str, mode| {
                let new = NewAction::new(
                    PluginName::new("p"),
                    Sha256Digest::of(b"p"),
                    ActionRequest::Isolate {
                        malop_id: None,
                        machines: vec![MachineGuid::new(m)],
                    },
                    "r",
                )
                .with_mode(mode);
                store.begin_action(&new, 10).unwrap();
            };
            action("m1", ActionMode::Execute);
            action("m2", ActionMode::Execute);
            action("m3", ActionMode::Shadow);
            action(
                "m4",
                ActionMode::AwaitApproval {
                    expires_at_ms: 2_000,
                    quorum: 1,
                },
            );
            for t in 0..3 {
                store
                    .record_trap("crashy", 1_000 + t, &Backoff::default())
                    .unwrap();
            }

            let status = store.status(1_500).unwrap();
            assert_eq!(status.sources.len(), 2);
            assert_eq!(status.sources[0].source, "crimes/unified:MalopLogonSession");
            assert_eq!(status.last_poll_ms(), Some(1_100));
            assert_eq!(status.pending_approvals, 1);
            assert_eq!(status.paused_plugins.len(), 1);
            assert_eq!(status.paused_plugins[0].plugin, "crashy");
            assert_eq!(status.actions_by_state.get(&ActionState::Planned), Some(&2));
            assert_eq!(
                status.actions_by_state.get(&ActionState::Shadowed),
                Some(&1)
            );
            assert_eq!(
                status.actions_by_state.get(&ActionState::AwaitingApproval),
                Some(&1)
            );
            assert_eq!(status.unresolved_actions(), 2);
            assert_eq!(store.status(2_000).unwrap().pending_approvals, 0);

            let json = serde_json::to_value(&status).unwrap();
            assert_eq!(json["actions_by_state"]["planned"], 2);
            assert_eq!(json["paused_plugins"][0]["plugin"], "crashy");
        }
    }
}
