//! The console's sessions, kept in the database so that a restart, or another host on the
//! same database, keeps people logged in. A session is stored under the SHA-256 of its
//! token: the token itself lives only in the user's cookie, so reading the database does
//! not let anyone use a session. Removing a user or changing their password ends their
//! sessions (see [`crate::Users`]).

use super::{Failure, Op, Result, Store};
use crate::repos::ConsoleSessions;
use crate::sql::{OptionalExtension, Row, Tx, params};
use riposte_domain::UserName;

/// One console session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The SHA-256 of the session's token, in hex.
    pub token_hash: String,
    /// Who logged in.
    pub user: UserName,
    /// When the session began (ms).
    pub created_at_ms: i64,
    /// When it was last used (ms).
    pub last_seen_ms: i64,
}

const COLUMNS: &str = "token_hash, user_name, created_at_ms, last_seen_ms";

fn from_row(r: &Row) -> Op<SessionRecord> {
    let user: String = r.get(1)?;
    Ok(SessionRecord {
        token_hash: r.get(0)?,
        user: UserName::parse(&user)
            .map_err(|e| Failure::Corrupt(format!("session of user {user:?}: {e}")))?,
        created_at_ms: r.get(2)?,
        last_seen_ms: r.get(3)?,
    })
}

/// Ends every session of `user` (in the caller's transaction); how many.
pub(crate) fn end_user_sessions(tx: &Tx<'_>, user: &UserName) -> Op<usize> {
    tx.execute(
        "DELETE FROM console_sessions WHERE user_name = ?1",
        params![user.as_str()],
    )
}

impl ConsoleSessions for Store {
    fn start_session(
        &self,
        session: &SessionRecord,
        expired_before_ms: i64,
        max_sessions: usize,
    ) -> Result<()> {
        self.write("start_session", |tx| {
            tx.execute(
                "DELETE FROM console_sessions WHERE last_seen_ms < ?1",
                params![expired_before_ms],
            )?;
            let held: i64 =
                tx.query_row("SELECT COUNT(*) FROM console_sessions", params![], |r| {
                    r.get(0)
                })?;
            let excess = (held.max(0) as usize + 1).saturating_sub(max_sessions.max(1));
            if excess > 0 {
                tx.execute(
                    "DELETE FROM console_sessions WHERE token_hash IN \
                     (SELECT token_hash FROM console_sessions ORDER BY last_seen_ms LIMIT ?1)",
                    params![excess as i64],
                )?;
            }
            tx.execute(
                &format!("INSERT INTO console_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
                params![
                    session.token_hash.as_str(),
                    session.user.as_str(),
                    session.created_at_ms,
                    session.last_seen_ms
                ],
            )?;
            Ok(())
        })
    }

    fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>> {
        self.read("session", |tx| {
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM console_sessions WHERE token_hash = ?1"),
                params![token_hash],
                from_row,
            )
            .optional()
        })
    }

    fn touch_session(&self, token_hash: &str, now_ms: i64) -> Result<bool> {
        self.write("touch_session", |tx| {
            Ok(tx.execute(
                "UPDATE console_sessions SET last_seen_ms = ?2 \
                 WHERE token_hash = ?1 AND last_seen_ms < ?2",
                params![token_hash, now_ms],
            )? > 0)
        })
    }

    fn end_session(&self, token_hash: &str) -> Result<bool> {
        self.write("end_session", |tx| {
            Ok(tx.execute(
                "DELETE FROM console_sessions WHERE token_hash = ?1",
                params![token_hash],
            )? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use riposte_domain::Role;

    fn session(hash: &str, user: &str, at: i64) -> SessionRecord {
        SessionRecord {
            token_hash: hash.to_owned(),
            user: UserName::parse(user).unwrap(),
            created_at_ms: at,
            last_seen_ms: at,
        }
    }

    backend_tests! {
        fn sessions_are_kept_bounded_and_end_with_their_user(store) {
            let ann = UserName::parse("ann").unwrap();
            store.add_user(&ann, Role::Viewer, "$argon2id$x", 1).unwrap();
            store.start_session(&session("h1", "ann", 10), 0, 2).unwrap();
            store.start_session(&session("h2", "bob", 20), 0, 2).unwrap();
            assert!(store.touch_session("h1", 30).unwrap());
            assert!(!store.touch_session("h1", 25).unwrap(), "never back in time");
            // A third session over a limit of two drops the stalest (h2, seen at 20).
            store.start_session(&session("h3", "ann", 40), 0, 2).unwrap();
            assert_eq!(store.session("h2").unwrap(), None);
            assert_eq!(store.session("h1").unwrap().unwrap().last_seen_ms, 30);
            // Sessions idle since before the cut-off are dropped on the next start.
            store.start_session(&session("h4", "bob", 50), 35, 10).unwrap();
            assert_eq!(store.session("h1").unwrap(), None);
            assert!(store.end_session("h4").unwrap());
            assert!(!store.end_session("h4").unwrap());
            // Changing ann's password ends her sessions.
            store.set_user_password(&ann, "$argon2id$y", 60).unwrap();
            assert_eq!(store.session("h3").unwrap(), None);
        }
    }
}
