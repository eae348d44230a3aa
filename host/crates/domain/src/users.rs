//! The people who use the console: their names and roles.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest user name, in bytes.
pub const MAX_USER_NAME_BYTES: usize = 64;

/// A console user's name: 1 to [`MAX_USER_NAME_BYTES`] letters, digits, `.`, `_`, `-` or
/// `@` (so it can be shown and audited as it is, and cannot pass for another field).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    /// Checks and wraps a name.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
            return Err(format!(
                "a user name has 1 to {MAX_USER_NAME_BYTES} characters"
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
        {
            return Err(format!(
                "a user name has only letters, digits, `.`, `_`, `-` and `@`, not {c:?}"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a console user may do; each role may do everything the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every page, decides nothing.
    Viewer,
    /// Also approves and denies actions, confirms and extends containments.
    Approver,
    /// Also verifies the audit chain from the console (users are managed on the CLI).
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Approver, Role::Admin];

    /// Its name, as stored and typed: `viewer`, `approver`, `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may approve and deny actions.
    pub fn may_decide(self) -> bool {
        self >= Role::Approver
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role `{s}`; expected viewer, approver or admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Viewer < Role::Approver && Role::Approver < Role::Admin);
        assert!(!Role::Viewer.may_decide() && Role::Admin.may_decide());
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn user_names_are_checked() {
        assert!(UserName::parse("alice.b-c_d@soc").is_ok());
        for bad in ["", "a b", "a<b>", "é", &"a".repeat(65)] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
