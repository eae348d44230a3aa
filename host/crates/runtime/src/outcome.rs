//! How an invocation ended, in plain words.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Why the sandbox stopped a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", content = "detail", rename_all = "kebab-case")]
pub enum StopReason {
    /// The instruction budget (fuel) ran out.
    OutOfFuel,
    /// The wall-clock limit, which includes time spent in host calls, passed.
    TimeLimit,
    /// The plugin tried to grow its memory past the limit.
    MemoryLimit,
    /// The plugin's call stack overflowed.
    StackOverflow,
    /// stdout, stderr and log output together passed the output cap.
    OutputCap,
    /// The plugin panicked; the panic message when the plugin reported one.
    Panic(String),
    /// Any other trap, with wasmtime's description.
    Trap(String),
}

impl StopReason {
    /// A short, stable label for metrics and filters.
    pub fn label(&self) -> &'static str {
        match self {
            Self::OutOfFuel => "out-of-fuel",
            Self::TimeLimit => "time-limit",
            Self::MemoryLimit => "memory-limit",
            Self::StackOverflow => "stack-overflow",
            Self::OutputCap => "output-cap",
            Self::Panic(_) => "panic",
            Self::Trap(_) => "trap",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFuel => {
                f.write_str("out of fuel: the plugin used its whole instruction budget")
            }
            Self::TimeLimit => {
                f.write_str("time limit: the invocation ran past its wall-clock limit")
            }
            Self::MemoryLimit => {
                f.write_str("memory limit: the plugin tried to grow its memory past the limit")
            }
            Self::StackOverflow => {
                f.write_str("stack overflow: the plugin's call stack was exhausted")
            }
            Self::OutputCap => f.write_str("output cap: the plugin wrote more output than allowed"),
            Self::Panic(message) => write!(f, "panic: {message}"),
            Self::Trap(message) => write!(f, "trap: {message}"),
        }
    }
}

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The export returned `ok`.
    Completed,
    /// The export returned an error of its own.
    PluginError { error: riposte_domain::CallError },
    /// The sandbox stopped the plugin.
    Stopped { reason: StopReason },
    /// The host's own code failed while the invocation ran (its task panicked): not the
    /// plugin's doing, so it neither counts towards pausing the plugin nor settles the
    /// Malop, which is offered again.
    HostFailure { error: String },
}

impl Outcome {
    /// Whether the plugin was stopped by the sandbox (counts towards crash-loop pausing).
    pub fn is_trap(&self) -> bool {
        matches!(self, Self::Stopped { .. })
    }

    /// Whether the export returned, with `ok` or an error of its own: the plugin ran to
    /// its end, so its Malop is settled and its run of traps is over.
    pub fn ran_to_end(&self) -> bool {
        matches!(self, Self::Completed | Self::PluginError { .. })
    }

    /// `completed`, `plugin-error`, `stopped` or `host-failure`: the status in audit
    /// records, metrics and replay plans.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::PluginError { .. } => "plugin-error",
            Self::Stopped { .. } => "stopped",
            Self::HostFailure { .. } => "host-failure",
        }
    }
}

/// What an invocation used and produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvocationReport {
    /// The invocation's id (also in every audit record it caused).
    pub invocation_id: String,
    pub outcome: Outcome,
    /// Instructions used (fuel consumed).
    pub fuel_used: u64,
    /// Largest linear memory the plugin reached, in bytes.
    pub peak_memory: usize,
    /// Wall-clock time of the whole invocation, host calls included.
    #[serde(with = "duration_micros")]
    pub duration: Duration,
    /// Captured stdout (lossy UTF-8, capped).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8, capped).
    pub stderr: String,
}

mod duration_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_micros() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// The error a plugin returned from an export, its detail bounded and made safe for a log
/// line ([`riposte_domain::bounds::MAX_ERROR_BYTES`]): it goes into the audit trail and the logs.
pub(crate) fn bounded_error(error: riposte_domain::CallError) -> riposte_domain::CallError {
    use riposte_domain::CallError as E;
    use riposte_domain::bounds::{MAX_ERROR_BYTES, log_safe};
    let bound = |detail: String| log_safe(&detail, MAX_ERROR_BYTES);
    match error {
        E::Denied(d) => E::Denied(bound(d)),
        E::BudgetExhausted(d) => E::BudgetExhausted(bound(d)),
        E::ProtectedTarget(d) => E::ProtectedTarget(bound(d)),
        E::NotFound(d) => E::NotFound(bound(d)),
        E::ServerError(d) => E::ServerError(bound(d)),
        E::InvalidArgument(d) => E::InvalidArgument(bound(d)),
        E::Failed(d) => E::Failed(bound(d)),
        E::OutOfScope(d) => E::OutOfScope(bound(d)),
        E::QuotaExceeded(d) => E::QuotaExceeded(bound(d)),
    }
}

/// Names the reason a call into the plugin failed, from what the store recorded and the
/// trap wasmtime raised.
pub(crate) fn classify(
    recorded: Option<StopReason>,
    memory_hit: bool,
    panic_message: Option<String>,
    error: &wasmtime::Error,
) -> StopReason {
    if let Some(reason) = recorded {
        return reason;
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::OutOfFuel => return StopReason::OutOfFuel,
            wasmtime::Trap::Interrupt => return StopReason::TimeLimit,
            wasmtime::Trap::StackOverflow => return StopReason::StackOverflow,
            _ => {}
        }
    }
    if memory_hit {
        return StopReason::MemoryLimit;
    }
    if let Some(message) = panic_message {
        return StopReason::Panic(message);
    }
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::MemoryOutOfBounds)
        && is_runaway_recursion(error)
    {
        return StopReason::StackOverflow;
    }
    StopReason::Trap(error.root_cause().to_string())
}

/// Guests such as Rust keep most of their stack in linear memory: overflowing it shows up as
/// an out-of-bounds access, not as wasmtime's stack-overflow trap. A backtrace full of one
/// function says it was runaway recursion.
fn is_runaway_recursion(error: &wasmtime::Error) -> bool {
    let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = backtrace.frames();
    if frames.len() < 16 {
        return false;
    }
    let mut counts = std::collections::HashMap::new();
    for frame in frames {
        *counts.entry(frame.func_index()).or_insert(0usize) += 1;
    }
    counts
        .values()
        .max()
        .is_some_and(|&n| n * 10 >= frames.len() * 9)
}

/// Extracts a Rust panic message ("panicked at src/lib.rs:3:5:\nboom") from captured stderr.
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.rfind("panicked at")?;
    let tail = &stderr[start..];
    let mut lines = tail.lines();
    let location = lines.next()?.trim_end_matches(':');
    let message: Vec<&str> = lines
        .take_while(|l| !l.starts_with("note:") && !l.trim().is_empty())
        .collect();
    let text = if message.is_empty() {
        location.to_owned()
    } else {
        format!("{} ({location})", message.join(" "))
    };
    Some(riposte_domain::bounds::log_safe(
        &text,
        riposte_domain::bounds::MAX_ERROR_BYTES,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted_with_its_location() {
        let stderr = "hello\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom (panicked at src/lib.rs:3:5)")
        );
        assert_eq!(panic_message("no panic here"), None);
    }

    #[test]
    fn recorded_reason_wins_over_the_trap() {
        let err = wasmtime::Error::from(wasmtime::Trap::UnreachableCodeReached);
        let reason = classify(Some(StopReason::TimeLimit), true, None, &err);
        assert_eq!(reason, StopReason::TimeLimit);
        assert_eq!(classify(None, true, None, &err), StopReason::MemoryLimit);
        assert_eq!(
            classify(None, false, Some("boom".into()), &err),
            StopReason::Panic("boom".into())
        );
    }
}
