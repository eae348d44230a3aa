//! Before/after: this harness against an earlier build of it, same machine, same run (issue 13
//! asks that the restructure's figures are not worse).
//!
//! `RIPOSTE_BENCH_BEFORE=<an earlier harness executable> cargo bench -p riposte-benches --bench
//! riposte` runs sections 1, 2 and 3 of that executable and of this one alternately
//! (before, after, before, after, …; `RIPOSTE_BENCH_ROUNDS` rounds, 3 unless set), each as its
//! own process with `RIPOSTE_BENCH_ONLY=1,2,3`, which prints its results document. Each run's
//! document and the load average around it are kept under `target/before-after/` (not
//! committed); the key figures of every run, their medians and ratios go to
//! `host/benches/results/before-after.json`, which RESULTS.md renders. The earlier executable
//! is built in its own worktree (its plugins and work directory are its own):
//! `cargo bench -p riposte --bench riposte --no-run` at the single-crate layout.
//!
//! `RIPOSTE_BENCH_BEFORE_AFTER_SUMMARY=1` only summarises the runs already under
//! `target/before-after/` again.

use crate::util;
use anyhow::Context;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The earlier harness executable to compare with.
pub const BEFORE_ENV: &str = "RIPOSTE_BENCH_BEFORE";
/// Re-summarise the kept runs without measuring.
pub const SUMMARY_ENV: &str = "RIPOSTE_BENCH_BEFORE_AFTER_SUMMARY";
/// Rounds (one run of each side per round).
const ROUNDS_ENV: &str = "RIPOSTE_BENCH_ROUNDS";
/// The sections compared.
const SECTIONS: &str = "1,2,3";
/// The summary's file name, next to results.json.
pub const FILE: &str = "before-after.json";
/// Beyond this change in the slower direction, in every round, a figure is called worse.
const NOISE: f64 = 0.15;

/// Where the runs' documents are kept.
fn raw_dir(root: &Path) -> PathBuf {
    root.join("target/before-after")
}

/// The 1-, 5- and 15-minute load averages.
pub(crate) fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    json!(v)
}

/// CPU time since boot from /proc/stat, all CPUs, in clock ticks: (user, total). User time
/// (with nice) only: the kernel's work on the run's behalf (fsyncs flushed by kernel
/// threads, loopback networking in softirq) is not charged to the run's process, so system
/// time cannot be split between the run and others.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    (fields.iter().take(2).sum(), fields.iter().take(8).sum())
}

/// User CPU time of this process's waited-for children (and theirs), in clock ticks.
fn children_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces): cutime is the 16th field
    // of the line, the 14th after it.
    stat.rsplit_once(')')
        .map_or("", |x| x.1)
        .split_whitespace()
        .nth(13)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

/// The share of the machine's CPU time (all cores) that other processes spent in user mode
/// between two readings: what competed with the measured run.
fn others_share(start: ((u64, u64), u64), end: ((u64, u64), u64)) -> f64 {
    let (((u0, t0), c0), ((u1, t1), c1)) = (start, end);
    let total = t1.saturating_sub(t0).max(1) as f64;
    let others = (u1.saturating_sub(u0)).saturating_sub(c1.saturating_sub(c0));
    util::round(others as f64 / total)
}

/// Waits (at most `QUIET_WAIT`) until other processes use less than `QUIET_SHARE` of the
/// CPU (user mode) over a few seconds; returns the last share seen and how long it waited.
fn wait_for_quiet() -> (f64, f64) {
    let started = std::time::Instant::now();
    loop {
        let before = (cpu_ticks(), children_ticks());
        std::thread::sleep(std::time::Duration::from_secs(3));
        let share = others_share(before, (cpu_ticks(), children_ticks()));
        if share < QUIET_SHARE || started.elapsed() >= QUIET_WAIT {
            return (share, util::round(started.elapsed().as_secs_f64()));
        }
    }
}

/// A run starts once other processes use less than this share of the CPU (or after
/// [`QUIET_WAIT`]).
const QUIET_SHARE: f64 = 0.15;
const QUIET_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs `exe` with sections 1–3 and returns its results document.
fn run_side(exe: &Path) -> anyhow::Result<Value> {
    let out = Command::new(exe)
        .env("RIPOSTE_BENCH_ONLY", SECTIONS)
        .env_remove("RIPOSTE_BENCH_WRITE")
        .env_remove("RIPOSTE_BENCH_REPORT_ONLY")
        .env_remove(BEFORE_ENV)
        .env_remove(SUMMARY_ENV)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        exe.display(),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The document is the last thing printed; anything before it (a plugin build's echo) is not.
    // A pretty-printed document's only unindented `{` line is its first.
    let start = text.rfind("\n{\n").map_or(0, |i| i + 1);
    serde_json::from_str(&text[start..])
        .with_context(|| format!("the results document printed by {}", exe.display()))
}

/// The measuring mode: runs both sides alternately, keeps each document, then summarises.
pub fn run(root: &Path, before: &Path) -> anyhow::Result<()> {
    let after = std::env::current_exe()?;
    let rounds: usize = match std::env::var(ROUNDS_ENV) {
        Ok(v) => v.parse().with_context(|| format!("{ROUNDS_ENV}={v}"))?,
        Err(_) => 3,
    };
    anyhow::ensure!(rounds >= 1, "{ROUNDS_ENV} must be at least 1");
    let dir = raw_dir(root);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for round in 1..=rounds {
        for (side, exe) in [("before", before), ("after", after.as_path())] {
            eprintln!(
                "== before/after: round {round}/{rounds}, {side} ({})",
                exe.display()
            );
            let (quiet_share, waited) = wait_for_quiet();
            let load_start = loadavg();
            let ticks = (cpu_ticks(), children_ticks());
            let doc = run_side(exe)?;
            let others = others_share(ticks, (cpu_ticks(), children_ticks()));
            let load_end = loadavg();
            let kept = json!({
                "round": round,
                "side": side,
                "executable": exe.display().to_string(),
                "loadavg_start": load_start,
                "loadavg_end": load_end,
                "others_cpu_share_before": quiet_share,
                "waited_for_quiet_s": waited,
                "others_cpu_share": others,
                "doc": doc,
            });
            std::fs::write(
                dir.join(format!("round-{round}-{side}.json")),
                serde_json::to_string_pretty(&kept)? + "\n",
            )?;
        }
    }
    summarise(root)
}

/// One compared figure: where it is in a results document, and which way is better.
struct Figure {
    name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    get: fn(&Value) -> Option<f64>,
}

/// The `per_call_us` of the section 2 row whose path starts with `prefix`.
fn host_call(r: &Value, rows: &str, prefix: &str) -> Option<f64> {
    r["2_host_call_cost"][rows]
        .as_array()?
        .iter()
        .find(|row| row["path"].as_str().is_some_and(|p| p.starts_with(prefix)))?["per_call_us"]
        .as_f64()
}

/// The rate of the section 3 row whose stage starts with `prefix`.
fn stage(r: &Value, prefix: &str, key: &str) -> Option<f64> {
    r["3_throughput"]["rows"]
        .as_array()?
        .iter()
        .find(|row| row["stage"].as_str().is_some_and(|s| s.starts_with(prefix)))?[key]
        .as_f64()
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "1. invocation p50 (Runtime::invoke, no-op rule)",
        unit: "µs",
        higher_is_better: false,
        get: |r| r["1_invocation_latency"]["riposte"]["p50_us"].as_f64(),
    },
    Figure {
        name: "1. invocation p99",
        unit: "µs",
        higher_is_better: false,
        get: |r| r["1_invocation_latency"]["riposte"]["p99_us"].as_f64(),
    },
    Figure {
        name: "1. the floor: bare wasmtime, pooling, p50 (same code on both sides)",
        unit: "µs",
        higher_is_better: false,
        get: |r| r["1_invocation_latency"]["bare"]["bare wasmtime, pooling"]["p50_us"].as_f64(),
    },
    Figure {
        name: "1. overhead vs that floor, p50",
        unit: "x",
        higher_is_better: false,
        get: |r| r["1_invocation_latency"]["ratio_p50"].as_f64(),
    },
    Figure {
        name: "2. config.get through riposte's runtime",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| host_call(r, "through_plugin", "riposte runtime: config.get"),
    },
    Figure {
        name: "2. get-malop, dry-run host (no gate, no audit)",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| host_call(r, "through_plugin", "riposte runtime + dry-run"),
    },
    Figure {
        name: "2. get-malop through GatedHost, audit fsync never",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| {
            host_call(
                r,
                "through_plugin",
                "service GatedHost: get-malop (grants check + audit record, fsync never",
            )
        },
    },
    Figure {
        name: "2. shadowed add-comment through GatedHost, audit fsync never",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| {
            host_call(
                r,
                "through_plugin",
                "service GatedHost: add-comment in shadow mode (ledger lookup, gate, ledger insert, audit record, fsync never",
            )
        },
    },
    Figure {
        name: "2. get-malop through GatedHost, audit fsync every record",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| {
            host_call(
                r,
                "through_plugin",
                "service GatedHost: get-malop (grants check + audit record, fsync every",
            )
        },
    },
    Figure {
        name: "2. shadowed add-comment through GatedHost, audit fsync every record",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| {
            host_call(
                r,
                "through_plugin",
                "service GatedHost: add-comment in shadow mode (ledger lookup, gate, ledger insert, audit record, fsync every",
            )
        },
    },
    Figure {
        name: "2. direct: gate + audit record to file, fsync never",
        unit: "µs/call",
        higher_is_better: false,
        get: |r| {
            host_call(
                r,
                "direct",
                "gate.check_query + audit record to file, fsync never",
            )
        },
    },
    Figure {
        name: "3. full cycle, fsync every record (default)",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| {
            stage(
                r,
                "full cycle, 3 Rust examples, fsync every record",
                "evaluations_per_s",
            )
        },
    },
    Figure {
        name: "3. full cycle, fsync batch",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| {
            stage(
                r,
                "full cycle, 3 Rust examples, fsync batch",
                "evaluations_per_s",
            )
        },
    },
    Figure {
        name: "3. full cycle, fsync never",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| {
            stage(
                r,
                "full cycle, 3 Rust examples, fsync never",
                "evaluations_per_s",
            )
        },
    },
    Figure {
        name: "3. fetch only (list + details, sequential)",
        unit: "Malops/s",
        higher_is_better: true,
        get: |r| stage(r, "fetch only", "malops_per_s"),
    },
    Figure {
        name: "3. evaluation stage, concurrency 4, fsync every record",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| {
            stage(
                r,
                "evaluation only: ransomware-containment + cleanup + reputation-feed on 1000 fetched Malops, concurrency 4, fsync every-record",
                "evaluations_per_s",
            )
        },
    },
    Figure {
        name: "3. evaluation stage, concurrency 4, fsync batch",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| {
            stage(
                r,
                "evaluation only: ransomware-containment + cleanup + reputation-feed on 1000 fetched Malops, concurrency 4, fsync batch",
                "evaluations_per_s",
            )
        },
    },
    Figure {
        name: "3. evaluation stage, concurrency 4, fsync never",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| {
            stage(
                r,
                "evaluation only: ransomware-containment + cleanup + reputation-feed on 1000 fetched Malops, concurrency 4, fsync never",
                "evaluations_per_s",
            )
        },
    },
    Figure {
        name: "3. evaluation stage, Python rule, concurrency 2, fsync never",
        unit: "evaluations/s",
        higher_is_better: true,
        get: |r| stage(r, "evaluation only: python-triage", "evaluations_per_s"),
    },
];

/// Reads the kept runs and writes `before-after.json`.
pub fn summarise(root: &Path) -> anyhow::Result<()> {
    let dir = raw_dir(root);
    let mut runs: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            runs.push(serde_json::from_slice(&std::fs::read(&path)?)?);
        }
    }
    runs.sort_by_key(|r| (r["round"].as_u64(), r["side"] != "before"));
    anyhow::ensure!(!runs.is_empty(), "no runs under {}", dir.display());
    let side = |s: &str| -> Vec<&Value> { runs.iter().filter(|r| r["side"] == s).collect() };
    let (before, after) = (side("before"), side("after"));
    let commit = |rs: &[&Value]| {
        rs.first()
            .map(|r| r["doc"]["machine"]["git_commit"].clone())
    };
    let mut figures = Vec::new();
    for fig in FIGURES {
        let values = |rs: &[&Value]| -> Vec<Option<f64>> {
            rs.iter().map(|r| (fig.get)(&r["doc"]["results"])).collect()
        };
        let (b, a) = (values(&before), values(&after));
        let flat = |v: &[Option<f64>]| v.iter().flatten().copied().collect::<Vec<_>>();
        let (bm, am) = (util::median_f64(&flat(&b)), util::median_f64(&flat(&a)));
        // after / before per round, and of the medians.
        let pairs: Vec<Option<f64>> = b
            .iter()
            .zip(&a)
            .map(|(b, a)| Some(util::round(a.as_ref()? / b.as_ref()?)))
            .collect();
        let ratio = bm.zip(am).map(|(b, a)| util::round(a / b));
        // Worse beyond the noise in every round: slower by more than NOISE each time.
        let worse = !pairs.is_empty()
            && pairs.iter().all(|p| {
                p.is_some_and(|p| {
                    if fig.higher_is_better {
                        p < 1.0 - NOISE
                    } else {
                        p > 1.0 + NOISE
                    }
                })
            });
        figures.push(json!({
            "figure": fig.name,
            "unit": fig.unit,
            "better": if fig.higher_is_better { "higher" } else { "lower" },
            "before": b,
            "after": a,
            "before_median": bm,
            "after_median": am,
            "ratio_after_before": ratio,
            "ratio_per_round": pairs,
            "worse_beyond_noise": worse,
        }));
    }
    let listed: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({
                "round": r["round"],
                "side": r["side"],
                "commit": r["doc"]["machine"]["git_commit"],
                "date_utc": r["doc"]["machine"]["date_utc"],
                "profile": r["doc"]["machine"]["profile"],
                "seconds": r["doc"]["total_seconds"],
                "loadavg_start": r["loadavg_start"],
                "loadavg_end": r["loadavg_end"],
                "others_cpu_share": r["others_cpu_share"],
                "waited_for_quiet_s": r["waited_for_quiet_s"],
            })
        })
        .collect();
    let summary = json!({
        "before_commit": commit(&before),
        "after_commit": commit(&after),
        "rounds": before.len().min(after.len()),
        "machine": runs[0]["doc"]["machine"],
        "noise_threshold": NOISE,
        "runs": listed,
        "figures": figures,
        "method": format!("Sections {SECTIONS} of the earlier harness (built at the before commit) and of this one, each run as its own process, alternately (before, after, before, after, …) on the same machine; each side's plugins built from its own tree. Medians over the rounds; ratio = after / before; per-round ratios pair each after run with the before run just ahead of it. A figure is called worse when it moved the slower way by more than {:.0}% in every round. Each run starts once other processes use less than {:.0}% of the machine's CPU in user mode over 3 s (waiting at most {} s); the share they used during the run (user time from /proc/stat less the run's own; the kernel's work for the run, fsyncs and loopback networking, cannot be told apart from others' and is left out) and the load average (1, 5, 15 min, /proc/loadavg, which counts the run itself) at its start and end are listed. Regenerate: RIPOSTE_BENCH_BEFORE=<earlier harness executable> cargo bench -p riposte-benches --bench riposte (runs under target/before-after/).", NOISE * 100.0, QUIET_SHARE * 100.0, QUIET_WAIT.as_secs()),
    });
    let out = root.join("host/benches/results").join(FILE);
    std::fs::write(&out, serde_json::to_string_pretty(&summary)? + "\n")?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
        None => "–".into(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(num)
        .collect::<Vec<_>>()
        .join(", ")
}

fn loads(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_f64().map_or("–".into(), |x| format!("{x:.2}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// RESULTS.md's before/after section, from `before-after.json`.
pub fn report(o: &mut String, s: &Value) {
    let _ = writeln!(
        o,
        "## Before/after the restructure (issue 13)\n\nBefore: commit {} (one `riposte` crate). After: commit {} (the workspace of crates). {}\n",
        s["before_commit"].as_str().unwrap_or("?"),
        s["after_commit"].as_str().unwrap_or("?"),
        s["method"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        o,
        "| figure | unit (better) | before, per round | after, per round | before median | after median | after / before | per round | worse beyond noise |\n|---|---|---|---|---|---|---|---|---|"
    );
    for fig in s["figures"].as_array().into_iter().flatten() {
        let ratio = fig["ratio_after_before"]
            .as_f64()
            .map_or("–".into(), |x| format!("{x:.2}x"));
        let pairs = fig["ratio_per_round"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_f64().map_or("–".into(), |x| format!("{x:.2}")))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "| {} | {} ({}) | {} | {} | {} | {} | **{ratio}** | {pairs} | {} |",
            fig["figure"].as_str().unwrap_or("?"),
            fig["unit"].as_str().unwrap_or(""),
            fig["better"].as_str().unwrap_or(""),
            list(&fig["before"]),
            list(&fig["after"]),
            num(&fig["before_median"]),
            num(&fig["after_median"]),
            if fig["worse_beyond_noise"] == true {
                "**yes**"
            } else {
                "no"
            },
        );
    }
    let _ = writeln!(
        o,
        "\n| round | side | commit | run ended (UTC) | seconds | waited for quiet | other processes' user CPU share during the run | load average at start | at end |\n|---|---|---|---|---|---|---|---|---|"
    );
    for run in s["runs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} s | {} | {} | {} |",
            run["round"],
            run["side"].as_str().unwrap_or("?"),
            run["commit"].as_str().unwrap_or("?"),
            run["date_utc"].as_str().unwrap_or("?"),
            num(&run["seconds"]),
            num(&run["waited_for_quiet_s"]),
            run["others_cpu_share"]
                .as_f64()
                .map_or("–".into(), |x| format!("{:.0}%", x * 100.0)),
            loads(&run["loadavg_start"]),
            loads(&run["loadavg_end"]),
        );
    }
    let _ = writeln!(o);
}
