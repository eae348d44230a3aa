//! The approvals queue's rows: where an approval is, and how a pending one enters the queue
//! (inside [`ActionLedger::begin_action`](crate::ActionLedger::begin_action), in the action's own
//! transaction). Below both the action ledger and the approval decisions, which use it.

use super::{ActionId, Op};
use crate::sql::{Tx, params};
use std::fmt;

/// Where an approval is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for an operator.
    Pending,
    /// Approved.
    Approved,
    /// Denied.
    Denied,
    /// Not decided in time.
    Expired,
}

impl ApprovalStatus {
    /// The stable text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pending approval waits for: enough approvers before it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    /// When it expires (ms).
    pub(crate) expires_at_ms: i64,
    /// How many distinct approvers it needs (0 is taken as 1).
    pub(crate) quorum: u32,
}

/// Enqueues the approval of a just-inserted action (inside [`crate::ActionLedger::begin_action`]).
pub(crate) fn enqueue(tx: &Tx<'_>, id: &ActionId, hash_hex: &str, now_ms: i64, due: Due) -> Op<()> {
    tx.execute(
        "INSERT INTO approvals (action_id, action_hash, status, requested_at_ms, expires_at_ms, quorum) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id.as_str(),
            hash_hex,
            ApprovalStatus::Pending.as_str(),
            now_ms,
            due.expires_at_ms,
            i64::from(due.quorum.max(1))
        ],
    )?;
    Ok(())
}

/// Who approved the action `id` so far, in the order they approved.
pub(crate) fn approvers(tx: &Tx<'_>, id: &ActionId) -> Op<Vec<String>> {
    tx.query_map(
        "SELECT approver FROM approval_votes WHERE action_id = ?1 ORDER BY voted_at_ms, approver",
        params![id.as_str()],
        |r| r.get(0),
    )
}

/// Forgets the approvals given so far (a new round: the approval is enqueued again).
pub(crate) fn clear_votes(tx: &Tx<'_>, id: &ActionId) -> Op<()> {
    tx.execute(
        "DELETE FROM approval_votes WHERE action_id = ?1",
        params![id.as_str()],
    )?;
    Ok(())
}
