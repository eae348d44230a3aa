//! Choosing how Rust plugins are compiled: rustup's `wasm32-wasip2` target when installed,
//! otherwise the offline route of TOOLCHAIN.md (Debian's rustc-web + `-Zbuild-std` for
//! `wasm32-wasip1`), installing its apt packages when allowed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::Error;
use super::command::{self, is_available, is_root};

/// The Debian packages the offline route needs.
pub(crate) const OFFLINE_PACKAGES: [&str; 5] =
    ["rustc-web", "cargo-web", "rust-web-src", "wasi-libc", "lld"];

/// The rustup toolchain name the offline route links Debian's compiler under.
pub(crate) const OFFLINE_TOOLCHAIN: &str = "debian-web";

/// Where Debian's wasi-libc puts the wasm32-wasi libraries.
pub(crate) const WASI_LIBC_DIR: &str = "/usr/lib/wasm32-wasi";

/// Where rust-web-src puts the standard library's sources.
pub(crate) const RUST_SRC_DIR: &str = "/usr/lib/rustlib/src/rust/library";

/// Which route the caller wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RoutePreference {
    /// rustup's `wasm32-wasip2` when installed, else the offline route.
    #[default]
    Auto,
    /// rustup's `wasm32-wasip2` only; fail when it is not installed.
    Wasip2,
    /// The offline route only.
    Offline,
}

/// How Rust plugins will be compiled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "route", rename_all = "kebab-case")]
pub enum RustRoute {
    /// `cargo build --target wasm32-wasip2`: rustc emits components directly.
    Wasip2,
    /// `RUSTC_BOOTSTRAP=1 cargo +debian-web build --target wasm32-wasip1 -Zbuild-std=std,panic_abort`,
    /// then wit-component with the preview-1 reactor adapter.
    OfflineWasip1 {
        /// `Some("debian-web")` when cargo runs through rustup's `+toolchain`; `None` when there is
        /// no rustup and Debian's `/usr/bin/cargo` runs directly.
        rustup_toolchain: Option<String>,
    },
}

impl RustRoute {
    /// The rustc target triple of the route.
    pub fn target(&self) -> &'static str {
        match self {
            RustRoute::Wasip2 => "wasm32-wasip2",
            RustRoute::OfflineWasip1 { .. } => "wasm32-wasip1",
        }
    }

    /// A short name for messages and the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            RustRoute::Wasip2 => "rustup-wasm32-wasip2",
            RustRoute::OfflineWasip1 { .. } => "offline-wasm32-wasip1",
        }
    }

    /// The cargo command for this route, with the environment it needs (and nothing inherited
    /// from an enclosing cargo), without subcommand arguments.
    pub fn cargo(&self) -> Command {
        match self {
            RustRoute::Wasip2 => {
                let mut cmd = Command::new("cargo");
                command::sanitize_env(&mut cmd);
                cmd
            }
            RustRoute::OfflineWasip1 { rustup_toolchain } => {
                let mut cmd = match rustup_toolchain {
                    Some(toolchain) => {
                        let mut cmd = Command::new("cargo");
                        cmd.arg(format!("+{toolchain}"));
                        cmd
                    }
                    None => Command::new("/usr/bin/cargo"),
                };
                command::sanitize_env(&mut cmd);
                if rustup_toolchain.is_none() {
                    cmd.env("RUSTC", "/usr/bin/rustc");
                }
                cmd.env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_TARGET_WASM32_WASIP1_LINKER", "wasm-ld")
                    .env(
                        "CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS",
                        format!("-L {WASI_LIBC_DIR}"),
                    );
                cmd
            }
        }
    }

    /// The extra `cargo build` arguments of the route.
    pub(crate) fn build_args(&self) -> Vec<String> {
        let mut args = vec!["--target".to_owned(), self.target().to_owned()];
        if let RustRoute::OfflineWasip1 { .. } = self {
            args.push("-Zbuild-std=std,panic_abort".to_owned());
        }
        args
    }
}

/// Whether `rustup target list --installed` output lists `target`.
pub(crate) fn lists_target(installed: &str, target: &str) -> bool {
    installed.lines().any(|l| l.trim() == target)
}

/// Whether `rustup toolchain list` output lists the toolchain `name` (lines look like
/// `stable-x86_64-unknown-linux-gnu (active, default)` or `debian-web`).
pub(crate) fn lists_toolchain(list: &str, name: &str) -> bool {
    list.lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// The targets rustup has installed for the toolchain active in `dir`; `None` without rustup.
pub(crate) fn rustup_installed_targets(dir: &Path) -> Option<String> {
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "list", "--installed"]).current_dir(dir);
    command::sanitize_env(&mut cmd);
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The offline route's packages that are not installed, by `dpkg-query`; `None` when the
/// system has no dpkg (not Debian), in which case the files are checked instead.
pub(crate) fn missing_offline_packages() -> Option<Vec<&'static str>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\\n"])
        .args(OFFLINE_PACKAGES)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(missing_from_dpkg_status(&text))
}

/// The packages of [`OFFLINE_PACKAGES`] that `dpkg-query -W -f='${Package} ${Status}\n'`
/// output does not show as `install ok installed`.
pub(crate) fn missing_from_dpkg_status(text: &str) -> Vec<&'static str> {
    OFFLINE_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            !text.lines().any(|l| {
                let mut parts = l.splitn(2, ' ');
                let name = parts.next().unwrap_or("").split(':').next().unwrap_or("");
                name == *pkg && parts.next().unwrap_or("").trim() == "install ok installed"
            })
        })
        .collect()
}

/// The files the offline route uses, that are missing.
pub(crate) fn missing_offline_files() -> Vec<PathBuf> {
    [
        PathBuf::from("/usr/bin/cargo"),
        PathBuf::from("/usr/bin/rustc"),
        PathBuf::from(RUST_SRC_DIR).join("Cargo.lock"),
        PathBuf::from(WASI_LIBC_DIR).join("libc.a"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .collect()
}

/// The shell command that installs the offline route's packages.
pub(crate) fn offline_install_hint() -> String {
    format!(
        "apt-get update && apt-get install -y {} (as root), then `rustup toolchain link {OFFLINE_TOOLCHAIN} /usr`",
        OFFLINE_PACKAGES.join(" ")
    )
}

/// Makes sure the offline route's packages are installed: installs them with apt-get when they
/// are missing, `install` allows it and this process is root; otherwise fails saying what to
/// install.
pub(crate) fn ensure_offline_packages(install: bool, echo: bool) -> Result<(), Error> {
    let missing: Vec<String> = match missing_offline_packages() {
        Some(missing) => missing.into_iter().map(str::to_owned).collect(),
        None => {
            let files = missing_offline_files();
            if files.is_empty() {
                return Ok(());
            }
            return Err(Error::ToolMissing {
                tool: "the offline Rust route (Debian's rustc-web)".into(),
                detail: format!(
                    "missing {}; this is not a Debian system (no dpkg-query): install rustup's wasm32-wasip2 target instead (`rustup target add wasm32-wasip2`)",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    };
    if missing.is_empty() && missing_offline_files().is_empty() {
        return Ok(());
    }
    if !install || !is_root() {
        return Err(Error::ToolMissing {
            tool: "the offline Rust route (Debian's rustc-web)".into(),
            detail: format!(
                "not installed: {}; {}run: {}",
                if missing.is_empty() {
                    "its files".to_owned()
                } else {
                    missing.join(", ")
                },
                if install {
                    "not running as root, so not installing them; "
                } else {
                    ""
                },
                offline_install_hint()
            ),
        });
    }
    tracing::info!(packages = %OFFLINE_PACKAGES.join(" "), "installing the offline route's packages with apt-get");
    let mut update = Command::new("apt-get");
    update
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive");
    command::run_ok(&mut update, "apt-get update", echo)?;
    let mut apt = Command::new("apt-get");
    apt.args(["install", "-y"])
        .args(OFFLINE_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive");
    command::run_ok(&mut apt, "apt-get install (offline Rust route)", echo)?;
    Ok(())
}

/// Links Debian's toolchain into rustup as [`OFFLINE_TOOLCHAIN`] if it is not linked yet.
/// Returns `None` when there is no rustup (cargo then runs as `/usr/bin/cargo`).
pub(crate) fn ensure_offline_toolchain(echo: bool) -> Result<Option<String>, Error> {
    if !is_available(Path::new("rustup"), "--version") {
        return Ok(None);
    }
    let mut list = Command::new("rustup");
    list.args(["toolchain", "list"]);
    command::sanitize_env(&mut list);
    let listed = command::run_ok(&mut list, "rustup toolchain list", false)?;
    if !lists_toolchain(&listed.stdout, OFFLINE_TOOLCHAIN) {
        tracing::info!("linking Debian's rustc-web into rustup as `{OFFLINE_TOOLCHAIN}`");
        let mut link = Command::new("rustup");
        link.args(["toolchain", "link", OFFLINE_TOOLCHAIN, "/usr"]);
        command::sanitize_env(&mut link);
        command::run_ok(&mut link, "rustup toolchain link", echo)?;
    }
    Ok(Some(OFFLINE_TOOLCHAIN.to_owned()))
}

/// Which route to take, before preparing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteChoice {
    /// rustup's `wasm32-wasip2`: components straight from rustc, no preview-1 adapter.
    Wasip2,
    /// The offline route.
    Offline,
}

/// Chooses the route from the preference and what `rustup target list --installed` printed
/// (`None` without rustup): `wasm32-wasip2` whenever it is installed and not refused, the
/// offline route otherwise; asking for `wasm32-wasip2` when it is not installed is an error
/// that says how to get it.
pub(crate) fn choose_route(
    preference: RoutePreference,
    installed_targets: Option<&str>,
) -> Result<RouteChoice, Error> {
    let has_wasip2 = installed_targets.is_some_and(|t| lists_target(t, "wasm32-wasip2"));
    match preference {
        RoutePreference::Offline => Ok(RouteChoice::Offline),
        RoutePreference::Auto | RoutePreference::Wasip2 if has_wasip2 => Ok(RouteChoice::Wasip2),
        RoutePreference::Auto => Ok(RouteChoice::Offline),
        RoutePreference::Wasip2 => Err(Error::ToolMissing {
            tool: "rustup's wasm32-wasip2 target".into(),
            detail: if installed_targets.is_some() {
                "run `rustup target add wasm32-wasip2`, or build with the offline route (--route offline)".into()
            } else {
                "rustup is not available; install rustup and run `rustup target add wasm32-wasip2`, or build with the offline route (--route offline)".into()
            },
        }),
    }
}

/// Chooses the Rust route for building in `plugins_dir`, preparing the offline route (packages,
/// toolchain link) when it is the one chosen.
pub(crate) fn detect_route(
    preference: RoutePreference,
    plugins_dir: &Path,
    install: bool,
    echo: bool,
) -> Result<RustRoute, Error> {
    let installed = match preference {
        RoutePreference::Offline => None,
        _ => rustup_installed_targets(plugins_dir),
    };
    match choose_route(preference, installed.as_deref())? {
        RouteChoice::Wasip2 => Ok(RustRoute::Wasip2),
        RouteChoice::Offline => {
            ensure_offline_packages(install, echo)?;
            let rustup_toolchain = ensure_offline_toolchain(echo)?;
            Ok(RustRoute::OfflineWasip1 { rustup_toolchain })
        }
    }
}
