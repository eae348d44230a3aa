//! The console's users: a name, a role and a password hash (a PHC string made by the
//! caller; the store never sees a password). Names are unique.

use super::{Failure, Op, Refusal, Result, Store};
use crate::repos::Users;
use crate::sql::{OptionalExtension, Row, params};
use riposte_domain::{Role, UserName};

/// One user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The name they log in with.
    pub name: UserName,
    /// What they may do.
    pub role: Role,
    /// Their password's hash (a PHC string, e.g. `$argon2id$...`). Never shown or logged.
    pub password_hash: String,
    /// When the user was added (ms).
    pub created_at_ms: i64,
    /// When the user's role or password last changed (ms).
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for UserRecord {
    /// Everything but the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("created_at_ms", &self.created_at_ms)
            .field("updated_at_ms", &self.updated_at_ms)
            .finish_non_exhaustive()
    }
}

const USER_COLUMNS: &str = "name, role, password_hash, created_at_ms, updated_at_ms";

fn user_row(r: &Row) -> Op<UserRecord> {
    let name: String = r.get(0)?;
    let role: String = r.get(1)?;
    Ok(UserRecord {
        name: UserName::parse(&name)
            .map_err(|e| Failure::Corrupt(format!("user name {name:?}: {e}")))?,
        role: role
            .parse()
            .map_err(|e| Failure::Corrupt(format!("user {name}: {e}")))?,
        password_hash: r.get(2)?,
        created_at_ms: r.get(3)?,
        updated_at_ms: r.get(4)?,
    })
}

impl Users for Store {
    fn add_user(
        &self,
        name: &UserName,
        role: Role,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.write("add_user", |tx| {
            let added = tx.execute(
                "INSERT INTO console_users (name, role, password_hash, created_at_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), role.name(), password_hash, now_ms],
            )?;
            if added == 0 {
                return Err(Refusal::InvalidArgument(format!("user `{name}` already exists")).into());
            }
            Ok(())
        })
    }

    fn get_user(&self, name: &UserName) -> Result<Option<UserRecord>> {
        self.read("get_user", |tx| {
            tx.query_row(
                &format!("SELECT {USER_COLUMNS} FROM console_users WHERE name = ?1"),
                params![name.as_str()],
                user_row,
            )
            .optional()
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.read("list_users", |tx| {
            tx.query_map(
                &format!("SELECT {USER_COLUMNS} FROM console_users ORDER BY name"),
                params![],
                user_row,
            )
        })
    }

    fn remove_user(&self, name: &UserName) -> Result<bool> {
        self.write("remove_user", |tx| {
            crate::sessions::end_user_sessions(tx, name)?;
            Ok(tx.execute(
                "DELETE FROM console_users WHERE name = ?1",
                params![name.as_str()],
            )? > 0)
        })
    }

    fn set_user_role(&self, name: &UserName, role: Role, now_ms: i64) -> Result<()> {
        self.write("set_user_role", |tx| {
            let changed = tx.execute(
                "UPDATE console_users SET role = ?2, updated_at_ms = ?3 WHERE name = ?1",
                params![name.as_str(), role.name(), now_ms],
            )?;
            if changed == 0 {
                return Err(Failure::NotFound(format!("user `{name}`")));
            }
            Ok(())
        })
    }

    fn set_user_password(&self, name: &UserName, password_hash: &str, now_ms: i64) -> Result<()> {
        self.write("set_user_password", |tx| {
            let changed = tx.execute(
                "UPDATE console_users SET password_hash = ?2, updated_at_ms = ?3 WHERE name = ?1",
                params![name.as_str(), password_hash, now_ms],
            )?;
            if changed == 0 {
                return Err(Failure::NotFound(format!("user `{name}`")));
            }
            crate::sessions::end_user_sessions(tx, name)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    backend_tests! {
        fn users_are_added_listed_changed_and_removed(store) {
            store.add_user(&name("bob"), Role::Viewer, "$argon2id$bob", 1).unwrap();
            store.add_user(&name("alice"), Role::Approver, "$argon2id$alice", 2).unwrap();
            let err = store.add_user(&name("bob"), Role::Admin, "x", 3).unwrap_err();
            assert!(matches!(err.refusal(), Some(Refusal::InvalidArgument(_))), "{err}");
            let bob = store.get_user(&name("bob")).unwrap().unwrap();
            assert_eq!((bob.role, bob.password_hash.as_str()), (Role::Viewer, "$argon2id$bob"));
            assert!(!format!("{bob:?}").contains("argon2"), "the hash is never shown");
            let names: Vec<String> = store
                .list_users()
                .unwrap()
                .into_iter()
                .map(|u| u.name.to_string())
                .collect();
            assert_eq!(names, ["alice", "bob"]);

            store.set_user_role(&name("bob"), Role::Admin, 4).unwrap();
            store.set_user_password(&name("bob"), "$argon2id$new", 5).unwrap();
            let bob = store.get_user(&name("bob")).unwrap().unwrap();
            assert_eq!((bob.role, bob.password_hash.as_str(), bob.updated_at_ms), (Role::Admin, "$argon2id$new", 5));
            assert!(store.set_user_role(&name("carol"), Role::Admin, 6).unwrap_err().is_not_found());

            assert!(store.remove_user(&name("bob")).unwrap());
            assert!(!store.remove_user(&name("bob")).unwrap());
            assert!(store.get_user(&name("bob")).unwrap().is_none());
        }
    }
}
