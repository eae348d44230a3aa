//! What the owner of a configuration section hands back to the loader.
//!
//! Each section of the operator's file (`[plugins.grants]`, `[service.server]`, ...) is owned
//! by the crate that uses it: that crate keeps its type, its defaults and its checks. Its
//! checks report [`Findings`] with keys relative to the section; the loader (`riposte-config`)
//! places them under the section's own key and ties each to its file, line and column.

use std::path::{Path, PathBuf};

/// One mistake in a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The dotted key relative to the section (`operations[1]`); empty for the section itself.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// The mistakes found in one section, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings(Vec<Finding>);

impl Findings {
    /// No mistakes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a mistake at `key` (relative to the section).
    pub fn at(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Takes in the findings of a sub-section whose key is `prefix`.
    pub fn nest(&mut self, prefix: &str, inner: Findings) {
        for finding in inner.0 {
            let key = join_key(prefix, &finding.key);
            self.0.push(Finding { key, ..finding });
        }
    }

    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many mistakes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl IntoIterator for Findings {
    type Item = Finding;
    type IntoIter = std::vec::IntoIter<Finding>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// `prefix.key`, or `prefix[0]` when `key` is an index, or either alone when the other is empty.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => prefix.to_string(),
        _ if key.starts_with('[') => format!("{prefix}{key}"),
        _ => format!("{prefix}.{key}"),
    }
}

/// A path from the configuration, resolved against the directory of its file.
pub fn resolve_path(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// "unknown operation `isolat`; did you mean `isolate`? expected one of a, b, c"
pub fn unknown_name(what: &str, found: &str, expected: &[&str]) -> String {
    let mut message = format!("unknown {what} `{found}`");
    if let Some(best) = expected
        .iter()
        .map(|e| (edit_distance(found, e), e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min_by_key(|(d, _)| *d)
    {
        message.push_str(&format!("; did you mean `{}`?", best.1));
    }
    message.push_str(&format!("; expected one of {}", expected.join(", ")));
    message
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_for_near_misses() {
        let msg = unknown_name(
            "operation",
            "isolat",
            &["isolate", "unisolate", "get-malop"],
        );
        assert!(msg.contains("did you mean `isolate`?"), "{msg}");
        let msg = unknown_name("operation", "zzz", &["isolate"]);
        assert!(!msg.contains("did you mean"), "{msg}");
    }

    #[test]
    fn nested_findings_carry_their_section_key() {
        let mut inner = Findings::new();
        inner.at("operations[1]", "bad");
        inner.at("", "whole");
        inner.at("[2]", "item");
        let mut outer = Findings::new();
        outer.nest("grants", inner);
        let keys: Vec<String> = outer.into_iter().map(|f| f.key).collect();
        assert_eq!(keys, ["grants.operations[1]", "grants", "grants[2]"]);
    }
}
