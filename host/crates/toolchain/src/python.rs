//! Python plugins: componentize-py (pinned), installed with pip into a venv under the build
//! directory when it is not already available.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::command::{self, is_root};
use super::discover::PluginSource;
use super::{Error, WORLD};

/// The componentize-py version the project checked and pins.
pub(crate) const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Whether `componentize-py --version` output names the pinned version.
pub(crate) fn is_pinned_version(version_output: &str) -> bool {
    version_output
        .split_whitespace()
        .any(|word| word == COMPONENTIZE_PY_VERSION)
}

fn version_of(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The componentize-py to use: the venv's (`<venv>/bin/componentize-py`), else one on `PATH`,
/// as long as it is the pinned version; otherwise installs the pinned version into `venv` with
/// pip (creating the venv, and installing python3-venv with apt-get when root and needed).
pub(crate) fn ensure_componentize_py(
    venv: &Path,
    install: bool,
    echo: bool,
) -> Result<PathBuf, Error> {
    let in_venv = venv.join("bin").join("componentize-py");
    for candidate in [in_venv.clone(), PathBuf::from("componentize-py")] {
        if version_of(&candidate).is_some_and(|v| is_pinned_version(&v)) {
            return Ok(candidate);
        }
    }
    let hint = format!(
        "python3 -m venv {0} && {0}/bin/pip install componentize-py=={COMPONENTIZE_PY_VERSION}",
        venv.display()
    );
    if !install {
        return Err(Error::ToolMissing {
            tool: format!("componentize-py {COMPONENTIZE_PY_VERSION}"),
            detail: format!("run: {hint}"),
        });
    }
    let python = venv.join("bin").join("python");
    if !python.exists() {
        create_venv(venv, echo)?;
    }
    tracing::info!(venv = %venv.display(), "installing componentize-py {COMPONENTIZE_PY_VERSION} with pip");
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        // Reached only when the installed script does not run (for example a venv copied
        // from another checkout: its scripts name the old path), which pip would leave as is.
        "--force-reinstall",
    ])
    .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"));
    command::run_ok(&mut pip, "pip install componentize-py", echo)?;
    if version_of(&in_venv).is_some_and(|v| is_pinned_version(&v)) {
        Ok(in_venv)
    } else {
        Err(Error::ToolMissing {
            tool: format!("componentize-py {COMPONENTIZE_PY_VERSION}"),
            detail: format!(
                "pip installed it but {} does not run; try: {hint}",
                in_venv.display()
            ),
        })
    }
}

fn create_venv(venv: &Path, echo: bool) -> Result<(), Error> {
    let attempt = |echo: bool| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(venv);
        command::run_ok(&mut cmd, "python3 -m venv", echo)
    };
    match attempt(echo) {
        Ok(_) => Ok(()),
        Err(first) if is_root() => {
            // Debian's python3 lacks ensurepip until python3-venv is installed.
            tracing::info!("installing python3 and python3-venv with apt-get: {first}");
            let _ = std::fs::remove_dir_all(venv);
            let mut update = Command::new("apt-get");
            update
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive");
            command::run_ok(&mut update, "apt-get update", echo)?;
            let mut apt = Command::new("apt-get");
            apt.args(["install", "-y", "python3", "python3-venv", "python3-pip"])
                .env("DEBIAN_FRONTEND", "noninteractive");
            command::run_ok(&mut apt, "apt-get install python3-venv", echo)?;
            attempt(echo).map(|_| ())
        }
        Err(e) => Err(Error::ToolMissing {
            tool: "python3 with venv".into(),
            detail: format!("{e}; install python3 and python3-venv"),
        }),
    }
}

/// Builds the Python plugin `plugin` into the component `out` with `componentize_py`, with the
/// Python guest SDK (`sdk`, the directory holding `riposte_guest`) on its module path.
pub fn build(
    plugin: &PluginSource,
    componentize_py: &Path,
    wit_dir: &Path,
    sdk: &Path,
    out: &Path,
    echo: bool,
) -> Result<(), Error> {
    let mut cmd = Command::new(componentize_py);
    cmd.arg("-d")
        .arg(wit_dir)
        .args(["-w", WORLD, "componentize"])
        .arg(&plugin.artifact)
        .arg("-p")
        .arg(&plugin.dir)
        .arg("-p")
        .arg(sdk)
        .arg("-o")
        .arg(out)
        .current_dir(&plugin.dir);
    let command = command::describe(&cmd);
    let captured = command::run(&mut cmd, "componentize-py", echo)?;
    if !captured.success {
        return Err(Error::PluginBuild {
            plugin: plugin.name.clone(),
            command,
            status: captured.status.clone(),
            stderr_tail: captured.tail(),
        });
    }
    Ok(())
}
