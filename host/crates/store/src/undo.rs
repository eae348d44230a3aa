//! Undo records (G8): for each executed destructive action, the inverse request that
//! reverses it, applied by `riposte undo <action-id>` through the same gate, ledger and
//! audit as any action.
//!
//! The undo itself is an ordinary action recorded with [`super::NewAction::undo`], whose key
//! ([`super::ActionKey::for_undo`]) is the same for every attempt to undo one action, so an
//! undo also runs at most once; [`crate::UndoLog::mark_undone`] then links the two and moves the
//! original to [`ActionState::Undone`].

use super::actions::{check_state, one_row};
use super::{ActionId, ActionState, Failure, Refusal, Result, Store};
use crate::repos::UndoLog;
use crate::sql::{OptionalExtension, params};
use riposte_domain::{ActionRequest, RemediationKind, RemediationTarget};

/// The inverse of `request`, or `None` if nothing can reverse it.
///
/// | action | inverse |
/// |---|---|
/// | isolate machines | un-isolate the same machines |
/// | quarantine file | unquarantine the same target (see below) |
/// | set reputation | remove the reputation of the same keys |
/// | kill process, kill-prevent-unsuspend | **irreversible**: a dead process stays dead |
/// | delete registry key | **irreversible**: the value is gone |
/// | block file | **irreversible** through this API (no unblock action exists) |
/// | un-isolate, unquarantine, unsuspend, remove reputation | none: they are already inverses |
/// | set status, add comment | none: bookkeeping, the previous value is not known |
///
/// A remediation mixing kinds gets an inverse for its reversible targets only (`None` if
/// it has none). Caveats: the server gives a quarantined file a new element GUID, so the
/// recorded unquarantine names the original file and the undo resolves the quarantined copy
/// on the server before sending it (`Client::quarantined_file`); and removing a reputation
/// does not restore one the key had before.
pub fn inverse_of(request: &ActionRequest) -> Option<ActionRequest> {
    match request {
        ActionRequest::Isolate { malop_id, machines } => Some(ActionRequest::Unisolate {
            malop_id: malop_id.clone(),
            machines: machines.clone(),
        }),
        ActionRequest::SetReputation { keys, .. } => {
            Some(ActionRequest::RemoveReputation { keys: keys.clone() })
        }
        ActionRequest::Remediate { malop_id, targets } => {
            let inverse: Vec<RemediationTarget> = targets
                .iter()
                .filter(|t| t.kind == RemediationKind::QuarantineFile)
                .map(|t| RemediationTarget {
                    kind: RemediationKind::UnquarantineFile,
                    ..t.clone()
                })
                .collect();
            (!inverse.is_empty()).then(|| ActionRequest::Remediate {
                malop_id: malop_id.clone(),
                targets: inverse,
            })
        }
        ActionRequest::Unisolate { .. }
        | ActionRequest::RemoveReputation { .. }
        | ActionRequest::SetStatus { .. }
        | ActionRequest::AddComment { .. } => None,
    }
}

/// The recorded inverse of one action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UndoRecord {
    /// The original action.
    pub action_id: ActionId,
    /// The request that reverses it.
    pub inverse: ActionRequest,
    /// When it was recorded (ms).
    pub recorded_at_ms: i64,
    /// When the undo was applied (ms).
    pub undone_at_ms: Option<i64>,
    /// Who applied it.
    pub undone_by: Option<String>,
    /// The action that applied it.
    pub undo_action_id: Option<ActionId>,
}

/// `inverse_json, recorded_at_ms, undone_at_ms, undone_by, undo_action_id`.
type UndoRow = (String, i64, Option<i64>, Option<String>, Option<String>);

/// The states from which an action can be marked undone.
const UNDOABLE: [ActionState; 3] = [
    ActionState::Succeeded,
    ActionState::Failed,
    ActionState::TimedOut,
];

impl UndoLog for Store {
    fn record_undo(
        &self,
        action_id: &ActionId,
        inverse: &ActionRequest,
        now_ms: i64,
    ) -> Result<()> {
        let json = serde_json::to_string(inverse).expect("an ActionRequest always serializes");
        self.write("record_undo", |tx| {
            super::actions::load_raw(tx, action_id)?
                .ok_or_else(|| Failure::NotFound(format!("action {action_id}")))?;
            let changed = tx.execute(
                "INSERT INTO undo_records (action_id, inverse_json, recorded_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (action_id) DO UPDATE SET inverse_json = excluded.inverse_json, \
                 recorded_at_ms = excluded.recorded_at_ms WHERE undo_records.undone_at_ms IS NULL",
                params![action_id.as_str(), json, now_ms],
            )?;
            if changed == 0 {
                return Err(Refusal::AlreadyUndone {
                    action: action_id.clone(),
                }
                .into());
            }
            Ok(())
        })
    }

    fn get_undo(&self, action_id: &ActionId) -> Result<Option<UndoRecord>> {
        self.read("get_undo", |tx| {
            let row: Option<UndoRow> = tx
                .query_row(
                    "SELECT inverse_json, recorded_at_ms, undone_at_ms, undone_by, undo_action_id \
                     FROM undo_records WHERE action_id = ?1",
                    params![action_id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((json, recorded_at_ms, undone_at_ms, undone_by, undo_action_id)) = row else {
                return Ok(None);
            };
            let inverse = serde_json::from_str(&json)
                .map_err(|e| Failure::Corrupt(format!("undo record of action {action_id}: {e}")))?;
            Ok(Some(UndoRecord {
                action_id: action_id.clone(),
                inverse,
                recorded_at_ms,
                undone_at_ms,
                undone_by,
                undo_action_id: undo_action_id.and_then(|id| ActionId::parse(&id)),
            }))
        })
    }

    fn mark_undone(
        &self,
        action_id: &ActionId,
        undo_action_id: &ActionId,
        by: &str,
        now_ms: i64,
    ) -> Result<()> {
        let to = ActionState::Undone;
        self.write("mark_undone", |tx| {
            let undone: Option<Option<i64>> = tx
                .query_row(
                    "SELECT undone_at_ms FROM undo_records WHERE action_id = ?1",
                    params![action_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            match undone {
                None => {
                    return Err(Failure::NotFound(format!(
                        "undo record of action {action_id}"
                    )));
                }
                Some(Some(_)) => {
                    return Err(Refusal::AlreadyUndone {
                        action: action_id.clone(),
                    }
                    .into());
                }
                Some(None) => {}
            }
            super::actions::load_raw(tx, undo_action_id)?
                .ok_or_else(|| Failure::NotFound(format!("undo action {undo_action_id}")))?;
            let from = check_state(tx, action_id, &UNDOABLE, to)?;
            tx.execute(
                "UPDATE undo_records SET undone_at_ms = ?1, undone_by = ?2, undo_action_id = ?3 \
                 WHERE action_id = ?4 AND undone_at_ms IS NULL",
                params![now_ms, by, undo_action_id.as_str(), action_id.as_str()],
            )?;
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, updated_at_ms = ?2 WHERE id = ?3 AND state = ?4",
                params![to.as_str(), now_ms, action_id.as_str(), from.as_str()],
            )?;
            one_row(changed, action_id, from, to)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::{
        ElementGuid, KeyKind, MachineGuid, MalopId, ManagementStatus, ReputationKey, Verdict,
    };

    fn target(kind: RemediationKind) -> RemediationTarget {
        RemediationTarget {
            machine_guid: MachineGuid::new("m1"),
            target_guid: ElementGuid::new("e1"),
            kind,
        }
    }

    #[test]
    fn the_inverse_table() {
        let malop = Some(MalopId::new("11.1"));
        let machines = vec![MachineGuid::new("m1"), MachineGuid::new("m2")];
        assert_eq!(
            inverse_of(&ActionRequest::Isolate {
                malop_id: malop.clone(),
                machines: machines.clone()
            }),
            Some(ActionRequest::Unisolate {
                malop_id: malop.clone(),
                machines: machines.clone()
            })
        );
        let keys = vec![ReputationKey {
            kind: KeyKind::FileHash,
            value: "abc".into(),
        }];
        assert_eq!(
            inverse_of(&ActionRequest::SetReputation {
                keys: keys.clone(),
                verdict: Verdict::Blacklist,
                prevent: true
            }),
            Some(ActionRequest::RemoveReputation { keys: keys.clone() })
        );
        assert_eq!(
            inverse_of(&ActionRequest::Remediate {
                malop_id: malop.clone(),
                targets: vec![
                    target(RemediationKind::KillProcess),
                    target(RemediationKind::QuarantineFile)
                ]
            }),
            Some(ActionRequest::Remediate {
                malop_id: malop.clone(),
                targets: vec![target(RemediationKind::UnquarantineFile)]
            })
        );
        for irreversible in [
            RemediationKind::KillProcess,
            RemediationKind::KillPreventUnsuspend,
            RemediationKind::DeleteRegistryKey,
            RemediationKind::BlockFile,
            RemediationKind::UnquarantineFile,
            RemediationKind::UnsuspendProcess,
        ] {
            assert_eq!(
                inverse_of(&ActionRequest::Remediate {
                    malop_id: malop.clone(),
                    targets: vec![target(irreversible)]
                }),
                None,
                "{irreversible:?}"
            );
        }
        assert_eq!(
            inverse_of(&ActionRequest::Unisolate {
                malop_id: None,
                machines
            }),
            None
        );
        assert_eq!(inverse_of(&ActionRequest::RemoveReputation { keys }), None);
        assert_eq!(
            inverse_of(&ActionRequest::SetStatus {
                malop_id: MalopId::new("11.1"),
                status: ManagementStatus::Closed
            }),
            None
        );
        assert_eq!(
            inverse_of(&ActionRequest::AddComment {
                malop_id: MalopId::new("11.1"),
                text: "x".into()
            }),
            None
        );
    }
}
