//! The approval queue (G6): an action of a kind the operator marked waits as
//! `AwaitingApproval`, bound to the sha256 of its exact request, until an operator approves
//! or denies it or it expires. An approved action is claimed for execution exactly once.
//!
//! The approval is enqueued by [`crate::ActionLedger::begin_action`] with [`super::ActionMode::AwaitApproval`],
//! in the same transaction that records the action: there is no moment at which a crash
//! could leave a held action looking like one to execute.

use super::actions::{COLUMNS, RawAction, check_state, load, load_raw, one_row};
use super::approval_queue::{ApprovalStatus, approvers, clear_votes};
use super::{ActionId, ActionRecord, ActionState, Failure, Op, Refusal, Result, Store};
use crate::repos::Approvals;
use crate::sql::{OptionalExtension, Tx, params};
use riposte_domain::Sha256Digest;

/// An action waiting for an operator, with what they need to decide.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PendingApproval {
    /// The action (its request, plugin, Malop and reason).
    pub action: ActionRecord,
    /// The hash the approval is bound to: show it, and pass it back to [`crate::Approvals::approve`].
    pub action_hash: Sha256Digest,
    /// When it was enqueued (ms).
    pub requested_at_ms: i64,
    /// When it expires (ms).
    pub expires_at_ms: i64,
    /// How many distinct people must approve it.
    pub quorum: u32,
    /// Who approved it so far (fewer than `quorum`), in order.
    pub approved_by: Vec<String>,
}

/// An action whose quorum of approvers was reached.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ApprovedAction {
    /// The action, now [`ActionState::Approved`] (or later, once claimed).
    pub action: ActionRecord,
    /// Who approved it, in order (as many as its quorum).
    pub approved_by: Vec<String>,
    /// When the last approval came (ms).
    pub approved_at_ms: i64,
}

/// What one approval did ([`crate::Approvals::approve`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Vote {
    /// Counted; the action waits for more approvers.
    Counted {
        /// Who approved it so far, in order.
        approved_by: Vec<String>,
        /// How many it needs.
        quorum: u32,
    },
    /// The quorum is reached: the action is approved and will be executed.
    Approved(Box<ApprovedAction>),
}

struct ApprovalRow {
    hash: String,
    status: ApprovalStatus,
    expires_at_ms: i64,
    quorum: u32,
}

fn approval_row(tx: &Tx<'_>, id: &ActionId) -> Op<ApprovalRow> {
    let row: Option<(String, String, i64, i64)> = tx
        .query_row(
            "SELECT action_hash, status, expires_at_ms, quorum FROM approvals WHERE action_id = ?1",
            params![id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (hash, status, expires_at_ms, quorum) =
        row.ok_or_else(|| Failure::NotFound(format!("approval of action {id}")))?;
    let status = ApprovalStatus::parse(&status).ok_or_else(|| {
        Failure::Corrupt(format!(
            "approval of action {id}: unknown status `{status}`"
        ))
    })?;
    Ok(ApprovalRow {
        hash,
        status,
        expires_at_ms,
        quorum: u32::try_from(quorum.max(1)).unwrap_or(u32::MAX),
    })
}

/// Moves one pending approval and its action to a decision.
fn decide(
    tx: &Tx<'_>,
    id: &ActionId,
    status: ApprovalStatus,
    by: Option<&str>,
    now_ms: i64,
) -> Op<()> {
    let to = match status {
        ApprovalStatus::Approved => ActionState::Approved,
        ApprovalStatus::Denied => ActionState::Denied,
        ApprovalStatus::Expired => ActionState::Expired,
        ApprovalStatus::Pending => {
            return Err(Failure::Refused(Refusal::InvalidArgument(
                "an approval cannot be decided back to pending".into(),
            )));
        }
    };
    let from = check_state(tx, id, &[ActionState::AwaitingApproval], to)?;
    let changed = tx.execute(
        "UPDATE approvals SET status = ?1, decided_by = ?2, decided_at_ms = ?3 \
         WHERE action_id = ?4 AND status = ?5",
        params![
            status.as_str(),
            by,
            now_ms,
            id.as_str(),
            ApprovalStatus::Pending.as_str()
        ],
    )?;
    one_row(changed, id, from, to)?;
    let finished = to.is_final().then_some(now_ms);
    let changed = tx.execute(
        "UPDATE actions SET state = ?1, updated_at_ms = ?2, finished_at_ms = ?3 \
         WHERE id = ?4 AND state = ?5",
        params![to.as_str(), now_ms, finished, id.as_str(), from.as_str()],
    )?;
    one_row(changed, id, from, to)
}

/// The checks shared by approve and deny: pending, and not expired (an expired one is
/// marked expired, and the refusal returned after the commit).
fn check_pending(
    tx: &Tx<'_>,
    id: &ActionId,
    now_ms: i64,
) -> Op<std::result::Result<ApprovalRow, Failure>> {
    let row = approval_row(tx, id)?;
    if row.status != ApprovalStatus::Pending {
        return Ok(Err(Refusal::AlreadyDecided {
            action: id.clone(),
            status: row.status,
        }
        .into()));
    }
    if row.expires_at_ms <= now_ms {
        decide(tx, id, ApprovalStatus::Expired, None, now_ms)?;
        return Ok(Err(Refusal::ApprovalExpired {
            action: id.clone(),
            expired_at_ms: row.expires_at_ms,
        }
        .into()));
    }
    Ok(Ok(row))
}

impl Approvals for Store {
    fn list_pending(&self, now_ms: i64) -> Result<Vec<PendingApproval>> {
        self.read("list_pending", |tx| {
            let rows = tx.query_map(&format!(
                "SELECT {COLUMNS}, approvals.action_hash, approvals.requested_at_ms, \
                 approvals.expires_at_ms, approvals.quorum FROM approvals JOIN actions ON actions.id = approvals.action_id \
                 WHERE approvals.status = ?1 AND approvals.expires_at_ms > ?2 \
                 ORDER BY approvals.requested_at_ms, approvals.action_id"
            ), params![ApprovalStatus::Pending.as_str(), now_ms], |r| {
                    Ok((
                        RawAction::from_row(r)?,
                        r.get::<String>(23)?,
                        r.get::<i64>(24)?,
                        r.get::<i64>(25)?,
                        r.get::<i64>(26)?,
                    ))
                })?;
            rows.into_iter()
                .map(|(raw, hash, requested_at_ms, expires_at_ms, quorum)| {
                    let action = raw.into_record()?;
                    let action_hash = Sha256Digest::from_hex(&hash).ok_or_else(|| {
                        Failure::Corrupt(format!("approval of action {}: bad hash", action.id))
                    })?;
                    let approved_by = approvers(tx, &action.id)?;
                    Ok(PendingApproval {
                        action,
                        action_hash,
                        requested_at_ms,
                        expires_at_ms,
                        quorum: u32::try_from(quorum.max(1)).unwrap_or(u32::MAX),
                        approved_by,
                    })
                })
                .collect()
        })
    }

    fn approve(
        &self,
        id: &ActionId,
        by: &str,
        seen_hash: Option<&Sha256Digest>,
        now_ms: i64,
    ) -> Result<Vote> {
        self.write_then("approve", |tx| {
            let row = match check_pending(tx, id, now_ms)? {
                Ok(row) => row,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let raw = load_raw(tx, id)?.ok_or_else(|| Failure::NotFound(format!("action {id}")))?;
            let stored = raw.stored_request_hash().to_hex();
            if stored != row.hash {
                return Ok(Err(Refusal::HashMismatch {
                    action: id.clone(),
                    expected: row.hash,
                    found: stored,
                }
                .into()));
            }
            if let Some(seen) = seen_hash
                && seen.to_hex() != row.hash
            {
                return Ok(Err(Refusal::SeenHashMismatch {
                    action: id.clone(),
                    bound: row.hash,
                    given: seen.to_hex(),
                }
                .into()));
            }
            let mut approved_by = approvers(tx, id)?;
            if approved_by.iter().any(|a| a == by) {
                return Ok(Err(Refusal::AlreadyApprovedBy {
                    action: id.clone(),
                    by: by.to_owned(),
                }
                .into()));
            }
            tx.execute(
                "INSERT INTO approval_votes (action_id, approver, voted_at_ms) VALUES (?1, ?2, ?3)",
                params![id.as_str(), by, now_ms],
            )?;
            approved_by.push(by.to_owned());
            if (approved_by.len() as u64) < u64::from(row.quorum) {
                return Ok(Ok(Vote::Counted {
                    approved_by,
                    quorum: row.quorum,
                }));
            }
            decide(tx, id, ApprovalStatus::Approved, Some(by), now_ms)?;
            Ok(Ok(Vote::Approved(Box::new(ApprovedAction {
                action: load(tx, id)?,
                approved_by,
                approved_at_ms: now_ms,
            }))))
        })
    }

    fn deny(&self, id: &ActionId, by: &str, now_ms: i64) -> Result<()> {
        self.write_then("deny", |tx| {
            if let Err(refusal) = check_pending(tx, id, now_ms)? {
                return Ok(Err(refusal));
            }
            decide(tx, id, ApprovalStatus::Denied, Some(by), now_ms)?;
            Ok(Ok(()))
        })
    }

    fn expire_due(&self, now_ms: i64) -> Result<Vec<ActionId>> {
        self.write("expire_due", |tx| {
            let ids: Vec<String> = tx.query_map(
                "SELECT action_id FROM approvals WHERE status = ?1 AND expires_at_ms <= ?2 \
                     ORDER BY expires_at_ms, action_id",
                params![ApprovalStatus::Pending.as_str(), now_ms],
                |r| r.get(0),
            )?;
            let ids: Vec<ActionId> = ids
                .into_iter()
                .map(|id| {
                    ActionId::parse(&id).ok_or_else(|| {
                        Failure::Corrupt(format!("approval with bad action id `{id}`"))
                    })
                })
                .collect::<Op<_>>()?;
            for id in &ids {
                decide(tx, id, ApprovalStatus::Expired, None, now_ms)?;
            }
            Ok(ids)
        })
    }

    fn claim_approved(&self, now_ms: i64) -> Result<Vec<ApprovedAction>> {
        self.write("claim_approved", |tx| {
            let rows: Vec<(String, String, Option<String>, Option<i64>)> = tx.query_map(
                "SELECT approvals.action_id, approvals.action_hash, approvals.decided_by, \
                     approvals.decided_at_ms FROM approvals \
                     JOIN actions ON actions.id = approvals.action_id \
                     WHERE approvals.status = ?1 AND approvals.claimed_at_ms IS NULL \
                     AND actions.state = ?2 ORDER BY approvals.decided_at_ms, approvals.action_id",
                params![
                    ApprovalStatus::Approved.as_str(),
                    ActionState::Approved.as_str()
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let mut claimed = Vec::new();
            for (id, hash, by, at) in rows {
                let id = ActionId::parse(&id).ok_or_else(|| {
                    Failure::Corrupt(format!("approval with bad action id `{id}`"))
                })?;
                let raw =
                    load_raw(tx, &id)?.ok_or_else(|| Failure::NotFound(format!("action {id}")))?;
                let matches = raw.stored_request_hash().to_hex() == hash;
                let (to, error) = if matches {
                    (ActionState::Planned, None)
                } else {
                    (
                        ActionState::Failed,
                        Some("the request no longer matches its approval hash; not executed"),
                    )
                };
                let changed = tx.execute(
                    "UPDATE actions SET state = ?1, last_error = COALESCE(?2, last_error), \
                     updated_at_ms = ?3, finished_at_ms = ?4 WHERE id = ?5 AND state = ?6",
                    params![
                        to.as_str(),
                        error,
                        now_ms,
                        (!matches).then_some(now_ms),
                        id.as_str(),
                        ActionState::Approved.as_str()
                    ],
                )?;
                if changed != 1 {
                    continue;
                }
                tx.execute(
                    "UPDATE approvals SET claimed_at_ms = ?1 WHERE action_id = ?2",
                    params![now_ms, id.as_str()],
                )?;
                if matches {
                    let mut approved_by = approvers(tx, &id)?;
                    if approved_by.is_empty() {
                        // Approved before votes were kept: the decider alone (an older row
                        // may lack even that).
                        approved_by.push(by.unwrap_or_else(|| "unknown".to_owned()));
                    }
                    claimed.push(ApprovedAction {
                        action: load(tx, &id)?,
                        approved_by,
                        approved_at_ms: at.unwrap_or_default(),
                    });
                }
            }
            Ok(claimed)
        })
    }

    fn requeue_expired(&self, id: &ActionId, expires_at_ms: i64, now_ms: i64) -> Result<()> {
        let to = ActionState::AwaitingApproval;
        self.write("requeue_expired", |tx| {
            if expires_at_ms <= now_ms {
                return Err(Refusal::InvalidArgument(format!(
                    "an approval expiring at {expires_at_ms} ms is already expired at {now_ms} ms"
                ))
                .into());
            }
            let from = check_state(tx, id, &[ActionState::Expired], to)?;
            clear_votes(tx, id)?;
            let changed = tx.execute(
                "UPDATE approvals SET status = ?1, requested_at_ms = ?2, expires_at_ms = ?3, \
                 decided_by = NULL, decided_at_ms = NULL WHERE action_id = ?4 AND status = ?5",
                params![
                    ApprovalStatus::Pending.as_str(),
                    now_ms,
                    expires_at_ms,
                    id.as_str(),
                    ApprovalStatus::Expired.as_str()
                ],
            )?;
            one_row(changed, id, from, to)?;
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, updated_at_ms = ?2, finished_at_ms = NULL \
                 WHERE id = ?3 AND state = ?4",
                params![to.as_str(), now_ms, id.as_str(), from.as_str()],
            )?;
            one_row(changed, id, from, to)
        })
    }

    fn hold_for_operator(
        &self,
        id: &ActionId,
        expires_at_ms: i64,
        quorum: u32,
        now_ms: i64,
    ) -> Result<bool> {
        let to = ActionState::AwaitingApproval;
        self.write("hold_for_operator", |tx| {
            let raw = load_raw(tx, id)?.ok_or_else(|| Failure::NotFound(format!("action {id}")))?;
            let record = raw.into_record()?;
            let holdable = match record.state {
                ActionState::Planned => true,
                ActionState::Submitted => record.remediation_id.is_none(),
                _ => false,
            };
            if !holdable || expires_at_ms <= now_ms {
                return Ok(false);
            }
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, updated_at_ms = ?2 WHERE id = ?3 AND state = ?4",
                params![to.as_str(), now_ms, id.as_str(), record.state.as_str()],
            )?;
            one_row(changed, id, record.state, to)?;
            clear_votes(tx, id)?;
            tx.execute(
                "INSERT INTO approvals (action_id, action_hash, status, requested_at_ms, expires_at_ms, quorum) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (action_id) DO UPDATE SET \
                 action_hash = excluded.action_hash, status = excluded.status, \
                 requested_at_ms = excluded.requested_at_ms, expires_at_ms = excluded.expires_at_ms, \
                 quorum = excluded.quorum, \
                 decided_by = NULL, decided_at_ms = NULL, claimed_at_ms = NULL",
                params![
                    id.as_str(),
                    record.request_hash.to_hex(),
                    ApprovalStatus::Pending.as_str(),
                    now_ms,
                    expires_at_ms,
                    i64::from(quorum.max(1))
                ],
            )?;
            Ok(true)
        })
    }

    fn pending_approvals_count(&self, now_ms: i64) -> Result<u64> {
        self.read("pending_approvals_count", |tx| {
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM approvals WHERE status = ?1 AND expires_at_ms > ?2",
                params![ApprovalStatus::Pending.as_str(), now_ms],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{ActionMode, BeginOutcome, NewAction, request_hash};
    use riposte_domain::{ActionRequest, MachineGuid, MalopId, PluginName};

    fn held(store: &Store, machine: &str, now: i64, expires: i64) -> ActionId {
        let request = ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.7")),
            machines: vec![MachineGuid::new(machine)],
        };
        let new = NewAction::new(
            PluginName::new("isolator"),
            Sha256Digest::of(b"isolator"),
            request,
            "ransomware",
        )
        .with_mode(ActionMode::AwaitApproval {
            expires_at_ms: expires,
            quorum: 1,
        });
        match store.begin_action(&new, now).unwrap() {
            BeginOutcome::New(id) => id,
            other => panic!("{other:?}"),
        }
    }

    backend_tests! {
        fn an_unresolved_action_is_held_for_an_operator_and_runs_once_approved(store) {
            let planned = |machine: &str| {
                let new = NewAction::new(
                    PluginName::new("removed"),
                    Sha256Digest::of(b"removed"),
                    ActionRequest::Isolate {
                        malop_id: None,
                        machines: vec![MachineGuid::new(machine)],
                    },
                    "before the crash",
                );
                store.begin_action(&new, 1).unwrap().action_id().clone()
            };
            let (a, b) = (planned("m1"), planned("m2"));
            assert!(store.hold_for_operator(&a, 1_000, 1, 10).unwrap());
            assert!(
                !store.hold_for_operator(&a, 1_000, 1, 11).unwrap(),
                "held once"
            );
            assert_eq!(
                store.get_action(&a).unwrap().state,
                ActionState::AwaitingApproval
            );
            assert_eq!(store.unresolved_actions().unwrap().len(), 1, "b only");
            let pending = store.list_pending(12).unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(
                pending[0].action_hash,
                request_hash(&pending[0].action.request)
            );
            store
                .approve(&a, "alice", Some(&pending[0].action_hash), 20)
                .unwrap();
            let claimed = store.claim_approved(30).unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].action.state, ActionState::Planned);
            // One the server accepted with a remediation id is only followed, never held.
            store
                .mark_submitted(
                    &b,
                    Some(&riposte_domain::RemediationId::new("r-1")),
                    &serde_json::json!({}),
                    40,
                )
                .unwrap();
            assert!(!store.hold_for_operator(&b, 1_000, 1, 41).unwrap());
            // An expiry in the past holds nothing.
            assert!(!store.hold_for_operator(&a, 30, 1, 50).unwrap());
        }
    }

    backend_tests! {
        fn approve_then_claim_once(store) {
            let id = held(&store, "m1", 0, 1_000);
            assert_eq!(
                store.unresolved_actions().unwrap().len(),
                0,
                "held actions are not planned"
            );
            let pending = store.list_pending(10).unwrap();
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].action.id, id);
            assert_eq!(
                pending[0].action_hash,
                request_hash(&pending[0].action.request)
            );
            assert_eq!(store.pending_approvals_count(10).unwrap(), 1);

            let Vote::Approved(approved) = store
                .approve(&id, "alice", Some(&pending[0].action_hash), 20)
                .unwrap()
            else {
                panic!("a quorum of one is reached at once");
            };
            assert_eq!(approved.action.state, ActionState::Approved);
            assert_eq!(approved.approved_by, ["alice"]);
            assert!(store.list_pending(21).unwrap().is_empty());

            let again = store.approve(&id, "bob", None, 22).unwrap_err();
            assert_eq!(
                again.refusal(),
                Some(&Refusal::AlreadyDecided {
                    action: id.clone(),
                    status: ApprovalStatus::Approved
                })
            );
            assert!(store.deny(&id, "bob", 23).is_err());

            let claimed = store.claim_approved(30).unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].action.state, ActionState::Planned);
            assert!(store.claim_approved(31).unwrap().is_empty());
            assert_eq!(store.unresolved_actions().unwrap().len(), 1);
        }
    }

    backend_tests! {
        fn deny_and_expire(store) {
            let denied = held(&store, "m1", 0, 1_000);
            let expiring = held(&store, "m2", 0, 500);
            let late = held(&store, "m3", 0, 600);
            store.deny(&denied, "alice", 10).unwrap();
            assert_eq!(
                store.get_action(&denied).unwrap().state,
                ActionState::Denied
            );

            // Approving after the expiry is refused and marks it expired.
            let err = store.approve(&late, "alice", None, 600).unwrap_err();
            assert!(
                matches!(err.refusal(), Some(Refusal::ApprovalExpired { .. })),
                "{err}"
            );
            assert_eq!(store.get_action(&late).unwrap().state, ActionState::Expired);

            assert_eq!(store.list_pending(499).unwrap().len(), 1);
            assert!(store.list_pending(500).unwrap().is_empty());
            assert_eq!(store.expire_due(500).unwrap(), vec![expiring.clone()]);
            assert!(store.expire_due(501).unwrap().is_empty());
            assert_eq!(
                store.get_action(&expiring).unwrap().state,
                ActionState::Expired
            );
            assert!(store.claim_approved(700).unwrap().is_empty());

            // An expired approval can be queued again; a denied one cannot.
            store.requeue_expired(&expiring, 2_000, 1_000).unwrap();
            assert_eq!(
                store.get_action(&expiring).unwrap().state,
                ActionState::AwaitingApproval
            );
            assert_eq!(store.list_pending(1_001).unwrap().len(), 1);
            store.approve(&expiring, "alice", None, 1_002).unwrap();
            assert!(store.requeue_expired(&denied, 2_000, 1_000).is_err());
            assert!(store.requeue_expired(&late, 1_000, 1_000).is_err());
        }
    }

    backend_tests! {
        fn the_approval_is_bound_to_the_exact_request(store) {
            let id = held(&store, "m1", 0, 1_000);
            let wrong = Sha256Digest::of(b"something else");
            let err = store.approve(&id, "alice", Some(&wrong), 1).unwrap_err();
            assert!(
                matches!(err.refusal(), Some(Refusal::SeenHashMismatch { .. })),
                "{err}"
            );

            // Someone edits the stored request: the approval no longer matches it.
            store
                .write("test: tamper", |tx| {
                    tx.execute(
                        "UPDATE actions SET request_json = ?1 WHERE id = ?2",
                        params![
                            r#"{"action":"isolate","malop_id":"11.7","machines":["m1","m9"]}"#,
                            id.as_str()
                        ],
                    )?;
                    Ok(())
                })
                .unwrap();
            let err = store.approve(&id, "alice", None, 2).unwrap_err();
            assert!(
                matches!(err.refusal(), Some(Refusal::HashMismatch { .. })),
                "{err}"
            );
            assert_eq!(
                store.get_action(&id).unwrap().state,
                ActionState::AwaitingApproval
            );
        }
    }

    backend_tests! {
        fn unknown_approvals_are_not_found(store) {
            assert!(
                store
                    .approve(&ActionId::generate(), "alice", None, 1)
                    .unwrap_err()
                    .is_not_found()
            );
        }
    }

    backend_tests! {
        fn an_expiry_in_the_past_is_refused(store) {
            let new = NewAction::new(
                PluginName::new("p"),
                Sha256Digest::of(b"p"),
                ActionRequest::Isolate {
                    malop_id: None,
                    machines: vec![MachineGuid::new("m")],
                },
                "r",
            )
            .with_mode(ActionMode::AwaitApproval { expires_at_ms: 5, quorum: 1 });
            assert!(store.begin_action(&new, 5).is_err());
        }
    }
}
