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
];

/// The newest schema version this build knows.
pub const LATEST_VERSION: i64 = 5;

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
