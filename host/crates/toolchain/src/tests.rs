use std::fs;
use std::path::Path;
use std::process::Command;

use super::command::{describe, is_build_env_var, tail_lines};
use super::component::{WasmKind, componentize, wasm_kind};
use super::detect::{
    OFFLINE_PACKAGES, RouteChoice, RoutePreference, RustRoute, choose_route, lists_target,
    lists_toolchain, missing_from_dpkg_status,
};
use super::discover::{Language, PYTHON_MARKER, discover, sdk_examples};
use super::*;

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn rust_plugin(dir: &Path, name: &str, extra: &str) {
    write(
        &dir.join(name).join("Cargo.toml"),
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n{extra}"
        ),
    );
}

#[test]
fn discovers_rust_and_python_plugins_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    rust_plugin(dir, "zeta-rule", "");
    rust_plugin(dir, "alpha-rule", "name = \"alpha_lib\"\n");
    write(
        &dir.join("py-rule/pyproject.toml"),
        "[project]\nname = \"triage\"\n\n[tool.riposte]\nmodule = \"rule\"\n",
    );
    write(&dir.join("py-rule/rule.py"), "");
    write(&dir.join("marked").join(PYTHON_MARKER), "");
    write(&dir.join("marked/app.py"), "");
    write(
        &dir.join("js/package.json"),
        r#"{"name": "js-rule", "riposte": {"entry": "src/main.ts"}}"#,
    );
    write(&dir.join("js/src/main.ts"), "");
    write(&dir.join("ts-default/package.json"), r#"{"riposte": {}}"#);
    write(&dir.join("ts-default/app.ts"), "");
    // An npm package that is not a plugin (no `riposte` key), and node_modules.
    write(&dir.join("lib/package.json"), r#"{"name": "lib"}"#);
    write(
        &dir.join("node_modules/x/package.json"),
        r#"{"riposte": {}}"#,
    );
    // Not plugins: a directory without a manifest, the cargo target dir, a hidden dir, a file.
    fs::create_dir_all(dir.join("notes")).unwrap();
    rust_plugin(&dir.join("target"), "built", "");
    rust_plugin(&dir.join(".hidden"), "hidden", "");
    write(&dir.join("Cargo.toml"), "[workspace]\n");

    let found = discover(dir).unwrap();
    let summary: Vec<(&str, Language, &str)> = found
        .iter()
        .map(|p| (p.name.as_str(), p.language, p.artifact.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("alpha-rule", Language::Rust, "alpha_lib"),
            ("js-rule", Language::JavaScript, "src/main.ts"),
            ("marked", Language::Python, "app"),
            ("triage", Language::Python, "rule"),
            ("ts-default", Language::JavaScript, "app.ts"),
            ("zeta-rule", Language::Rust, "zeta_rule"),
        ]
    );
}

#[test]
fn rejects_a_rust_plugin_that_is_not_a_cdylib() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("lib-only/Cargo.toml"),
        "[package]\nname = \"lib-only\"\nversion = \"0.1.0\"\n",
    );
    let err = discover(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("lib-only") && msg.contains("cdylib"), "{msg}");
}

#[test]
fn rejects_a_python_plugin_without_its_module() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("py/pyproject.toml"),
        "[project]\nname = \"py\"\n",
    );
    let msg = discover(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("`app`"), "{msg}");
}

#[test]
fn rejects_a_js_plugin_without_its_entry_or_with_bad_json() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("js/package.json"),
        r#"{"name": "js", "riposte": {"entry": "missing.js"}}"#,
    );
    let msg = discover(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("missing.js") && msg.contains("riposte.entry"),
        "{msg}"
    );
    write(&tmp.path().join("js/package.json"), "{ not json");
    let msg = discover(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("package.json is not valid JSON"), "{msg}");
}

#[test]
fn rejects_duplicate_names() {
    let tmp = tempfile::tempdir().unwrap();
    rust_plugin(tmp.path(), "same", "");
    write(
        &tmp.path().join("other/pyproject.toml"),
        "[project]\nname = \"same\"\n",
    );
    write(&tmp.path().join("other/app.py"), "");
    let msg = discover(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("`same`"), "{msg}");
}

#[test]
fn the_repository_plugins_are_discovered() {
    let root = find_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let found = discover(&root.join("plugins")).unwrap();
    let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
    for expected in [
        "cleanup",
        "ransomware-containment",
        "reputation-feed",
        "python-triage",
        "lateral-movement",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for language in [Language::Rust, Language::Python, Language::JavaScript] {
        assert!(found.iter().any(|p| p.language == language), "{names:?}");
    }
    let examples = sdk_examples(&root.join("guest-sdk")).unwrap();
    for expected in ["minimal-rule", "noop-rule", "host-calls"] {
        assert!(examples.iter().any(|e| e == expected), "{examples:?}");
    }
}

#[test]
fn unknown_plugin_names_are_refused_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    rust_plugin(&tmp.path().join("plugins"), "real", "");
    let mut opts = BuildOptions::new(tmp.path());
    opts.only = vec!["imaginary".into()];
    let msg = build_plugins(&opts).unwrap_err().to_string();
    assert!(msg.contains("imaginary") && msg.contains("real"), "{msg}");
}

#[test]
fn detects_installed_targets_and_toolchains() {
    let installed = "wasm32-unknown-unknown\nwasm32-wasip2\nx86_64-unknown-linux-gnu\n";
    assert!(lists_target(installed, "wasm32-wasip2"));
    assert!(!lists_target(
        "x86_64-unknown-linux-gnu\nwasm32-wasip1\n",
        "wasm32-wasip2"
    ));
    assert!(!lists_target("wasm32-wasip2-threads\n", "wasm32-wasip2"));

    let toolchains = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\ndebian-web\n";
    assert!(lists_toolchain(toolchains, "debian-web"));
    assert!(!lists_toolchain(
        "stable-x86_64-unknown-linux-gnu (default)\ndebian-web-old\n",
        "debian-web"
    ));
}

/// The wasm32-wasip2 target cannot be installed on these machines, so the choice is tested on
/// what `rustup target list --installed` prints: wasip2 wins wherever it is installed.
#[test]
fn wasm32_wasip2_is_chosen_wherever_rustup_has_it() {
    let with = Some("wasm32-wasip2\nx86_64-unknown-linux-gnu\n");
    let without = Some("x86_64-unknown-linux-gnu\nwasm32-wasip1\n");
    let choose = |p, t| choose_route(p, t).map_err(|e| e.to_string());
    assert_eq!(choose(RoutePreference::Auto, with), Ok(RouteChoice::Wasip2));
    assert_eq!(
        choose(RoutePreference::Wasip2, with),
        Ok(RouteChoice::Wasip2)
    );
    assert_eq!(
        choose(RoutePreference::Offline, with),
        Ok(RouteChoice::Offline)
    );
    assert_eq!(
        choose(RoutePreference::Auto, without),
        Ok(RouteChoice::Offline)
    );
    assert_eq!(
        choose(RoutePreference::Auto, None),
        Ok(RouteChoice::Offline)
    );
    let missing = choose(RoutePreference::Wasip2, without).unwrap_err();
    assert!(
        missing.contains("rustup target add wasm32-wasip2"),
        "{missing}"
    );
    let no_rustup = choose(RoutePreference::Wasip2, None).unwrap_err();
    assert!(no_rustup.contains("rustup is not available"), "{no_rustup}");
}

/// On the wasip2 route rustc emits a component: it is written as it is, with no preview-1
/// adapter added (the offline route's core modules get one).
#[test]
fn a_component_from_rustc_is_kept_without_an_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let component = componentize(b"\0asm\x01\0\0\0").unwrap();
    let artifact = tmp.path().join("rule.wasm");
    fs::write(&artifact, &component).unwrap();
    let out = tmp.path().join("out.wasm");
    finish_rust_artifact("rule", &artifact, &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), component);
    let wasip2 = describe(&RustRoute::Wasip2.cargo());
    assert!(
        !wasip2.contains("RUSTC_BOOTSTRAP") && !wasip2.contains("+debian-web"),
        "{wasip2}"
    );
    assert!(
        !RustRoute::Wasip2
            .build_args()
            .iter()
            .any(|a| a.starts_with("-Z"))
    );
    // A core module (the offline route) is componentized on the way.
    fs::write(&artifact, b"\0asm\x01\0\0\0").unwrap();
    finish_rust_artifact("rule", &artifact, &out).unwrap();
    assert_eq!(wasm_kind(&fs::read(&out).unwrap()), WasmKind::Component);
}

#[test]
fn reads_missing_packages_from_dpkg() {
    let all = OFFLINE_PACKAGES
        .iter()
        .map(|p| format!("{p} install ok installed"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(missing_from_dpkg_status(&all).is_empty());
    let partial = "rustc-web install ok installed\nlld:amd64 install ok installed\nwasi-libc deinstall ok config-files\n";
    assert_eq!(
        missing_from_dpkg_status(partial),
        vec!["cargo-web", "rust-web-src", "wasi-libc"]
    );
}

#[test]
fn routes_build_the_right_target() {
    assert_eq!(RustRoute::Wasip2.target(), "wasm32-wasip2");
    assert_eq!(
        RustRoute::Wasip2.build_args(),
        vec!["--target", "wasm32-wasip2"]
    );
    let offline = RustRoute::OfflineWasip1 {
        rustup_toolchain: Some("debian-web".into()),
    };
    assert_eq!(
        offline.build_args(),
        vec!["--target", "wasm32-wasip1", "-Zbuild-std=std,panic_abort"]
    );
    let line = describe(&offline.cargo());
    assert!(line.contains("RUSTC_BOOTSTRAP=1"), "{line}");
    assert!(
        line.contains("CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld"),
        "{line}"
    );
    assert!(line.contains("cargo +debian-web"), "{line}");
    let direct = describe(
        &RustRoute::OfflineWasip1 {
            rustup_toolchain: None,
        }
        .cargo(),
    );
    assert!(
        direct.contains("RUSTC=/usr/bin/rustc") && direct.contains("/usr/bin/cargo"),
        "{direct}"
    );
    assert_eq!(RoutePreference::default(), RoutePreference::Auto);
}

#[test]
fn nested_cargo_variables_are_not_inherited() {
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC",
        "CARGO",
        "__CARGO_FIX_PLZ",
        "CARGO_BUILD_TARGET",
    ] {
        assert!(is_build_env_var(var), "{var}");
    }
    for var in [
        "CARGO_HOME",
        "CARGO_NET_OFFLINE",
        "CARGO_HTTP_CAINFO",
        "PATH",
        "HOME",
        "RUSTUP_HOME",
    ] {
        assert!(!is_build_env_var(var), "{var}");
    }
}

#[test]
fn finds_failed_crates_in_cargo_stderr() {
    let stderr = "   Compiling cleanup v0.1.0\nerror[E0425]: cannot find value `x`\n --> cleanup/src/lib.rs:3:5\nerror: could not compile `cleanup` (lib) due to 1 previous error\nwarning: build failed, waiting for other jobs to finish...\nerror: could not compile `cleanup` (lib) due to 1 previous error\n";
    assert_eq!(failed_crates(stderr), vec!["cleanup"]);
    assert!(failed_crates("error: failed to load manifest").is_empty());
}

#[test]
fn tails_keep_the_last_lines() {
    let text = (1..=100)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let tail = tail_lines(&text, 3);
    assert_eq!(tail, "98\n99\n100");
    assert_eq!(tail_lines("one", 5), "one");
}

#[test]
fn command_lines_are_quoted() {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "a b"]).env("X", "1");
    assert_eq!(describe(&cmd), "X=1 cargo build 'a b'");
}

#[test]
fn recognises_modules_and_components() {
    assert_eq!(wasm_kind(b"\0asm\x01\0\0\0"), WasmKind::CoreModule);
    assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0"), WasmKind::Component);
    assert_eq!(wasm_kind(b"\x7fELF\x02\x01\x01\0"), WasmKind::Unknown);
    assert_eq!(wasm_kind(b"\0as"), WasmKind::Unknown);
}

#[test]
fn componentizes_a_core_module_with_wit_component() {
    // The smallest core module: no imports, no exports, no WIT metadata.
    let component = componentize(b"\0asm\x01\0\0\0").unwrap();
    assert_eq!(wasm_kind(&component), WasmKind::Component);
    let err = componentize(b"\0asm\x01\0\0\0\x99").unwrap_err();
    assert!(err.contains("core module"), "{err}");
}

#[test]
fn manifest_round_trips_and_missing_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(read_manifest(tmp.path()).unwrap(), Manifest::default());
    let plugin = BuiltPlugin {
        name: "x".into(),
        language: Language::Python,
        path: tmp.path().join("x.wasm"),
        sha256: sha256_hex(b""),
        size: 0,
        route: "componentize-py-0.25.1".into(),
        example: false,
    };
    let manifest = Manifest {
        world: "riposte:plugin/rule@0.1.0".into(),
        plugins: [("x".to_owned(), plugin)].into_iter().collect(),
    };
    fs::write(
        tmp.path().join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    assert_eq!(read_manifest(tmp.path()).unwrap(), manifest);
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn build_args_resolve_options() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        build: BuildArgs,
    }
    let cli = Cli::parse_from([
        "riposte",
        "--root",
        "/repo",
        "-p",
        "cleanup",
        "--route",
        "offline",
        "--no-install",
    ]);
    let opts = cli.build.options().unwrap();
    assert_eq!(opts.out_dir, Path::new("/repo/target/plugins"));
    assert_eq!(opts.build_dir, Path::new("/repo/target/plugin-build"));
    assert_eq!(opts.only, vec!["cleanup"]);
    assert_eq!(opts.route, RoutePreference::Offline);
    assert!(!opts.install);
}

#[test]
fn finds_the_workspace_root_from_a_subdirectory() {
    let root = find_root(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap();
    assert!(root.join("wit").is_dir() && root.join("plugins").is_dir());
}

/// The real build: every plugin of the repository, from source, into `target/plugins`.
/// Slow (minutes the first time): `cargo test -p riposte --lib toolchain -- --ignored`.
#[test]
#[ignore = "builds every plugin from source; run with --ignored"]
fn builds_every_plugin_of_the_repository() {
    let root = find_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let opts = BuildOptions::new(&root);
    let built = build_plugins(&opts).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = built.iter().map(|b| b.name.as_str()).collect();
    for expected in [
        "cleanup",
        "python-triage",
        "ransomware-containment",
        "reputation-feed",
        "lateral-movement",
        "minimal-rule",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for plugin in &built {
        let bytes = fs::read(&plugin.path).unwrap();
        assert_eq!(wasm_kind(&bytes), WasmKind::Component, "{}", plugin.name);
        assert_eq!(sha256_hex(&bytes), plugin.sha256);
    }
    let manifest = read_manifest(&opts.out_dir).unwrap();
    assert!(manifest.plugins.contains_key("ransomware-containment"));
    assert!(manifest.plugins.contains_key("examples/minimal-rule"));
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "__pycache__" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A compile error names the plugin and carries the compiler's stderr tail. Builds a copy of
/// the plugins with one broken, in the shared plugin build dir (so std is not rebuilt).
#[test]
#[ignore = "compiles plugins; run with --ignored"]
fn a_compile_error_names_the_plugin_and_shows_stderr() {
    let root = find_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["plugins", "guest-sdk", "wit"] {
        copy_tree(&root.join(dir), &tmp.path().join(dir));
    }
    fs::write(tmp.path().join("Cargo.toml"), "# not a workspace\n").unwrap();
    let lib = tmp.path().join("plugins/cleanup/src/lib.rs");
    let broken = fs::read_to_string(&lib).unwrap() + "\nfn broken() -> u32 { \"not a number\" }\n";
    fs::write(&lib, broken).unwrap();

    let mut opts = BuildOptions::new(tmp.path());
    opts.build_dir = root.join("target/plugin-build");
    opts.only = vec!["cleanup".into(), "reputation-feed".into()];
    let err = build_plugins(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::PluginBuild { ref plugin, .. } if plugin == "cleanup"),
        "{msg}"
    );
    assert!(msg.contains("mismatched types"), "{msg}");
    assert!(msg.contains("cargo"), "{msg}");
    assert!(!opts.out_dir.join("cleanup.wasm").exists());
}
