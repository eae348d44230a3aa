//! `riposte plugin new`: scaffolds a plugin that builds with `riposte plugin build -p <name>`
//! and passes `riposte plugin test` as generated.
//!
//! The rule it writes comments on open high-priority Malops and leaves the others alone; it
//! ships two fixtures (a "must act" ransomware Malop and a "must not act" false positive) with
//! their expectations, so an author starts from a passing replay and changes rule and
//! expectations together (`riposte plugin test --record` rewrites them).
//!
//! A Rust plugin is added to the `members` of `<dir>/Cargo.toml` (the plugins workspace); a
//! Python plugin gets a `pyproject.toml` that names its module (`app`); a JavaScript or
//! TypeScript plugin gets a `package.json` whose `riposte.entry` names its module, and a
//! TypeScript one a `tsconfig.json` for editors (the build type-checks with its own). All three
//! are written on their language's guest SDK.

use anyhow::Context;
use riposte_domain::{ActionRequest, Malop, Priority};
use riposte_replay::{Expectation, ExpectedInvocation};
use riposte_runtime::RecordedCall;
use std::path::{Path, PathBuf};

/// The "must act" fixture: a HIGH priority ransomware Malop, one machine offline.
const MUST_ACT: &str = include_str!("../../../../tests/fixtures/malops/ransomware.json");
/// The "must not act" fixture: the same Malop marked a false positive.
const MUST_NOT_ACT: &str =
    include_str!("../../../../tests/fixtures/malops/ransomware-false-positive.json");

/// The reason the host records for `add-comment`.
const COMMENT_REASON: &str = "comment requested by the plugin";

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A cargo package in the plugins workspace, using the guest SDK.
    Rust,
    /// A Python module built with componentize-py, using the Python guest SDK.
    Python,
    /// A JavaScript module built with jco and componentize-js, using the JavaScript guest SDK.
    Js,
    /// A TypeScript module, type-checked against types generated from the WIT, then built as
    /// JavaScript.
    Ts,
}

/// Arguments of `riposte plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and `-`, starting with a letter.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// The plugins directory (a Rust plugin joins the cargo workspace of its Cargo.toml).
    #[arg(long, default_value = "plugins")]
    pub dir: PathBuf,
}

/// What `plugin new` wrote.
#[derive(Clone, Debug)]
pub struct Scaffolded {
    /// The plugin's directory.
    pub dir: PathBuf,
    /// Every file written (and the workspace manifest, when it was changed).
    pub files: Vec<PathBuf>,
}

/// Runs `riposte plugin new` and prints what was written and what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let done = scaffold(&args.name, args.lang, &args.dir)?;
    for file in &done.files {
        println!("wrote {}", file.display());
    }
    println!(
        "\nnext:\n  riposte plugin build -p {name}\n  riposte plugin test target/plugins/{name}.wasm --fixtures {}",
        done.dir.join("fixtures").display(),
        name = args.name
    );
    Ok(())
}

/// Checks a plugin name: lower-case ASCII letters, digits and single `-`, starting with a
/// letter, at most 64 characters.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    anyhow::ensure!(
        ok,
        "`{name}` is not a valid plugin name: use lower-case letters, digits and single `-`, starting with a letter (e.g. `isolate-ransomware`)"
    );
    anyhow::ensure!(
        !matches!(name, "target" | "test" | "std" | "core" | "riposte-guest"),
        "`{name}` is reserved: choose another plugin name"
    );
    Ok(())
}

/// Writes a new plugin `name` in `lang` under `plugins_dir`.
pub fn scaffold(name: &str, lang: Lang, plugins_dir: &Path) -> anyhow::Result<Scaffolded> {
    check_name(name)?;
    anyhow::ensure!(
        plugins_dir.is_dir(),
        "the plugins directory {} does not exist; pass --dir <the riposte plugins directory>",
        plugins_dir.display()
    );
    let dir = plugins_dir.join(name);
    anyhow::ensure!(
        !dir.exists(),
        "{} already exists: choose another name or remove it",
        dir.display()
    );
    let workspace = plugins_dir.join("Cargo.toml");
    if lang == Lang::Rust {
        anyhow::ensure!(
            workspace.is_file(),
            "{} is missing: a Rust plugin joins the plugins cargo workspace; pass --dir <the riposte plugins directory>",
            workspace.display()
        );
    }
    let mut files = Vec::new();
    let mut write = |path: PathBuf, text: String| -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
        Ok(())
    };
    match lang {
        Lang::Rust => {
            write(dir.join("Cargo.toml"), rust_manifest(name))?;
            write(dir.join("src/lib.rs"), rust_source(name))?;
        }
        Lang::Python => {
            write(dir.join("pyproject.toml"), python_project(name))?;
            write(dir.join("app.py"), python_source(name))?;
        }
        Lang::Js => {
            write(dir.join("package.json"), js_package(name, "app.js"))?;
            write(dir.join("app.js"), js_source(name, false))?;
        }
        Lang::Ts => {
            write(dir.join("package.json"), js_package(name, "app.ts"))?;
            write(dir.join("app.ts"), js_source(name, true))?;
            write(dir.join("tsconfig.json"), TS_CONFIG.to_owned())?;
        }
    }
    let fixtures = dir.join("fixtures");
    for (case, text) in [("must-act", MUST_ACT), ("must-not-act", MUST_NOT_ACT)] {
        let malop: Malop = serde_json::from_str(text).expect("the embedded fixtures are Malops");
        let fixture = fixtures.join(format!("{case}.json"));
        write(fixture.clone(), text.to_owned())?;
        let mut expectation = serde_json::to_string_pretty(&expected(name, &malop))?;
        expectation.push('\n');
        write(riposte_replay::expectation_path(&fixture), expectation)?;
    }
    if lang == Lang::Rust {
        add_member(&workspace, name)?;
        files.push(workspace);
    }
    Ok(Scaffolded { dir, files })
}

/// Whether the generated rule acts on `malop`: HIGH priority and not closed or a false
/// positive.
fn acts_on(malop: &Malop) -> bool {
    use riposte_domain::ManagementStatus as S;
    malop.priority == Priority::High
        && !matches!(malop.management_status, S::Closed | S::FalsePositive)
}

/// The comment the generated rule writes (the Rust and Python templates format the same).
fn comment(name: &str, malop: &Malop) -> String {
    let connected = malop.machines.iter().filter(|m| m.connected).count();
    format!(
        "[{name}] high-priority Malop {} ({}): {} machine(s), {connected} connected",
        malop.display_name,
        malop.detection_type,
        malop.machines.len()
    )
}

fn expected(name: &str, malop: &Malop) -> Expectation {
    let calls = if acts_on(malop) {
        vec![RecordedCall::Action {
            request: ActionRequest::AddComment {
                malop_id: malop.id.clone(),
                text: comment(name, malop),
            },
            reason: COMMENT_REASON.to_owned(),
            gate: None,
        }]
    } else {
        Vec::new()
    };
    Expectation {
        invocations: vec![ExpectedInvocation {
            malop: Some(malop.id.clone()),
            on_interval_ms: None,
            outcome: "completed".into(),
            calls,
        }],
        ..Expectation::default()
    }
}

/// Adds `name` to the `members = [...]` array of the plugins workspace manifest, keeping the
/// rest of the file (comments included) as it is.
pub(crate) fn add_member(manifest: &Path, name: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let members = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .with_context(|| {
            format!(
                "{} has no [workspace] members array to add `{name}` to; add it by hand",
                manifest.display()
            )
        })?;
    if members.iter().any(|m| m.as_str() == Some(name)) {
        return Ok(());
    }
    // The `members = [` line (not a comment that mentions members).
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("members")
            && rest.trim_start().starts_with('=')
            && let Some(bracket) = line.find('[')
        {
            start = Some(offset + bracket + 1);
            break;
        }
        offset += line.len();
    }
    let start =
        start.with_context(|| format!("cannot find `members = [` in {}", manifest.display()))?;
    let mut updated = text.clone();
    updated.insert_str(start, &format!("\n    \"{name}\","));
    let check: toml::Table = updated.parse().with_context(|| {
        format!(
            "adding `{name}` to {} would break it; add it to members by hand",
            manifest.display()
        )
    })?;
    debug_assert!(check.get("workspace").is_some());
    std::fs::write(manifest, updated).with_context(|| format!("writing {}", manifest.display()))
}

fn rust_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version.workspace = true
edition.workspace = true
license.workspace = true
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
riposte-guest.workspace = true
"#
    )
}

fn rust_source(name: &str) -> String {
    format!(
        r#"//! {name}: a riposte rule (scaffolded by `riposte plugin new`).
//!
//! Comments on every high-priority Malop that is not closed or a false positive, and leaves
//! the others alone. Change `decide` (and the expectations in `fixtures/`, with
//! `riposte plugin test --record`) to make it yours.
//!
//! Grants it needs: `add-comment`.

use riposte_guest::{{Error, Info, Malop, Priority, Rule, bookkeeping, export_rule, info}};

struct ThisRule;

/// What to do for `malop`: the comment to add, if any. Pure, so it is unit-testable natively.
pub fn decide(malop: &Malop) -> Option<String> {{
    if malop.priority != Priority::High || malop.is_closed() {{
        return None;
    }}
    let connected = malop.connected_machines().len();
    Some(format!(
        "[{name}] high-priority Malop {{}} ({{}}): {{}} machine(s), {{connected}} connected",
        malop.display_name,
        malop.detection_type,
        malop.machines.len()
    ))
}}

impl Rule for ThisRule {{
    fn describe() -> Info {{
        Info::new("{name}", "0.1.0").description("Comments on open high-priority Malops")
    }}

    fn on_malop(malop: Malop) -> Result<(), Error> {{
        match decide(&malop) {{
            Some(text) => bookkeeping::add_comment(&malop.id, &text)?,
            None => info!("{{}}: nothing to do", malop.id),
        }}
        Ok(())
    }}
}}

export_rule!(ThisRule);
"#
    )
}

fn python_project(name: &str) -> String {
    format!(
        r#"# A riposte rule written in Python (scaffolded by `riposte plugin new`), built into a
# component by `riposte plugin build -p {name}` with componentize-py against the host's wit/.
[project]
name = "{name}"
version = "0.1.0"
description = "Comments on open high-priority Malops"
requires-python = ">=3.11"

[tool.riposte]
# The module componentize-py loads; it defines class WitWorld(wit_world.WitWorld).
module = "app"
"#
    )
}

fn python_source(name: &str) -> String {
    format!(
        r#""""{name}: a riposte rule in Python (scaffolded by `riposte plugin new`).

Comments on every high-priority Malop that is not closed or a false positive, and leaves the
others alone. Change `decide` (and the expectations in fixtures/, with
`riposte plugin test --record`) to make it yours.

Grants it needs: `add-comment`.
"""

from riposte_guest import Info, Malop, Priority, Rule, bookkeeping, export_rule, info


def decide(malop: Malop):
    """The comment to add for `malop`, or None. Pure."""
    if malop.priority != Priority.HIGH or malop.is_closed():
        return None
    connected = len(malop.connected_machines())
    return (
        f"[{name}] high-priority Malop {{malop.display_name}} ({{malop.detection_type}}): "
        f"{{len(malop.machines)}} machine(s), {{connected}} connected"
    )


class ThisRule(Rule):
    def describe(self) -> Info:
        return Info("{name}", "0.1.0").description("Comments on open high-priority Malops")

    def on_malop(self, malop: Malop) -> None:
        text = decide(malop)
        if text is None:
            info(f"{{malop.id}}: nothing to do")
            return
        bookkeeping.add_comment(malop.id, text)


WitWorld = export_rule(ThisRule)
"#
    )
}

fn js_package(name: &str, entry: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "description": "Comments on open high-priority Malops",
  "type": "module",
  "riposte": {{
    "entry": "{entry}"
  }}
}}
"#
    )
}

/// The editor's view of a TypeScript plugin: the SDK and the WIT types `riposte plugin build`
/// generates under target/ (the build type-checks with absolute paths of its own). The SDK is
/// mapped to its `index.js`: TypeScript reads the `index.d.ts` beside it, and the bundler,
/// which also honours these paths, gets the module itself.
const TS_CONFIG: &str = r#"{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "module": "esnext",
    "moduleResolution": "bundler",
    "paths": { "riposte-guest": ["../../guest-sdk/js/index.js"] }
  },
  "files": ["app.ts", "../../target/plugin-build/js/wit-types/rule.d.ts"]
}
"#;

fn js_source(name: &str, typescript: bool) -> String {
    let (param, ret, import_type) = if typescript {
        (
            ": Malop",
            ": string | undefined",
            "\nimport type { Malop } from 'riposte-guest';",
        )
    } else {
        ("", "", "")
    };
    let malop_arg = if typescript { "malop: Malop" } else { "malop" };
    format!(
        r#"// {name}: a riposte rule in {lang} (scaffolded by `riposte plugin new`).
//
// Comments on every high-priority Malop that is not closed or a false positive, and leaves the
// others alone. Change `decide` (and the expectations in fixtures/, with
// `riposte plugin test --record`) to make it yours.
//
// Grants it needs: `add-comment`.

import {{ Info, Rule, bookkeeping, exportRule, info }} from 'riposte-guest';{import_type}

/** The comment to add for `malop`, or undefined. Pure. */
export function decide(malop{param}){ret} {{
  if (malop.priority !== 'high' || malop.isClosed()) return undefined;
  const connected = malop.connectedMachines().length;
  return `[{name}] high-priority Malop ${{malop.displayName}} (${{malop.detectionType}}): `
    + `${{malop.machines.length}} machine(s), ${{connected}} connected`;
}}

class ThisRule extends Rule {{
  describe() {{
    return new Info('{name}', '0.1.0').description('Comments on open high-priority Malops');
  }}

  onMalop({malop_arg}) {{
    const text = decide(malop);
    if (text === undefined) {{
      info(`${{malop.id}}: nothing to do`);
      return;
    }}
    bookkeeping.addComment(malop.id, text);
  }}
}}

export const {{ describe, onMalop, onInterval }} = exportRule(ThisRule);
"#,
        lang = if typescript {
            "TypeScript"
        } else {
            "JavaScript"
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "isolate-ransomware", "rule2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "Rule", "2rule", "a_b", "a--b", "a-", "target", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_member_is_added_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(
            &manifest,
            "# keep me: all members\n[workspace]\nresolver = \"3\"\nmembers = [\n    \"a\", # a comment\n]\n",
        )
        .unwrap();
        add_member(&manifest, "new-rule").unwrap();
        add_member(&manifest, "new-rule").unwrap();
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.starts_with("# keep me: all members\n"));
        assert_eq!(text.matches("\"new-rule\"").count(), 1);
        let doc: toml::Table = text.parse().unwrap();
        let members = doc["workspace"]["members"].as_array().unwrap();
        assert_eq!(members.len(), 2);
    }

    #[test]
    fn the_embedded_fixtures_give_one_acting_and_one_idle_case() {
        let act: Malop = serde_json::from_str(MUST_ACT).unwrap();
        let idle: Malop = serde_json::from_str(MUST_NOT_ACT).unwrap();
        assert!(acts_on(&act));
        assert!(!acts_on(&idle));
        assert_eq!(
            comment("x", &act),
            "[x] high-priority Malop locky.exe (RANSOMWARE): 3 machine(s), 2 connected"
        );
    }
}
