//! Running the external tools (cargo, rustup, apt-get, pip, componentize-py) with a clean
//! environment, capturing stderr so failures can show its tail.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::Error;

/// How many trailing stderr lines an error message carries.
pub(crate) const STDERR_TAIL_LINES: usize = 40;

/// The outcome of a command that ran to completion (successfully or not).
#[derive(Debug)]
pub struct Captured {
    /// Whether the process exited with status 0.
    pub success: bool,
    /// The exit status, as text (`exit status: 101`, `signal: 9`).
    pub status: String,
    /// Standard output, whole.
    pub stdout: String,
    /// Standard error, whole.
    pub stderr: String,
}

impl Captured {
    /// The last [`STDERR_TAIL_LINES`] lines of stderr (or of stdout when stderr is empty).
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        tail_lines(text, STDERR_TAIL_LINES)
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// A printable form of `cmd`: program, arguments, and the environment it sets explicitly.
pub fn describe(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            out.push_str(&format!(
                "{}={} ",
                key.to_string_lossy(),
                shell_quote(&value.to_string_lossy())
            ));
        }
    }
    out.push_str(&shell_quote(&cmd.get_program().to_string_lossy()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether an inherited environment variable must not reach a nested cargo/rustc: the variables
/// cargo sets for build scripts and tests (when riposte itself runs under `cargo test` or
/// `cargo run`) and the ones that would redirect or reconfigure the plugin build.
pub(crate) fn is_build_env_var(name: &str) -> bool {
    const KEEP_PREFIXES: [&str; 6] = [
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    if KEEP_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    name.starts_with("CARGO_")
        || name.starts_with("__CARGO")
        || matches!(
            name,
            "CARGO"
                | "RUSTC"
                | "RUSTDOC"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "RUSTC_BOOTSTRAP"
                | "OUT_DIR"
                | "TARGET"
                | "HOST"
                | "OPT_LEVEL"
                | "PROFILE"
                | "DEBUG"
                | "NUM_JOBS"
        )
}

/// Removes the inherited variables of [`is_build_env_var`] from `cmd`.
pub(crate) fn sanitize_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && is_build_env_var(name)
        {
            cmd.env_remove(name);
        }
    }
}

/// Runs `cmd` to completion, capturing stdout and stderr; with `echo`, stderr is also copied to
/// this process's stderr as it arrives (cargo's progress). `what` names the step for errors.
pub fn run(cmd: &mut Command, what: &str, echo: bool) -> Result<Captured, Error> {
    let command = describe(cmd);
    tracing::debug!(%command, "running");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            what: what.to_owned(),
            command: command.clone(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            text.push_str(&line);
            line.clear();
        }
        text
    });
    let mut err_text = String::new();
    {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if echo {
                eprint!("{line}");
            }
            err_text.push_str(&line);
            line.clear();
        }
    }
    let out_text = out_thread.join().unwrap_or_default();
    let status = child.wait().map_err(|source| Error::Spawn {
        what: what.to_owned(),
        command,
        source,
    })?;
    Ok(Captured {
        success: status.success(),
        status: status.to_string(),
        stdout: out_text,
        stderr: err_text,
    })
}

/// Runs `cmd` and fails with [`Error::Command`] (naming `what`, the command line and stderr's
/// tail) unless it succeeds.
pub(crate) fn run_ok(cmd: &mut Command, what: &str, echo: bool) -> Result<Captured, Error> {
    let command = describe(cmd);
    let captured = run(cmd, what, echo)?;
    if captured.success {
        Ok(captured)
    } else {
        Err(Error::Command {
            what: what.to_owned(),
            command,
            status: captured.status.clone(),
            stderr_tail: captured.tail(),
        })
    }
}

/// Whether `program` can be started (found on `PATH` or as a path).
pub(crate) fn is_available(program: &Path, version_arg: &str) -> bool {
    Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether this process runs as root (so it may install system packages).
pub(crate) fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                return rest.split_whitespace().nth(1) == Some("0");
            }
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
