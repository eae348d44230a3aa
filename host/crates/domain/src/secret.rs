//! Values that must never be printed (passwords, session cookies), and the private files
//! operators keep them in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A secret string. `Debug` prints `[redacted]`; there is no `Display` and no `Serialize`;
/// read it with [`Secret::expose`] only where the value is put on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for handing it to the other side (a login form, a database
    /// driver), never for text that is shown, logged or stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Reads a credentials file: `key = value` lines, each key one of `keys` (blank lines and
/// `#` comments are ignored; values may be double-quoted; a later line wins). Like ssh with a
/// private key, a file that group or others may read (or write) is refused before it is
/// read. The error names the file and the line, never a value.
pub fn read_credentials_file(
    path: &Path,
    keys: &[&str],
) -> Result<BTreeMap<String, String>, String> {
    check_private(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
    parse_credentials(&text, keys)
        .map_err(|why| format!("credentials file {}: {why}", path.display()))
}

/// The `key = value` lines of a credentials file's `text` (see [`read_credentials_file`]).
pub fn parse_credentials(text: &str, keys: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A line that is not `name = value` may be a bare secret: it is never echoed.
        let expected = || {
            format!(
                "line {}: expected `key = value` with a key among {}",
                n + 1,
                keys.join(", ")
            )
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(expected());
        };
        let key = key.trim();
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(expected());
        }
        if !keys.contains(&key) {
            return Err(format!(
                "line {}: unknown key {key:?}; expected one of {}",
                n + 1,
                keys.join(", ")
            ));
        }
        let value = value.trim().trim_matches('"').to_owned();
        values.insert(key.to_owned(), value);
    }
    Ok(values)
}

/// Refuses a credentials file whose mode lets group or others read (or write) it.
fn check_private(path: &Path) -> Result<(), String> {
    check_owner_only(path, "credentials file", "a password")
}

/// Refuses a file holding a secret (`what`, e.g. `audit key file`, holding `holds`, e.g. `a
/// key`) whose mode lets group or others read or write it (anything but 0600 or stricter),
/// before it is read. The error names the file and its mode, never its content.
#[cfg(unix)]
pub fn check_owner_only(path: &Path, what: &str, holds: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} {} is accessible by group or others (mode {mode:04o}); it holds {holds}: run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Refuses a file holding a secret whose mode lets others read it (not checked off unix).
#[cfg(not(unix))]
pub fn check_owner_only(_path: &Path, _what: &str, _holds: &str) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn credentials_parse_and_mistakes_never_echo_a_value() {
        let keys = ["username", "password"];
        let values = parse_credentials(
            "# x\n\nusername = api@corp\npassword = \"s3 cr=t\"\n",
            &keys,
        )
        .unwrap();
        assert_eq!(values["username"], "api@corp");
        assert_eq!(values["password"], "s3 cr=t");
        let err = parse_credentials("password = a\nhunter2\n", &keys).unwrap_err();
        assert!(err.starts_with("line 2: expected `key = value`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_credentials("my pass: hunter2 = x\n", &keys).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_credentials("user = a\n", &keys).unwrap_err();
        assert_eq!(
            err,
            "line 1: unknown key \"user\"; expected one of username, password"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_refused_before_it_is_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, "password = hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_credentials_file(&path, &["password"]).unwrap_err();
        assert!(
            err.contains("accessible by group or others (mode 0640)") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let values = read_credentials_file(&path, &["password"]).unwrap();
        assert_eq!(values["password"], "hunter2");
        let err = read_credentials_file(&dir.path().join("absent"), &["password"]).unwrap_err();
        assert!(err.starts_with("cannot read credentials file"), "{err}");
    }
}
