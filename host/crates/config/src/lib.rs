//! The loader of the operator's configuration: one TOML file (see
//! `host/examples/riposte.toml`, which documents every key).
//!
//! The loader owns no section. Each section's owner keeps its type, its defaults and its
//! checks (`[plugins.limits]` is `riposte_runtime::Limits`, `[service.audit]` is
//! `riposte_audit::AuditConfig`, the policy's sections are in `riposte_policy::settings`, ...);
//! the loader parses the file, hands each section to its owner, and ties every mistake the
//! owners report ([`Findings`]) to its file, line, column and dotted key, all of them at
//! once where the file still parses:
//!
//! ```text
//! riposte.toml:14: plugins[1].grants.operations[0]: unknown operation `isolat`; did you mean `isolate`? expected one of list-malops, get-malop, ...
//! ```
//!
//! Loading is strict: unknown sections and keys are errors. A key whose name suggests a
//! secret is refused with a pointer to the credentials file: secrets never live in this file.

mod spans;

use riposte_domain::settings::Findings;
use serde::de::DeserializeOwned;
use spans::SpanIndex;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has mistakes; each names its line and key.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Every mistake found, in file order.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{} mistake{} in {}:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        path.display()
    );
    for problem in problems {
        out.push_str("\n  ");
        out.push_str(&problem.to_string());
    }
    out
}

/// One mistake in the configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The dotted key, e.g. `plugins[1].grants.operations[0]`; empty for syntax errors.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Reads the file at `path` and builds a configuration from it with `build`, which takes
/// each section from the [`Document`] and hands it to its owner. Fails with every mistake
/// reported, by the loader or by the owners.
pub fn load<T>(path: &Path, build: impl FnOnce(&mut Document<'_>) -> T) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path, build)
}

/// As [`load`], for text already read as if from `path` (used in messages and to resolve
/// relative paths).
pub fn parse<T>(
    text: &str,
    path: &Path,
    build: impl FnOnce(&mut Document<'_>) -> T,
) -> Result<T, Error> {
    let table = DeTable::parse(text).map_err(|err| {
        let index = SpanIndex::new(text, &DeTable::new());
        let (line, column) = err.span().map_or((1, 1), |s| index.line_col(s.start));
        Error::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                file: path.to_path_buf(),
                line,
                column,
                key: String::new(),
                message: format!("TOML syntax: {}", err.message()),
            }],
        }
    })?;
    let mut document = Document {
        file: path.to_path_buf(),
        base: path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        table: table.get_ref(),
        index: SpanIndex::new(text, table.get_ref()),
        problems: Vec::new(),
    };
    let built = build(&mut document);
    let mut problems = document.problems;
    if problems.is_empty() {
        Ok(built)
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        Err(Error::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// A parsed configuration file: its sections, to be read by their owners, and the mistakes
/// found so far.
pub struct Document<'a> {
    file: PathBuf,
    base: PathBuf,
    table: &'a DeTable<'a>,
    index: SpanIndex<'a>,
    problems: Vec<Problem>,
}

impl Document<'_> {
    /// The configuration file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The directory relative paths resolve against: the configuration file's.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Reports every top-level section not in `known`.
    pub fn only_sections(&mut self, known: &[&str]) {
        let unknown: Vec<String> = self
            .table
            .iter()
            .map(|(key, _)| key.get_ref().to_string())
            .filter(|key| !known.contains(&key.as_str()))
            .collect();
        for key in unknown {
            let message = format!(
                "unknown section `{key}`; expected one of {}",
                known.join(", ")
            );
            self.report(&key, message);
        }
    }

    /// The top-level section `key` in its file shape: its default when absent, `None` when
    /// it does not deserialize (the mistake is reported).
    pub fn section<T: DeserializeOwned + Default>(&mut self, key: &str) -> Option<T> {
        match self.table.get(key) {
            None => Some(T::default()),
            Some(value) => self.deserialize(key, value),
        }
    }

    /// The tables of the top-level array section `key` (`[[plugins]]`), each with its key
    /// (`plugins[0]`) and in its file shape; those that do not deserialize are reported and
    /// left out.
    pub fn items<T: DeserializeOwned>(&mut self, key: &str) -> Vec<(String, T)> {
        let Some(value) = self.table.get(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            let message = format!(
                "expected an array of tables (`[[{key}]]`), found {}",
                value.get_ref().type_str()
            );
            self.report(key, message);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_key = format!("{key}[{i}]");
                self.deserialize(&item_key, item).map(|v| (item_key, v))
            })
            .collect()
    }

    /// Reports a mistake at the dotted `key`.
    pub fn report(&mut self, key: &str, message: impl Into<String>) {
        let (line, column) = self.index.position_of(key);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Reports what the owner of the section at `key` found wrong with it.
    pub fn report_findings(&mut self, key: &str, findings: Findings) {
        let mut nested = Findings::new();
        nested.nest(key, findings);
        for finding in nested {
            self.report(&finding.key, finding.message);
        }
    }

    fn deserialize<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: &toml::Spanned<DeValue<'_>>,
    ) -> Option<T> {
        T::deserialize(ValueDeserializer::from(value.clone()))
            .map_err(|err| self.serde_error(key, err))
            .ok()
    }

    fn serde_error(&mut self, fallback_key: &str, err: toml::de::Error) {
        let (key, (line, column)) = match err.span() {
            Some(span) => {
                let key = self
                    .index
                    .path_at(&span)
                    .unwrap_or_else(|| fallback_key.to_string());
                (key, self.index.line_col(span.start))
            }
            None => (
                fallback_key.to_string(),
                self.index.position_of(fallback_key),
            ),
        };
        let mut message = err.message().trim().to_string();
        if let Some(hint) = secret_hint(&message) {
            message.push_str(hint);
        }
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            key,
            message,
        });
    }
}

/// The pointer to the credentials file, for an unknown key that looks like a secret.
fn secret_hint(message: &str) -> Option<&'static str> {
    let field = message
        .strip_prefix("unknown field `")?
        .split('`')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    [
        "password", "passwd", "secret", "token", "cookie", "username", "user",
    ]
    .iter()
    .any(|s| field.contains(s))
    .then_some(
        "; secrets never go in this file: put them in the file named by service.server.credentials_file",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Section {
        count: u32,
    }

    #[test]
    fn owners_findings_are_placed_at_their_line_and_key() {
        let text = "[a]\ncount = 3\n\n[[b]]\ncount = 1\n[[b]]\ncount = 2\n";
        let err = parse(text, Path::new("/x/r.toml"), |doc| {
            doc.only_sections(&["a", "b"]);
            let a: Section = doc.section("a").expect("a deserializes");
            assert_eq!(a.count, 3);
            for (key, item) in doc.items::<Section>("b") {
                let mut findings = Findings::new();
                if item.count == 2 {
                    findings.at("count", "must not be 2");
                }
                doc.report_findings(&key, findings);
            }
            assert_eq!(doc.base(), Path::new("/x"));
        })
        .unwrap_err();
        let Error::Invalid { problems, .. } = err else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].line, problems[0].key.as_str()),
            (7, "b[1].count")
        );
    }

    #[test]
    fn unknown_keys_and_sections_are_reported_with_a_secret_hint() {
        let text = "[a]\npassword = \"x\"\n[zzz]\n";
        let Err(Error::Invalid { problems, .. }) = parse(text, Path::new("r.toml"), |doc| {
            doc.only_sections(&["a"]);
            doc.section::<Section>("a")
        }) else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].message.contains("credentials_file"),
            "{problems:?}"
        );
        assert_eq!(problems[1].key, "zzz");
    }
}
