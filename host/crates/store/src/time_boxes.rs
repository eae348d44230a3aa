//! Time-boxed containment: an executed action (an isolation, say) that the operator gave a
//! time limit is reverted through its recorded inverse ([`crate::UndoLog`]) at its deadline,
//! unless someone confirms it first. A box is open while it is neither confirmed nor undone;
//! an extension moves its deadline and asks for a new warning.

use super::actions::load_raw;
use super::{ActionId, ActionState, Failure, Op, Refusal, Result, Store};
use crate::repos::TimeBoxes;
use crate::sql::{Row, ToValue, Tx, params};

/// The time limit of one executed action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimeBox {
    /// The action.
    pub action_id: ActionId,
    /// When the box started: the action succeeded (ms).
    pub started_at_ms: i64,
    /// When it is reverted unless confirmed (ms).
    pub deadline_ms: i64,
    /// When the coming revert was announced, for the current deadline (ms).
    pub warned_at_ms: Option<i64>,
    /// Who confirmed the containment (it then stays until undone by hand).
    pub confirmed_by: Option<String>,
    /// When (ms).
    pub confirmed_at_ms: Option<i64>,
    /// Who moved the deadline last.
    pub extended_by: Option<String>,
    /// When (ms).
    pub extended_at_ms: Option<i64>,
    /// When the action was undone (by the revert or by hand), if it was (ms).
    pub undone_at_ms: Option<i64>,
}

impl TimeBox {
    /// Neither confirmed nor undone: its deadline still stands.
    pub fn is_open(&self) -> bool {
        self.confirmed_at_ms.is_none() && self.undone_at_ms.is_none()
    }
}

const SELECT: &str = "SELECT time_boxes.action_id, started_at_ms, deadline_ms, warned_at_ms, \
     confirmed_by, confirmed_at_ms, extended_by, extended_at_ms, undo_records.undone_at_ms \
     FROM time_boxes LEFT JOIN undo_records ON undo_records.action_id = time_boxes.action_id";

/// Open boxes only: not confirmed, not undone.
const OPEN: &str = "confirmed_at_ms IS NULL AND undo_records.undone_at_ms IS NULL";

fn from_row(r: &Row) -> Op<TimeBox> {
    let id: String = r.get(0)?;
    Ok(TimeBox {
        action_id: ActionId::parse(&id)
            .ok_or_else(|| Failure::Corrupt(format!("time box with bad action id `{id}`")))?,
        started_at_ms: r.get(1)?,
        deadline_ms: r.get(2)?,
        warned_at_ms: r.get(3)?,
        confirmed_by: r.get(4)?,
        confirmed_at_ms: r.get(5)?,
        extended_by: r.get(6)?,
        extended_at_ms: r.get(7)?,
        undone_at_ms: r.get(8)?,
    })
}

fn query(tx: &Tx<'_>, clause: &str, args: &[&dyn ToValue]) -> Op<Vec<TimeBox>> {
    let sql = format!("{SELECT} WHERE {clause} ORDER BY deadline_ms, time_boxes.action_id");
    tx.query_map(&sql, args, from_row)
}

/// The box of `id`, open (refused with [`Refusal::TimeBoxClosed`] otherwise).
fn open_box(tx: &Tx<'_>, id: &ActionId) -> Op<std::result::Result<TimeBox, Failure>> {
    let found = query(tx, "time_boxes.action_id = ?1", params![id.as_str()])?;
    let b = found
        .into_iter()
        .next()
        .ok_or_else(|| Failure::NotFound(format!("time limit of action {id}")))?;
    let why = match (&b.confirmed_by, b.undone_at_ms) {
        (_, Some(at)) => format!("its containment was reverted or undone at {at} ms"),
        (Some(by), None) => format!("{by} confirmed it"),
        (None, None) => return Ok(Ok(b)),
    };
    Ok(Err(Refusal::TimeBoxClosed {
        action: id.clone(),
        why,
    }
    .into()))
}

impl TimeBoxes for Store {
    fn start_time_box(&self, id: &ActionId, limit_ms: i64, now_ms: i64) -> Result<TimeBox> {
        self.write("start_time_box", |tx| {
            let raw = load_raw(tx, id)?.ok_or_else(|| Failure::NotFound(format!("action {id}")))?;
            let state = raw.into_record()?.state;
            if state != ActionState::Succeeded {
                return Err(Refusal::InvalidArgument(format!(
                    "action {id} is {state}: only an action that took effect gets a time limit"
                ))
                .into());
            }
            tx.execute(
                "INSERT INTO time_boxes (action_id, started_at_ms, deadline_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (action_id) DO NOTHING",
                params![id.as_str(), now_ms, now_ms.saturating_add(limit_ms.max(0))],
            )?;
            let found = query(tx, "time_boxes.action_id = ?1", params![id.as_str()])?;
            found
                .into_iter()
                .next()
                .ok_or_else(|| Failure::NotFound(format!("time limit of action {id}")))
        })
    }

    fn open_time_boxes(&self) -> Result<Vec<TimeBox>> {
        self.read("open_time_boxes", |tx| query(tx, OPEN, params![]))
    }

    fn time_box(&self, id: &ActionId) -> Result<Option<TimeBox>> {
        self.read("time_box", |tx| {
            let found = query(tx, "time_boxes.action_id = ?1", params![id.as_str()])?;
            Ok(found.into_iter().next())
        })
    }

    fn due_time_boxes(&self, now_ms: i64) -> Result<Vec<TimeBox>> {
        self.read("due_time_boxes", |tx| {
            query(
                tx,
                &format!("{OPEN} AND deadline_ms <= ?1"),
                params![now_ms],
            )
        })
    }

    fn warn_time_boxes(&self, deadline_before_ms: i64, now_ms: i64) -> Result<Vec<TimeBox>> {
        self.write("warn_time_boxes", |tx| {
            let due = query(
                tx,
                &format!("{OPEN} AND warned_at_ms IS NULL AND deadline_ms <= ?1"),
                params![deadline_before_ms],
            )?;
            for b in &due {
                tx.execute(
                    "UPDATE time_boxes SET warned_at_ms = ?1 WHERE action_id = ?2",
                    params![now_ms, b.action_id.as_str()],
                )?;
            }
            Ok(due)
        })
    }

    fn confirm_time_box(&self, id: &ActionId, by: &str, now_ms: i64) -> Result<TimeBox> {
        self.write_then("confirm_time_box", |tx| {
            let mut b = match open_box(tx, id)? {
                Ok(b) => b,
                Err(refusal) => return Ok(Err(refusal)),
            };
            tx.execute(
                "UPDATE time_boxes SET confirmed_by = ?1, confirmed_at_ms = ?2 WHERE action_id = ?3",
                params![by, now_ms, id.as_str()],
            )?;
            b.confirmed_by = Some(by.to_owned());
            b.confirmed_at_ms = Some(now_ms);
            Ok(Ok(b))
        })
    }

    fn extend_time_box(
        &self,
        id: &ActionId,
        by: &str,
        extra_ms: i64,
        now_ms: i64,
    ) -> Result<TimeBox> {
        self.write_then("extend_time_box", |tx| {
            let mut b = match open_box(tx, id)? {
                Ok(b) => b,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if extra_ms <= 0 {
                return Ok(Err(Refusal::InvalidArgument(format!(
                    "an extension must be positive, not {extra_ms} ms"
                ))
                .into()));
            }
            b.deadline_ms = b.deadline_ms.max(now_ms).saturating_add(extra_ms);
            tx.execute(
                "UPDATE time_boxes SET deadline_ms = ?1, warned_at_ms = NULL, extended_by = ?2, \
                 extended_at_ms = ?3 WHERE action_id = ?4",
                params![b.deadline_ms, by, now_ms, id.as_str()],
            )?;
            b.warned_at_ms = None;
            b.extended_by = Some(by.to_owned());
            b.extended_at_ms = Some(now_ms);
            Ok(Ok(b))
        })
    }
}
