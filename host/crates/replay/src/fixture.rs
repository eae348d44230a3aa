//! Replay fixtures: recorded Malops, in the domain's JSON (`riposte_domain::Malop`, one object
//! or an array) or in the server's own `crimes/unified` response shape; and the expectation
//! file beside each (`<case>.expected.json`).

use riposte_client::parse;
use riposte_domain::{ElementKind, Malop, MalopId, TimestampMs};
use riposte_runtime::RecordedCall;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The suffix of expectation files: `ransomware.json` is checked against
/// `ransomware.expected.json`.
pub const EXPECTED_SUFFIX: &str = ".expected.json";

/// A fixture or expectation file that cannot be used. The message names the file, what is
/// wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The fixture is not one of the accepted shapes.
    #[error(
        "malformed fixture {path}: {reason}. A fixture is a Malop in riposte's JSON (see tests/fixtures/malops), an array of them, or a crimes/unified response as the server sends it"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The expectation file is not valid.
    #[error(
        "malformed expectation {path}: {reason}. Fix it by hand, or rewrite it from the plugin's current plan with `riposte plugin test --record`"
    )]
    Expectation {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The fixtures directory holds no fixture.
    #[error(
        "no fixtures in {dir}: expected <case>.json files (with <case>.expected.json beside them); create one, or point --fixtures at the right directory"
    )]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
}

/// Which shape a fixture file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixtureShape {
    /// One Malop, or an array of Malops, in riposte's domain JSON.
    Domain,
    /// A `crimes/unified` response body as the server sends it.
    CrimesUnified,
}

/// One fixture: the Malops it holds, in order.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The case name: the file name without `.json`.
    pub name: String,
    /// The fixture file.
    pub path: PathBuf,
    /// The shape it was written in.
    pub shape: FixtureShape,
    /// The Malops, each offered to the plugin's `on-malop` in this order.
    pub malops: Vec<Malop>,
}

impl Fixture {
    /// The expectation file beside it.
    pub fn expectation_path(&self) -> PathBuf {
        expectation_path(&self.path)
    }
}

/// `<dir>/<case>.expected.json` for `<dir>/<case>.json`.
pub fn expectation_path(fixture: &Path) -> PathBuf {
    let stem = fixture
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let case = stem.strip_suffix(".json").unwrap_or(&stem);
    fixture.with_file_name(format!("{case}{EXPECTED_SUFFIX}"))
}

/// The fixture files of a directory (`*.json` except `*.expected.json`), sorted by name.
pub fn fixture_files(dir: &Path) -> Result<Vec<PathBuf>, FixtureError> {
    let io = |source| FixtureError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_file() && name.ends_with(".json") && !name.ends_with(EXPECTED_SUFFIX) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(FixtureError::Empty {
            dir: dir.to_owned(),
        });
    }
    Ok(files)
}

/// Reads a fixture file, detecting its shape.
pub fn load_fixture(path: &Path) -> Result<Fixture, FixtureError> {
    let bytes = std::fs::read(path).map_err(|source| FixtureError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (shape, malops) = parse_fixture(&bytes).map_err(|reason| FixtureError::Malformed {
        path: path.to_owned(),
        reason,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Fixture {
        name: name.strip_suffix(".json").unwrap_or(&name).to_owned(),
        path: path.to_owned(),
        shape,
        malops,
    })
}

/// Parses fixture bytes: a `crimes/unified` response (an object with `data` and
/// `resultIdToElementDataMap`, or a `status`), a domain Malop, or an array of domain Malops.
pub fn parse_fixture(bytes: &[u8]) -> Result<(FixtureShape, Vec<Malop>), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let malops = match &value {
        Value::Object(map) if map.contains_key("data") || map.contains_key("status") => {
            return crimes_unified(bytes).map(|m| (FixtureShape::CrimesUnified, m));
        }
        Value::Object(_) => vec![domain_malop(value, None)?],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| domain_malop(item.clone(), Some(i)))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "expected a JSON object or array, got {}",
                parse::kind(other)
            ));
        }
    };
    if malops.is_empty() {
        return Err("the array holds no Malop".into());
    }
    Ok((FixtureShape::Domain, malops))
}

fn domain_malop(value: Value, index: Option<usize>) -> Result<Malop, String> {
    let at = index.map_or(String::new(), |i| format!("Malop #{i}: "));
    serde_json::from_value(value).map_err(|e| {
        format!("{at}not a riposte Malop ({e}); its fields are those of riposte_domain::Malop")
    })
}

fn crimes_unified(bytes: &[u8]) -> Result<Vec<Malop>, String> {
    let elements = parse::visual_elements(bytes)
        .map_err(|e| format!("not a usable crimes/unified response: {e}"))?;
    let kinds: BTreeMap<MalopId, ElementKind> = elements
        .iter()
        .map(|e| {
            let kind = match e.first("rootCauseElementTypes") {
                Some("LogonSession") => ElementKind::LogonSession,
                _ => ElementKind::Process,
            };
            (MalopId::new(e.guid.clone()), kind)
        })
        .collect();
    let mut malops = parse::crimes_unified(bytes, ElementKind::Process)
        .map_err(|e| format!("not a usable crimes/unified response: {e}"))?;
    if malops.is_empty() {
        return Err(
            "the crimes/unified response holds no Malop (data.resultIdToElementDataMap is empty)"
                .into(),
        );
    }
    for malop in &mut malops {
        if let Some(kind) = kinds.get(&malop.id) {
            malop.kind = *kind;
        }
    }
    Ok(malops)
}

/// `<case>.expected.json`: the inputs of a case beyond the fixture, and the plan it must produce.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Plugin config values for this case, on top of `--config` and the operator config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The pinned clock (ms since the epoch) the plugin sees; default: each Malop's
    /// `last_update_time` plus one minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<TimestampMs>,
    /// Compare the plugin's log lines too (default: only the calls that query or act).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_logs: bool,
    /// Replay `on-interval` too, once after the case's Malops, at the latest clock of the
    /// case (as `--on-interval` does for every case).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_interval: bool,
    /// One entry per Malop of the fixture, in order.
    pub invocations: Vec<ExpectedInvocation>,
}

/// What one invocation must do: `on-malop` of a Malop, or `on-interval` at a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedInvocation {
    /// The Malop offered (`on-malop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malop: Option<MalopId>,
    /// The time `on-interval` was called at (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_interval_ms: Option<TimestampMs>,
    /// How it ends: `completed`, `plugin-error: <kind>`, `stopped: <reason>` or
    /// `host-failure: <error>`; with an operator configuration also `not-subscribed` (the
    /// plugin's subscription does not match the Malop) or `no-interval-hook`.
    pub outcome: String,
    /// The calls it makes, in order, with their arguments.
    pub calls: Vec<RecordedCall>,
}

/// Reads an expectation file; `Ok(None)` when there is none.
pub fn load_expectation(path: &Path) -> Result<Option<Expectation>, FixtureError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FixtureError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| FixtureError::Expectation {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// Writes an expectation file (pretty JSON, trailing newline).
pub fn write_expectation(path: &Path, expectation: &Expectation) -> Result<(), FixtureError> {
    let mut text = serde_json::to_string_pretty(expectation).expect("an expectation serializes");
    text.push('\n');
    std::fs::write(path, text).map_err(|source| FixtureError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectation_path_sits_beside_the_fixture() {
        assert_eq!(
            expectation_path(Path::new("f/ransomware.json")),
            PathBuf::from("f/ransomware.expected.json")
        );
    }

    #[test]
    fn garbage_is_named() {
        let err = parse_fixture(b"[1, 2").unwrap_err();
        assert!(err.contains("invalid JSON"), "{err}");
        let err = parse_fixture(b"\"x\"").unwrap_err();
        assert!(err.contains("got a string"), "{err}");
        let err = parse_fixture(br#"{"id": "1"}"#).unwrap_err();
        assert!(err.contains("not a riposte Malop"), "{err}");
        let err = parse_fixture(br#"{"status": "FAILURE", "message": "nope"}"#).unwrap_err();
        assert!(err.contains("crimes/unified"), "{err}");
    }
}
