//! Malops offered to the plugins with unreadable parts (an enrichment query failed): they are
//! read again on a backoff schedule until every part can be read, or until they are too old
//! to matter, and `riposte status` shows them.

use super::polling::{parts_of, parts_text};
use super::{Failure, Op, Result, Store};
use crate::repos::IncompleteMalops;
use crate::sql::{OptionalExtension, Row, params};
use riposte_domain::{ElementKind, Malop, MalopId, MalopPart, TimestampMs};
use serde::Serialize;
use std::collections::BTreeMap;

/// The most of an error a row keeps.
const ERROR_MAX_CHARS: usize = 500;

/// One Malop waiting to be read again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncompleteMalop {
    /// The Malop.
    pub malop_id: MalopId,
    /// Its element kind.
    pub kind: ElementKind,
    /// The update time of the incomplete read (server ms).
    pub last_update_ms: TimestampMs,
    /// The parts that could not be read.
    pub unreadable: Vec<MalopPart>,
    /// Why (the first failing part's error, shortened).
    pub last_error: String,
    /// Reads that came back incomplete, the first included.
    pub attempts: u32,
    /// When it was first read incomplete (host ms).
    pub first_seen_ms: i64,
    /// When it is read again next (host ms).
    pub next_try_ms: i64,
}

/// What `riposte status` shows of the incomplete Malops.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IncompleteSummary {
    /// How many wait.
    pub count: u64,
    /// How many lack each part.
    pub by_part: BTreeMap<String, u64>,
    /// The oldest waiting ones (at most five).
    pub oldest: Vec<IncompleteMalop>,
}

/// How many waiting Malops [`IncompleteSummary::oldest`] lists.
pub(crate) const SUMMARY_EXAMPLES: usize = 5;

const COLUMNS: &str =
    "malop_id, kind, last_update_ms, unreadable, last_error, attempts, first_seen_ms, next_try_ms";

fn from_row(row: &Row) -> Op<(IncompleteMalop, String)> {
    let kind: String = row.get(1)?;
    Ok((
        IncompleteMalop {
            malop_id: MalopId::new(row.get::<String>(0)?),
            kind: ElementKind::Process,
            last_update_ms: row.get(2)?,
            unreadable: parts_of(&row.get::<String>(3)?),
            last_error: row.get(4)?,
            attempts: row.get::<i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
            first_seen_ms: row.get(6)?,
            next_try_ms: row.get(7)?,
        },
        kind,
    ))
}

fn with_kind((mut row, kind): (IncompleteMalop, String)) -> Op<IncompleteMalop> {
    row.kind = ElementKind::ALL
        .into_iter()
        .find(|k| k.as_api() == kind)
        .ok_or_else(|| Failure::Corrupt(format!("an incomplete Malop of unknown kind `{kind}`")))?;
    Ok(row)
}

impl IncompleteMalops for Store {
    fn record_incomplete(
        &self,
        malop: &Malop,
        error: &str,
        now_ms: i64,
        retry_in: &dyn Fn(u32) -> i64,
    ) -> Result<IncompleteMalop> {
        let error: String = error.chars().take(ERROR_MAX_CHARS).collect();
        self.write("record_incomplete", |tx| {
            let before: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT attempts, first_seen_ms FROM incomplete_malops WHERE malop_id = ?1",
                    params![malop.id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (attempts, first_seen) = before.map_or((1, now_ms), |(a, f)| (a + 1, f));
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
            let next_try = now_ms.saturating_add(retry_in(attempts));
            tx.execute(
                "INSERT INTO incomplete_malops (malop_id, kind, last_update_ms, unreadable, \
                 last_error, attempts, first_seen_ms, next_try_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (malop_id) DO UPDATE SET \
                 kind = excluded.kind, last_update_ms = excluded.last_update_ms, \
                 unreadable = excluded.unreadable, last_error = excluded.last_error, \
                 attempts = excluded.attempts, next_try_ms = excluded.next_try_ms",
                params![
                    malop.id.as_str(),
                    malop.kind.as_api(),
                    malop.last_update_time,
                    parts_text(&malop.unreadable),
                    error,
                    i64::from(attempts),
                    first_seen,
                    next_try
                ],
            )?;
            Ok(IncompleteMalop {
                malop_id: malop.id.clone(),
                kind: malop.kind,
                last_update_ms: malop.last_update_time,
                unreadable: malop.unreadable.clone(),
                last_error: error.clone(),
                attempts,
                first_seen_ms: first_seen,
                next_try_ms: next_try,
            })
        })
    }

    fn reread_failed(
        &self,
        malop_id: &MalopId,
        error: &str,
        now_ms: i64,
        retry_in: &dyn Fn(u32) -> i64,
    ) -> Result<()> {
        let error: String = error.chars().take(ERROR_MAX_CHARS).collect();
        self.write("reread_failed", |tx| {
            let attempts: Option<i64> = tx
                .query_row(
                    "SELECT attempts FROM incomplete_malops WHERE malop_id = ?1",
                    params![malop_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(attempts) = attempts else {
                return Ok(());
            };
            let attempts = u32::try_from(attempts + 1).unwrap_or(u32::MAX);
            tx.execute(
                "UPDATE incomplete_malops SET attempts = ?2, last_error = ?3, next_try_ms = ?4 \
                 WHERE malop_id = ?1",
                params![
                    malop_id.as_str(),
                    i64::from(attempts),
                    error,
                    now_ms.saturating_add(retry_in(attempts))
                ],
            )?;
            Ok(())
        })
    }

    fn forget_incomplete(&self, malop_id: &MalopId) -> Result<bool> {
        self.write("forget_incomplete", |tx| {
            Ok(tx.execute(
                "DELETE FROM incomplete_malops WHERE malop_id = ?1",
                params![malop_id.as_str()],
            )? > 0)
        })
    }

    fn is_incomplete(&self, malop_id: &MalopId) -> Result<bool> {
        self.read("is_incomplete", |tx| {
            Ok(tx
                .query_row(
                    "SELECT 1 FROM incomplete_malops WHERE malop_id = ?1",
                    params![malop_id.as_str()],
                    |r| r.get::<i64>(0),
                )
                .optional()?
                .is_some())
        })
    }

    fn waiting_parts(
        &self,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
        now_ms: i64,
    ) -> Result<Option<Vec<MalopPart>>> {
        self.read("waiting_parts", |tx| {
            let parts: Option<String> = tx
                .query_row(
                    "SELECT unreadable FROM incomplete_malops \
                     WHERE malop_id = ?1 AND last_update_ms = ?2 AND next_try_ms > ?3",
                    params![malop_id.as_str(), last_update_ms, now_ms],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(parts.map(|p| parts_of(&p)))
        })
    }

    fn due_incomplete(&self, now_ms: i64, limit: usize) -> Result<Vec<IncompleteMalop>> {
        self.read("due_incomplete", |tx| {
            let sql = format!(
                "SELECT {COLUMNS} FROM incomplete_malops WHERE next_try_ms <= ?1 \
                 ORDER BY next_try_ms, malop_id LIMIT ?2"
            );
            let rows = tx.query_map(&sql, params![now_ms, limit as i64], from_row)?;
            rows.into_iter().map(with_kind).collect()
        })
    }

    fn incomplete_summary(&self) -> Result<IncompleteSummary> {
        self.read("incomplete_summary", |tx| {
            let sql =
                format!("SELECT {COLUMNS} FROM incomplete_malops ORDER BY first_seen_ms, malop_id");
            let rows = tx.query_map(&sql, params![], from_row)?;
            let mut summary = IncompleteSummary::default();
            for row in rows {
                let row = with_kind(row)?;
                summary.count += 1;
                for part in &row.unreadable {
                    *summary.by_part.entry(part.name().to_owned()).or_default() += 1;
                }
                if summary.oldest.len() < SUMMARY_EXAMPLES {
                    summary.oldest.push(row);
                }
            }
            Ok(summary)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malop(id: &str, parts: Vec<MalopPart>) -> Malop {
        let mut m: Malop = serde_json::from_value(serde_json::json!({
            "id": id, "kind": "MalopLogonSession", "display_name": "x", "detection_type": "",
            "activity_types": [], "management_status": "UNREAD", "priority": "HIGH",
            "creation_time": 1, "last_update_time": 50}))
        .unwrap();
        m.unreadable = parts;
        m
    }

    backend_tests! {
        fn incomplete_malops_back_off_are_summarised_and_forgotten(store) {
            let backoff = |attempts: u32| 1_000 * i64::from(attempts);
            let a = malop("11.1", vec![MalopPart::Suspects, MalopPart::Network]);
            let first = store
                .record_incomplete(&a, "refused", 10, &backoff)
                .unwrap();
            assert_eq!((first.attempts, first.next_try_ms), (1, 1_010));
            let again = store
                .record_incomplete(&a, "refused again", 2_000, &backoff)
                .unwrap();
            assert_eq!(
                (again.attempts, again.first_seen_ms, again.next_try_ms),
                (2, 10, 4_000)
            );
            store
                .record_incomplete(&malop("11.2", vec![MalopPart::Sensors]), "x", 20, &backoff)
                .unwrap();
            assert!(
                store
                    .due_incomplete(1_020, 10)
                    .unwrap()
                    .iter()
                    .map(|m| m.malop_id.as_str())
                    .eq(["11.2"])
            );
            let due = store.due_incomplete(5_000, 10).unwrap();
            assert_eq!(due.len(), 2);
            assert_eq!(due[1].kind, ElementKind::LogonSession);
            let summary = store.incomplete_summary().unwrap();
            assert_eq!(summary.count, 2);
            assert_eq!(summary.by_part.get("suspects"), Some(&1));
            assert_eq!(summary.oldest[0].last_error, "refused again");
            assert!(store.is_incomplete(&a.id).unwrap());
            let waiting = |now| store.waiting_parts(&a.id, 50, now).unwrap();
            assert_eq!(
                waiting(3_999),
                Some(vec![MalopPart::Suspects, MalopPart::Network])
            );
            assert_eq!(waiting(4_000), None, "due: read it again");
            assert_eq!(
                store.waiting_parts(&a.id, 51, 0).unwrap(),
                None,
                "another update"
            );
            assert!(store.forget_incomplete(&a.id).unwrap());
            assert!(!store.forget_incomplete(&a.id).unwrap());
            assert_eq!(store.incomplete_summary().unwrap().count, 1);
        }
    }
}
