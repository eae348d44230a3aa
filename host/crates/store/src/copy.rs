//! Copying the whole state of one database into another: how a SQLite deployment moves to
//! PostgreSQL (`riposte db copy`), or a PostgreSQL one back to a file.
//!
//! [`copy_database`] copies every row of every table of the schema, as [`schema::TABLES`]
//! lists them (a unit test keeps that list equal to what [`schema::MIGRATIONS`] build), from
//! one [`Store`] to another of either backend.
//!
//! # What it guarantees
//!
//! - **All or nothing.** The target is written in one write transaction, committed once
//!   every row is in. A failure (a lost connection, a value the target refuses, a row
//!   missing from the source's count) rolls it back: the target holds no row afterwards,
//!   and the copy can be run again.
//! - **One instant of the source.** The source is read in one read transaction, so the copy
//!   is its state at one instant even while something still writes to it; what is written
//!   after that instant is not copied. Stop every riposte using the source (the service,
//!   `riposte approve` from cron, ...) before copying, and start them on the target after.
//! - **Refused before anything is written** unless both databases are at the schema
//!   version of this riposte ([`schema::LATEST_VERSION`]: opening a store migrates it, so
//!   this holds unless a riposte of another version changed one since) and every table of
//!   the target is empty (a database just created, or just migrated by riposte). Nothing
//!   is merged: a copy never decides between two rows for the same action or Malop.
//! - **Values unchanged.** Every column crosses as a [`Value`] (integer, text, bytes or
//!   NULL: the only column types of the schema), so ids, idempotency keys, request hashes,
//!   timestamps and stored JSON are the same on both sides: an action begun again on the
//!   target finds its ledger row, an approval stays bound to its hash, a Malop handled on
//!   the source is handled on the target. `schema_version` is not copied: each database
//!   records its own migrations.
//!
//! # How
//!
//! Tables are copied in the order of [`schema::TABLES`], which puts a referenced table
//! before the tables referencing it (actions before approvals and undo records). Rows are
//! read in primary-key order a page at a time (keyset pagination: the next page starts
//! after the last key read, so memory holds one page, whatever the size of the database)
//! and written with multi-row `INSERT`s. A column referencing its own table
//! (`actions.undo_of`: an undo action names the action it undoes) is written NULL first and
//! set in a second pass once every row of the table exists, because both backends check a
//! foreign key at the end of each statement (SQLite with `foreign_keys = ON`, PostgreSQL's
//! constraints are not deferrable), and the primary-key order of the rows says nothing of
//! which was made first. Each table's copied rows are checked against its count in the
//! source snapshot.
//!
//! The write transaction is the store's: on PostgreSQL it holds the store's write lock, on
//! SQLite it is `BEGIN IMMEDIATE`, so no other riposte writes to the target while the copy
//! runs.

use crate::schema::{LATEST_VERSION, TABLES, Table};
use crate::sql::{Row, ToValue, Tx, Value, dyn_params, params};
use crate::{Error, Failure, Op, Refusal, Result, Store, schema, tag};
use std::fmt::Write as _;

/// The operation, as errors name it.
const OP: &str = "copy_database";

/// Rows read from the source per query.
const PAGE_ROWS: usize = 500;

/// The most parameters one statement binds: SQLite's limit (PostgreSQL's is 65,535).
const MAX_PARAMS: usize = 32_766;

/// What [`copy_database`] copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// The schema version of both databases.
    pub schema_version: i64,
    /// The rows copied per table, in the order the tables were copied (every table of the
    /// schema, those with no row included).
    pub tables: Vec<TableCopied>,
}

/// The rows copied of one table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableCopied {
    /// The table.
    pub table: &'static str,
    /// How many rows were copied.
    pub rows: u64,
}

impl CopyReport {
    /// The rows copied of `table`, or `None` if the schema has no such table.
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.rows)
    }

    /// The rows copied, all tables together.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Copies every row of every table of `from` into `to`, which must be empty: the whole
/// state of a deployment, from a SQLite file to a PostgreSQL database or back.
///
/// `from` is read in one read transaction: the copy is its state at one instant, and what
/// is written to it later is not copied (stop every riposte using it first). `to` is written
/// in one write transaction, committed only once every row is in: a failure leaves it with
/// no row. Values are copied unchanged (ids, idempotency keys, hashes, timestamps, stored
/// JSON), so the ledger, approvals, undo records, budgets, handled Malops, watermarks,
/// health and key-value stores carry on on `to` as they were on `from`. Each database keeps
/// its own `schema_version`.
///
/// Refused with [`Refusal::SchemaVersion`] when either database is not at
/// [`schema::LATEST_VERSION`], with [`Refusal::NotEmpty`] when a table of `to` holds a row,
/// and with [`Refusal::InvalidArgument`] when `from` and `to` are the same [`Store`]; a
/// failure while copying a table is an [`Error::Copy`] naming the table and the database
/// that failed. In every one of these cases nothing was written to `to`.
///
/// It blocks for as long as the copy takes: async callers run it on a blocking thread.
pub fn copy_database(from: &Store, to: &Store) -> Result<CopyReport> {
    if std::ptr::eq(from, to) {
        let refusal = Refusal::InvalidArgument(
            "the source and the target of a copy are the same database".to_owned(),
        );
        return Err(tag(to.path(), OP, refusal.into()));
    }
    from.read(OP, |source| {
        at_latest_version(source)?;
        to.write(OP, |target| {
            at_latest_version(target)?;
            refuse_unless_empty(target)?;
            let mut tables = Vec::with_capacity(TABLES.len());
            for table in TABLES {
                let rows = copy_table(source, target, table, from.path()).map_err(|failure| {
                    Failure::Tagged(Box::new(Error::Copy {
                        table: table.name,
                        source: Box::new(tag(to.path(), OP, failure)),
                    }))
                })?;
                tables.push(TableCopied {
                    table: table.name,
                    rows,
                });
            }
            Ok(CopyReport {
                schema_version: LATEST_VERSION,
                tables,
            })
        })
        .map_err(|error| Failure::Tagged(Box::new(error)))
    })
}

/// Refuses a database not at [`LATEST_VERSION`].
fn at_latest_version(tx: &Tx<'_>) -> Op<()> {
    let found = schema::current_version(tx)?;
    if found != LATEST_VERSION {
        return Err(Refusal::SchemaVersion {
            found,
            expected: LATEST_VERSION,
        }
        .into());
    }
    Ok(())
}

/// The rows of `table` in the snapshot of `tx`.
fn count_rows(tx: &Tx<'_>, table: &Table) -> Op<u64> {
    let sql = format!("SELECT COUNT(*) FROM {}", table.name);
    let rows: i64 = tx.query_row(&sql, params![], |row| row.get(0))?;
    Ok(u64::try_from(rows).unwrap_or(0))
}

/// Refuses a target holding any row.
fn refuse_unless_empty(target: &Tx<'_>) -> Op<()> {
    for table in TABLES {
        let rows = count_rows(target, table)?;
        if rows > 0 {
            return Err(Refusal::NotEmpty {
                table: table.name,
                rows,
            }
            .into());
        }
    }
    Ok(())
}

/// A failure reading the source, tagged with the source's name (the transaction it runs in
/// is the target's, which would otherwise be named).
fn from_source(shown: &str) -> impl Fn(Failure) -> Failure + '_ {
    move |failure| Failure::Tagged(Box::new(tag(shown, OP, failure)))
}

/// Copies the rows of `table`; returns how many.
fn copy_table(source: &Tx<'_>, target: &Tx<'_>, table: &Table, from: &str) -> Op<u64> {
    let deferred: Vec<usize> = table
        .self_references
        .iter()
        .map(|column| position(table.columns, column))
        .collect::<Op<_>>()?;
    let mut copied = 0u64;
    each_page(source, table, table.columns, None, from, |mut rows| {
        for row in &mut rows {
            for &at in &deferred {
                row[at] = Value::Null;
            }
        }
        insert(target, table, &rows)?;
        copied += rows.len() as u64;
        Ok(())
    })?;
    let expected = count_rows(source, table).map_err(from_source(from))?;
    if copied != expected {
        return Err(Failure::Corrupt(format!(
            "{copied} rows of {} were read in key order, but the table holds {expected}",
            table.name
        )));
    }
    if !table.self_references.is_empty() {
        set_self_references(source, target, table, from)?;
    }
    Ok(copied)
}

/// The second pass over a table referencing itself: sets the references written NULL by
/// the first, now that every row exists.
fn set_self_references(source: &Tx<'_>, target: &Tx<'_>, table: &Table, from: &str) -> Op<()> {
    let columns: Vec<&str> = table
        .key
        .iter()
        .chain(table.self_references)
        .copied()
        .collect();
    let filter = table
        .self_references
        .iter()
        .map(|column| format!("{column} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut update = format!("UPDATE {} SET ", table.name);
    for (i, column) in table.self_references.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(update, "{sep}{column} = ?{}", i + 1);
    }
    for (i, column) in table.key.iter().enumerate() {
        let sep = if i == 0 { " WHERE " } else { " AND " };
        let _ = write!(
            update,
            "{sep}{column} = ?{}",
            table.self_references.len() + i + 1
        );
    }
    each_page(source, table, &columns, Some(&filter), from, |rows| {
        for row in rows {
            let (key, references) = row.split_at(table.key.len());
            let values: Vec<Value> = references.iter().chain(key).cloned().collect();
            let changed = target.execute(&update, &dyn_params(&values))?;
            if changed != 1 {
                return Err(Failure::Corrupt(format!(
                    "setting the references of a row of {} changed {changed} rows",
                    table.name
                )));
            }
        }
        Ok(())
    })
}

/// The index of `column` in `columns`.
fn position(columns: &[&str], column: &str) -> Op<usize> {
    columns.iter().position(|c| *c == column).ok_or_else(|| {
        Failure::Corrupt(format!(
            "schema::TABLES names the column {column}, which is not among {columns:?}"
        ))
    })
}

/// Reads `columns` (which include the key) of the rows of `table` matching `filter`, in key
/// order, and hands them to `f` a page at a time.
fn each_page(
    source: &Tx<'_>,
    table: &Table,
    columns: &[&str],
    filter: Option<&str>,
    from: &str,
    mut f: impl FnMut(Vec<Vec<Value>>) -> Op<()>,
) -> Op<()> {
    let key_at: Vec<usize> = table
        .key
        .iter()
        .map(|column| position(columns, column))
        .collect::<Op<_>>()?;
    let select = format!("SELECT {} FROM {}", columns.join(", "), table.name);
    let order = format!("ORDER BY {} LIMIT {PAGE_ROWS}", table.key.join(", "));
    let placeholders = (1..=table.key.len())
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    // `(a, b) > (?1, ?2)`: a row value comparison, in both backends.
    let after = match table.key {
        [single] => format!("{single} > ?1"),
        key => format!("({}) > ({placeholders})", key.join(", ")),
    };
    let (first, next) = match filter {
        None => (
            format!("{select} {order}"),
            format!("{select} WHERE {after} {order}"),
        ),
        Some(filter) => (
            format!("{select} WHERE ({filter}) {order}"),
            format!("{select} WHERE ({filter}) AND {after} {order}"),
        ),
    };
    let mut last_key: Option<Vec<Value>> = None;
    loop {
        let page = match &last_key {
            None => source.query(&first, params![]),
            Some(key) => source.query(&next, &dyn_params(key)),
        }
        .map_err(from_source(from))?;
        let full = page.len() == PAGE_ROWS;
        let rows: Vec<Vec<Value>> = page.into_iter().map(Row::into_values).collect();
        let Some(last) = rows.last() else {
            return Ok(());
        };
        last_key = Some(key_at.iter().map(|&at| last[at].clone()).collect());
        f(rows)?;
        if !full {
            return Ok(());
        }
    }
}

/// Inserts `rows` (every column of `table`, in order) into the target.
fn insert(target: &Tx<'_>, table: &Table, rows: &[Vec<Value>]) -> Op<()> {
    let width = table.columns.len();
    let head = format!(
        "INSERT INTO {} ({}) VALUES ",
        table.name,
        table.columns.join(", ")
    );
    for chunk in rows.chunks((MAX_PARAMS / width).max(1)) {
        let mut sql = head.clone();
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            if row.len() != width {
                return Err(Failure::Corrupt(format!(
                    "a row of {} read with {} columns, not {width}",
                    table.name,
                    row.len()
                )));
            }
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for c in 0..width {
                n += 1;
                let _ = write!(sql, "{}?{n}", if c == 0 { "" } else { ", " });
            }
            sql.push(')');
        }
        let values: Vec<&dyn ToValue> = chunk
            .iter()
            .flatten()
            .map(|value| value as &dyn ToValue)
            .collect();
        let inserted = target.execute(&sql, &values)?;
        if inserted != chunk.len() {
            return Err(Failure::Corrupt(format!(
                "inserting {} rows into {} inserted {inserted}",
                chunk.len(),
                table.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    /// Runs `sql` with `values` on `store`, in a write transaction of its own.
    fn exec(store: &Store, sql: &str, values: Vec<Value>) {
        store
            .write("test: raw write", |tx| {
                tx.execute(sql, &dyn_params(&values))
            })
            .unwrap();
    }

    /// The rows of `table`, every column, in one order whatever the backend's collation.
    fn dump(store: &Store, table: &Table) -> Vec<Vec<Value>> {
        let sql = format!("SELECT {} FROM {}", table.columns.join(", "), table.name);
        let mut rows: Vec<Vec<Value>> = store
            .read("test: dump", |tx| {
                Ok(tx
                    .query(&sql, params![])?
                    .into_iter()
                    .map(Row::into_values)
                    .collect())
            })
            .unwrap();
        rows.sort_by_cached_key(|row| format!("{row:?}"));
        rows
    }

    fn table(name: &str) -> &'static Table {
        TABLES.iter().find(|t| t.name == name).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    /// An action row; `undo_of` names another.
    fn action(store: &Store, id: &str, undo_of: Option<&str>) {
        exec(
            store,
            "INSERT INTO actions (id, action_key, plugin, plugin_digest, kinds, request_json, \
             request_hash, reason, state, undo_of, polls, attempts, created_at_ms, updated_at_ms) \
             VALUES (?1, ?2, 'p', 'd', 'isolate', '{}', 'h', 'r', 'succeeded', ?3, 0, 0, 1, 1)",
            vec![
                text(id),
                text(&format!("key-{id}")),
                undo_of.map_or(Value::Null, text),
            ],
        );
    }

    /// Actions besides the undone one and its undo.
    const OTHER_ACTIONS: usize = PAGE_ROWS;

    /// A source whose rows take more than one page, with composite keys, bytes, NULLs and
    /// an undo action whose id sorts before the action it undoes.
    fn filled_source() -> Store {
        let source = Store::open_in_memory().unwrap();
        // The undo action (id 0...) sorts before the original (id f...), a page of other
        // actions between them: read in key order the undo action is written a page before
        // the action it references, which its second pass sets.
        action(&source, "ffff", None);
        action(&source, "0000", Some("ffff"));
        for i in 0..OTHER_ACTIONS {
            action(&source, &format!("8{i:03}"), None);
        }
        exec(
            &source,
            "INSERT INTO undo_records (action_id, inverse_json, recorded_at_ms, undone_at_ms, \
             undone_by, undo_action_id) VALUES ('ffff', '{}', 2, 3, 'alice', '0000')",
            vec![],
        );
        source
            .write("test: fill", |tx| {
                for i in 0..(2 * PAGE_ROWS + 7) {
                    let plugin = if i % 2 == 0 { "even" } else { "odd" };
                    tx.execute(
                        "INSERT INTO handled_malops (plugin, malop_id, last_update_ms, \
                         handled_at_ms, unreadable) VALUES (?1, ?2, ?3, ?4, '')",
                        params![plugin, format!("11.{i}"), i as i64, 1i64],
                    )?;
                }
                tx.execute(
                    "INSERT INTO plugin_kv (plugin, kv_key, value, size_bytes, updated_at_ms) \
                     VALUES ('p', 'k', ?1, 3, 5)",
                    params![vec![0u8, 255, 10]],
                )?;
                Ok(())
            })
            .unwrap();
        source
    }

    fn copies_every_row_in_pages_and_references_last(target: Store) {
        let source = filled_source();
        let report = copy_database(&source, &target).unwrap();
        assert_eq!(report.schema_version, LATEST_VERSION);
        assert_eq!(report.tables.len(), TABLES.len());
        assert_eq!(
            report.rows("handled_malops"),
            Some(2 * PAGE_ROWS as u64 + 7)
        );
        assert_eq!(report.rows("actions"), Some(2 + OTHER_ACTIONS as u64));
        assert_eq!(report.rows("undo_records"), Some(1));
        assert_eq!(report.rows("watermarks"), Some(0));
        assert_eq!(report.rows("no_such_table"), None);
        assert_eq!(
            report.total_rows(),
            2 * PAGE_ROWS as u64 + 7 + 2 + OTHER_ACTIONS as u64 + 1 + 1
        );
        for table in TABLES {
            assert_eq!(dump(&source, table), dump(&target, table), "{}", table.name);
        }
        assert!(
            dump(&target, table("actions"))
                .iter()
                .any(|row| row[10] == text("ffff")),
            "the undo action keeps its reference"
        );
    }

    #[test]
    fn copies_every_row_in_pages_and_references_last_into_sqlite() {
        copies_every_row_in_pages_and_references_last(Store::open_in_memory().unwrap());
    }

    #[test]
    fn copies_every_row_in_pages_and_references_last_into_postgres_and_back() {
        let db = TestDatabase::postgres();
        copies_every_row_in_pages_and_references_last(db.open());
        // Back from PostgreSQL (read in pages in its own collation) into a new file.
        let postgres = db.open();
        let back = Store::open_in_memory().unwrap();
        let report = copy_database(&postgres, &back).unwrap();
        assert_eq!(
            report.rows("handled_malops"),
            Some(2 * PAGE_ROWS as u64 + 7)
        );
        for table in TABLES {
            assert_eq!(dump(&postgres, table), dump(&back, table), "{}", table.name);
        }
    }

    #[test]
    fn a_failure_half_way_leaves_the_target_empty() {
        let source = filled_source();
        // SQLite keeps text in a BLOB column; PostgreSQL's BYTEA refuses it. plugin_kv is
        // copied last, after every other table was written.
        assert_eq!(TABLES.last().unwrap().name, "plugin_kv");
        exec(
            &source,
            "INSERT INTO plugin_kv (plugin, kv_key, value, size_bytes, updated_at_ms) \
             VALUES ('p', 'text', 'not bytes', 9, 5)",
            vec![],
        );
        let db = TestDatabase::postgres();
        let target = db.open();
        let err = copy_database(&source, &target).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Copy {
                    table: "plugin_kv",
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("plugin_kv"), "{text}");
        assert!(text.contains(target.path()), "names the target: {text}");
        for table in TABLES {
            assert!(dump(&target, table).is_empty(), "{} is empty", table.name);
        }
    }

    #[test]
    fn a_store_is_not_copied_into_itself() {
        let store = filled_source();
        let err = copy_database(&store, &store).unwrap_err();
        assert!(
            matches!(err.refusal(), Some(Refusal::InvalidArgument(_))),
            "{err}"
        );
    }
}
