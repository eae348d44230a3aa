//! The durable state of the service, in an embedded SQLite database.
//!
//! One [`Store`] holds everything riposte must remember across restarts and crashes. Its
//! operations are grouped by concern into repository traits ([`ActionLedger`],
//! [`Approvals`], [`Budgets`], [`BudgetCounters`], [`Polling`], [`Health`], [`Kv`],
//! [`IncompleteMalops`], [`UndoLog`], [`TimeBoxes`], [`Fleet`], [`Status`], [`Users`],
//! [`ConsoleSessions`], [`Activity`]; all of them together: [`Repositories`]),
//! which state the contract a second backend (PostgreSQL) must keep; [`Store`] implements
//! them all over one SQLite connection. `use riposte_store::prelude::*` brings them into
//! scope. The traits are object-safe: a backend chosen at runtime is an
//! `Arc<dyn Repositories>`.
//!
//! - **Watermarks** per polled source, on the server's own clock ([`Polling::watermark`]), and the
//!   time of the last poll (for `riposte status`).
//! - **Malops handled per plugin**, keyed by (plugin, Malop id, last update time), so a Malop
//!   updated later is offered again but one seen twice in the poll overlap is not
//!   ([`Polling::mark_handled`], [`Polling::is_handled`]).
//! - **The action ledger** (G4, exactly once). Every action gets an [`ActionKey`] (sha256 of
//!   the Malop, the action kinds, the canonical targets and the plugin digest) and is written
//!   as [`ActionState::Planned`] in its own committed transaction *before* the server is
//!   called ([`ActionLedger::begin_action`]). A second request with the same key finds the existing
//!   record and its state, so nothing is ever sent twice. After a crash,
//!   [`ActionLedger::unresolved_actions`] lists the actions whose outcome is unknown: the caller checks
//!   them on the server before re-sending anything.
//! - **Budget charges** (G3): one charge per (plugin, action kind, target) of every allowed
//!   action, so sliding windows, fan-out per machine and per-target cooldowns are exact.
//!   [`Budgets::spend_charges_checked`] is the atomic check-and-record step of the policy
//!   gate's `BudgetLedger`; [`BudgetCounters`] are simpler per-scope counters with a fixed
//!   maximum, for callers without a policy.
//! - **The approval queue** (G6), bound to the sha256 of the exact request, with expiry and a
//!   claim that hands an approved action to exactly one worker ([`Approvals::approve`],
//!   [`Approvals::claim_approved`]).
//! - **Undo records** (G8): the inverse of each executed destructive action
//!   ([`inverse_of`], [`UndoLog::record_undo`]).
//! - **Plugin health**: consecutive traps and an exponential-backoff pause
//!   ([`Health::record_trap`]).
//! - **A key-value store** per plugin with a total size limit ([`Kv::kv_set`]).
//! - **Incomplete Malops**: those offered with unreadable parts, read again with backoff
//!   ([`IncompleteMalops::record_incomplete`], [`IncompleteMalops::due_incomplete`]).
//! - **A status snapshot** for `riposte status` ([`Status::status`]).
//!
//! # Time
//!
//! The store never reads a clock for its decisions: every timestamp is milliseconds since the
//! Unix epoch passed in by the caller (`now_ms`), so tests and replays are deterministic and
//! the same code runs against several hosts sharing one database. (The only exception is the
//! `applied_at_ms` of a schema migration, which is informational.)
//!
//! # Durability and concurrency
//!
//! A file database is opened in WAL mode with `synchronous = FULL` (a `Planned` row must
//! survive a power cut, not just a crash, or an action could be sent twice), a busy timeout
//! and foreign keys on.
//!
//! A few writes are [`Durability::Deferred`]: committed with `synchronous = NORMAL`, so the
//! commit does not wait for an fsync. Such a commit survives a crash of the process (it is in
//! the WAL file) but not necessarily a power cut, *until the next durable commit*: SQLite
//! appends commits to the WAL in order and checksums each frame over all frames before it, so
//! the fsync of any later `FULL` commit (or a checkpoint) makes every earlier commit durable,
//! and recovery after a power cut keeps a prefix of the commits, never a later one without an
//! earlier one. Only rows whose loss together with everything after them is harmless are
//! written this way: shadowed actions. Nothing was sent for them, and the Malop they were
//! planned for is marked handled by a later durable commit, so if they are lost the Malop is
//! offered again and the plan recorded again (a plan of an interval hook stays in the audit
//! trail). Everything else, the handled marks (committed in groups by
//! [`Polling::mark_handled_all`]) included, is durable at commit.
//!
//! The connection sits behind a [`Mutex`]: share the store as `Arc<Store>` (or as
//! `Arc<dyn Repositories>`). Every method is one short transaction; write transactions are
//! `BEGIN IMMEDIATE`, so two processes on the same file (the service and `riposte approve`,
//! say) serialise on the write lock instead of failing on a lock upgrade. Every state change
//! is a guarded `UPDATE ... WHERE state IN (...)` whose row count is checked, so the same
//! statements stay correct when several hosts share a database without a process-wide mutex.
//!
//! The methods block: on the mutex, on another process's write lock (up to
//! [`BUSY_TIMEOUT`]) and on the fsync of a durable commit. They must not run on an async
//! runtime's worker threads, where they would stall every task scheduled there: async code
//! calls them through `tokio::task::spawn_blocking` (the service's `db::blocking` helper),
//! synchronous code (the CLI, tests) calls them directly.
//!
//! # Schema and portability (PostgreSQL)
//!
//! The schema is versioned in `schema_version`; [`schema::MIGRATIONS`] are applied in order,
//! all in one transaction, when the store is opened. A database written by a newer riposte is
//! refused with [`Error::FutureSchema`] rather than misread.
//!
//! The SQL is kept portable so that PostgreSQL can back several hosts later: only `TEXT`,
//! `BIGINT` and `BLOB` columns; no `AUTOINCREMENT` or rowid reliance (ids are UUIDs made in
//! Rust); no SQLite-only functions (only `COUNT`, `SUM`, `MAX`, `COALESCE`); timestamps are
//! `BIGINT` milliseconds passed from Rust, never `CURRENT_TIMESTAMP`; upserts use
//! `INSERT ... ON CONFLICT (...) DO UPDATE/NOTHING`, and `RETURNING`, which both support.
//! Moving to PostgreSQL would change:
//!
//! - the driver (`postgres`/`sqlx` instead of `rusqlite`) and placeholders (`$1` for `?1`);
//! - `BLOB` becomes `BYTEA` (the only column is `plugin_kv.value`);
//! - the `PRAGMA`s of [`Store::open`] go away (WAL, busy timeout and foreign keys are
//!   PostgreSQL's defaults or not needed); `BEGIN IMMEDIATE` becomes `BEGIN` plus
//!   `SELECT ... FOR UPDATE` on the rows a transaction reads and then changes (the approve,
//!   claim and spend paths), or `SERIALIZABLE` isolation with a retry on serialisation
//!   failures;
//! - budget spends should take a per-(scope, kind) advisory lock (`pg_advisory_xact_lock`) so
//!   that two hosts cannot both see room for the last slot;
//! - the process-wide mutex becomes a connection pool, and the new backend implements the
//!   repository traits (the contract is written on them, in `repos`).
//!
//! The table definitions themselves need no change.
//!
//! # Moving a deployment to PostgreSQL
//!
//! [`copy_database`] copies the whole state of one store into an empty store of either
//! backend: one snapshot of the source, one transaction of the target (all or nothing),
//! refused unless both are at this riposte's schema version and every table of the target
//! is empty. `riposte db copy` runs it from a SQLite file to a PostgreSQL database.

/// Runs each unit test it wraps against both backends: `backend_tests! { fn name(store) {
/// ... } }` becomes a module `name` with the tests `sqlite` (in memory) and `postgres` (a
/// fresh database on the test server, see [`testing`]).
#[cfg(test)]
macro_rules! backend_tests {
    ($(fn $name:ident($store:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($store: $crate::Store) $body

            #[test]
            fn sqlite() {
                body($crate::Store::open_in_memory().unwrap())
            }

            #[test]
            fn postgres() {
                let db = $crate::testing::TestDatabase::postgres();
                body(db.open())
            }
        }
    )*};
}

mod actions;
mod activity;
mod approval_queue;
mod approvals;
mod budget;
mod charges;
mod copy;
pub mod fleet;
mod health;
mod incomplete;
mod kv;
mod policy_ledger;
mod polling;
mod postgres;
mod repos;
pub mod schema;
mod sessions;
pub mod settings;
mod sql;
mod sqlite;
mod status;
pub mod testing;
mod time_boxes;
mod undo;
mod users;

pub use actions::{
    ActionFilter, ActionId, ActionKey, ActionMode, ActionRecord, ActionState, BeginOutcome,
    NewAction, OUTCOME_UNKNOWN, Outcome, RetryDecision, Unsent, request_hash, undo_requester,
};
pub use activity::{DecisionCounts, HOUR_MS, PluginActivity};
pub use approval_queue::ApprovalStatus;
pub use approvals::{ApprovedAction, PendingApproval, Vote};
pub use budget::{BudgetCharge, SpendOutcome};
pub use charges::ChargeItem;
pub use copy::{CopyReport, TableCopied, copy_database};
pub use fleet::{HostStatus, LeaseGrant, LeaseStatus, MAX_HOLDING_BYTES, MAX_HOST_ID_BYTES};
pub use health::{Backoff, PauseState, PausedPlugin};
pub use incomplete::{IncompleteMalop, IncompleteSummary};
pub use kv::{KV_ENTRY_OVERHEAD_BYTES, KV_MAX_KEY_BYTES, KV_MAX_VALUE_BYTES};
pub use polling::Handled;
pub use repos::{
    ActionLedger, Activity, Approvals, BudgetCounters, Budgets, BudgetsExt, ChargeCheck,
    ChargeReads, ChargeView, ConsoleSessions, Fleet, Health, IncompleteMalops, Kv, Polling,
    Repositories, SpendCheck, Status, TimeBoxes, UndoLog, Users,
};
pub use sessions::SessionRecord;
pub use status::{SourceStatus, StatusSnapshot};
pub use time_boxes::TimeBox;
pub use undo::{UndoRecord, inverse_of};
pub use users::UserRecord;

use sql::Tx;
use std::path::Path;
use std::time::Duration;

/// The repository traits, to `use riposte_store::prelude::*` where the store is called.
pub mod prelude {
    pub use crate::repos::{
        ActionLedger, Activity, Approvals, BudgetCounters, Budgets, BudgetsExt, ConsoleSessions,
        Fleet, Health, IncompleteMalops, Kv, Polling, Repositories, Status, TimeBoxes, UndoLog,
        Users,
    };
}

/// How long a statement waits for another process's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The one error type of the store. Every message names the database and the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed (I/O, a lock held past the busy timeout, a constraint, ...).
    #[error("state database {path}: {op} failed: {source}")]
    Sqlite {
        /// The database file (or `:memory:`).
        path: String,
        /// The store operation, e.g. `begin_action`.
        op: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed or refused a statement (a constraint, a lost connection, ...).
    #[error("state database {path}: {op} failed: {source}")]
    Postgres {
        /// The database, as shown (its URL without the password).
        path: String,
        /// The store operation, e.g. `begin_action`.
        op: &'static str,
        /// What PostgreSQL (or the connection to it) said.
        #[source]
        source: ::postgres::Error,
    },
    /// No connection to the PostgreSQL database could be had: it is down or unreachable.
    /// Nothing was done; the call can be made again once the database is back.
    #[error("state database {path}: {op}: the database is unreachable: {source}")]
    Unreachable {
        /// The database, as shown (its URL without the password).
        path: String,
        /// The store operation.
        op: &'static str,
        /// Why no connection could be had.
        #[source]
        source: r2d2::Error,
    },
    /// The database was written by a newer riposte whose schema this one does not know.
    #[error(
        "state database {path}: {op}: schema version {found} is newer than the newest this riposte knows ({known}); run a newer riposte or use another database"
    )]
    FutureSchema {
        /// The database file.
        path: String,
        /// The store operation (`open`).
        op: &'static str,
        /// The version stored in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The row the operation is about does not exist.
    #[error("state database {path}: {op}: {what} not found")]
    NotFound {
        /// The database file.
        path: String,
        /// The store operation.
        op: &'static str,
        /// What was looked for, e.g. `action 3f2a...`.
        what: String,
    },
    /// The operation was refused: an illegal state transition, an expired or already decided
    /// approval, a hash mismatch, a size limit.
    #[error("state database {path}: {op}: {refusal}")]
    Refused {
        /// The database file.
        path: String,
        /// The store operation.
        op: &'static str,
        /// Why, in a form the caller can match on.
        refusal: Refusal,
    },
    /// The operation did not complete: the thread running it panicked, or the runtime it
    /// was handed to shut down (for callers that run store operations on a blocking pool).
    /// Whether a write committed is unknown; read the state again.
    #[error("state database: {op} did not complete: {detail}")]
    Interrupted {
        /// The store operation.
        op: &'static str,
        /// What happened to the task that ran it.
        detail: String,
    },
    /// A stored value could not be read back (edited by hand, or written by a buggy build).
    #[error("state database {path}: {op}: unreadable stored data: {detail}")]
    Corrupt {
        /// The database file.
        path: String,
        /// The store operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A copy between two databases ([`copy_database`]) failed while copying one table;
    /// the target was left as it was.
    #[error("copying table {table}: {source}")]
    Copy {
        /// The table being copied.
        table: &'static str,
        /// What failed, naming the database (the source or the target).
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The refusal, when the operation was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(refusal),
            Error::Copy { source, .. } => source.refusal(),
            _ => None,
        }
    }

    /// Whether the error is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Copy { source, .. } => source.is_not_found(),
            other => matches!(other, Error::NotFound { .. }),
        }
    }

    /// Whether the database could not be reached (or the connection to it broke): nothing
    /// can be recorded until it is back, so a caller must not act on the outside world.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Postgres { source, .. } => source.is_closed() || source.as_db_error().is_none(),
            Error::Copy { source, .. } => source.is_unreachable(),
            _ => false,
        }
    }
}

/// Why the store refused an operation. Matchable, and shown in plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The action is not in a state the operation can move it from.
    IllegalTransition {
        /// The action.
        action: ActionId,
        /// Its current state.
        from: ActionState,
        /// The state the operation wanted.
        to: ActionState,
    },
    /// The approval expired before the decision.
    ApprovalExpired {
        /// The action awaiting approval.
        action: ActionId,
        /// When it expired (ms).
        expired_at_ms: i64,
    },
    /// The approval was already decided (approved, denied or expired).
    AlreadyDecided {
        /// The action.
        action: ActionId,
        /// The decision already taken.
        status: ApprovalStatus,
    },
    /// The action no longer matches the hash the approval is bound to (or the hash the
    /// operator saw).
    HashMismatch {
        /// The action.
        action: ActionId,
        /// The hash the approval is bound to.
        expected: String,
        /// The hash of the action as stored now.
        found: String,
    },
    /// This person already approved the action: one person counts once toward a quorum.
    AlreadyApprovedBy {
        /// The action.
        action: ActionId,
        /// Who approved it before.
        by: String,
    },
    /// The time box of the action is over: it was confirmed, or its containment reverted.
    TimeBoxClosed {
        /// The action.
        action: ActionId,
        /// What closed it.
        why: String,
    },
    /// The hash the operator confirmed is not the one the approval is bound to.
    SeenHashMismatch {
        /// The action.
        action: ActionId,
        /// The hash the approval is bound to.
        bound: String,
        /// The hash the operator gave.
        given: String,
    },
    /// A plugin's key-value store would exceed its total size limit.
    KvQuota {
        /// The plugin.
        plugin: String,
        /// Bytes the plugin would use after the write.
        would_use: u64,
        /// Its limit in bytes.
        limit: u64,
    },
    /// A key or value is larger than allowed.
    TooLarge {
        /// `key` or `value`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The action was already undone.
    AlreadyUndone {
        /// The original action.
        action: ActionId,
    },
    /// An argument the store cannot use.
    InvalidArgument(String),
    /// The database is not at the schema version a copy between databases needs (the
    /// newest this riposte knows, [`schema::LATEST_VERSION`]).
    SchemaVersion {
        /// The version of the database.
        found: i64,
        /// The version a copy needs.
        expected: i64,
    },
    /// A copy's target already holds rows: a copy writes only into an empty database.
    NotEmpty {
        /// The first table found holding rows.
        table: &'static str,
        /// How many it holds.
        rows: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::IllegalTransition { action, from, to } => {
                write!(f, "action {action} is {from}, it cannot become {to}")
            }
            Refusal::ApprovalExpired {
                action,
                expired_at_ms,
            } => write!(
                f,
                "the approval of action {action} expired at {expired_at_ms} ms"
            ),
            Refusal::AlreadyDecided { action, status } => {
                write!(f, "the approval of action {action} is already {status}")
            }
            Refusal::HashMismatch {
                action,
                expected,
                found,
            } => write!(
                f,
                "action {action} does not match its approval: the approval is bound to sha256 {expected}, the action is now {found}"
            ),
            Refusal::SeenHashMismatch {
                action,
                bound,
                given,
            } => write!(
                f,
                "action {action}: the hash given ({given}) is not the one its approval is bound to ({bound}); list the approvals again and approve the action you see"
            ),
            Refusal::AlreadyApprovedBy { action, by } => write!(
                f,
                "action {action}: {by} already approved it; its quorum needs the approvals of other people"
            ),
            Refusal::TimeBoxClosed { action, why } => {
                write!(f, "action {action}: its time limit is over ({why})")
            }
            Refusal::KvQuota {
                plugin,
                would_use,
                limit,
            } => write!(
                f,
                "plugin `{plugin}` would use {would_use} bytes of key-value storage, over its limit of {limit}"
            ),
            Refusal::TooLarge { what, len, max } => {
                write!(f, "the {what} is {len} bytes, over the maximum of {max}")
            }
            Refusal::AlreadyUndone { action } => write!(f, "action {action} was already undone"),
            Refusal::InvalidArgument(detail) => write!(f, "invalid argument: {detail}"),
            Refusal::SchemaVersion { found, expected } => write!(
                f,
                "the database is at schema version {found}, not {expected}: a copy needs both databases at the version of this riposte ({expected})"
            ),
            Refusal::NotEmpty { table, rows } => write!(
                f,
                "table {table} already holds {rows} row(s): a copy writes only into an empty database; nothing was written"
            ),
        }
    }
}

/// The result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error inside one operation, before it is tagged with the path and operation name.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    Postgres(::postgres::Error),
    Unreachable(r2d2::Error),
    /// A query that must return a row returned none.
    NoRows,
    NotFound(String),
    Refused(Refusal),
    Corrupt(String),
    FutureSchema {
        found: i64,
        known: i64,
    },
    /// An error already tagged with its database and operation: a transaction on another
    /// store, run inside this one (a copy between databases), failed.
    Tagged(Box<Error>),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<::postgres::Error> for Failure {
    fn from(e: ::postgres::Error) -> Self {
        Failure::Postgres(e)
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

pub(crate) type Op<T> = std::result::Result<T, Failure>;

/// When a write transaction's commit reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before the commit returns (`synchronous = FULL`): survives a power cut.
    Durable,
    /// With the next durable commit or checkpoint (`synchronous = NORMAL`): survives a crash
    /// of the process at once, a power cut only once a later durable commit returned. See
    /// the module docs for why the order of commits is kept.
    Deferred,
}

/// The database behind a [`Store`].
#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Database),
    Postgres(postgres::Database),
}

/// The durable state of riposte: one SQLite file, or a PostgreSQL database shared by several
/// hosts. Share it as `Arc<Store>` (or as `Arc<dyn Repositories>`).
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    shown: String,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, switches it to WAL mode
    /// with a busy timeout and foreign keys, and applies the pending schema migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let shown = path.as_ref().display().to_string();
        let backend = sqlite::Database::open(path.as_ref())
            .map_err(|failure| tag(&shown, "open", failure))?;
        Self::migrated(Backend::Sqlite(backend), shown)
    }

    /// Opens a private in-memory SQLite database (for tests and `--dry-run` style tools).
    pub fn open_in_memory() -> Result<Store> {
        let shown = ":memory:".to_owned();
        let backend =
            sqlite::Database::open_in_memory().map_err(|failure| tag(&shown, "open", failure))?;
        Self::migrated(Backend::Sqlite(backend), shown)
    }

    /// Connects to the PostgreSQL database of `config` (which carries the password) and
    /// applies the pending schema migrations; `shown` names it in messages and must not hold
    /// the password. TLS (when the server offers it, or `sslmode=require`) verifies the
    /// server's certificate against Mozilla's roots and the CA certificates of `ca_file`.
    /// Fails with [`Error::Unreachable`] if no connection can be had.
    pub fn connect_postgres(
        config: ::postgres::Config,
        shown: impl Into<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Store> {
        let shown = shown.into();
        let backend = postgres::Database::connect(config, ca_file)
            .map_err(|failure| tag(&shown, "open", failure))?;
        Self::migrated(Backend::Postgres(backend), shown)
    }

    /// Opens the database `[service.database]` names: the SQLite file, or the PostgreSQL
    /// database (its password from where the configuration says, TLS as its URL and
    /// `ca_file` say).
    pub fn open_configured(database: &settings::DatabaseConfig) -> Result<Store> {
        match &database.backend {
            settings::Backend::Sqlite { path } => Store::open(path),
            settings::Backend::Postgres(pg) => {
                // Parsed without the password, so no message can carry it.
                let mut config: ::postgres::Config = pg.driver_url().parse().map_err(|e| {
                    tag(
                        pg.shown(),
                        "open",
                        Failure::Refused(Refusal::InvalidArgument(format!(
                            "not a PostgreSQL URL: {e}"
                        ))),
                    )
                })?;
                config.password(pg.password().expose());
                Store::connect_postgres(config, pg.shown(), pg.ca_file())
            }
        }
    }

    fn migrated(backend: Backend, shown: String) -> Result<Store> {
        let store = Store { backend, shown };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        store.write("open: migrate", |tx| schema::migrate(tx, now_ms))?;
        Ok(store)
    }

    /// The database as shown in messages: a path (`:memory:` for an in-memory store) or a
    /// URL without its password.
    pub fn path(&self) -> &str {
        &self.shown
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64> {
        self.read("schema_version", |tx| schema::current_version(tx))
    }

    /// Runs `f` in a write transaction (serialised against every other writer of the
    /// database), committing durably if it returns `Ok`.
    pub(crate) fn write<T>(&self, op: &'static str, f: impl FnOnce(&Tx<'_>) -> Op<T>) -> Result<T> {
        self.write_then(op, |tx| f(tx).map(Ok))
    }

    /// [`Store::write`] with the commit's [`Durability`] chosen by the caller.
    pub(crate) fn write_with<T>(
        &self,
        op: &'static str,
        durability: Durability,
        f: impl FnOnce(&Tx<'_>) -> Op<T>,
    ) -> Result<T> {
        self.transact(op, Some(durability), |tx| f(tx).map(Ok))
    }

    /// Runs `f` in a write transaction and commits even when `f` returns an inner refusal,
    /// for operations that record something *and* refuse (an approval found expired is
    /// marked expired, then refused).
    pub(crate) fn write_then<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Tx<'_>) -> Op<std::result::Result<T, Failure>>,
    ) -> Result<T> {
        self.transact(op, Some(Durability::Durable), f)
    }

    /// Runs `f` in a read transaction, so it sees one consistent snapshot.
    pub(crate) fn read<T>(&self, op: &'static str, f: impl FnOnce(&Tx<'_>) -> Op<T>) -> Result<T> {
        self.transact(op, None, |tx| f(tx).map(Ok))
    }

    fn transact<T>(
        &self,
        op: &'static str,
        durability: Option<Durability>,
        f: impl FnOnce(&Tx<'_>) -> Op<std::result::Result<T, Failure>>,
    ) -> Result<T> {
        let mut f = Some(f);
        let mut out = None;
        let mut run = |tx: &Tx<'_>| -> Op<()> {
            let f = f
                .take()
                .ok_or_else(|| Failure::Corrupt("a transaction body was run twice".to_owned()))?;
            out = Some(f(tx)?);
            Ok(())
        };
        let done = match &self.backend {
            Backend::Sqlite(db) => db.transact(durability, &mut run),
            Backend::Postgres(db) => db.transact(durability, &mut run),
        };
        match (done, out) {
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), Some(Err(failure))) | (Err(failure), _) => Err(tag(&self.shown, op, failure)),
            (Ok(()), None) => Err(tag(
                &self.shown,
                op,
                Failure::Corrupt("a transaction committed without running its body".to_owned()),
            )),
        }
    }
}

/// Names the database and the operation in a failure.
fn tag(shown: &str, op: &'static str, failure: Failure) -> Error {
    let path = shown.to_owned();
    match failure {
        Failure::Sql(source) => Error::Sqlite { path, op, source },
        Failure::Postgres(source) => Error::Postgres { path, op, source },
        Failure::Unreachable(source) => Error::Unreachable { path, op, source },
        Failure::NoRows => Error::Corrupt {
            path,
            op,
            detail: "a query that must return a row returned none".to_owned(),
        },
        Failure::NotFound(what) => Error::NotFound { path, op, what },
        Failure::Refused(refusal) => Error::Refused { path, op, refusal },
        Failure::Corrupt(detail) => Error::Corrupt { path, op, detail },
        Failure::FutureSchema { found, known } => Error::FutureSchema {
            path,
            op,
            found,
            known,
        },
        Failure::Tagged(error) => *error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    backend_tests! {
        fn a_new_store_opens_at_the_newest_schema(store) {
            assert_eq!(store.schema_version().unwrap(), schema::LATEST_VERSION);
            let shown = store.path();
            assert!(shown == ":memory:" || shown.starts_with("postgres://"), "{shown}");
            let authority = shown.trim_start_matches("postgres://");
            let userinfo = authority.split_once('@').map_or("", |(user, _)| user);
            assert!(!userinfo.contains(':'), "no password in {shown}");
        }
    }

    backend_tests! {
        fn errors_name_the_database_and_the_operation(store) {
            let err = store
                .get_action(&ActionId::parse("0123456789abcdef0123456789abcdef").unwrap())
                .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(store.path()), "{text}");
            assert!(text.contains("get_action"), "{text}");
            assert!(err.is_not_found());
        }
    }

    #[test]
    fn only_shadowed_actions_commit_without_waiting_for_the_disk() {
        use riposte_domain::{ActionRequest, MalopId, PluginName, Sha256Digest};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        // 2 = FULL, 1 = NORMAL: what the next commit of the connection does.
        let level = |store: &Store| -> i64 {
            match &store.backend {
                Backend::Sqlite(db) => db.synchronous_level(),
                Backend::Postgres(_) => unreachable!("a SQLite store"),
            }
        };
        let action = |malop: &str, mode: ActionMode| {
            let request = ActionRequest::AddComment {
                malop_id: MalopId::new(malop),
                text: "seen".into(),
            };
            NewAction::new(PluginName::new("p"), Sha256Digest::of(b"p"), request, "why")
                .with_mode(mode)
        };
        assert_eq!(level(&store), 2);
        store
            .begin_action(&action("11.1", ActionMode::Shadow), 1)
            .unwrap();
        assert_eq!(level(&store), 1, "a shadowed action is deferred");
        store
            .begin_action(&action("11.2", ActionMode::Execute), 2)
            .unwrap();
        assert_eq!(level(&store), 2, "an action to send is durable at commit");
        store
            .begin_action(&action("11.3", ActionMode::Shadow), 3)
            .unwrap();
        let handled = Handled {
            plugin: PluginName::new("p"),
            malop_id: MalopId::new("11.3"),
            last_update_ms: 3,
            unreadable: Vec::new(),
        };
        store.mark_handled_all(&[handled], 4).unwrap();
        assert_eq!(level(&store), 2, "handled marks are durable at commit");
        store
            .begin_action(&action("11.4", ActionMode::Shadow), 5)
            .unwrap();
        let spent = store.spend_charges::<(), Error>(&PluginName::new("p"), &[], 6, |_| Ok(None));
        assert!(spent.unwrap().is_none());
        assert_eq!(level(&store), 2, "budget charges are durable at commit");
    }

    #[test]
    fn store_and_errors_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<Error>();
    }
}
