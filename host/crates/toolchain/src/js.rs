//! JavaScript and TypeScript plugins: jco + componentize-js (pinned with every transitive
//! dependency in `js-tools/package-lock.json`), installed with `npm ci` into a project-local
//! directory under the build directory, never globally.
//!
//! A build of one plugin:
//! 1. `jco guest-types` generates the TypeScript declarations of the WIT world from `wit/`
//!    (so a WIT change flows into the types at the next build);
//! 2. a TypeScript entry is type-checked with the pinned TypeScript compiler against those
//!    declarations and the JavaScript guest SDK's (`guest-sdk/js/index.d.ts`);
//! 3. `jco componentize --bundle` bundles the entry with the SDK (imported as `riposte-guest`)
//!    and builds the component with componentize-js (SpiderMonkey), with WASI HTTP disabled.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::command;
use super::discover::PluginSource;
use super::{Error, WORLD, io, sha256_hex};

/// The jco version pinned in `js-tools/package.json`.
pub(crate) const JCO_VERSION: &str = "1.35.0";
/// The componentize-js version pinned in `js-tools/package.json`.
pub(crate) const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// The oldest Node.js the pinned tools run on (rolldown's `engines`).
pub(crate) const MIN_NODE: (u32, u32) = (20, 19);
/// The module name a plugin imports the JavaScript guest SDK by.
pub(crate) const SDK_MODULE: &str = "riposte-guest";

const PACKAGE_JSON: &str = include_str!("js-tools/package.json");
const PACKAGE_LOCK: &str = include_str!("js-tools/package-lock.json");
/// Written after a successful `npm ci`; holds the sha256 of the lock file it installed.
const STAMP: &str = ".riposte-installed";

/// The installed JavaScript tools.
#[derive(Clone, Debug)]
pub struct JsTools {
    /// The directory holding `package.json`, the lock file and `node_modules`.
    pub dir: PathBuf,
}

impl JsTools {
    /// `node <jco>` with the environment of a build.
    fn jco(&self) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(
            self.dir
                .join("node_modules/@bytecodealliance/jco/dist/jco.js"),
        );
        command::sanitize_env(&mut cmd);
        cmd
    }

    /// The pinned TypeScript compiler (TypeScript 7, a native binary shipped in the npm package).
    fn tsc(&self) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(self.dir.join("node_modules/typescript/bin/tsc"));
        cmd
    }
}

/// `(major, minor)` from `node --version` output such as `v20.20.2`.
pub(crate) fn parse_node_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether the lock file installed in `dir` is the one this riposte pins.
pub(crate) fn is_installed(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("node_modules").join(STAMP))
        .is_ok_and(|stamp| stamp.trim() == sha256_hex(PACKAGE_LOCK.as_bytes()))
}

fn check_node() -> Result<(), Error> {
    let hint = "install Node.js 20.19 or newer with npm (e.g. the `nodejs` package of NodeSource)";
    let out = Command::new("node").arg("--version").output();
    let version = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            return Err(Error::ToolMissing {
                tool: "node (for JavaScript plugins)".into(),
                detail: format!("`node --version` does not run; {hint}"),
            });
        }
    };
    match parse_node_version(&version) {
        Some(found) if found >= MIN_NODE => Ok(()),
        _ => Err(Error::ToolMissing {
            tool: "node (for JavaScript plugins)".into(),
            detail: format!(
                "found Node.js {}, the pinned jco {JCO_VERSION} needs {}.{} or newer; {hint}",
                version.trim(),
                MIN_NODE.0,
                MIN_NODE.1
            ),
        }),
    }
}

/// Makes sure the pinned tools are installed in `dir` (`npm ci` from the embedded lock file
/// when they are missing or another version is there).
pub(crate) fn ensure_js_tools(dir: &Path, install: bool, echo: bool) -> Result<JsTools, Error> {
    let tools = JsTools {
        dir: dir.to_owned(),
    };
    if is_installed(dir) {
        return Ok(tools);
    }
    check_node()?;
    let hint = format!(
        "npm ci --prefix {} (with the package.json and package-lock.json of host/crates/toolchain/src/js-tools)",
        dir.display()
    );
    if !install {
        return Err(Error::ToolMissing {
            tool: format!("jco {JCO_VERSION} and componentize-js {COMPONENTIZE_JS_VERSION}"),
            detail: format!("not installed in {}; run: {hint}", dir.display()),
        });
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    for (name, text) in [
        ("package.json", PACKAGE_JSON),
        ("package-lock.json", PACKAGE_LOCK),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    }
    tracing::info!(dir = %dir.display(), "installing jco {JCO_VERSION} and componentize-js {COMPONENTIZE_JS_VERSION} with npm ci");
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(dir);
    command::sanitize_env(&mut npm);
    command::run_ok(&mut npm, "npm ci (JavaScript plugin tools)", echo)?;
    let stamp = dir.join("node_modules").join(STAMP);
    std::fs::write(&stamp, sha256_hex(PACKAGE_LOCK.as_bytes()))
        .map_err(io(format!("writing {}", stamp.display())))?;
    Ok(tools)
}

/// Generates the TypeScript declarations of the world `rule` from `wit_dir` into `out`
/// (`jco guest-types`): `rule.d.ts` and `interfaces/*.d.ts`.
pub(crate) fn generate_types(
    tools: &JsTools,
    wit_dir: &Path,
    out: &Path,
    echo: bool,
) -> Result<(), Error> {
    let _ = std::fs::remove_dir_all(out);
    let mut cmd = tools.jco();
    cmd.arg("guest-types")
        .arg(absolute(wit_dir))
        .args(["-n", WORLD, "-o"])
        .arg(absolute(out));
    command::run_ok(
        &mut cmd,
        "jco guest-types (TypeScript types from the WIT)",
        echo,
    )?;
    Ok(())
}

/// Where one plugin's generated build files go.
fn plugin_work_dir(build_dir: &Path, plugin: &str) -> PathBuf {
    build_dir.join("js").join(plugin)
}

/// The tsconfig that type-checks a TypeScript plugin against the generated WIT types and the
/// SDK's declarations.
pub(crate) fn tsconfig(entry: &Path, wit_types: &Path, sdk_js: &Path) -> serde_json::Value {
    serde_json::json!({
        "compilerOptions": {
            "strict": true,
            "noEmit": true,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "allowJs": true,
            "skipLibCheck": false,
            "types": [],
            "paths": { SDK_MODULE: [sdk_js.join("index.d.ts")] },
        },
        "files": [entry, wit_types.join("rule.d.ts")],
    })
}

/// The rolldown configuration the bundle step uses: `riposte-guest` is the SDK, the WIT
/// imports stay external (componentize-js binds them).
pub(crate) fn bundle_config(sdk_js: &Path) -> String {
    let sdk = serde_json::to_string(&sdk_js.join("index.js")).expect("a path serializes");
    format!(
        "// Written by `riposte plugin build`.\nexport default {{\n  resolve: {{ alias: {{ {SDK_MODULE:?}: {sdk} }} }},\n  external: [/^riposte:/],\n}};\n"
    )
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Builds the JavaScript or TypeScript plugin `plugin` into the component `out`.
pub fn build(
    plugin: &PluginSource,
    tools: &JsTools,
    paths: &JsPaths,
    out: &Path,
    echo: bool,
) -> Result<(), Error> {
    let entry = absolute(&plugin.dir.join(&plugin.artifact));
    let work = plugin_work_dir(&paths.build_dir, &plugin.name);
    std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
    let failed = |command: String, captured: command::Captured| Error::PluginBuild {
        plugin: plugin.name.clone(),
        command,
        status: captured.status.clone(),
        stderr_tail: captured.tail(),
    };
    if is_typescript(&entry) {
        let config_path = work.join("tsconfig.json");
        let config = tsconfig(&entry, &paths.wit_types, &paths.sdk_js);
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("JSON serializes"),
        )
        .map_err(io(format!("writing {}", config_path.display())))?;
        let mut tsc = tools.tsc();
        tsc.arg("-p").arg(&config_path).current_dir(&plugin.dir);
        let command = command::describe(&tsc);
        let captured = command::run(&mut tsc, "tsc (type check)", echo)?;
        if !captured.success {
            return Err(failed(command, captured));
        }
    }
    let config_path = work.join("bundle.config.mjs");
    std::fs::write(&config_path, bundle_config(&paths.sdk_js))
        .map_err(io(format!("writing {}", config_path.display())))?;
    let mut cmd = tools.jco();
    cmd.arg("componentize")
        .arg(&entry)
        .arg("-w")
        .arg(absolute(&paths.wit_dir))
        .args(["-n", WORLD, "--bundle", "--bundle-config"])
        .arg(&config_path)
        // No wasi:http: the host links none, and a rule has no network.
        .args(["--disable", "http", "fetch-event", "-o"])
        .arg(absolute(out))
        .current_dir(&plugin.dir);
    let command = command::describe(&cmd);
    let captured = command::run(&mut cmd, "jco componentize", echo)?;
    if !captured.success || !out.is_file() {
        return Err(failed(command, captured));
    }
    Ok(())
}

/// Whether `entry` is TypeScript (`.ts`, `.mts`, `.cts`).
pub(crate) fn is_typescript(entry: &Path) -> bool {
    entry
        .extension()
        .is_some_and(|e| e == "ts" || e == "mts" || e == "cts")
}

/// The directories a JavaScript build reads and writes.
#[derive(Clone, Debug)]
pub struct JsPaths {
    /// The WIT package.
    pub wit_dir: PathBuf,
    /// The JavaScript guest SDK (`guest-sdk/js`).
    pub sdk_js: PathBuf,
    /// The generated WIT declarations (`<build_dir>/js/wit-types`).
    pub wit_types: PathBuf,
    /// The build directory.
    pub build_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions_are_parsed_and_compared() {
        assert_eq!(parse_node_version("v20.20.2\n"), Some((20, 20)));
        assert_eq!(parse_node_version("v18.19.0"), Some((18, 19)));
        assert!(parse_node_version("v18.19.0").unwrap() < MIN_NODE);
        assert!(parse_node_version("v22.1.0").unwrap() >= MIN_NODE);
        assert_eq!(parse_node_version("node"), None);
    }

    #[test]
    fn the_pinned_tools_are_the_ones_in_the_lock_file() {
        let manifest: serde_json::Value = serde_json::from_str(PACKAGE_JSON).unwrap();
        assert_eq!(
            manifest["dependencies"]["@bytecodealliance/jco"],
            JCO_VERSION
        );
        assert_eq!(
            manifest["dependencies"]["@bytecodealliance/componentize-js"],
            COMPONENTIZE_JS_VERSION
        );
        let lock: serde_json::Value = serde_json::from_str(PACKAGE_LOCK).unwrap();
        let packages = &lock["packages"];
        assert_eq!(
            packages["node_modules/@bytecodealliance/jco"]["version"],
            JCO_VERSION
        );
        assert_eq!(
            packages["node_modules/@bytecodealliance/componentize-js"]["version"],
            COMPONENTIZE_JS_VERSION
        );
        // Every package in the lock has an exact version and an integrity hash (npm ci checks it).
        for (name, entry) in packages.as_object().unwrap() {
            if name.is_empty() || entry.get("link").is_some() {
                continue;
            }
            assert!(entry["version"].is_string(), "{name}");
            assert!(
                entry["integrity"].is_string(),
                "{name} has no integrity hash"
            );
        }
    }

    #[test]
    fn the_bundle_config_aliases_the_sdk_and_keeps_wit_imports_external() {
        let config = bundle_config(Path::new("/repo/guest-sdk/js"));
        assert!(
            config.contains("\"riposte-guest\": \"/repo/guest-sdk/js/index.js\""),
            "{config}"
        );
        assert!(config.contains("external: [/^riposte:/]"), "{config}");
        let ts = tsconfig(
            Path::new("/p/app.ts"),
            Path::new("/b/wit-types"),
            Path::new("/repo/guest-sdk/js"),
        );
        assert_eq!(ts["compilerOptions"]["strict"], true);
        assert_eq!(
            ts["compilerOptions"]["paths"]["riposte-guest"][0],
            "/repo/guest-sdk/js/index.d.ts"
        );
        assert_eq!(ts["files"][1], "/b/wit-types/rule.d.ts");
        assert!(is_typescript(Path::new("a/app.ts")) && !is_typescript(Path::new("app.js")));
    }
}
