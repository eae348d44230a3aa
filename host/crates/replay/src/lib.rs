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
//! simulator's clock stands at the latest of those. `on-interval`, when replayed, runs once
//! after the case's Malops at the latest of those clocks.
//!
//! **Policy.** With the operator's configuration ([`ReplayPolicy`]), each case is replayed
//! as the service would run it: only the Malops the plugin subscribes to are offered,
//! `on-interval` only if the plugin asks for it, and every query and action is put to the
//! policy gate (see [`policy`]); the plugin gets the gate's answers, and the plan records
//! them.

pub mod fixture;
pub mod policy;
mod server;

pub use fixture::{
    EXPECTED_SUFFIX, Expectation, ExpectedInvocation, Fixture, FixtureError, FixtureShape,
    expectation_path, fixture_files, load_expectation, load_fixture, parse_fixture,
    write_expectation,
};

pub use policy::ReplayPolicy;
pub use server::{ReplayServer, ReplayServerError, as_served};

use riposte_domain::{Malop, MalopId, TimestampMs};
use riposte_runtime::{
    CallContext, Clock, Entry, Limits, LoadedPlugin, Outcome, PluginHost, PluginIdentity,
    PluginInfo, RecordedCall, RecordingHost, Runtime, StopReason,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long after a Malop's last update the pinned clock stands by default.
pub(crate) const DEFAULT_CLOCK_OFFSET_MS: i64 = 60_000;

/// How to replay.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// The per-invocation budgets the plugin is held to.
    pub limits: Limits,
    /// Config values for every case (an expectation's own `config` adds to and overrides them).
    pub config: BTreeMap<String, String>,
    /// Write the current plan as the expectation instead of comparing.
    pub record: bool,
    /// Replay `on-interval` after each case's Malops.
    pub on_interval: bool,
    /// The operator's configuration and what the plugin said about itself: subscription,
    /// interval and the policy gate applied as the service would.
    pub policy: Option<(Arc<ReplayPolicy>, PluginInfo)>,
}

/// What one invocation used.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    /// The Malop offered (none for `on-interval`).
    pub malop: Option<MalopId>,
    /// How it ended (`completed`, `plugin-error: ...`, `stopped: <reason>`, `host-failure: ...`).
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
    /// The plan the plugin made (with the gate's outcome of each call under a policy).
    pub plan: Vec<ExpectedInvocation>,
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
    /// stdout, stderr and log output together, in bytes.
    pub output_bytes: usize,
}

impl From<&Limits> for Budgets {
    fn from(limits: &Limits) -> Self {
        Self {
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes,
            wall_clock_us: limits.wall_clock.as_micros() as u64,
            output_bytes: limits.output_bytes,
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
pub(crate) async fn run_case(
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
        plan: Vec::new(),
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
    let mut host = RecordingHost::with_source(server);
    if let Some((policy, _)) = &options.policy {
        match policy::PolicyJudge::new(policy, &offered) {
            Ok(judge) => host = host.judged_by(judge),
            Err(e) => {
                result
                    .failures
                    .push(format!("the operator configuration: {e}"));
                return result;
            }
        }
    }
    let host = Arc::new(host);
    let info = options.policy.as_ref().map(|(_, info)| info);
    let run = Run {
        runtime,
        plugin,
        host: &host,
        options,
        include_logs: settings.include_logs,
    };
    let mut actual = Vec::new();
    for malop in &offered {
        let now = clock(malop);
        if info.is_some_and(|i| !i.subscription.matches(malop)) {
            actual.push(skipped(Some(malop.id.clone()), None, "not-subscribed"));
            continue;
        }
        let call = CallContext::for_malop(plugin.identity(), malop, config.clone())
            .with_clock(Clock::Fixed(now));
        actual.push(
            run.invoke(call, Entry::Malop(malop), now, &mut result)
                .await,
        );
    }
    if options.on_interval || settings.on_interval {
        let now = offered.iter().map(clock).max().unwrap_or_default();
        if info.is_some_and(|i| i.interval_seconds.filter(|s| *s > 0).is_none()) {
            actual.push(skipped(None, Some(now), "no-interval-hook"));
        } else {
            let call = CallContext::for_interval(plugin.identity(), now, config.clone())
                .with_clock(Clock::Fixed(now));
            actual.push(
                run.invoke(call, Entry::Interval(now), now, &mut result)
                    .await,
            );
        }
    }
    if host.unrecorded() > 0 {
        result.failures.push(format!(
            "the plugin made {} calls past the {} MiB the dry run records (refused and not in the plan): it calls far more than a rule needs",
            host.unrecorded(),
            riposte_runtime::MAX_RECORDED_BYTES >> 20
        ));
    }

    result.plan = actual.clone();
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

/// An invocation not made (not subscribed, no interval hook), as the plan records it.
fn skipped(
    malop: Option<MalopId>,
    on_interval_ms: Option<i64>,
    outcome: &str,
) -> ExpectedInvocation {
    ExpectedInvocation {
        malop,
        on_interval_ms,
        outcome: outcome.to_owned(),
        calls: Vec::new(),
    }
}

/// What one replayed invocation needs.
struct Run<'a> {
    runtime: &'a Runtime,
    plugin: &'a LoadedPlugin,
    host: &'a Arc<RecordingHost>,
    options: &'a ReplayOptions,
    include_logs: bool,
}

impl Run<'_> {
    /// Runs one invocation on the pinned clock `now`, adds what it used (and any overrun) to
    /// `result`, and returns its plan.
    async fn invoke(
        &self,
        call: CallContext,
        entry: Entry<'_>,
        now: i64,
        result: &mut CaseResult,
    ) -> ExpectedInvocation {
        let before = self.host.recorded();
        let malop = call.malop_id.clone();
        let report = self
            .runtime
            .invoke(
                self.plugin,
                &self.options.limits,
                self.host.clone() as Arc<dyn PluginHost>,
                call,
                entry,
            )
            .await;
        let outcome = outcome_label(&report.outcome);
        let which = malop
            .as_ref()
            .map_or_else(|| "on-interval".to_owned(), |m| format!("Malop {m}"));
        if let Outcome::Stopped { reason } = &report.outcome
            && is_overrun(reason)
        {
            result.failures.push(format!(
                "budget overrun on {which}: {reason} (used fuel {}, memory {}, time {}); raise the plugin's limits or make it cheaper",
                report.fuel_used,
                bytes(report.peak_memory),
                millis(report.duration)
            ));
        }
        let calls: Vec<RecordedCall> = self
            .host
            .calls_from(before)
            .into_iter()
            .filter(|c| self.include_logs || !matches!(c, RecordedCall::Log { .. }))
            .collect();
        result.usage.push(Usage {
            malop: malop.clone(),
            outcome: outcome.clone(),
            clock_ms: now,
            fuel_used: report.fuel_used,
            peak_memory: report.peak_memory,
            duration_us: report.duration.as_micros() as u64,
        });
        ExpectedInvocation {
            malop,
            on_interval_ms: matches!(entry, Entry::Interval(_)).then_some(now),
            outcome,
            calls,
        }
    }
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

/// `completed`, `plugin-error: <error>`, `stopped: <reason label>` or `host-failure: <error>`.
pub(crate) fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Completed => "completed".into(),
        Outcome::PluginError { error } => format!("plugin-error: {error}"),
        Outcome::Stopped { reason } => format!("stopped: {}", reason.label()),
        Outcome::HostFailure { error } => format!("host-failure: {error}"),
    }
}

/// Whether the sandbox stopped the plugin for using too much of a budget.
pub(crate) fn is_overrun(reason: &StopReason) -> bool {
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
pub(crate) fn plan_diff(expected: &[ExpectedInvocation], actual: &[ExpectedInvocation]) -> String {
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
        for line in gate_lines(&case.plan) {
            let _ = writeln!(out, "    {line}");
        }
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

/// One line per call the policy judged: what the gate would do, and for an action the
/// approval and budget outcome it would meet.
fn gate_lines(plan: &[ExpectedInvocation]) -> Vec<String> {
    let mut lines = Vec::new();
    for invocation in plan {
        let at = match (&invocation.malop, invocation.on_interval_ms) {
            (Some(m), _) => format!("Malop {m}"),
            (None, Some(t)) => format!("on-interval at {t}"),
            (None, None) => "?".to_owned(),
        };
        if invocation.outcome == "not-subscribed" || invocation.outcome == "no-interval-hook" {
            lines.push(format!("{at}: {}", invocation.outcome));
        }
        for call in &invocation.calls {
            let (what, gate) = match call {
                RecordedCall::Action { request, gate, .. } => (request.operation().name(), gate),
                RecordedCall::GetMalop { gate, .. } => ("get-malop", gate),
                RecordedCall::ListMalops { gate, .. } => ("list-malops", gate),
                _ => continue,
            };
            let Some(gate) = gate else { continue };
            let mut line = format!("{at}: {what}: {}", gate.detail);
            if !gate.approval.is_empty() {
                line.push_str(&format!("; needs approval: {}", gate.approval.join(", ")));
            }
            if let Some(budget) = &gate.budget {
                line.push_str(&format!("; budget: {budget}"));
            }
            lines.push(line);
        }
    }
    lines
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
