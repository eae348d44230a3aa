//! Replay testing (`riposte plugin test`, guarantee G9): a plugin runs against recorded Malops
//! with deterministic time; the calls it makes are compared with the expectation beside each
//! fixture, and what it used is reported against its budgets.
//!
//! **Backend.** Each case starts a simulator on loopback holding exactly the fixture's Malops
//! ([`ReplayServer`]), and the real client talks to it over HTTP: every Malop is fetched in
//! full detail as the service would fetch it before offering it to `on-malop`, and the
//! plugin's `get-malop` and `list-malops` go the same way. Actions are recorded and answered
//! as shadowed ([`RecordingHost`]); nothing is executed. A fixture a server could not hold as
//! recorded (say, a root cause with two hashes), or a Malop that comes back different from its
//! recording, fails its case with the reason or the diff. Each case needs a free port on
//! 127.0.0.1; nothing else of the network is used.
//!
//! **Time.** The plugin's WASI clocks are pinned ([`Clock::Fixed`]): by default to each
//! Malop's `last_update_time` plus one minute, or to the expectation's `now_ms`. The
//! simulator's clock stands at the latest of those.

pub mod fixture;
mod server;

pub use fixture::{
    EXPECTED_SUFFIX, Expectation, ExpectedInvocation, Fixture, FixtureError, FixtureShape,
    expectation_path, fixture_files, load_expectation, load_fixture, parse_fixture,
    write_expectation,
};

pub use server::{ReplayServer, ReplayServerError, as_served};

use crate::domain::{Malop, MalopId, TimestampMs};
use crate::runtime::{
    CallContext, Clock, Entry, Limits, LoadedPlugin, Outcome, PluginHost, PluginIdentity,
    RecordedCall, RecordingHost, Runtime, StopReason,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long after a Malop's last update the pinned clock stands by default.
pub const DEFAULT_CLOCK_OFFSET_MS: i64 = 60_000;

/// How to replay.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// The per-invocation budgets the plugin is held to.
    pub limits: Limits,
    /// Config values for every case (an expectation's own `config` adds to and overrides them).
    pub config: BTreeMap<String, String>,
    /// Write the current plan as the expectation instead of comparing.
    pub record: bool,
}

/// What one invocation used.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    /// The Malop offered.
    pub malop: MalopId,
    /// How it ended (`completed`, `plugin-error: ...`, `stopped: <reason>`).
    pub outcome: String,
    /// The pinned clock the plugin saw (ms since the epoch).
    pub clock_ms: i64,
    /// Fuel used.
    pub fuel_used: u64,
    /// Largest linear memory reached, in bytes.
    pub peak_memory: usize,
    /// Wall-clock time, in microseconds.
    pub duration_us: u64,
}

/// The result of one fixture.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// The case name (the fixture's file name without `.json`).
    pub name: String,
    /// The fixture file.
    pub fixture: PathBuf,
    /// The fixture's shape, when it could be read.
    pub shape: Option<FixtureShape>,
    /// What each invocation used.
    pub usage: Vec<Usage>,
    /// Why the case failed (empty: passed). Mismatches carry a line diff.
    pub failures: Vec<String>,
    /// Whether `--record` wrote the expectation.
    pub recorded: bool,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The budgets, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct Budgets {
    /// Fuel per invocation.
    pub fuel: u64,
    /// Linear memory, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time, in microseconds.
    pub wall_clock_us: u64,
}

impl From<&Limits> for Budgets {
    fn from(limits: &Limits) -> Self {
        Self {
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes,
            wall_clock_us: limits.wall_clock.as_micros() as u64,
        }
    }
}

/// A whole replay run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The plugin replayed.
    pub plugin: PluginIdentity,
    /// The budgets it was held to.
    pub budgets: Budgets,
    /// One entry per fixture, sorted by file name.
    pub cases: Vec<CaseResult>,
}

impl Summary {
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed()).count()
    }
}

/// Replays each of `fixtures` (e.g. [`fixture_files`] of a directory); `on_case` is called
/// after each (for progress).
pub async fn run_cases(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    fixtures: &[PathBuf],
    options: &ReplayOptions,
    mut on_case: impl FnMut(&CaseResult),
) -> Summary {
    let mut cases = Vec::with_capacity(fixtures.len());
    for path in fixtures {
        let result = run_case(runtime, plugin, path, options).await;
        on_case(&result);
        cases.push(result);
    }
    Summary {
        plugin: plugin.identity(),
        budgets: Budgets::from(&options.limits),
        cases,
    }
}

/// Replays one fixture and compares (or records) its expectation.
pub async fn run_case(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    path: &Path,
    options: &ReplayOptions,
) -> CaseResult {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_owned())
        .unwrap_or_default();
    let mut result = CaseResult {
        name,
        fixture: path.to_owned(),
        shape: None,
        usage: Vec::new(),
        failures: Vec::new(),
        recorded: false,
    };
    let fixture = match load_fixture(path) {
        Ok(f) => f,
        Err(e) => {
            result.failures.push(e.to_string());
            return result;
        }
    };
    result.shape = Some(fixture.shape);
    let expected_path = fixture.expectation_path();
    let existing = match load_expectation(&expected_path) {
        Ok(e) => e,
        Err(e) if options.record => {
            tracing::warn!(error = %e, "rewriting an unreadable expectation");
            None
        }
        Err(e) => {
            result.failures.push(e.to_string());
            return result;
        }
    };
    let settings = existing.clone().unwrap_or_default();
    let mut config = options.config.clone();
    config.extend(settings.config.clone());
    let config = Arc::new(config);

    let clock = |malop: &Malop| {
        settings
            .now_ms
            .unwrap_or(malop.last_update_time + DEFAULT_CLOCK_OFFSET_MS)
    };
    let (server, offered) = match serve(&fixture, fixture.malops.iter().map(clock).max()).await {
        Ok(served) => served,
        Err(failure) => {
            result.failures.push(failure);
            return result;
        }
    };
    let host = Arc::new(RecordingHost::with_source(server));
    let mut actual = Vec::new();
    for malop in &offered {
        let before = host.calls().len();
        let now = clock(malop);
        let call = CallContext::for_malop(plugin.identity(), malop, config.clone())
            .with_clock(Clock::Fixed(now));
        let report = runtime
            .invoke(
                plugin,
                &options.limits,
                host.clone() as Arc<dyn PluginHost>,
                call,
                Entry::Malop(malop),
            )
            .await;
        let outcome = outcome_label(&report.outcome);
        if let Outcome::Stopped { reason } = &report.outcome
            && is_overrun(reason)
        {
            result.failures.push(format!(
                "budget overrun on Malop {}: {reason} (used fuel {}, memory {}, time {}); raise the plugin's limits or make it cheaper",
                malop.id,
                report.fuel_used,
                bytes(report.peak_memory),
                millis(report.duration)
            ));
        }
        let calls: Vec<RecordedCall> = host.calls()[before..]
            .iter()
            .filter(|c| settings.include_logs || !matches!(c, RecordedCall::Log { .. }))
            .cloned()
            .collect();
        result.usage.push(Usage {
            malop: malop.id.clone(),
            outcome: outcome.clone(),
            clock_ms: now,
            fuel_used: report.fuel_used,
            peak_memory: report.peak_memory,
            duration_us: report.duration.as_micros() as u64,
        });
        actual.push(ExpectedInvocation {
            malop: malop.id.clone(),
            outcome,
            calls,
        });
    }

    if options.record {
        let expectation = Expectation {
            invocations: actual,
            ..settings
        };
        match write_expectation(&expected_path, &expectation) {
            Ok(()) => result.recorded = true,
            Err(e) => result.failures.push(e.to_string()),
        }
        return result;
    }
    match existing {
        None => result.failures.push(format!(
            "no expectation {}: write one from the current plan with `riposte plugin test --record`",
            expected_path.display()
        )),
        Some(expected) if expected.invocations != actual => {
            result.failures.push(format!(
                "the plan differs from {}:\n{}",
                expected_path.display(),
                plan_diff(&expected.invocations, &actual)
            ));
        }
        Some(_) => {}
    }
    result
}

/// Starts the case's simulated server and fetches each fixture Malop from it as the service
/// would; a failure names the fixture and the Malop.
async fn serve(
    fixture: &Fixture,
    server_clock: Option<TimestampMs>,
) -> Result<(ReplayServer, Vec<Malop>), String> {
    let at = |e: ReplayServerError| format!("fixture {}: {e}", fixture.path.display());
    let server = ReplayServer::start(&fixture.malops, server_clock.unwrap_or_default())
        .await
        .map_err(at)?;
    let mut offered = Vec::with_capacity(fixture.malops.len());
    for malop in &fixture.malops {
        offered.push(server.offer(malop).await.map_err(at)?);
    }
    Ok((server, offered))
}

/// `completed`, `plugin-error: <error>` or `stopped: <reason label>`.
pub fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed => "completed".into(),
        Outcome::PluginError { error } => format!("plugin-error: {error}"),
        Outcome::Stopped { reason } => format!("stopped: {}", reason.label()),
    }
}

/// Whether the sandbox stopped the plugin for using too much of a budget.
pub fn is_overrun(reason: &StopReason) -> bool {
    matches!(
        reason,
        StopReason::OutOfFuel
            | StopReason::TimeLimit
            | StopReason::MemoryLimit
            | StopReason::OutputCap
            | StopReason::StackOverflow
    )
}

/// A unified line diff of two plans, as pretty JSON (`-` expected, `+` actual).
pub fn plan_diff(expected: &[ExpectedInvocation], actual: &[ExpectedInvocation]) -> String {
    let render = |v: &[ExpectedInvocation]| {
        let mut s = serde_json::to_string_pretty(v).expect("a plan serializes");
        s.push('\n');
        s
    };
    let (old, new) = (render(expected), render(actual));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}

/// The human report of a run.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let b = &summary.budgets;
    let _ = writeln!(
        out,
        "plugin {} (sha256 {}), budgets per invocation: fuel {}, memory {}, time {}",
        summary.plugin.name,
        &summary.plugin.digest[..summary.plugin.digest.len().min(12)],
        b.fuel,
        bytes(b.memory_bytes),
        millis(Duration::from_micros(b.wall_clock_us))
    );
    for case in &summary.cases {
        let status = match (case.passed(), case.recorded) {
            (true, true) => "recorded",
            (true, false) => "ok",
            (false, _) => "FAIL",
        };
        let peak = |f: fn(&Usage) -> u64| case.usage.iter().map(f).max().unwrap_or(0);
        let (fuel, memory, time) = (
            peak(|u| u.fuel_used),
            peak(|u| u.peak_memory as u64),
            peak(|u| u.duration_us),
        );
        let _ = writeln!(
            out,
            "{status:<8} {:<32} {} invocation(s)  fuel {fuel} ({:.2}%)  memory {} ({:.1}%)  time {} ({:.1}%)",
            case.name,
            case.usage.len(),
            percent(fuel, b.fuel),
            bytes(memory as usize),
            percent(memory, b.memory_bytes as u64),
            millis(Duration::from_micros(time)),
            percent(time, b.wall_clock_us),
        );
        for failure in &case.failures {
            for line in failure.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let failed = summary.failed();
    let total = summary.cases.len();
    if failed == 0 {
        let _ = writeln!(out, "all {total} case(s) passed");
    } else {
        let _ = writeln!(out, "{failed} of {total} case(s) failed");
    }
    out
}

fn percent(used: u64, budget: u64) -> f64 {
    if budget == 0 {
        0.0
    } else {
        used as f64 * 100.0 / budget as f64
    }
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
