//! Building the plugins under `plugins/` into WebAssembly components (`riposte plugin build`).
//!
//! - Rust plugins (a directory with a `Cargo.toml`, members of the `plugins/` cargo workspace) are
//!   compiled in ONE cargo invocation with one target dir (`target/plugin-build`): with rustup's
//!   `wasm32-wasip2` target when it is installed (rustc emits components), otherwise with the
//!   offline route of TOOLCHAIN.md — Debian's rustc-web (`cargo +debian-web`, linked into rustup
//!   if needed), `RUSTC_BOOTSTRAP=1 -Zbuild-std=std,panic_abort` for `wasm32-wasip1` — whose apt
//!   packages are installed when missing and running as root. Core modules become components with
//!   the `wit-component` crate and wasmtime 48's preview-1 reactor adapter.
//! - Python plugins (a directory with a `pyproject.toml` or a `riposte-python` marker) are built
//!   with componentize-py 0.25.1, installed with pip into `target/plugin-build/python-venv` when
//!   it is not available, with the Python guest SDK (`guest-sdk/python`) on their path.
//! - JavaScript and TypeScript plugins (a directory with a `package.json` that has a `riposte`
//!   key) are built with jco and componentize-js, pinned by a lock file and installed with
//!   `npm ci` into `target/plugin-build/js-tools`; TypeScript types are generated from `wit/`
//!   at each build (see [`js`]).
//! - The guest SDK's examples are built with the Rust plugins, so they stay real.
//!
//! Outputs: `target/plugins/<name>.wasm`, `target/plugins/examples/<example>.wasm` and
//! `target/plugins/manifest.json` (name, language, file, sha256, size of each).

pub mod command;
pub mod component;
pub mod detect;
pub mod discover;
pub mod js;
pub mod progress;
pub mod python;
pub mod scaffold;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use detect::{RoutePreference, RustRoute};
pub use discover::{Language, PluginSource, discover};

/// The WIT world every plugin implements.
pub use riposte_runtime::WIT_WORLD as WORLD;

/// The manifest written next to the built plugins.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// The cargo package name of the guest SDK (a member of the plugins workspace).
pub(crate) const SDK_PACKAGE: &str = "riposte-guest";

/// Why building plugins failed. Every variant names the plugin or the step and command involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin directory is malformed.
    #[error("plugin `{plugin}` ({dir}): {detail}")]
    InvalidPlugin {
        /// The plugin (or its directory name).
        plugin: String,
        /// Its directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A plugin asked for by name does not exist.
    #[error("no plugin named `{name}` under {dir} (found: {found})")]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The plugins directory.
        dir: PathBuf,
        /// The plugins that exist.
        found: String,
    },
    /// A tool the build needs is missing and was not (or could not be) installed.
    #[error("{tool} is not available: {detail}")]
    ToolMissing {
        /// The tool or route.
        tool: String,
        /// What to install or run.
        detail: String,
    },
    /// A command could not be started.
    #[error("{what}: could not start `{command}`: {source}")]
    Spawn {
        /// The step.
        what: String,
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A preparation command (apt-get, rustup, pip) failed.
    #[error("{what} failed ({status}): `{command}`\n--- stderr (tail) ---\n{stderr_tail}")]
    Command {
        /// The step.
        what: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
    /// Compiling a plugin failed.
    #[error(
        "building plugin `{plugin}` failed ({status}): `{command}`\n--- compiler stderr (tail) ---\n{stderr_tail}"
    )]
    PluginBuild {
        /// The plugin(s) that failed, comma-separated.
        plugin: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of the compiler's stderr.
        stderr_tail: String,
    },
    /// Turning a plugin's core module into a component failed.
    #[error("componentizing plugin `{plugin}` ({path}) failed: {detail}")]
    Componentize {
        /// The plugin.
        plugin: String,
        /// The core module.
        path: PathBuf,
        /// wit-component's message.
        detail: String,
    },
    /// The compiler succeeded but the expected file is not there.
    #[error("plugin `{plugin}`: the build did not produce {path}")]
    MissingArtifact {
        /// The plugin.
        plugin: String,
        /// The file expected.
        path: PathBuf,
    },
    /// No riposte workspace was found to build in.
    #[error(
        "could not find the riposte workspace (a directory with Cargo.toml, wit/ and plugins/) from {start}; pass --root"
    )]
    NoWorkspace {
        /// Where the search started.
        start: PathBuf,
    },
}

/// What to build and where.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The repository root (holds `plugins/`, `wit/`, `guest-sdk/`, `target/`).
    pub root: PathBuf,
    /// The plugins directory: `<root>/plugins`.
    pub plugins_dir: PathBuf,
    /// Plugins kept outside `plugins_dir` but built with it (members of the plugins
    /// workspace): `<root>/tests/hostile-plugin`, the sandbox tests' hostile rule, and
    /// `<root>/tests/legacy-plugin`, a rule built against `riposte:plugin@0.1.0`.
    pub extra_plugins: Vec<PathBuf>,
    /// The WIT package: `<root>/wit`.
    pub wit_dir: PathBuf,
    /// The guest SDK, built with its examples: `<root>/guest-sdk`.
    pub sdk_dir: PathBuf,
    /// Where components and the manifest land: `<root>/target/plugins`.
    pub out_dir: PathBuf,
    /// Cargo's target dir for plugins and the Python venv: `<root>/target/plugin-build`
    /// (separate from the host's, so the two builds do not wait on each other's lock).
    pub build_dir: PathBuf,
    /// Which Rust route.
    pub route: RoutePreference,
    /// Build only these plugins (by name); empty for all (and the SDK's examples).
    pub only: Vec<String>,
    /// Install missing tools (apt packages as root, componentize-py with pip, jco with npm ci).
    pub install: bool,
    /// Build the guest SDK's examples too (only when building all plugins).
    pub examples: bool,
    /// Copy the tools' stderr (cargo's progress) to this process's stderr as it arrives.
    pub echo: bool,
}

impl BuildOptions {
    /// The default layout under `root`: everything, auto route, installing what is missing.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let target = root.join("target");
        BuildOptions {
            plugins_dir: root.join("plugins"),
            extra_plugins: vec![
                root.join("tests").join("hostile-plugin"),
                root.join("tests").join("legacy-plugin"),
            ],
            wit_dir: root.join("wit"),
            sdk_dir: root.join("guest-sdk"),
            out_dir: target.join("plugins"),
            build_dir: target.join("plugin-build"),
            root,
            route: RoutePreference::Auto,
            only: Vec::new(),
            install: true,
            examples: true,
            echo: false,
        }
    }
}

/// One built component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltPlugin {
    /// The plugin's name (the file is `<name>.wasm`).
    pub name: String,
    /// Its source language.
    pub language: Language,
    /// The component file.
    pub path: PathBuf,
    /// Hex sha256 of the component file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// How it was built (`rustup-wasm32-wasip2`, `offline-wasm32-wasip1`, `componentize-py-0.25.1`,
    /// `jco-1.35.0-componentize-js-0.23.0`).
    pub route: String,
    /// Whether it is an example of the guest SDK rather than a plugin under `plugins/`.
    #[serde(default)]
    pub example: bool,
}

/// `target/plugins/manifest.json`: every built component with its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The WIT world the components implement.
    pub world: String,
    /// The components, by name (examples under `examples/<name>`).
    pub plugins: BTreeMap<String, BuiltPlugin>,
}

/// Reads `<out_dir>/manifest.json`; an empty manifest when there is none.
pub(crate) fn read_manifest(out_dir: &Path) -> Result<Manifest, Error> {
    let path = out_dir.join(MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
            context: format!("reading {}", path.display()),
            source: std::io::Error::other(e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(source) => Err(Error::Io {
            context: format!("reading {}", path.display()),
            source,
        }),
    }
}

/// Finds the riposte workspace from `start` upwards: a directory with `Cargo.toml`, `wit/`
/// and `plugins/`. Falls back to the source tree this crate was compiled from.
pub fn find_root(start: &Path) -> Result<PathBuf, Error> {
    let is_root = |dir: &Path| {
        dir.join("Cargo.toml").is_file() && dir.join("wit").is_dir() && dir.join("plugins").is_dir()
    };
    if let Some(found) = start.ancestors().find(|d| is_root(d)) {
        return Ok(found.to_owned());
    }
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    if is_root(&compiled) {
        return Ok(compiled.canonicalize().unwrap_or(compiled));
    }
    Err(Error::NoWorkspace {
        start: start.to_owned(),
    })
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

pub use riposte_runtime::sha256_hex;

/// Writes `bytes` to `path` atomically (temp file + rename), so a concurrent reader never sees
/// half a component.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("wasm.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming {} into place", tmp.display())))
}

fn record(
    name: &str,
    language: Language,
    path: PathBuf,
    route: &str,
    example: bool,
) -> Result<BuiltPlugin, Error> {
    let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
    Ok(BuiltPlugin {
        name: name.to_owned(),
        language,
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
        path,
        route: route.to_owned(),
        example,
    })
}

/// The crates cargo names in `error: could not compile `NAME`` lines of its stderr.
pub(crate) fn failed_crates(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.trim().strip_prefix("error: could not compile `")
            && let Some(name) = rest.split('`').next()
            && !out.iter().any(|n| n == name)
        {
            out.push(name.to_owned());
        }
    }
    out
}

/// Builds every plugin (or those in [`BuildOptions::only`]) into `out_dir`, writes the manifest,
/// and returns what was built, plugins first (sorted by name), then the SDK's examples.
pub fn build_plugins(opts: &BuildOptions) -> Result<Vec<BuiltPlugin>, Error> {
    let mut plugins = discover(&opts.plugins_dir)?;
    for dir in &opts.extra_plugins {
        plugins.extend(discover::plugin_at(dir)?);
    }
    if !opts.only.is_empty() {
        for name in &opts.only {
            if !plugins.iter().any(|p| &p.name == name) {
                return Err(Error::UnknownPlugin {
                    name: name.clone(),
                    dir: opts.plugins_dir.clone(),
                    found: plugins
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        plugins.retain(|p| opts.only.contains(&p.name));
    }
    std::fs::create_dir_all(&opts.build_dir)
        .map_err(io(format!("creating {}", opts.build_dir.display())))?;
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(io(format!("creating {}", opts.out_dir.display())))?;

    // One build at a time per build dir (tests may build from several processes at once).
    let lock_path = opts.build_dir.join(".riposte-plugin-build.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(io(format!("creating {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("locking {}", lock_path.display())))?;

    let of = |language: Language| -> Vec<PluginSource> {
        plugins
            .iter()
            .filter(|p| p.language == language)
            .cloned()
            .collect()
    };
    let (rust, py, js) = (
        of(Language::Rust),
        of(Language::Python),
        of(Language::JavaScript),
    );
    let examples = if opts.examples && opts.only.is_empty() {
        discover::sdk_examples(&opts.sdk_dir)?
    } else {
        Vec::new()
    };

    // The three languages build at once: cargo, componentize-py and jco each wait on
    // different things (compiling std, pip, npm and SpiderMonkey's pre-initialisation).
    let results = std::thread::scope(|scope| {
        let py_handle = (!py.is_empty()).then(|| scope.spawn(|| build_python_plugins(opts, &py)));
        let js_handle = (!js.is_empty()).then(|| scope.spawn(|| build_js_plugins(opts, &js)));
        let rust_result = if rust.is_empty() && examples.is_empty() {
            Ok(Vec::new())
        } else {
            build_rust_plugins(opts, &rust, &examples)
        };
        [
            rust_result,
            join_build(py_handle, "the Python build"),
            join_build(js_handle, "the JavaScript build"),
        ]
    });
    let mut built = Vec::new();
    for result in results {
        built.extend(result?);
    }
    built.sort_by(|a, b| (a.example, &a.name).cmp(&(b.example, &b.name)));

    let mut manifest = read_manifest(&opts.out_dir).unwrap_or_default();
    manifest.world = format!(
        "{}/{WORLD}@{}",
        riposte_runtime::WIT_PACKAGE,
        riposte_runtime::WIT_VERSION
    );
    for plugin in &built {
        let key = if plugin.example {
            format!("examples/{}", plugin.name)
        } else {
            plugin.name.clone()
        };
        manifest.plugins.insert(key, plugin.clone());
    }
    manifest.plugins.retain(|_, p| p.path.is_file());
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
    let manifest_path = opts.out_dir.join(MANIFEST_FILE);
    let tmp = manifest_path.with_extension(format!("json.tmp-{}", std::process::id()));
    std::fs::write(&tmp, json).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &manifest_path)
        .map_err(io(format!("writing {}", manifest_path.display())))?;
    drop(lock);
    Ok(built)
}

fn build_rust_plugins(
    opts: &BuildOptions,
    plugins: &[PluginSource],
    examples: &[String],
) -> Result<Vec<BuiltPlugin>, Error> {
    let route = detect::detect_route(opts.route, &opts.plugins_dir, opts.install, opts.echo)?;
    tracing::info!(
        route = route.name(),
        plugins = plugins.len(),
        "building Rust plugins"
    );
    let mut cmd = route.cargo();
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(opts.plugins_dir.join("Cargo.toml"))
        .arg("--release")
        .arg("--target-dir")
        .arg(&opts.build_dir)
        .args(route.build_args());
    for plugin in plugins {
        cmd.args(["-p", &plugin.name]);
    }
    cmd.arg("--lib");
    if !examples.is_empty() {
        cmd.args(["-p", SDK_PACKAGE, "--examples"]);
    }
    cmd.current_dir(&opts.plugins_dir);
    let command = command::describe(&cmd);
    let captured = command::run(&mut cmd, "cargo build (Rust plugins)", opts.echo)?;
    if !captured.success {
        let failed = failed_crates(&captured.stderr);
        let plugin = if failed.is_empty() {
            plugins
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            failed.join(", ")
        };
        return Err(Error::PluginBuild {
            plugin,
            command,
            status: captured.status.clone(),
            stderr_tail: captured.tail(),
        });
    }

    let release = opts.build_dir.join(route.target()).join("release");
    let mut built = Vec::new();
    for plugin in plugins {
        let artifact = release.join(format!("{}.wasm", plugin.artifact));
        let out = opts.out_dir.join(format!("{}.wasm", plugin.name));
        finish_rust_artifact(&plugin.name, &artifact, &out)?;
        built.push(record(
            &plugin.name,
            Language::Rust,
            out,
            route.name(),
            false,
        )?);
    }
    if !examples.is_empty() {
        let out_examples = opts.out_dir.join("examples");
        std::fs::create_dir_all(&out_examples)
            .map_err(io(format!("creating {}", out_examples.display())))?;
        for example in examples {
            let artifact = release
                .join("examples")
                .join(format!("{}.wasm", example.replace('-', "_")));
            let out = out_examples.join(format!("{example}.wasm"));
            finish_rust_artifact(example, &artifact, &out)?;
            built.push(record(example, Language::Rust, out, route.name(), true)?);
        }
    }
    Ok(built)
}

/// Copies a compiled plugin to `out`, componentizing it first when it is a core module.
fn finish_rust_artifact(name: &str, artifact: &Path, out: &Path) -> Result<(), Error> {
    let bytes = match std::fs::read(artifact) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingArtifact {
                plugin: name.to_owned(),
                path: artifact.to_owned(),
            });
        }
        Err(source) => {
            return Err(Error::Io {
                context: format!("reading {}", artifact.display()),
                source,
            });
        }
    };
    let component = match component::wasm_kind(&bytes) {
        component::WasmKind::Component => bytes,
        component::WasmKind::CoreModule => {
            component::componentize(&bytes).map_err(|detail| Error::Componentize {
                plugin: name.to_owned(),
                path: artifact.to_owned(),
                detail,
            })?
        }
        component::WasmKind::Unknown => {
            return Err(Error::Componentize {
                plugin: name.to_owned(),
                path: artifact.to_owned(),
                detail: "not a WebAssembly binary".into(),
            });
        }
    };
    write_atomic(out, &component)
}

fn join_build(
    handle: Option<std::thread::ScopedJoinHandle<'_, Result<Vec<BuiltPlugin>, Error>>>,
    what: &str,
) -> Result<Vec<BuiltPlugin>, Error> {
    match handle {
        Some(handle) => handle.join().unwrap_or_else(|_| {
            Err(Error::ToolMissing {
                tool: what.to_owned(),
                detail: "its thread panicked".into(),
            })
        }),
        None => Ok(Vec::new()),
    }
}

/// Builds each plugin of an interpreted language with `build_one(plugin, tmp_out)`, moving
/// each result into `out_dir` only once it is complete.
fn build_each(
    opts: &BuildOptions,
    plugins: &[PluginSource],
    language: Language,
    route: &str,
    mut build_one: impl FnMut(&PluginSource, &Path) -> Result<(), Error>,
) -> Result<Vec<BuiltPlugin>, Error> {
    let mut built = Vec::new();
    for plugin in plugins {
        tracing::info!(plugin = %plugin.name, %language, "building plugin");
        let out = opts.out_dir.join(format!("{}.wasm", plugin.name));
        let tmp = opts
            .build_dir
            .join(format!("{}.wasm.tmp-{}", plugin.name, std::process::id()));
        build_one(plugin, &tmp)?;
        std::fs::rename(&tmp, &out).map_err(io(format!(
            "moving {} to {}",
            tmp.display(),
            out.display()
        )))?;
        built.push(record(&plugin.name, language, out, route, false)?);
    }
    Ok(built)
}

fn build_js_plugins(
    opts: &BuildOptions,
    plugins: &[PluginSource],
) -> Result<Vec<BuiltPlugin>, Error> {
    let tools = js::ensure_js_tools(&opts.build_dir.join("js-tools"), opts.install, opts.echo)?;
    let paths = js::JsPaths {
        wit_dir: opts.wit_dir.clone(),
        sdk_js: opts.sdk_dir.join("js"),
        wit_types: opts.build_dir.join("js").join("wit-types"),
        build_dir: opts.build_dir.clone(),
    };
    js::generate_types(&tools, &paths.wit_dir, &paths.wit_types, opts.echo)?;
    let route = format!(
        "jco-{}-componentize-js-{}",
        js::JCO_VERSION,
        js::COMPONENTIZE_JS_VERSION
    );
    build_each(
        opts,
        plugins,
        Language::JavaScript,
        &route,
        |plugin, tmp| js::build(plugin, &tools, &paths, tmp, opts.echo),
    )
}

fn build_python_plugins(
    opts: &BuildOptions,
    plugins: &[PluginSource],
) -> Result<Vec<BuiltPlugin>, Error> {
    let venv = opts.build_dir.join("python-venv");
    let componentize_py = python::ensure_componentize_py(&venv, opts.install, opts.echo)?;
    let route = format!("componentize-py-{}", python::COMPONENTIZE_PY_VERSION);
    let sdk = opts.sdk_dir.join("python");
    build_each(opts, plugins, Language::Python, &route, |plugin, tmp| {
        python::build(
            plugin,
            &componentize_py,
            &opts.wit_dir,
            &sdk,
            tmp,
            opts.echo,
        )
    })
}

/// The arguments of `riposte plugin build`.
#[derive(Clone, Debug, clap::Args)]
pub struct BuildArgs {
    /// The riposte repository root (holds plugins/, wit/, guest-sdk/); found from the current
    /// directory when omitted.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Build only this plugin (repeatable); all plugins and the SDK's examples when omitted.
    #[arg(short = 'p', long = "plugin", value_name = "NAME")]
    pub plugins: Vec<String>,
    /// How to compile Rust plugins: `auto` uses rustup's wasm32-wasip2 target when installed,
    /// otherwise the offline route (Debian's rustc-web with -Zbuild-std for wasm32-wasip1).
    #[arg(long, value_enum, default_value_t = RoutePreference::Auto)]
    pub route: RoutePreference,
    /// Never install missing tools (apt packages, componentize-py, jco): fail saying what to install.
    #[arg(long)]
    pub no_install: bool,
    /// Where components and manifest.json land (default: <root>/target/plugins).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Cargo's target dir for plugins and the Python venv (default: <root>/target/plugin-build);
    /// point it at an existing one to reuse what it already compiled.
    #[arg(long, value_name = "DIR")]
    pub build_dir: Option<PathBuf>,
    /// Skip the guest SDK's examples.
    #[arg(long)]
    pub no_examples: bool,
    /// Show the compilers' output as they run.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the result as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl BuildArgs {
    /// The build options these arguments describe.
    pub fn options(&self) -> Result<BuildOptions, Error> {
        let root = match &self.root {
            Some(root) => root.clone(),
            None => {
                let cwd = std::env::current_dir().map_err(io("reading the current directory"))?;
                find_root(&cwd)?
            }
        };
        let mut opts = BuildOptions::new(root);
        if let Some(out) = &self.out_dir {
            opts.out_dir = out.clone();
        }
        if let Some(build) = &self.build_dir {
            opts.build_dir = build.clone();
        }
        opts.only = self.plugins.clone();
        opts.route = self.route;
        opts.install = !self.no_install;
        opts.examples = !self.no_examples;
        opts.echo = self.verbose;
        Ok(opts)
    }
}

/// Runs `riposte plugin build`: builds, then prints what was built (a table, or JSON).
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let opts = args.options()?;
    // A spinner while cargo and componentize-py work (not with --verbose, whose compiler
    // output would tear it; never when stderr is not a terminal).
    let what = if opts.only.is_empty() {
        "building plugins".to_owned()
    } else {
        format!("building {}", opts.only.join(", "))
    };
    let progress = if opts.echo {
        indicatif::ProgressBar::hidden()
    } else {
        crate::progress::spinner(&what)
    };
    let built = build_plugins(&opts);
    progress.finish_and_clear();
    let built = built?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&built)?);
        return Ok(());
    }
    for plugin in &built {
        println!(
            "{:<28} {:<10} {:>9} B  sha256:{}  {}",
            if plugin.example {
                format!("examples/{}", plugin.name)
            } else {
                plugin.name.clone()
            },
            plugin.language.to_string(),
            plugin.size,
            plugin.sha256,
            plugin.path.display()
        );
    }
    println!("{} component(s) in {}", built.len(), opts.out_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests;
