//! `riposte plugin new` output builds with `riposte plugin build -p <name>` and passes
//! `riposte plugin test` as generated, through the real binary.
//!
//! Each test scaffolds into a temporary copy of the workspace layout (root Cargo.toml, wit/,
//! guest-sdk/, plugins/ with its workspace manifest and members, tests/hostile-plugin and
//! tests/legacy-plugin) so the repository is never touched, and builds with the shared
//! `target/plugin-build` so only the new plugin is compiled.

use riposte_e2e::{output_text, riposte_bin, root};
use std::path::Path;
use std::process::{Command, Output};

fn riposte(args: &[&str]) -> Output {
    Command::new(riposte_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        // The plugins' dependencies are all in the lock file and the shared build dir.
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .expect("the riposte binary runs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates the directory");
    for entry in std::fs::read_dir(from).expect("reads the directory") {
        let entry = entry.expect("an entry");
        let name = entry.file_name();
        if name == "target" || name == "__pycache__" || name == "fixtures" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copies a file");
        }
    }
}

/// A temporary workspace with the repository's layout: what `find_root` and the plugins
/// workspace need, without the host's sources.
fn workspace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let (src, dst) = (root(), tmp.path().to_owned());
    std::fs::copy(src.join("Cargo.toml"), dst.join("Cargo.toml")).expect("copies Cargo.toml");
    copy_dir(&src.join("wit"), &dst.join("wit"));
    copy_dir(&src.join("guest-sdk"), &dst.join("guest-sdk"));
    for extra in ["tests/hostile-plugin", "tests/legacy-plugin"] {
        copy_dir(&src.join(extra), &dst.join(extra));
    }
    copy_dir(&src.join("plugins"), &dst.join("plugins"));
    tmp
}

/// `riposte plugin new <name> --lang <lang> --dir <plugins>`.
fn plugin_new(plugins: &Path, name: &str, lang: &str) -> Output {
    let dir = plugins.to_str().expect("utf-8");
    riposte(&["plugin", "new", name, "--lang", lang, "--dir", dir])
}

/// `riposte plugin build -p <name>` in the workspace `ws`, with the shared build dir (nothing
/// installed: the tools are already there).
fn build(ws: &Path, name: &str) -> Output {
    riposte(&[
        "plugin",
        "build",
        "--root",
        ws.to_str().expect("utf-8"),
        "-p",
        name,
        "--no-examples",
        "--no-install",
        "--build-dir",
        root().join("target/plugin-build").to_str().expect("utf-8"),
    ])
}

fn scaffold_build_and_test(lang: &str, name: &str) {
    let ws = workspace();
    let plugins = ws.path().join("plugins");
    let out = plugin_new(&plugins, name, lang);
    assert!(
        out.status.success(),
        "plugin new failed:\n{}",
        output_text(&out)
    );
    let dir = plugins.join(name);
    for file in [
        "fixtures/must-act.json",
        "fixtures/must-act.expected.json",
        "fixtures/must-not-act.json",
        "fixtures/must-not-act.expected.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} is not scaffolded");
    }
    if lang == "rust" {
        let manifest = std::fs::read_to_string(plugins.join("Cargo.toml")).expect("reads");
        assert!(
            manifest.contains(&format!("\"{name}\",")),
            "{name} is not a workspace member:\n{manifest}"
        );
    }

    let out = build(ws.path(), name);
    assert!(
        out.status.success(),
        "the scaffolded {lang} plugin does not build:\n{}",
        output_text(&out)
    );
    let wasm = ws
        .path()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} was not built", wasm.display());

    let fixtures = dir.join("fixtures");
    let out = riposte(&[
        "plugin",
        "test",
        wasm.to_str().expect("utf-8"),
        "--fixtures",
        fixtures.to_str().expect("utf-8"),
    ]);
    let report = output_text(&out);
    assert!(
        out.status.success(),
        "the scaffolded plugin fails its own fixtures:\n{report}"
    );
    assert!(report.contains("ok       must-act"), "{report}");
    assert!(report.contains("ok       must-not-act"), "{report}");

    // The generated expectation really pins the plan: a different comment fails.
    let expected = fixtures.join("must-act.expected.json");
    let original = std::fs::read_to_string(&expected).expect("reads");
    assert!(
        original.contains("\"action\": \"add-comment\""),
        "{original}"
    );
    std::fs::write(&expected, original.replace("2 connected", "3 connected")).expect("writes");
    let out = riposte(&[
        "plugin",
        "test",
        wasm.to_str().expect("utf-8"),
        "--fixtures",
        fixtures.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("2 connected"),
        "{}",
        output_text(&out)
    );

    // Scaffolding the same name twice is refused, naming the directory.
    let again = plugin_new(&plugins, name, lang);
    assert!(!again.status.success());
    assert!(
        output_text(&again).contains("already exists"),
        "{}",
        output_text(&again)
    );
}

#[test]
fn a_new_rust_plugin_builds_and_passes_its_fixtures() {
    scaffold_build_and_test("rust", "fresh-rust-rule");
}

/// Fails, naming how to get it, when `riposte plugin build` has not installed `tool` (under
/// target/plugin-build) yet: the build below runs with --no-install.
fn require_installed(tool: &str) {
    let path = root().join("target/plugin-build").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `cargo run -p riposte -- plugin build` first (tests/run.sh does); it installs it",
        path.display()
    );
}

#[test]
fn a_new_python_plugin_builds_and_passes_its_fixtures() {
    require_installed("python-venv/bin/componentize-py");
    scaffold_build_and_test("python", "fresh-python-rule");
}

#[test]
fn a_new_javascript_plugin_builds_and_passes_its_fixtures() {
    require_installed("js-tools/node_modules/.riposte-installed");
    scaffold_build_and_test("js", "fresh-js-rule");
}

#[test]
fn a_new_typescript_plugin_type_checks_builds_and_passes_its_fixtures() {
    require_installed("js-tools/node_modules/.riposte-installed");
    scaffold_build_and_test("ts", "fresh-ts-rule");
}

/// A type error in a TypeScript plugin fails the build with the compiler's message, before
/// anything is bundled.
#[test]
fn a_typescript_type_error_fails_the_build_naming_it() {
    require_installed("js-tools/node_modules/.riposte-installed");
    let ws = workspace();
    let plugins = ws.path().join("plugins");
    let out = plugin_new(&plugins, "typo-rule", "ts");
    assert!(out.status.success(), "{}", output_text(&out));
    let source = plugins.join("typo-rule/app.ts");
    let text = std::fs::read_to_string(&source).expect("reads");
    std::fs::write(
        &source,
        text.replace("malop.displayName", "malop.displayNam"),
    )
    .expect("writes");
    let out = build(ws.path(), "typo-rule");
    let report = output_text(&out);
    assert!(!out.status.success(), "a type error built:\n{report}");
    assert!(
        report.contains("typo-rule") && report.contains("displayNam") && report.contains("tsc"),
        "{report}"
    );
}

#[test]
fn bad_names_and_directories_are_refused_with_the_fix() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path().to_str().expect("utf-8");
    let out = riposte(&["plugin", "new", "Bad_Name", "--dir", dir]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("not a valid plugin name"),
        "{}",
        output_text(&out)
    );
    // A Rust plugin needs the plugins workspace manifest.
    let out = riposte(&["plugin", "new", "good-name", "--dir", dir]);
    assert!(!out.status.success());
    let message = output_text(&out);
    assert!(
        message.contains("Cargo.toml is missing") && message.contains("--dir"),
        "{message}"
    );
    let missing = tmp.path().join("nowhere");
    let out = riposte(&[
        "plugin",
        "new",
        "good-name",
        "--dir",
        missing.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("does not exist"),
        "{}",
        output_text(&out)
    );
}
