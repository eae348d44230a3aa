//! The versioned schema: an ordered list of migrations, applied in one transaction.
//!
//! Each migration is a list of portable statements (see the module docs of
//! [`crate`]). A migration, once released, is never edited: changes are new entries at
//! the end with the next version.

use super::{Failure, Op};
use crate::sql::{Tx, params};

/// One schema migration.
#[derive(Debug)]
pub struct Migration {
    /// Its version: 1, 2, 3, ... with no gaps.
    pub version: i64,
    /// A short name, kept in `schema_version`.
    pub name: &'static str,
    /// The statements, run in order.
    pub statements: &'static [&'static str],
}

/// The table that records which migrations were applied.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL
)";

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        statements: &[
            // Polling.
            "CREATE TABLE watermarks (
            source TEXT PRIMARY KEY,
            watermark_ms BIGINT NOT NULL,
            last_poll_ms BIGINT NOT NULL
        )",
            "CREATE TABLE handled_malops (
            plugin TEXT NOT NULL,
            malop_id TEXT NOT NULL,
            last_update_ms BIGINT NOT NULL,
            handled_at_ms BIGINT NOT NULL,
            PRIMARY KEY (plugin, malop_id)
        )",
            "CREATE INDEX handled_malops_age ON handled_malops (handled_at_ms)",
            // The action ledger.
            "CREATE TABLE actions (
            id TEXT PRIMARY KEY,
            action_key TEXT NOT NULL UNIQUE,
            plugin TEXT NOT NULL,
            plugin_digest TEXT NOT NULL,
            malop_id TEXT,
            kinds TEXT NOT NULL,
            request_json TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL,
            undo_of TEXT REFERENCES actions (id),
            remediation_id TEXT,
            server_result_json TEXT,
            progress TEXT,
            progress_json TEXT,
            polls BIGINT NOT NULL,
            attempts BIGINT NOT NULL,
            last_error TEXT,
            created_at_ms BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL,
            submitted_at_ms BIGINT,
            finished_at_ms BIGINT
        )",
            "CREATE INDEX actions_state ON actions (state, created_at_ms)",
            "CREATE INDEX actions_plugin ON actions (plugin, created_at_ms)",
            "CREATE INDEX actions_malop ON actions (malop_id)",
            // Approvals (G6).
            "CREATE TABLE approvals (
            action_id TEXT PRIMARY KEY REFERENCES actions (id),
            action_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            requested_at_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            decided_by TEXT,
            decided_at_ms BIGINT,
            claimed_at_ms BIGINT
        )",
            "CREATE INDEX approvals_status ON approvals (status, expires_at_ms)",
            // Budgets (G3): one row per target per spend.
            "CREATE TABLE budget_events (
            id TEXT PRIMARY KEY,
            scope TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            at_ms BIGINT NOT NULL
        )",
            "CREATE INDEX budget_events_window ON budget_events (scope, kind, at_ms)",
            "CREATE INDEX budget_events_target ON budget_events (target, at_ms)",
            // Undo (G8).
            "CREATE TABLE undo_records (
            action_id TEXT PRIMARY KEY REFERENCES actions (id),
            inverse_json TEXT NOT NULL,
            recorded_at_ms BIGINT NOT NULL,
            undone_at_ms BIGINT,
            undone_by TEXT,
            undo_action_id TEXT REFERENCES actions (id)
        )",
            // Plugin health.
            "CREATE TABLE plugin_health (
            plugin TEXT PRIMARY KEY,
            consecutive_traps BIGINT NOT NULL,
            total_traps BIGINT NOT NULL,
            last_trap_at_ms BIGINT,
            paused_until_ms BIGINT
        )",
            // Plugin key-value store.
            "CREATE TABLE plugin_kv (
            plugin TEXT NOT NULL,
            kv_key TEXT NOT NULL,
            value BLOB NOT NULL,
            size_bytes BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL,
            PRIMARY KEY (plugin, kv_key)
        )",
        ],
    },
    Migration {
        version: 2,
        name: "policy-charges",
        statements: &[
            // The policy gate's budget ledger (`policy::BudgetLedger`): one charge per
            // (plugin, action kind, target) of every allowed action.
            "CREATE TABLE budget_charges (
            id TEXT PRIMARY KEY,
            plugin TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            at_ms BIGINT NOT NULL
        )",
            "CREATE INDEX budget_charges_window ON budget_charges (at_ms, kind)",
            "CREATE INDEX budget_charges_plugin ON budget_charges (plugin, at_ms)",
            "CREATE INDEX budget_charges_target ON budget_charges (plugin, kind, target, at_ms)",
        ],
    },
    Migration {
        version: 3,
        name: "incomplete-malops",
        statements: &[
            // The parts of the Malop a plugin could not be given when it handled it
            // (comma-separated `MalopPart` names; empty when complete): a later, fuller read
            // of the same update is offered again.
            "ALTER TABLE handled_malops ADD COLUMN unreadable TEXT NOT NULL DEFAULT ''",
            // Malops offered with unreadable parts, read again with backoff until complete.
            "CREATE TABLE incomplete_malops (
            malop_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            last_update_ms BIGINT NOT NULL,
            unreadable TEXT NOT NULL,
            last_error TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            first_seen_ms BIGINT NOT NULL,
            next_try_ms BIGINT NOT NULL
        )",
            "CREATE INDEX incomplete_malops_due ON incomplete_malops (next_try_ms)",
        ],
    },
    Migration {
        version: 4,
        name: "blacklist-whitelist",
        statements: &[
            // The action kind `set-reputation` was split into `blacklist` and `whitelist`.
            // A ledger row says which from its request; a budget charge does not, and is
            // counted as a blacklist for what is left of its window.
            "UPDATE actions SET kinds = 'whitelist' WHERE kinds = 'set-reputation' \
             AND request_json LIKE '%\"verdict\":\"whitelist\"%'",
            "UPDATE actions SET kinds = 'blacklist' WHERE kinds = 'set-reputation'",
            "UPDATE budget_charges SET kind = 'blacklist' WHERE kind = 'set-reputation'",
            "UPDATE budget_events SET kind = 'blacklist' WHERE kind = 'set-reputation'",
        ],
    },
    Migration {
        version: 5,
        name: "fleet",
        statements: &[
            // Every riposte host sharing the database, with its last heartbeat and a short
            // account of what it holds (for `riposte status`).
            "CREATE TABLE fleet_hosts (
            host_id TEXT PRIMARY KEY,
            version TEXT NOT NULL,
            started_at_ms BIGINT NOT NULL,
            heartbeat_ms BIGINT NOT NULL,
            holding TEXT NOT NULL
        )",
            // Leases: one holder at a time, until it expires; the epoch counts the holders.
            "CREATE TABLE fleet_leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            acquired_at_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL
        )",
        ],
    },
    Migration {
        version: 6,
        name: "approval_quorum",
        statements: &[
            // How many distinct approvers the action needs, decided by the gate when it was
            // enqueued; each approval so far, one row per person.
            "ALTER TABLE approvals ADD COLUMN quorum BIGINT NOT NULL DEFAULT 1",
            "CREATE TABLE approval_votes (
            action_id TEXT NOT NULL REFERENCES actions (id),
            approver TEXT NOT NULL,
            voted_at_ms BIGINT NOT NULL,
            PRIMARY KEY (action_id, approver)
        )",
        ],
    },
    Migration {
        version: 7,
        name: "time_boxes_and_machine_names",
        statements: &[
            // Time-boxed containment: an action reverted through its recorded inverse at
            // `deadline_ms` unless an operator confirms it first.
            "CREATE TABLE time_boxes (
            action_id TEXT PRIMARY KEY REFERENCES actions (id),
            started_at_ms BIGINT NOT NULL,
            deadline_ms BIGINT NOT NULL,
            warned_at_ms BIGINT,
            confirmed_by TEXT,
            confirmed_at_ms BIGINT,
            extended_by TEXT,
            extended_at_ms BIGINT
        )",
            "CREATE INDEX time_boxes_deadline ON time_boxes (deadline_ms)",
            // The names of the machines an action acts on, as its Malop gave them (JSON
            // object guid → name), so people see names beside guids.
            "ALTER TABLE actions ADD COLUMN machine_names TEXT",
        ],
    },
    Migration {
        version: 8,
        name: "console-users",
        statements: &[
            // The console's users: a role and an argon2 password hash (PHC string) each.
            "CREATE TABLE console_users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL
        )",
        ],
    },
    Migration {
        version: 9,
        name: "activity_and_console_sessions",
        statements: &[
            // What each plugin did, hour by hour: invocations, traps and the gate's
            // decisions, for the console's overview and its pictures.
            "CREATE TABLE plugin_activity (
            plugin TEXT NOT NULL,
            hour_ms BIGINT NOT NULL,
            invocations BIGINT NOT NULL,
            traps BIGINT NOT NULL,
            allowed BIGINT NOT NULL,
            denied BIGINT NOT NULL,
            shadowed BIGINT NOT NULL,
            awaiting BIGINT NOT NULL,
            last_invocation_ms BIGINT,
            PRIMARY KEY (plugin, hour_ms)
        )",
            "CREATE INDEX plugin_activity_hour ON plugin_activity (hour_ms)",
            // The last syslog event a host's listener accepted.
            "ALTER TABLE fleet_hosts ADD COLUMN last_event_ms BIGINT",
            // Console sessions, so that a restart or another host keeps them: the SHA-256
            // of the session's token (the token itself is only in the user's cookie).
            "CREATE TABLE console_sessions (
            token_hash TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            last_seen_ms BIGINT NOT NULL
        )",
            "CREATE INDEX console_sessions_user ON console_sessions (user_name)",
        ],
    },
    Migration {
        version: 10,
        name: "held_sends",
        statements: &[
            // Sends held back by no fault of the action (the server throttled it, or the
            // host could not log in), counted apart from the failed ones: they must not use
            // up the tries a connection error gets.
            "ALTER TABLE actions ADD COLUMN held_sends BIGINT NOT NULL DEFAULT 0",
        ],
    },
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: i64 = 10;

/// One table of the schema as [`TABLES`] lists it: what a copy between two databases
/// ([`crate::copy_database`]) reads and writes.
#[derive(Debug)]
pub(crate) struct Table {
    /// Its name.
    pub(crate) name: &'static str,
    /// The columns of its primary key, in key order (rows are read in this order).
    pub(crate) key: &'static [&'static str],
    /// Every column, in the order of the table.
    pub(crate) columns: &'static [&'static str],
    /// The columns (nullable) that reference rows of the same table: a copy writes them
    /// once every row of the table exists.
    pub(crate) self_references: &'static [&'static str],
}

/// Every table [`MIGRATIONS`] create, at [`LATEST_VERSION`], but `schema_version` (each
/// database keeps its own), in an order that respects the foreign keys: a table comes
/// after every other table it references. A migration that adds a table or a column adds
/// it here too; a unit test compares this list with the schema SQLite builds.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "watermarks",
        key: &["source"],
        columns: &["source", "watermark_ms", "last_poll_ms"],
        self_references: &[],
    },
    Table {
        name: "handled_malops",
        key: &["plugin", "malop_id"],
        columns: &[
            "plugin",
            "malop_id",
            "last_update_ms",
            "handled_at_ms",
            "unreadable",
        ],
        self_references: &[],
    },
    Table {
        name: "incomplete_malops",
        key: &["malop_id"],
        columns: &[
            "malop_id",
            "kind",
            "last_update_ms",
            "unreadable",
            "last_error",
            "attempts",
            "first_seen_ms",
            "next_try_ms",
        ],
        self_references: &[],
    },
    Table {
        name: "actions",
        key: &["id"],
        columns: &[
            "id",
            "action_key",
            "plugin",
            "plugin_digest",
            "malop_id",
            "kinds",
            "request_json",
            "request_hash",
            "reason",
            "state",
            "undo_of",
            "remediation_id",
            "server_result_json",
            "progress",
            "progress_json",
            "polls",
            "attempts",
            "last_error",
            "created_at_ms",
            "updated_at_ms",
            "submitted_at_ms",
            "finished_at_ms",
            "machine_names",
            "held_sends",
        ],
        self_references: &["undo_of"],
    },
    Table {
        name: "approvals",
        key: &["action_id"],
        columns: &[
            "action_id",
            "action_hash",
            "status",
            "requested_at_ms",
            "expires_at_ms",
            "decided_by",
            "decided_at_ms",
            "claimed_at_ms",
            "quorum",
        ],
        self_references: &[],
    },
    Table {
        name: "approval_votes",
        key: &["action_id", "approver"],
        columns: &["action_id", "approver", "voted_at_ms"],
        self_references: &[],
    },
    Table {
        name: "time_boxes",
        key: &["action_id"],
        columns: &[
            "action_id",
            "started_at_ms",
            "deadline_ms",
            "warned_at_ms",
            "confirmed_by",
            "confirmed_at_ms",
            "extended_by",
            "extended_at_ms",
        ],
        self_references: &[],
    },
    Table {
        name: "undo_records",
        key: &["action_id"],
        columns: &[
            "action_id",
            "inverse_json",
            "recorded_at_ms",
            "undone_at_ms",
            "undone_by",
            "undo_action_id",
        ],
        self_references: &[],
    },
    Table {
        name: "budget_events",
        key: &["id"],
        columns: &["id", "scope", "kind", "target", "at_ms"],
        self_references: &[],
    },
    Table {
        name: "budget_charges",
        key: &["id"],
        columns: &["id", "plugin", "kind", "target", "at_ms"],
        self_references: &[],
    },
    Table {
        name: "plugin_health",
        key: &["plugin"],
        columns: &[
            "plugin",
            "consecutive_traps",
            "total_traps",
            "last_trap_at_ms",
            "paused_until_ms",
        ],
        self_references: &[],
    },
    Table {
        name: "fleet_hosts",
        key: &["host_id"],
        columns: &[
            "host_id",
            "version",
            "started_at_ms",
            "heartbeat_ms",
            "holding",
            "last_event_ms",
        ],
        self_references: &[],
    },
    Table {
        name: "fleet_leases",
        key: &["name"],
        columns: &["name", "holder", "epoch", "acquired_at_ms", "expires_at_ms"],
        self_references: &[],
    },
    Table {
        name: "console_users",
        key: &["name"],
        columns: &[
            "name",
            "role",
            "password_hash",
            "created_at_ms",
            "updated_at_ms",
        ],
        self_references: &[],
    },
    Table {
        name: "console_sessions",
        key: &["token_hash"],
        columns: &["token_hash", "user_name", "created_at_ms", "last_seen_ms"],
        self_references: &[],
    },
    Table {
        name: "plugin_activity",
        key: &["plugin", "hour_ms"],
        columns: &[
            "plugin",
            "hour_ms",
            "invocations",
            "traps",
            "allowed",
            "denied",
            "shadowed",
            "awaiting",
            "last_invocation_ms",
        ],
        self_references: &[],
    },
    Table {
        name: "plugin_kv",
        key: &["plugin", "kv_key"],
        columns: &["plugin", "kv_key", "value", "size_bytes", "updated_at_ms"],
        self_references: &[],
    },
];

/// The version recorded in the database (0 for a database never migrated). The
/// `schema_version` table must exist.
pub(crate) fn current_version(tx: &Tx<'_>) -> Op<i64> {
    tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        params![],
        |row| row.get(0),
    )
}

/// Applies the pending [`MIGRATIONS`].
pub(crate) fn migrate(tx: &Tx<'_>, now_ms: i64) -> Op<i64> {
    migrate_with(tx, MIGRATIONS, now_ms)
}

/// Applies the pending migrations of `migrations` in order; refuses a database newer than
/// the last of them.
pub(crate) fn migrate_with(tx: &Tx<'_>, migrations: &[Migration], now_ms: i64) -> Op<i64> {
    let known = migrations.last().map_or(0, |m| m.version);
    tx.execute(VERSION_TABLE, params![])?;
    let found = current_version(tx)?;
    if found > known {
        return Err(Failure::FutureSchema { found, known });
    }
    for migration in migrations.iter().filter(|m| m.version > found) {
        for statement in migration.statements {
            tx.execute(&tx.dialect().ddl(statement), params![])?;
        }
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, now_ms],
        )?;
    }
    Ok(known.max(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn migrations_are_numbered_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, LATEST_VERSION);
    }

    const NEXT: Migration = Migration {
        version: LATEST_VERSION + 1,
        name: "test-extra",
        statements: &["CREATE TABLE extra (id TEXT PRIMARY KEY)"],
    };

    #[test]
    fn later_migrations_apply_on_top_of_earlier_ones_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(migrate_with(&tx, &MIGRATIONS[..1], 1).unwrap(), 1);
        tx.commit().unwrap();

        let all: Vec<Migration> = MIGRATIONS
            .iter()
            .map(|m| Migration {
                version: m.version,
                name: m.name,
                statements: m.statements,
            })
            .chain([NEXT])
            .collect();
        for _ in 0..2 {
            let tx = conn.transaction().unwrap();
            assert_eq!(migrate_with(&tx, &all, 2).unwrap(), LATEST_VERSION + 1);
            tx.commit().unwrap();
        }
        let rows: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM schema_version",
                rusqlite::params![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, LATEST_VERSION + 1);
        conn.execute("INSERT INTO extra (id) VALUES ('x')", [])
            .unwrap();
    }

    #[test]
    fn the_set_reputation_kind_is_split_by_verdict() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        migrate_with(&tx, &MIGRATIONS[..2], 1).unwrap();
        let row = |id: &str, verdict: &str| {
            let request = format!(
                r#"{{"action":"set-reputation","keys":[],"verdict":"{verdict}","prevent":false}}"#
            );
            tx.execute(
                "INSERT INTO actions (id, action_key, plugin, plugin_digest, kinds, request_json, \
                 request_hash, reason, state, polls, attempts, created_at_ms, updated_at_ms) \
                 VALUES (?1, ?1, 'p', 'd', 'set-reputation', ?2, 'h', 'r', 'succeeded', 0, 0, 1, 1)",
                rusqlite::params![id, request],
            )
            .unwrap();
        };
        row("a", "blacklist");
        row("b", "whitelist");
        tx.execute(
            "INSERT INTO budget_charges (id, plugin, kind, target, at_ms) \
             VALUES ('c', 'p', 'set-reputation', 'file-hash:x', 1)",
            rusqlite::params![],
        )
        .unwrap();
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(migrate(&tx, 2).unwrap(), LATEST_VERSION);
        let kinds = |id: &str| -> String {
            tx.query_row(
                "SELECT kinds FROM actions WHERE id = ?1",
                rusqlite::params![id],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(kinds("a"), "blacklist");
        assert_eq!(kinds("b"), "whitelist");
        let charge: String = tx
            .query_row(
                "SELECT kind FROM budget_charges WHERE id = 'c'",
                rusqlite::params![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(charge, "blacklist");
    }

    /// The tables of the schema as SQLite builds it from [`MIGRATIONS`]: (name, columns in
    /// order, primary key columns in key order, foreign keys as (column, referenced table),
    /// nullable columns).
    type Described = (
        String,
        Vec<String>,
        Vec<String>,
        Vec<(String, String)>,
        Vec<String>,
    );

    fn describe_schema() -> Vec<Described> {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        migrate_with(&tx, MIGRATIONS, 1).unwrap();
        tx.commit().unwrap();
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        names
            .into_iter()
            .map(|name| {
                let mut info = conn
                    .prepare("SELECT name, pk, \"notnull\" FROM pragma_table_info(?1) ORDER BY cid")
                    .unwrap();
                let rows: Vec<(String, i64, bool)> = info
                    .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                let columns = rows.iter().map(|(c, _, _)| c.clone()).collect();
                let mut key: Vec<(i64, String)> = rows
                    .iter()
                    .filter(|(_, pk, _)| *pk > 0)
                    .map(|(c, pk, _)| (*pk, c.clone()))
                    .collect();
                key.sort();
                let key = key.into_iter().map(|(_, c)| c).collect();
                let nullable = rows
                    .iter()
                    .filter(|(_, _, not_null)| !not_null)
                    .map(|(c, _, _)| c.clone())
                    .collect();
                let foreign: Vec<(String, String)> = conn
                    .prepare("SELECT \"from\", \"table\" FROM pragma_foreign_key_list(?1)")
                    .unwrap()
                    .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                (name, columns, key, foreign, nullable)
            })
            .collect()
    }

    #[test]
    fn the_table_list_is_the_schema_the_migrations_build() {
        let schema = describe_schema();
        let mut listed: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        listed.sort_unstable();
        let built: Vec<&str> = schema.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(
            listed, built,
            "schema::TABLES must name every table the migrations create (but schema_version)"
        );
        let position = |name: &str| TABLES.iter().position(|t| t.name == name);
        for (name, columns, key, foreign, nullable) in &schema {
            let table = &TABLES[position(name).unwrap()];
            assert_eq!(
                table.columns, columns,
                "schema::TABLES: the columns of `{name}`, in the order of the table"
            );
            assert_eq!(
                table.key, key,
                "schema::TABLES: the primary key of `{name}`"
            );
            for (column, referenced) in foreign {
                if referenced == name {
                    assert!(
                        table.self_references.contains(&column.as_str()),
                        "`{name}.{column}` references its own table: list it in self_references"
                    );
                } else {
                    assert!(
                        position(referenced) < position(name),
                        "`{name}.{column}` references `{referenced}`, which must come first in schema::TABLES"
                    );
                }
            }
            for column in table.self_references {
                assert!(
                    foreign.iter().any(|(c, r)| c == column && r == name),
                    "`{name}.{column}` is listed as a self-reference but is not one"
                );
                assert!(
                    nullable.iter().any(|c| c == column),
                    "`{name}.{column}` must be nullable: a copy writes it in a second pass"
                );
            }
        }
    }

    #[test]
    fn a_failing_migration_leaves_nothing_behind() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = [Migration {
            version: 1,
            name: "broken",
            statements: &["CREATE TABLE ok (id TEXT)", "THIS IS NOT SQL"],
        }];
        let tx = conn.transaction().unwrap();
        assert!(migrate_with(&tx, &broken, 1).is_err());
        drop(tx);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                rusqlite::params![],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        migrate_with(&tx, MIGRATIONS, 1).unwrap();
        tx.execute(
            "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (99, 'future', 1)",
            rusqlite::params![],
        )
        .unwrap();
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        match migrate_with(&tx, MIGRATIONS, 2) {
            Err(Failure::FutureSchema { found, known }) => {
                assert_eq!((found, known), (99, LATEST_VERSION));
            }
            other => panic!("expected a future-schema refusal, got {other:?}"),
        }
    }
}
