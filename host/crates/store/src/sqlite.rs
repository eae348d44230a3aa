//! The embedded backend: one SQLite file in WAL mode behind a mutex.

use crate::sql::{Dialect, Row, Sql, ToValue, Tx, Value};
use crate::{BUSY_TIMEOUT, Durability, Failure, Op};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Prepared statements kept per connection: more than the store has distinct statements,
/// so none is prepared twice.
const STATEMENT_CACHE: usize = 128;

/// An open SQLite database.
#[derive(Debug)]
pub(crate) struct Database {
    conn: Mutex<Conn>,
}

/// The connection and the `synchronous` level it is set to.
#[derive(Debug)]
struct Conn {
    conn: Connection,
    synchronous: Durability,
}

impl Conn {
    /// Sets `synchronous` for the next commits; called outside any transaction.
    fn set_durability(&mut self, durability: Durability) -> rusqlite::Result<()> {
        if self.synchronous != durability {
            let pragma = match durability {
                Durability::Durable => "PRAGMA synchronous = FULL",
                Durability::Deferred => "PRAGMA synchronous = NORMAL",
            };
            self.conn.execute_batch(pragma)?;
            self.synchronous = durability;
        }
        Ok(())
    }
}

/// `PRAGMA journal_mode = WAL`, retried while another connection holds the lock. Switching
/// a fresh file needs an exclusive lock after a shared one, and SQLite can answer that
/// escalation with SQLITE_BUSY at once instead of waiting in the busy handler (waiting could
/// deadlock; seen in CI despite the busy timeout), so processes opening a new database
/// together retry here.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

impl Database {
    /// Opens (creating if needed) the file at `path` in WAL mode with a busy timeout.
    pub(crate) fn open(path: &Path) -> Op<Database> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode = switch_to_wal(&conn)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure::Corrupt(format!(
                "set WAL mode: the database stayed in journal mode `{mode}`"
            )));
        }
        Self::configure(conn)
    }

    /// A private in-memory database.
    pub(crate) fn open_in_memory() -> Op<Database> {
        Self::configure(Connection::open_in_memory()?)
    }

    fn configure(conn: Connection) -> Op<Database> {
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Database {
            conn: Mutex::new(Conn {
                conn,
                synchronous: Durability::Durable,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock leaves no transaction open (a dropped transaction
        // rolls back), so the connection is still consistent.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a transaction and commits it if `f` returns `Ok`: a write transaction
    /// (`BEGIN IMMEDIATE`, so writers of every process serialise on the write lock) with
    /// `durability`, or a read (`BEGIN DEFERRED`, one snapshot) for `None`.
    pub(crate) fn transact(
        &self,
        durability: Option<Durability>,
        f: &mut dyn FnMut(&Tx<'_>) -> Op<()>,
    ) -> Op<()> {
        let mut guard = self.lock();
        let behavior = match durability {
            Some(durability) => {
                guard.set_durability(durability)?;
                TransactionBehavior::Immediate
            }
            None => TransactionBehavior::Deferred,
        };
        let tx = guard.conn.transaction_with_behavior(behavior)?;
        f(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The `synchronous` level the next commit uses (2 = FULL, 1 = NORMAL), for tests.
    #[cfg(test)]
    pub(crate) fn synchronous_level(&self) -> i64 {
        self.lock()
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Value::Blob(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        })
    }
}

fn bind(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

fn column(row: &rusqlite::Row<'_>, index: usize) -> Op<Value> {
    Ok(match row.get_ref(index)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Text(text) => Value::Text(
            std::str::from_utf8(text)
                .map_err(|_| Failure::Corrupt(format!("column {index} is not UTF-8 text")))?
                .to_owned(),
        ),
        ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
        ValueRef::Real(x) => {
            return Err(Failure::Corrupt(format!(
                "column {index} holds the real number {x}; the schema has none"
            )));
        }
    })
}

impl Sql for rusqlite::Transaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Op<usize> {
        let mut statement = self.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(bind(params)))?)
    }

    fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Op<Vec<Row>> {
        let mut statement = self.prepare_cached(sql)?;
        let width = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(bind(params)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..width).map(|i| column(row, i)).collect::<Op<Vec<_>>>()?;
            out.push(Row::new(values));
        }
        Ok(out)
    }
}
